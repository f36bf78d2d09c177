#!/usr/bin/env python3
"""Our tuning search against an exhaustive grid, on the same server, space, SLO and workload.

Runs playbooks/tune.yml twice against one serving host (the make demo host by default), once with
vllm_tune_strategy=grid (every point, which is what vLLM's benchmarks/auto_tune does) and once with
coordinate (ours), both with vllm_tune_apply=false, and prints for each: trials, wall time, the trial
and the time at which it reached its best, and its best capacity within the SLO; then our best as a
fraction of the grid's and our trials as a fraction of the grid's. JSON with every trial: --json-out.

    make demo && make bench-tune
    .venv/bin/python scripts/bench_tune.py --inventory .cache/demo/inventory.yml --host vllm-demo

The capacity of one setting varies from run to run (10-14% round to round on the 2-core test host), so a
ratio near 1 says the search found a setting as good as the grid's within that noise, not better.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

DEFAULT_SPACE = {"max_num_seqs": [2, 4, 8, 16, 32], "cpu_kvcache_space_gb": [1, 2]}
DEFAULT_SLO = {"ttft_ms": 1500, "tpot_ms": 150}
DEFAULT_WORKLOAD = {"dataset": "random", "input_len": 64, "output_len": 32}


def run_tune(args: argparse.Namespace, strategy: str, out: Path) -> dict:
    """One tune.yml run; the record it wrote (trials.json), with the playbook's wall time."""
    grid_size = 1
    for values in args.space.values():
        grid_size *= len(values)
    extra = {
        "vllm_tune_space": args.space,
        "vllm_tune_slo": args.slo,
        "vllm_tune_workload": args.workload,
        "vllm_tune_strategy": strategy,
        "vllm_tune_max_trials": grid_size + 1,
        "vllm_tune_time_budget": args.timeout,
        "vllm_tune_capacity_max_concurrency": args.max_concurrency,
        "vllm_tune_capacity_steps": args.steps,
        "vllm_tune_apply": False,
        "vllm_tune_output_dir": str(out / "tuned"),
        "vllm_tune_results_dir": str(out / "results"),
    }
    cmd = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        args.inventory,
        str(REPO / "playbooks" / "tune.yml"),
        "-l",
        args.host,
        "-e",
        json.dumps(extra),
    ]
    print(f"==> bench-tune: {strategy}: {grid_size} points in the space", flush=True)
    started = time.monotonic()
    log = out / "tune.log"
    out.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as handle:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # The whole run's deadline, kept by a timer: a playbook that hangs silently writes no line to check it on.
        killer = threading.Timer(args.timeout + 600, proc.kill)
        killer.start()
        try:
            for line in proc.stdout:
                handle.write(line)
                if "trial " in line and "/" in line and ("capacity" in line or "FAILED" in line):
                    print(f"    {line.strip()}", flush=True)
            rc = proc.wait(timeout=60)
        finally:
            killer.cancel()
            if proc.poll() is None:
                proc.kill()
    wall = time.monotonic() - started
    if rc != 0:
        raise SystemExit(f"bench-tune: the {strategy} tune failed (rc {rc}); its output: {log}")
    found = sorted((out / "results" / args.host).glob("*/trials.json"))
    if not found:
        raise SystemExit(f"bench-tune: the {strategy} tune wrote no trials.json under {out / 'results'}")
    record = json.loads(found[-1].read_text())
    record["wall_seconds"] = round(wall, 1)
    return record


def summary(record: dict) -> dict:
    trials = record["trials"]
    best_index, best, elapsed, to_best = None, None, 0.0, None
    for i, trial in enumerate(trials):
        elapsed += trial.get("seconds") or 0.0
        if trial["status"] == "ok" and (best is None or trial["capacity"] > best):
            best, best_index, to_best = trial["capacity"], i, elapsed
    return {
        "trials": len(trials),
        "failed": sum(1 for t in trials if t["status"] != "ok"),
        "trial_seconds": round(elapsed, 1),
        "wall_seconds": record["wall_seconds"],
        "best_capacity": best,
        "best_settings": trials[best_index]["settings"] if best_index is not None else None,
        "best_at_trial": None if best_index is None else best_index + 1,
        "seconds_to_best": None if to_best is None else round(to_best, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inventory", default=str(REPO / ".cache" / "demo" / "inventory.yml"))
    parser.add_argument("--host", default="vllm-demo")
    parser.add_argument("--space", type=json.loads, default=DEFAULT_SPACE, help="JSON: knob to values")
    parser.add_argument("--slo", type=json.loads, default=DEFAULT_SLO, help="JSON: limits in ms")
    parser.add_argument("--workload", type=json.loads, default=DEFAULT_WORKLOAD, help="JSON")
    parser.add_argument("--max-concurrency", type=int, default=32)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--timeout", type=int, default=3600, help="seconds each tune may take")
    parser.add_argument("--out", default=str(REPO / ".cache" / "bench-tune"))
    parser.add_argument("--json-out")
    args = parser.parse_args()
    if not os.path.isfile(args.inventory):
        print(f"bench-tune: no inventory {args.inventory}; run make demo first", file=sys.stderr)
        return 2
    out = Path(args.out) / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    results = {s: summary(run_tune(args, s, out / s)) for s in ("grid", "coordinate")}
    grid, ours = results["grid"], results["coordinate"]
    header = ["search", "trials (failed)", "wall s", "trial s", "best at trial", "s to best", "best req/s in SLO"]
    print("\n| " + " | ".join([*header, "best settings"]) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['trials']} ({r['failed']}) | {r['wall_seconds']} | {r['trial_seconds']} | "
            f"{r['best_at_trial']} | {r['seconds_to_best']} | {r['best_capacity']} | "
            f"{json.dumps(r['best_settings'], sort_keys=True)} |"
        )
    if grid["best_capacity"] and ours["best_capacity"] is not None:
        print(
            f"\nours / grid: best capacity {ours['best_capacity'] / grid['best_capacity']:.2f}x, "
            f"trials {ours['trials'] / grid['trials']:.2f}x, "
            f"wall time {ours['wall_seconds'] / grid['wall_seconds']:.2f}x "
            "(target: at least 0.95x the capacity with at most 0.5x the trials)"
        )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"args": vars(args), "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
