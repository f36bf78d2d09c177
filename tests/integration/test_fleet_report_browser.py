"""The fleet report in a real browser: Debian's headless Chromium opens it and the page is checked as loaded.

Asserted: the page loads with no console error, uncaught exception or error log entry, and fetches nothing but
itself; every chart is there, laid out with a size, and each of its series is drawn; the fleet table has a row
per host and every host its section.

Two reports are checked:
- one built here from tests/fleet_fixtures.py (always, where chromium is installed);
- the report named by VLLM_FLEET_REPORT, e.g. the one a Molecule scenario produced from its real vLLM runs:
  its hosts are the host folders of the results folder it lies in, and of its newest fleet-<stamp>.json.
VLLM_FLEET_REPORT_SCREENSHOT=PATH writes a PNG of the checked page's top there (docs/report.png comes from it).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from browser import chromium, open_page
from fleet_fixtures import standard_plans, write_fleet
from moduletest import REPO, run_module

pytestmark = pytest.mark.skipif(
    chromium() is None,
    reason="chromium is not installed: apt-get install -y --no-install-recommends chromium (make deps does)",
)

STAMP = re.compile(r"\A\d{8}T\d{6}Z\Z")

# What the page looks like once loaded: its charts (size, series drawn), table rows and host sections.
INSPECT = """
(() => {
  const charts = [...document.querySelectorAll('figure.chart')].map(figure => {
    const svg = figure.querySelector('svg');
    const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    const series = svg ? [...svg.querySelectorAll('g[id^="' + figure.id + '-p"]')] : [];
    const drawn = series.filter(g => [...g.querySelectorAll('path, use')].some(
      e => e.tagName === 'use' || (e.getAttribute('d') || '').length > 0));
    return {id: figure.id, kind: figure.dataset.kind, points: Number(figure.dataset.points),
            width: box.width, height: box.height, series: series.length, drawn: drawn.length,
            host: figure.closest('section.host') ? figure.closest('section.host').dataset.host : null};
  });
  const sections = [...document.querySelectorAll('section.host')].map(section => ({
    host: section.dataset.host,
    stats: section.querySelectorAll('table.stats').length,
    history: section.querySelectorAll('table.history tbody tr').length,
    kinds: [...section.querySelectorAll('figure.chart')].map(f => f.dataset.kind),
  }));
  const rows = [...document.querySelectorAll('#fleet-table tbody tr')].map(row => row.dataset.host);
  return {charts, sections, rows, title: document.title};
})()
"""


def hosts_of(results: Path) -> list[str]:
    """The hosts a results folder holds: host folders (runs or a baseline), and the newest fleet table's hosts."""
    hosts = set()
    for folder in results.iterdir():
        if not folder.is_dir() or folder.name in ("tune", "rolling"):
            continue
        if (folder / "baseline-throughput.json").exists() or any(STAMP.match(p.name) for p in folder.iterdir()):
            hosts.add(folder.name)
    tables = sorted(results.glob("fleet-*.json"))
    if tables:
        hosts |= {row["host"] for row in json.loads(tables[-1].read_text())}
    return sorted(hosts)


def check_in_chromium(report: Path, hosts: list[str], screenshot: Path | None = None) -> dict:
    with open_page(report) as page:
        errors = page.errors()
        fetched = [url for url in page.requests if url != report.resolve().as_uri() and not url.startswith("data:")]
        seen = page.evaluate(INSPECT)
        if screenshot is not None:
            page.screenshot(screenshot, 1400, 1500)
    assert errors == [], f"console errors in {report}: {errors}"
    assert fetched == [], f"{report} fetched {fetched}"
    assert sorted(seen["rows"]) == sorted(hosts), "the fleet table must have a row per host"
    assert len(seen["rows"]) == len(set(seen["rows"]))
    assert sorted(s["host"] for s in seen["sections"]) == sorted(hosts)
    assert seen["charts"], "no chart on the page"
    for chart in seen["charts"]:
        assert chart["width"] > 300 and chart["height"] > 60, f"chart {chart['id']} has no size: {chart}"
        assert chart["series"] > 0 and chart["drawn"] == chart["series"], f"chart {chart['id']} is empty: {chart}"
        assert chart["points"] > 0
    for section in seen["sections"]:
        if section["stats"]:
            assert "cdf" in section["kinds"], f"{section['host']} has numbers but no latency distribution"
        if section["history"]:
            assert "history" in section["kinds"] or not section["stats"], f"{section['host']} has no history chart"
    return seen


def test_a_report_built_from_fixtures_loads_clean_with_every_chart_drawn(tmp_path):
    results = tmp_path / "results"
    rows = write_fleet(results, standard_plans())
    rc, result = run_module(REPO / "library" / "vllm_fleet_report.py", {"results_dir": str(results), "fleet": rows})
    assert rc == 0, result
    shot = (
        Path(os.environ["VLLM_FLEET_REPORT_SCREENSHOT"])
        if os.environ.get("VLLM_FLEET_REPORT_SCREENSHOT") and not os.environ.get("VLLM_FLEET_REPORT")
        else tmp_path / "report.png"
    )
    seen = check_in_chromium(results / "report.html", hosts_of(results), shot)
    assert len(seen["charts"]) == result["charts"] == 19
    assert {c["kind"] for c in seen["charts"]} == {"peers", "cdf", "history", "load", "tuning"}
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(
    not os.environ.get("VLLM_FLEET_REPORT"),
    reason="VLLM_FLEET_REPORT names no report (a Molecule scenario sets it to the report its real runs produced)",
)
def test_the_report_of_real_runs_loads_clean_with_every_chart_drawn():
    report = Path(os.environ["VLLM_FLEET_REPORT"])
    assert report.is_file(), f"VLLM_FLEET_REPORT={report} is not a file"
    shot = os.environ.get("VLLM_FLEET_REPORT_SCREENSHOT")
    seen = check_in_chromium(report, hosts_of(report.parent), Path(shot) if shot else None)
    assert any(c["kind"] == "cdf" for c in seen["charts"]), "real runs must give latency distributions"
