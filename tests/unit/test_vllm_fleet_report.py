"""The fleet report built from result folders: tables, peers and stragglers, text, and every chart's numbers.

The folders are written by tests/fleet_fixtures.py with the project's own statistics code: several H100 peers
of which one is a straggler, a host that failed before writing any result, one without a baseline (a class of
one), one whose newest result is of format 2 without samples, one of format 1.0 (no context: hardware unknown),
a capacity run and a tuning run. Every expected number here is read from the JSON files themselves, not from
the code under test.
"""

from __future__ import annotations

import copy
import json
import os
import re
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ansible.module_utils.vllm_fleet_charts import MARK_LABEL, PARALLEL_FROM, SvgRenderer, cdf_points, draw_all
from ansible.module_utils.vllm_fleet_html import page, slug
from ansible.module_utils.vllm_fleet_results import (
    DEFAULT_PEER_METRICS,
    build,
    change_text,
    host_row,
    markdown_table,
    number_text,
    settings_of,
    text_lines,
)
from fleet_fixtures import H100, HostPlan, Speed, standard_plans, write_fleet
from moduletest import REPO, run_module

MODULE = REPO / "library" / "vllm_fleet_report.py"


@pytest.fixture(scope="module")
def standard(tmp_path_factory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("results")
    rows = write_fleet(root, standard_plans())
    return root, rows


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def newest(root: Path, host: str, kind: str = "throughput") -> dict:
    runs = sorted(p for p in (root / host).iterdir() if p.is_dir() and (p / f"{kind}.json").exists())
    return load(runs[-1] / f"{kind}.json")


def fleet_of(root: Path, rows=None, fail=False, tolerance=10.0):
    return build(str(root), rows, DEFAULT_PEER_METRICS, tolerance, fail)


def markdown_rows(table: str) -> dict[str, list[str]]:
    """Host -> its cells, from a Markdown table."""
    lines = table.splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        rows[cells[0]] = dict(zip(head, cells, strict=True))
    return rows


def draw_all_here(charts):
    renderer = SvgRenderer()
    return {c.id: renderer.draw(c) for c in charts}


# ------------------------------------------------------------------ reading and peers


def test_every_host_and_run_is_read_in_every_format(standard):
    root, _rows = standard
    fleet = fleet_of(root)
    names = [h.name for h in fleet.hosts]
    assert names == [
        "gpu-node-1",
        "gpu-node-2",
        "gpu-node-3",
        "gpu-node-4",
        "gpu-node-5",
        "l40s-node-1",
        "old-node",
        "older-node",
    ]
    old = fleet.host("old-node")
    assert [sorted({r.fmt for r in run.results}) for run in old.runs] == [["1.0"], ["1.1"], ["2"]]
    assert fleet.host("gpu-node-1").latest.throughput.fmt == "2+samples"
    # The failed host's newest run is its fleet row alone: no folder, no numbers.
    five = fleet.host("gpu-node-5")
    assert five.latest.results == [] and not five.passed()
    assert five.failures() == ["throughput: cannot use the vLLM server at http://gpu-node-5:8000: connection refused"]
    assert len(five.runs) == 4  # three stored runs with numbers, then the failed one
    assert fleet.notes == []


def test_peers_are_one_class_with_one_straggler_and_medians_from_the_files(standard):
    root, _rows = standard
    fleet = fleet_of(root)
    h100 = [c for c in fleet.classes if len(c.hosts) > 1]
    assert len(h100) == 1
    members = ["gpu-node-1", "gpu-node-2", "gpu-node-3", "gpu-node-4", "old-node"]
    assert h100[0].hosts == members  # gpu-node-5 has no numbers, older-node no context
    for metric in DEFAULT_PEER_METRICS:
        expected = statistics.median(newest(root, h)["metrics"][metric] for h in members)
        assert h100[0].medians[metric] == pytest.approx(expected)
    stragglers = [h.name for h in fleet.hosts if h.stragglers]
    assert stragglers == ["gpu-node-3"]
    three = fleet.host("gpu-node-3")
    value = newest(root, "gpu-node-3")["metrics"]["request_throughput"]
    median = h100[0].medians["request_throughput"]
    peer = three.peers["request_throughput"]
    assert peer.value == value and peer.change_pct == pytest.approx((value - median) / median * 100, abs=0.01)
    assert peer.straggler and peer.worse_pct > 10
    # Latency: higher is worse.
    ttft = three.peers["median_ttft_ms"]
    assert ttft.change_pct > 10 and ttft.worse_pct == ttft.change_pct and ttft.straggler


def test_a_class_of_one_and_unknown_hardware_have_no_peers_and_say_so(standard):
    root, _rows = standard
    fleet = fleet_of(root)
    table = markdown_rows(markdown_table(fleet, fleet.hosts))
    assert table["l40s-node-1"]["peer deviation"] == "no peers (class of one)"
    assert table["older-node"]["peer deviation"] == "no peers (hardware unknown)"
    assert table["gpu-node-5"]["peer deviation"] == "no numbers to compare"
    text = "\n".join(text_lines(fleet))
    assert "No peers (class of one or hardware unknown): l40s-node-1, older-node" in text


def test_the_tolerance_decides_who_is_a_straggler(standard):
    root, _rows = standard
    assert [h.name for h in fleet_of(root, tolerance=50.0).hosts if h.stragglers] == []
    loose = fleet_of(root, tolerance=0.0)
    assert {h.name for h in loose.hosts if h.stragglers} >= {"gpu-node-3"}


def test_address_port_and_served_name_do_not_split_a_class():
    a = ["--model", "/m", "--host", "0.0.0.0", "--port", "8000", "--served-model-name", "x", "--max-num-seqs", "64"]
    b = ["--model", "/m", "--host=10.0.0.2", "--port", "8001", "--served-model-name", "y", "--max-num-seqs", "64"]
    assert settings_of(a) == settings_of(b) == ("--model", "/m", "--max-num-seqs", "64")
    assert settings_of(a) != settings_of([*a[:-1], "128"])


# ------------------------------------------------------------------ tables and text


def test_markdown_table_has_the_numbers_of_each_newest_run(standard):
    root, _rows = standard
    fleet = fleet_of(root)
    table = markdown_rows(markdown_table(fleet, fleet.hosts))
    assert list(table) == [h.name for h in fleet.hosts]
    for host in ("gpu-node-1", "gpu-node-3", "l40s-node-1", "old-node"):
        metrics = newest(root, host)["metrics"]
        row = table[host]
        assert row["req/s"] == number_text(metrics["request_throughput"])
        assert row["tok/s"] == number_text(metrics["total_token_throughput"])
        assert row["p99 TTFT ms"] == number_text(metrics["p99_ttft_ms"])
        assert row["median TPOT ms"] == number_text(metrics["median_tpot_ms"])
    assert table["gpu-node-1"]["Accelerator"] == "8 x NVIDIA H100 80GB HBM3"
    assert table["gpu-node-1"]["CPU, instruction set"] == "Intel(R) Xeon(R) Platinum 8480+, AVX-512"
    assert table["gpu-node-3"]["Result"] == "PASS, straggler"
    assert table["gpu-node-3"]["peer deviation"].startswith("STRAGGLER: req/s -")
    assert table["gpu-node-5"]["Result"] == "FAIL" and table["gpu-node-5"]["req/s"] == "-"
    assert table["l40s-node-1"]["change vs baseline"] == "no baseline"
    assert table["gpu-node-1"]["capacity in SLO req/s"] == number_text(
        load(next((root / "tune" / "gpu-node-1").glob("*/trials.json")))["chosen"]["capacity"]
    )
    capacity = load(next((root / "gpu-node-2").glob("*/capacity.json")))["capacity"]
    assert table["gpu-node-2"]["capacity in SLO req/s"] == number_text(capacity)
    # The changes carry their sign and say better or worse; the slower host's changes say worse.
    verdicts = newest(root, "gpu-node-4")["verdicts"]
    change = verdicts["request_throughput"]["change_pct"]
    assert change < 0 and f"req/s {change:+.1f}% worse" in table["gpu-node-4"]["change vs baseline"]


def test_json_rows_keep_the_roles_keys_and_add_peers_and_capacity(standard):
    root, rows = standard
    fleet = fleet_of(root, rows)
    out = {r["host"]: r for r in (host_row(h, 10.0) for h in fleet.hosts)}
    for given in rows:
        assert set(given) <= set(out[given["host"]])
    three = out["gpu-node-3"]
    assert three["straggler"] is True and three["passed"] is True  # flagged, not failed without fail_on_straggler
    assert three["peers"] == ["gpu-node-1", "gpu-node-2", "gpu-node-4", "old-node"]
    median = fleet.classes[0].medians["request_throughput"]
    assert three["peer_deviation"]["request_throughput"]["class_median"] == pytest.approx(median, abs=1e-4)
    assert out["gpu-node-1"]["straggler"] is False
    assert out["gpu-node-1"]["capacity_source"].startswith("tuning run ")
    assert out["gpu-node-2"]["capacity_source"].startswith("capacity run ")
    assert out["l40s-node-1"]["peer_deviation_text"] == "no peers (class of one)"
    json.dumps(out)  # as the role writes it


def test_fail_on_straggler_fails_the_straggler_naming_metric_value_and_median(standard):
    root, rows = standard
    fleet = fleet_of(root, rows, fail=True)
    three = fleet.host("gpu-node-3")
    assert not three.passed()
    value = newest(root, "gpu-node-3")["metrics"]["request_throughput"]
    median = fleet.classes[0].medians["request_throughput"]
    expected = (
        f"gpu-node-3: request_throughput {value:.2f} req/s is {abs((value - median) / median * 100):.1f}% below its "
        f"class median {median:.2f} req/s (worse by more than the peer tolerance of 10%)"
    )
    assert expected in three.straggler_failures
    assert host_row(three, 10.0)["passed"] is False and expected in host_row(three, 10.0)["failures"]
    assert all(fleet.host(h).passed() for h in ("gpu-node-1", "gpu-node-2", "gpu-node-4"))


def test_a_straggler_known_only_from_earlier_runs_is_flagged_not_failed(standard):
    root, rows = standard
    fleet = fleet_of(root, [r for r in rows if r["host"] != "gpu-node-3"], fail=True)
    three = fleet.host("gpu-node-3")
    assert three.stragglers and three.straggler_failures == [] and not three.current


def test_the_text_answers_the_three_questions_with_labelled_numbers(standard):
    root, _rows = standard
    fleet = fleet_of(root)
    lines = text_lines(fleet, "/r/report.html")
    assert lines[0] == "Fleet report: 8 hosts, 7 PASS, 1 FAIL, 1 stragglers (peer tolerance 10%); /r/report.html"
    assert lines[1].startswith("Slower than their peers (worse than the class median by more than 10%): gpu-node-3 (")
    assert lines[2].startswith("Slower than they were (against their baseline): gpu-node-4 (req/s -")
    assert lines[3].startswith("What each can carry: gpu-node-1 ")
    one = next(line for line in lines if line.startswith("gpu-node-1: "))
    metrics = newest(root, "gpu-node-1")["metrics"]
    assert f"req/s {number_text(metrics['request_throughput'])}" in one
    latency = newest(root, "gpu-node-1", "latency")["metrics"]
    line = next(x for x in lines if x.startswith("  gpu-node-1 latency run"))
    assert f"TTFT mean {latency['mean_ttft_ms']:.2f}, median {latency['median_ttft_ms']:.2f}" in line
    assert (
        f"std {latency['std_ttft_ms']:.2f}, min {latency['min_ttft_ms']:.2f}, max {latency['max_ttft_ms']:.2f}" in line
    )
    assert any(x.startswith("  gpu-node-4 history (4 runs, 2026-01-01 to 2026-01-04): req/s ") for x in lines)
    assert any(x.startswith("  gpu-node-1 tuning ") and "6 trials (1 failed)" in x for x in lines)


# ------------------------------------------------------------------ the charts' numbers


def charts_by_id(fleet):
    ids = {h.name: slug(i, h.name) for i, h in enumerate(fleet.hosts, 1)}
    _document, charts = page(fleet, "now", [], lambda cs: dict.fromkeys((c.id for c in cs), "<svg></svg>"))
    return ids, {c.id: c for c in charts}


def test_cdfs_are_drawn_from_the_samples_and_marked_at_the_results_percentiles(standard):
    root, _rows = standard
    fleet = fleet_of(root)
    ids, charts = charts_by_id(fleet)
    chart = charts[f"{ids['gpu-node-1']}-cdf"]
    assert [p.title for p in chart.panels] == ["TTFT (ms)", "TPOT (ms)", "ITL (ms)", "E2E (ms)"]
    for panel, key in zip(chart.panels, ("ttft", "tpot", "itl", "e2e"), strict=True):
        for kind, (curve, marks) in zip(("latency", "throughput"), (panel.series[0:2], panel.series[2:4]), strict=True):
            record = newest(root, "gpu-node-1", kind)
            assert (curve.x, curve.y) == cdf_points(sorted(record["samples"][f"{key}_ms"]))
            assert curve.y[-1] == 1.0 and curve.style == "steps"
            metrics = record["metrics"]
            assert marks.label == MARK_LABEL
            assert marks.x == [metrics[f"median_{key}_ms"], metrics[f"p90_{key}_ms"], metrics[f"p99_{key}_ms"]]
            assert marks.y == [0.5, 0.9, 0.99]
    # format 2 without samples: a dashed CDF through the stored percentiles
    old = charts[f"{ids['old-node']}-cdf"]
    tp = newest(root, "old-node")["metrics"]
    dashed = next(s for s in old.panels[0].series if s.style == "dashed" and s.label.startswith("throughput run"))
    assert dashed.x == sorted(
        [tp["min_ttft_ms"], tp["median_ttft_ms"], tp["p90_ttft_ms"], tp["p99_ttft_ms"], tp["max_ttft_ms"]]
    )
    assert dashed.y == [0.0, 0.5, 0.9, 0.99, 1.0]
    assert "holds no per-request samples" in old.caption
    assert f"{ids['gpu-node-5']}-cdf" not in charts  # no numbers, no distribution


def test_history_is_every_run_in_order_against_the_baseline_up_better(standard):
    root, _rows = standard
    fleet = fleet_of(root)
    ids, charts = charts_by_id(fleet)
    chart = charts[f"{ids['gpu-node-4']}-history"]
    runs = sorted(p for p in (root / "gpu-node-4").iterdir() if p.is_dir())
    expected_x = [datetime.strptime(p.name, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) for p in runs]
    baseline = load(root / "gpu-node-4" / "baseline-throughput.json")["metrics"]
    (panel,) = chart.panels
    assert panel.title == "Against the baseline" and panel.hlines == [(0.0, "the baseline")]
    metrics = ("request_throughput", "total_token_throughput", "p99_ttft_ms", "median_tpot_ms")
    for line, metric in zip(panel.series, metrics, strict=True):
        assert line.x == expected_x
        values = [load(p / "throughput.json")["metrics"][metric] for p in runs]
        change = [(v - baseline[metric]) / baseline[metric] * 100 for v in values]
        better = change if metric.endswith("throughput") else [-c for c in change]
        assert line.y == pytest.approx(better)
    # gpu-node-4 drifted slower: every metric ends below zero (worse), throughput and latency alike.
    assert all(line.y[-1] < -3 for line in panel.series)
    # A host that failed with no numbers still has its earlier runs' history; one without a baseline is drawn
    # against its first run.
    assert len(charts[f"{ids['gpu-node-5']}-history"].panels[0].series[0].y) == 3
    solo = charts[f"{ids['l40s-node-1']}-history"].panels[0]
    assert solo.title == "Against the first stored run" and solo.series[0].y == [0.0]


def test_load_chart_is_the_capacity_runs_steps(standard):
    root, _rows = standard
    fleet = fleet_of(root)
    ids, charts = charts_by_id(fleet)
    capacity = load(next((root / "gpu-node-2").glob("*/capacity.json")))
    steps = sorted(capacity["steps"], key=lambda s: s["load"])  # measured ramp then bisection: drawn by load
    chart = charts[f"{ids['gpu-node-2']}-load"]
    served, goodput = chart.panels[0].series
    assert goodput.x == [s["load"] for s in steps] and goodput.y == [s["request_goodput"] for s in steps]
    assert served.y == [s["request_throughput"] for s in steps]
    assert chart.panels[1].series[0].y == [s["slo_attainment"] for s in steps]
    p99 = next(s for s in chart.panels[2].series if s.label == "p99 TTFT")
    assert p99.y == [s["p99_ttft_ms"] for s in steps]
    assert chart.panels[0].hlines == [(capacity["capacity"], f"capacity {capacity['capacity']:.2f} req/s")]
    assert all(p.vlines[0][0] == capacity["capacity_load"] for p in chart.panels)
    assert chart.panels[0].xlabel == "load (requests in flight)"


def test_steps_under_the_plain_names_of_the_contract_are_drawn_too(tmp_path):
    write_fleet(tmp_path, [HostPlan("a", H100, runs=1)], fleet_json=False)
    trials = {
        "host": "a",
        "run": "r1",
        "knobs": ["max_num_seqs"],
        "slo": {"p99_ttft_ms": 500},
        "start": {"settings": {"max_num_seqs": 8}, "capacity": 2.5},
        "chosen": {"settings": {"max_num_seqs": 16}, "capacity": 4.0},
        "trials": [
            {"index": 1, "settings": {"max_num_seqs": 8}, "status": "ok", "capacity": 2.5, "reason": None, "steps": []},
            {
                "index": 2,
                "settings": {"max_num_seqs": 16},
                "status": "ok",
                "capacity": 4.0,
                "reason": None,
                "steps": [
                    {
                        "load": 2.0,
                        "goodput": 2.0,
                        "attainment": 1.0,
                        "p50_ttft_ms": 40,
                        "p99_ttft_ms": 90,
                        "p50_tpot_ms": 10,
                        "p99_tpot_ms": 20,
                    },
                    {
                        "load": 5.0,
                        "goodput": 3.1,
                        "attainment": 0.62,
                        "p50_ttft_ms": 80,
                        "p99_ttft_ms": 400,
                        "p50_tpot_ms": 14,
                        "p99_tpot_ms": 33,
                    },
                ],
            },
        ],
    }
    (tmp_path / "tune" / "a" / "r1").mkdir(parents=True)
    (tmp_path / "tune" / "a" / "r1" / "trials.json").write_text(json.dumps(trials))
    fleet = fleet_of(tmp_path)
    ids, charts = charts_by_id(fleet)
    chart = charts[f"{ids['a']}-load"]
    (goodput,) = chart.panels[0].series
    assert goodput.x == [2.0, 5.0] and goodput.y == [2.0, 3.1]
    assert chart.panels[1].series[0].y == [1.0, 0.62] and chart.panels[0].xlabel == "load"
    assert fleet.host("a").capacity() == (4.0, "tuning run r1")


def test_tuning_chart_and_table_mark_the_chosen_settings(standard):
    root, _rows = standard
    fleet = fleet_of(root)
    ids, charts = charts_by_id(fleet)
    trials = load(next((root / "tune" / "gpu-node-1").glob("*/trials.json")))
    chart = next(c for k, c in charts.items() if k.startswith(f"{ids['gpu-node-1']}-tune-"))
    seqs, chunked = chart.panels
    assert seqs.title == "max_num_seqs" and seqs.categories is None
    ok = [t for t in trials["trials"] if t["status"] == "ok"]
    points = seqs.series[0]
    assert points.x == [t["settings"]["max_num_seqs"] for t in ok] and points.y == [t["capacity"] for t in ok]
    failed = seqs.series[1]
    assert failed.x == [512] and failed.y == [0.0]
    chosen = next(s for s in seqs.series if s.label == "chosen")
    assert chosen.x == [trials["chosen"]["settings"]["max_num_seqs"]] and chosen.y == [trials["chosen"]["capacity"]]
    # Text values are categories: positions on the axis, named by the ticks.
    assert chunked.categories == ["false", "true"]
    assert next(s for s in chunked.series if s.label == "chosen").x == [1.0]
    # The chosen trial's steps are the load chart when the host has no capacity run.
    assert charts[f"{ids['gpu-node-1']}-load"].title.startswith("gpu-node-1: chosen trial of tuning run")


def test_peer_chart_bars_are_each_hosts_deviation_on_the_first_metric(standard):
    root, _rows = standard
    fleet = fleet_of(root)
    _ids, charts = charts_by_id(fleet)
    chart = charts["fleet-peers"]
    (panel,) = chart.panels
    assert panel.categories == ["gpu-node-1", "gpu-node-2", "gpu-node-3", "gpu-node-4", "old-node"]
    bars = {panel.categories[int(i)]: v for s in panel.series for i, v in zip(s.x, s.y, strict=True)}
    for name in panel.categories:
        host = fleet.host(name)
        value = newest(root, name)["metrics"]["request_throughput"]
        median = fleet.classes[0].medians["request_throughput"]
        assert bars[name] == pytest.approx((value - median) / median * 100, abs=0.01)
        assert host.peers  # every host on the chart has peers
    red = next(s for s in panel.series if s.label == "straggler")
    assert [panel.categories[int(i)] for i in red.x] == ["gpu-node-3"]


def test_every_series_is_drawn_in_the_svg_with_all_its_points(standard):
    root, _rows = standard
    fleet = fleet_of(root)
    ids, charts = charts_by_id(fleet)
    renderer = SvgRenderer()
    for chart_id in (f"{ids['gpu-node-1']}-cdf", f"{ids['gpu-node-4']}-history", f"{ids['gpu-node-2']}-load"):
        chart = charts[chart_id]
        svg = renderer.draw(chart)
        for p_index, panel in enumerate(chart.panels):
            for s_index, series in enumerate(panel.series):
                group = re.search(rf'<g id="{chart_id}-p{p_index}-s{s_index}">(.*?)</g>', svg, re.S)
                assert group, (chart_id, p_index, s_index)
                body = group.group(1)
                if series.style == "points":
                    assert body.count("<use ") == len(series.x)
                else:
                    path = re.search(r' d="([^"]*)"', body).group(1)
                    vertices = len(re.findall(r"[ML] ", path)) if "L" in path else 0
                    expected = 2 * len(series.x) - 1 if series.style == "steps" else len(series.x)
                    assert vertices == expected, (chart_id, series.label)


# ------------------------------------------------------------------ the page


def test_page_is_self_contained_and_has_every_host(standard, tmp_path):
    root, rows = standard
    fleet = fleet_of(root, rows)
    document, charts = page(fleet, "2026-01-05 12:00 UTC", text_lines(fleet), draw_all_here)
    assert "<script" not in document and "@import" not in document and "@font-face" not in document
    assert re.findall(r"<link\b[^>]*>", document) == ['<link rel="icon" href="data:,">']
    assert not re.findall(r"\bsrc=", document)
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", document))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink", "http://gpu-node-5:8000:"}
    assert "http://gpu-node-5:8000:" in document.split("Failures")[1]  # a failure's text, not a link
    hrefs = set(re.findall(r'href="([^"]*)"', document))
    assert all(h.startswith("#") for h in hrefs - {"data:,"}), hrefs
    assert set(re.findall(r"url\(([^)]*)\)", document)) <= {m for m in re.findall(r"url\((#[^)]*)\)", document)}
    for host in fleet.hosts:
        assert f'<tr data-host="{host.name}">' in document
        assert f'<section class="host" id="{slug(fleet.hosts.index(host) + 1, host.name)}"' in document
    assert document.count('<figure class="chart"') == len(charts) == 19
    assert "no peers: a class of one host" in document and "no peers: the hardware is unknown" in document
    ids = re.findall(r'\bid="([^"]+)"', document)
    assert len(ids) == len(set(ids)), "element ids must be unique across the page"


