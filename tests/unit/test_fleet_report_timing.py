"""The fleet report of 50 hosts with 20 stored runs each builds, whole (issue 15).

The fleet is generated (tests/fleet_fixtures.py write_large_fleet: the newest run of each host as the default
verification writes it, 5 rounds of 200 requests, so 5,000 ITL samples; a capacity run on a third of the hosts
and a tuning run on a quarter), then the module runs as Ansible runs it, in a process of its own: the time
includes starting Python, importing matplotlib, reading about 2,000 result files, drawing every chart and writing
the page. How long it takes is a benchmark, not this test (a timed test fails on a noisy machine):
scripts/bench_fleet_report.py (make bench-report) prints it.
"""

from __future__ import annotations

import os
import re
import time

from fleet_fixtures import write_large_fleet
from moduletest import REPO, run_module


def test_50_hosts_of_20_runs_build_whole(tmp_path):
    write_large_fleet(tmp_path, hosts=50, runs=20)
    files = len(list(tmp_path.rglob("*.json")))
    started = time.perf_counter()
    rc, result = run_module(REPO / "library" / "vllm_fleet_report.py", {"results_dir": str(tmp_path)})
    took = time.perf_counter() - started
    assert rc == 0, result
    assert len(result["fleet"]) == 50 and result["charts"] > 100
    html = (tmp_path / "report.html").read_text()
    assert len(set(re.findall(r'<section[^>]* id="(host-[0-9]+-[^"]*)"', html))) == 50
    assert html.count("<svg") >= result["charts"]
    print(
        f"fleet report: 50 hosts x 20 runs ({files} files), {result['charts']} charts, "
        f"{took:.2f} s in all ({result['build_s']:.2f} s in the module), {os.cpu_count()} CPUs"
    )
