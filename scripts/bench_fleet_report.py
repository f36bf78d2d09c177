#!/usr/bin/env python3
"""How long the fleet report of a large fleet takes to build (issue 15: 50 hosts of 20 runs in under 10 s).

Generates the fleet with tests/fleet_fixtures.py (write_large_fleet), then runs module vllm_fleet_report as
Ansible runs it, in a process of its own, --repeat times, and prints each time and the median: start of
Python, the matplotlib import, reading every result file, drawing every chart and writing the page. A
benchmark that prints numbers, not a test: on a shared 2-core machine the time follows the other load.

    .venv/bin/python scripts/bench_fleet_report.py [--hosts 50] [--runs 20] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fleet_fixtures import write_large_fleet  # noqa: E402
from moduletest import run_module  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fleet-report-") as tmp:
        root = Path(tmp)
        write_large_fleet(root, hosts=args.hosts, runs=args.runs)
        files = len(list(root.rglob("*.json")))
        times = []
        for attempt in range(1, args.repeat + 1):
            started = time.perf_counter()
            rc, result = run_module(REPO / "library" / "vllm_fleet_report.py", {"results_dir": str(root)}, timeout=300)
            took = time.perf_counter() - started
            if rc != 0:
                print(f"run {attempt}: the module failed: {result.get('msg')}", file=sys.stderr)
                return 1
            times.append(took)
            print(
                f"run {attempt}: {took:.2f} s ({result['build_s']:.2f} s in the module), "
                f"{len(result['fleet'])} hosts, {result['charts']} charts"
            )
    print(
        f"fleet report, {args.hosts} hosts x {args.runs} runs ({files} files), {os.cpu_count()} CPUs: "
        f"median {statistics.median(times):.2f} s, min {min(times):.2f} s, max {max(times):.2f} s "
        f"over {len(times)} runs (target: under 10 s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