def test_changes_are_marked_by_colour_and_sign(standard):
    root, rows = standard
    fleet = fleet_of(root, rows)
    document, _charts = page(fleet, "now", [], draw_all_here)
    row = document.split('<tr data-host="gpu-node-4">')[1].split("</tr>")[0]
    change = newest(root, "gpu-node-4")["verdicts"]["request_throughput"]["change_pct"]
    assert '<span class="chip worse strong" title="req/s: slower by' in row
    assert f"req/s {change:+.1f}% worse</span>" in row
    # A latency that got worse reads with a + sign; a change within the noise is marked as such.
    assert re.search(r'<span class="chip worse strong"[^>]*>median TPOT \+\d+\.\d% worse</span>', row)
    one = document.split('<tr data-host="gpu-node-1">')[1].split("</tr>")[0]
    assert re.search(r'<span class="chip (better|worse) noise"[^>]*>req/s [+-]\d+\.\d% (better|worse)</span>', one)
    assert ".better { color: var(--good); } .worse { color: var(--bad); }" in document


def test_every_value_is_escaped(tmp_path):
    evil = "edge-<b>&\"'$x$"
    context = {
        **H100,
        "flags": [
            *H100["flags"],
            "--served-model-name",
            "<img src=x onerror=alert(1)>",
            "--kv-cache-dtype",
            "<script>alert(2)</script>",
        ],
    }
    write_fleet(tmp_path, [HostPlan(evil, context, runs=2), HostPlan("plain", H100, runs=2)], fleet_json=False)
    fleet = fleet_of(tmp_path)
    document, _charts = page(fleet, "now", text_lines(fleet), draw_all_here)
    assert "<b>&" not in document and "<img" not in document and "<script" not in document
    assert "edge-&lt;b&gt;&amp;&quot;&#x27;$x$" in document
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in document  # the flag, shown as text


def test_one_host_alone_builds_and_has_no_peers(tmp_path):
    write_fleet(tmp_path, [HostPlan("solo", H100, Speed(), runs=3)], fleet_json=False)
    fleet = fleet_of(tmp_path)
    document, charts = page(fleet, "now", text_lines(fleet), draw_all_here)
    assert [c.kind for c in charts] == ["cdf", "history"]  # no peers chart: nobody to compare with
    assert "no peers: a class of one host" in document
    assert markdown_rows(markdown_table(fleet, fleet.hosts))["solo"]["peer deviation"] == "no peers (class of one)"


def test_unreadable_files_are_notes_not_failures(tmp_path):
    write_fleet(tmp_path, [HostPlan("a", H100, runs=2), HostPlan("b", H100, runs=2)], fleet_json=False)
    broken = next((tmp_path / "a").glob("2026*/throughput.json"))
    broken.write_text("{not json")
    (tmp_path / "tune" / "b" / "r1").mkdir(parents=True)
    (tmp_path / "tune" / "b" / "r1" / "trials.json").write_text(json.dumps({"trials": [{"index": 1}, "x"]}))
    fleet = fleet_of(tmp_path)
    assert any(str(broken) in n and "not JSON" in n for n in fleet.notes)
    assert any("trial 1 is not an object with settings" in n for n in fleet.notes)
    document, _charts = page(fleet, "now", [], draw_all_here)
    assert '<section id="notes">' in document


# ------------------------------------------------------------------ the module


def test_module_writes_the_page_and_its_dated_copy(standard):
    root, rows = standard
    rc, result = run_module(MODULE, {"results_dir": str(root), "fleet": rows, "stamp": "20260105T120000Z"})
    assert rc == 0, result
    assert result["changed"] and result["report"] == str(root / "report.html")
    assert result["report_copy"] == str(root / "report-20260105T120000Z.html")
    assert (root / "report.html").read_text() == (root / "report-20260105T120000Z.html").read_text()
    assert result["charts"] == 19 and result["markdown"].startswith("| Host | Accelerator |")
    assert [r["host"] for r in result["fleet"]] == [r["host"] for r in rows]
    assert [s["host"] for s in result["stragglers"]] == ["gpu-node-3"] * 4
    assert result["straggler_failures"] == []
    assert result["text"][0].endswith(str(root / "report.html"))


def test_module_fails_stragglers_when_told(standard):
    root, rows = standard
    rc, result = run_module(
        MODULE, {"results_dir": str(root), "fleet": rows, "fail_on_straggler": True, "stamp": "20260105T120001Z"}
    )
    assert rc == 0, result  # the module reports; the role's last task fails the play
    three = next(r for r in result["fleet"] if r["host"] == "gpu-node-3")
    assert three["passed"] is False and result["straggler_failures"]
    assert all(f.startswith("gpu-node-3: ") and "class median" in f for f in result["straggler_failures"])


def test_module_check_mode_writes_nothing(tmp_path):
    write_fleet(tmp_path, [HostPlan("a", H100, runs=1)])
    rc, result = run_module(MODULE, {"results_dir": str(tmp_path), "_ansible_check_mode": True})
    assert rc == 0 and result["report"] is None and not (tmp_path / "report.html").exists()
    assert result["fleet"][0]["host"] == "a"


def test_module_without_results_reports_nothing_to_do(tmp_path):
    rc, result = run_module(MODULE, {"results_dir": str(tmp_path / "none")})
    assert rc == 0 and not result["changed"] and result["report"] is None
    assert result["text"] == [f"No results under {tmp_path / 'none'}: nothing to report"]


def test_module_refuses_bad_options_naming_them(tmp_path):
    rc, result = run_module(
        MODULE,
        {"results_dir": str(tmp_path), "peer_tolerance_pct": -1, "peer_metrics": ["speed"], "stamp": "yesterday"},
    )
    assert rc == 1
    assert "peer_tolerance_pct must be 0 or more, got -1.0" in result["msg"]
    assert "peer_metrics: 'speed' is not a headline metric" in result["msg"]
    assert "stamp must look like 20260301T120000Z" in result["msg"]


def test_module_without_matplotlib_says_what_to_install(tmp_path):
    write_fleet(tmp_path, [HostPlan("a", H100, runs=1)])
    shadow = tmp_path / "shadow" / "matplotlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named matplotlib (shadowed by the test)')\n")
    rc, result = run_module(MODULE, {"results_dir": str(tmp_path)}, env={"PYTHONPATH": str(shadow.parent)})
    assert rc == 1
    assert "draws its charts with matplotlib, which" in result["msg"] and "requirements.txt" in result["msg"]
    assert "Traceback" not in result["msg"] and not (tmp_path / "report.html").exists()


def test_many_charts_are_drawn_in_forked_processes_the_same_as_in_one(standard):
    root, _rows = standard
    fleet = fleet_of(root)
    _ids, charts = charts_by_id(fleet)
    chosen = list(charts.values())
    assert len(chosen) < PARALLEL_FROM
    many = [copy.deepcopy(c) for c in (chosen * 2)[:PARALLEL_FROM]]
    for index, chart in enumerate(many):
        chart.id = f"c{index}"
    assert draw_all(many, processes=3) == draw_all_here(many)


def test_a_drawing_process_that_fails_fails_the_drawing(standard, monkeypatch):
    root, _rows = standard
    _ids, charts = charts_by_id(fleet_of(root))
    many = [copy.deepcopy(c) for c in list(charts.values()) * 2][:PARALLEL_FROM]
    for index, chart in enumerate(many):
        chart.id = f"c{index}"
    parent = os.getpid()
    real = SvgRenderer.draw

    def broken_in_children(self, chart):
        if os.getpid() != parent:
            raise ValueError("injected in a child")
        return real(self, chart)

    monkeypatch.setattr(SvgRenderer, "draw", broken_in_children)
    with pytest.raises(RuntimeError, match="a chart drawing process failed: ValueError: injected in a child"):
        draw_all(many, processes=2)


def test_a_run_too_noisy_to_judge_passes_marked_not_judged(standard):
    root, rows = standard
    noisy = [
        dict(r, too_noisy=["request_throughput: too noisy to judge: only a change beyond ±14.0% ..."])
        if r["host"] == "gpu-node-1"
        else r
        for r in rows
    ]
    fleet = fleet_of(root, noisy)
    table = markdown_rows(markdown_table(fleet, fleet.hosts))
    assert table["gpu-node-1"]["Result"] == "PASS, not judged (too noisy)"
    assert table["gpu-node-2"]["Result"] == "PASS"
    document, _charts = page(fleet, "now", text_lines(fleet), draw_all_here)
    assert "NOT JUDGED</span>" in document.split('<tr data-host="gpu-node-1">')[1].split("</tr>")[0]
    assert any(line.startswith("  gpu-node-1 not judged, too noisy: request_throughput") for line in text_lines(fleet))


def test_an_unforeseen_error_is_a_message_not_a_traceback(tmp_path):
    """The module's last guard, as tests/integration/test_module_guards.py checks the others'."""
    write_fleet(tmp_path, [HostPlan("a", H100, runs=1)])
    inject = (
        "import importlib.util, sys, ansible.module_utils\n"
        "ansible.module_utils.__path__.append(sys.argv.pop(1))\n"
        "spec = importlib.util.spec_from_file_location('m', sys.argv.pop(1))\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "def defect(*args, **kwargs):\n"
        "    raise RuntimeError('injected\\n defect')\n"
        "module.page = defect\n"
        "module.main()\n"
    )
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"results_dir": str(tmp_path)}}))
    done = subprocess.run(
        [sys.executable, "-c", inject, str(REPO / "module_utils"), str(MODULE), str(args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 1 and result["failed"]
    assert result["msg"].startswith(
        "vllm_fleet_report: unexpected RuntimeError: injected defect (a defect of the module"
    )
    assert "Traceback" not in done.stderr


def test_a_run_that_started_or_grew_the_baseline_says_which_session(tmp_path):
    rows = write_fleet(tmp_path, [HostPlan("solo", H100, runs=1)])
    rows[0]["baseline_recorded"] = True  # as the role's summary says when the module wrote the baseline
    fleet = fleet_of(tmp_path, rows)
    (host,) = fleet.hosts
    # The fixture's baseline holds 3 sessions, its newest being this run (vllm_bench_rounds.extended_baseline).
    assert host.baseline is not None and host.baseline.sessions == 3
    assert change_text(host) == "session 3 of the baseline recorded"
