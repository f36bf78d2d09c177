"""Result folders for the fleet report's tests, written the way verification writes them.

The result files are built by the project's own code from made-up requests (module_utils'
benchmark_metrics, latency_samples, round_values, summaries, verdicts, brief), so they have the
format vllm_benchmark writes; older formats are the same records with the keys those versions
did not write taken out. Nothing here is random from run to run: every fleet comes from a seed.

    python tests/fleet_fixtures.py DIR [--hosts 50 --runs 20]   writes the large fleet the timing uses
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if __name__ == "__main__":  # run as a script: import module_utils the way tests/conftest.py does
    import ansible.module_utils

    ansible.module_utils.__path__.append(str(REPO / "module_utils"))

from ansible.module_utils.vllm_bench_rounds import brief, round_values, summaries, verdicts  # noqa: E402
from ansible.module_utils.vllm_bench_stats import benchmark_metrics, latency_samples  # noqa: E402

START = datetime(2026, 1, 1, 6, 0, tzinfo=UTC)
H100 = {
    "cpu_model": "Intel(R) Xeon(R) Platinum 8480+",
    "cpu_isa_level": "AVX-512",
    "cpu_isa": ["avx2", "avx512f"],
    "vcpus": 224,
    "accelerator": "nvidia",
    "gpu_model": "NVIDIA H100 80GB HBM3",
    "gpu_count": 8,
    "driver_version": "550.54.15",
    "vllm_variant": "cuda",
    "vllm_version": "0.32.0",
    "flags": [
        "--model",
        "/opt/vllm/models/llama",
        "--served-model-name",
        "llama",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        "--tensor-parallel-size",
        "8",
        "--pipeline-parallel-size",
        "1",
        "--gpu-memory-utilization",
        "0.92",
    ],
}
L40S = {
    **H100,
    "gpu_model": "NVIDIA L40S",
    "gpu_count": 2,
    "vcpus": 64,
    "flags": [*H100["flags"][:9], "2", *H100["flags"][10:]],
}
CPU = {
    "cpu_model": "AMD EPYC 7B13",
    "cpu_isa_level": "AVX2",
    "cpu_isa": ["avx2"],
    "vcpus": 2,
    "accelerator": "cpu",
    "gpu_model": None,
    "gpu_count": 0,
    "driver_version": None,
    "vllm_variant": "cpu",
    "vllm_version": "0.32.0",
    "flags": [
        "--model",
        "/var/cache/models/tiny-llama",
        "--served-model-name",
        "tiny-llama",
        "--host",
        "127.0.0.1",
        "--port",
        "18100",
        "--gpu-memory-utilization",
        "0.9",
        "--enforce-eager",
    ],
}


def workload(mode: str, model: str, requests: int, concurrency: int, output_len: int = 64) -> dict[str, Any]:
    return {
        "mode": mode,
        "endpoint": "/v1/completions",
        "dataset": "random",
        "input_len": 128,
        "output_len": output_len,
        "requests": requests,
        "max_concurrency": concurrency,
        "request_rate": "inf",
        "ignore_eos": True,
        "model": model,
    }


def requests(rng: random.Random, count: int, ttft_ms: float, tpot_ms: float, output_len: int) -> list:
    """Completed requests with latencies around the given ones (lognormal, a long tail as servers have)."""
    out = []
    for _ in range(count):
        ttft = ttft_ms / 1000 * rng.lognormvariate(0, 0.25)
        gaps = [tpot_ms / 1000 * rng.lognormvariate(0, 0.2) for _ in range(output_len - 1)]
        out.append(
            SimpleNamespace(
                ok=True,
                ttft=ttft,
                latency=ttft + math.fsum(gaps),
                itl=gaps,
                output_tokens=output_len,
                prompt_tokens=128,
            )
        )
    return out


def failed_requests(count: int) -> list:
    return [
        SimpleNamespace(ok=False, ttft=0.0, latency=0.0, itl=[], output_tokens=0, prompt_tokens=None)
        for _ in range(count)
    ]


@dataclass
class Speed:
    """How fast a host is in one run: its request rate under load and its unloaded latencies."""

    rate: float = 20.0
    ttft_ms: float = 40.0
    tpot_ms: float = 12.0

    def scaled(self, factor: float) -> Speed:
        """factor > 1 is faster: more requests per second, shorter latencies."""
        return Speed(self.rate * factor, self.ttft_ms / factor, self.tpot_ms / factor)


def throughput_record(
    rng: random.Random,
    speed: Speed,
    context: dict,
    *,
    rounds: int = 5,
    per_round: int = 40,
    output_len: int = 16,
    baseline_rounds: list | None = None,  # the baseline's sessions, each a list of rounds
    all_failed: bool = False,
    model: str = "llama",
    concurrency: int = 32,
) -> dict[str, Any]:
    """A throughput run's result file as vllm_benchmark 1.2 writes it, samples included."""
    pooled, round_metrics, duration = [], [], 0.0
    for _ in range(rounds):
        results = (
            failed_requests(per_round)
            if all_failed
            else requests(rng, per_round, speed.ttft_ms * 4, speed.tpot_ms * 1.5, output_len)
        )
        seconds = per_round / (speed.rate * rng.uniform(0.97, 1.03))
        round_metrics.append(round_values(benchmark_metrics(results, seconds), "throughput"))
        pooled.extend(results)
        duration += seconds
    metrics = benchmark_metrics(pooled, duration)
    verdict_rows = verdicts(baseline_rounds, round_metrics, "throughput", 0.95, 10.0, 10.0) if baseline_rounds else {}
    problems = (
        [
            f"all {per_round * rounds} requests failed (connection_refused x{per_round * rounds}); first: "
            "connection refused"
        ]
        if all_failed
        else []
    )
    problems += [
        f"{name} {row['text']}, beyond the allowed 10% regression"
        for name, row in verdict_rows.items()
        if row.get("fails") and name in ("request_throughput", "total_token_throughput")
    ]
    samples, counts = latency_samples(pooled)
    plan = {
        "url": "http://127.0.0.1:8000",
        "endpoint": "/v1/completions",
        "mode": "throughput",
        "requests": per_round,
        "warmup_requests": 4,
        "rounds": rounds,
        "max_concurrency": concurrency,
        "request_rate": "inf",
        "dataset": "random",
        "input_len": 128,
        "output_len": output_len,
    }
    return {
        "metrics": metrics,
        "failures": {"connection_refused": per_round * rounds} if all_failed else {},
        "failure_samples": [],
        "summary_lines": [],
        "markdown": "",
        "threshold_failures": [],
        "baseline_comparison": {},
        "round_metrics": round_metrics,
        "round_summary": summaries(round_metrics, "throughput", 0.95),
        "verdicts": verdict_rows,
        "verdict_brief": brief(verdict_rows),
        "context_changes": [],
        "prompt_source": "tokenizer",
        "server_version": context.get("vllm_version"),
        "model": model,
        "client_cpu_s": 1.5,
        "warmup_failed": 0,
        "plan": plan,
        "workload": workload("throughput", model, per_round, concurrency, output_len),
        "context": context,
        "result_path": "/var/lib/vllm-fleet/results/x-throughput.json",
        "samples": samples,
        "sample_counts": counts,
        "rounds_format": 2,
        "rounds": round_metrics,
        "module_version": "1.2.0",
        "parameters": {"ignore_eos": True, "mode": "throughput", "num_prompts": per_round, "rounds": rounds},
        "host": "h",
        "finished_at": "",
        "passed": not problems,
        "problems": problems,
    }


def latency_record(
    rng: random.Random, speed: Speed, context: dict, *, count: int = 10, output_len: int = 16, model: str = "llama"
) -> dict[str, Any]:
    results = requests(rng, count, speed.ttft_ms, speed.tpot_ms, output_len)
    duration = sum(r.latency for r in results)
    metrics = benchmark_metrics(results, duration, "latency")
    samples, counts = latency_samples(results)
    round_metrics = [round_values(metrics, "latency")]
    return {
        "metrics": metrics,
        "failures": {},
        "failure_samples": [],
        "baseline_comparison": {},
        "round_metrics": round_metrics,
        "round_summary": summaries(round_metrics, "latency", 0.95),
        "verdicts": {},
        "verdict_brief": "",
        "context_changes": [],
        "server_version": context.get("vllm_version"),
        "model": model,
        "plan": {
            "mode": "latency",
            "requests": count,
            "max_concurrency": 1,
            "rounds": 1,
            "dataset": "random",
            "input_len": 128,
            "output_len": output_len,
            "endpoint": "/v1/completions",
            "request_rate": "inf",
        },
        "workload": workload("latency", model, count, 1, output_len),
        "context": context,
        "samples": samples,
        "sample_counts": counts,
        "rounds_format": 2,
        "rounds": round_metrics,
        "module_version": "1.2.0",
        "host": "h",
        "finished_at": "",
        "passed": True,
        "problems": [],
    }


def older_format(record: dict[str, Any], fmt: str) -> dict[str, Any]:
    """The record as an older vllm_benchmark wrote it: '2' (no samples), '1.1' (context, no rounds), '1.0'."""
    out = copy.deepcopy(record)
    out.pop("samples", None)
    out.pop("sample_counts", None)
    if fmt in ("1.1", "1.0"):
        for key in (
            "rounds_format",
            "rounds",
            "round_metrics",
            "round_summary",
            "verdicts",
            "verdict_brief",
            "context_changes",
            "workload",
        ):
            out.pop(key, None)
        out["module_version"] = "1.1.0" if fmt == "1.1" else "1.0.0"
    if fmt == "1.0":
        out.pop("context", None)
    return out


def steps_for(speed: Speed, knee: int = 16) -> tuple[list[dict[str, Any]], float, int]:
    """(steps, capacity, capacity_load) of a capacity run as vllm_benchmark's capacity mode writes them.

    The load is requests in flight, ramped by doubling and then bisected; up to `knee` in flight every request
    meets the SLO, beyond it attainment falls. The capacity is the goodput at the highest load carried.
    """
    steps = []
    for load in capacity_loads(knee):
        over = max(0, load - knee)
        served = speed.rate * knee / 16 * min(load / knee, 1.15)  # a higher knee carries more
        attainment = 1.0 if over == 0 else max(0.0, 1 - 0.06 * over)
        steps.append(
            {
                "load": load,
                "requests": max(8, 4 * load),
                "failed": 0,
                "request_throughput": round(served, 4),
                "request_goodput": round(served * attainment, 4),
                "slo_attainment": round(attainment, 4),
                "slo_misses": {"ttft_ms": round(over * 3)},
                "goodput": round(served * attainment, 4),
                "p50_ttft_ms": round(speed.ttft_ms * (1 + 0.2 * over), 3),
                "p99_ttft_ms": round(speed.ttft_ms * 2.5 * (1 + 0.4 * over), 3),
                "p50_tpot_ms": round(speed.tpot_ms * (1 + 0.05 * over), 3),
                "p99_tpot_ms": round(speed.tpot_ms * 1.8 * (1 + 0.1 * over), 3),
            }
        )
    capacity_step = next(s for s in steps if s["load"] == knee)
    return steps, capacity_step["request_goodput"], knee


def capacity_loads(knee: int, most: int = 64) -> list[int]:
    """The loads capacity mode measures, in order, when every load up to `knee` meets the SLO and none above it:
    doubling from 1 until one misses, then bisecting (module_utils/vllm_bench_capacity.find_capacity)."""
    loads, load = [], 1
    while True:
        loads.append(load)
        if load > knee or load >= most:
            break
        load = min(load * 2, most)
    good, bad = max(x for x in loads if x <= knee), loads[-1]
    while bad - good > 1:
        middle = (good + bad) // 2
        loads.append(middle)
        good, bad = (middle, bad) if middle <= knee else (good, middle)
    return loads


def trials_record(host: str, run: str, speed: Speed) -> dict[str, Any]:
    """A tuning run as role vllm_tune writes it (issue 14): two knobs, a failed trial, the best one chosen.

    Each trial's capacity run is under `details` (capacity_load, steps, stopped), as the role keeps it.
    """
    trials = []
    best = None
    for index, (seqs, chunk) in enumerate(
        [(64, "false"), (128, "false"), (256, "false"), (128, "true"), (256, "true"), (512, "true")], 1
    ):
        failed = seqs == 512
        knee = max(2, seqs // 16 + (4 if chunk == "true" else 0))
        steps, capacity, load = steps_for(speed, knee)
        trials.append(
            {
                "index": index,
                "number": index - 1,
                "settings": {"max_num_seqs": seqs, "enable_chunked_prefill": chunk},
                "status": "failed" if failed else "ok",
                "capacity": None if failed else capacity,
                "reason": "KV cache too small for 512 sequences" if failed else None,
                "details": {}
                if failed
                else {"capacity_load": load, "steps": steps, "stopped": "bisected to within one request in flight"},
            }
        )
        if not failed and (best is None or capacity > best["capacity"]):
            best = trials[-1]
    return {
        "host": host,
        "run": run,
        "knobs": ["max_num_seqs", "enable_chunked_prefill"],
        "slo": {"ttft_ms": 500, "tpot_ms": 50},
        "slo_attainment": 0.99,
        "start": {"settings": dict(trials[0]["settings"]), "capacity": trials[0]["capacity"]},
        "chosen": {"settings": dict(best["settings"]), "capacity": best["capacity"]},
        "trials": trials,
    }


def stamp(index: int, start: datetime = START) -> str:
    return (start + timedelta(days=index, minutes=7 * index)).strftime("%Y%m%dT%H%M%SZ")


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def summary_row(
    root: Path,
    host: str,
    run: str,
    record: dict[str, Any] | None,
    passed: bool,
    failures: list[str],
    accelerator: str = "8 x NVIDIA H100 80GB HBM3",
) -> dict[str, Any]:
    """The role's vllm_verify_summary of one host, as collect.yml builds it."""
    metrics = record["metrics"] if record else {}

    def rounded(name: str) -> float | None:
        return round(metrics[name], 2) if record and metrics.get("completed") else None

    return {
        "host": host,
        "accelerator": accelerator,
        "cpu": "Intel(R) Xeon(R) Platinum 8480+, AVX-512",
        "cpu_isa_level": "AVX-512",
        "version": "0.32.0",
        "request_throughput": rounded("request_throughput"),
        "total_token_throughput": rounded("total_token_throughput"),
        "p99_ttft_ms": rounded("p99_ttft_ms"),
        "median_tpot_ms": rounded("median_tpot_ms"),
        "latency_median_e2e_ms": None,
        "client_ttft_overhead_ms": None,
        "change_vs_baseline": {k: v.get("change_pct") for k, v in (record or {}).get("verdicts", {}).items()},
        "change_vs_baseline_text": (record or {}).get("verdict_brief", ""),
        "verdicts": (record or {}).get("verdicts", {}),
        "context_changes": [],
        "baseline_recorded": False,
        "failures": failures,
        "passed": passed,
        "results": str(root / host / run),
    }


@dataclass
class HostPlan:
    name: str
    context: dict
    speed: Speed = field(default_factory=Speed)
    runs: int = 4
    drift: float = 0.0  # per run, e.g. -0.02: 2% slower each run
    baseline: bool = True
    fmts: list[str] | None = None  # per run, oldest first; default the newest format
    failed_no_numbers: bool = False  # the newest run failed before writing any result
    all_failed: bool = False  # the newest run's requests all failed
    capacity: bool = False  # the newest run has a capacity.json with load steps
    tuning: bool = False


def write_host(root: Path, plan: HostPlan, rng: random.Random, rows: list[dict]) -> None:
    baseline_rounds = None
    runs = plan.runs - (1 if plan.failed_no_numbers else 0)
    for index in range(runs):
        run = stamp(index)
        speed = plan.speed.scaled(1 + plan.drift * index)
        newest = index == runs - 1
        model = "tiny-llama" if plan.context.get("accelerator") == "cpu" else "llama"
        tp = throughput_record(
            rng,
            speed,
            plan.context,
            baseline_rounds=baseline_rounds,
            all_failed=plan.all_failed and newest,
            model=model,
        )
        lat = latency_record(rng, speed, plan.context, model=model)
        when = datetime.strptime(run, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).isoformat()
        tp["finished_at"] = lat["finished_at"] = when
        tp["host"] = lat["host"] = plan.name
        fmt = (plan.fmts or [])[index] if plan.fmts and index < len(plan.fmts) else "2+samples"
        if fmt != "2+samples":
            tp, lat = older_format(tp, fmt), older_format(lat, fmt)
        write_json(root / plan.name / run / "throughput.json", tp)
        write_json(root / plan.name / run / "latency.json", lat)
        if plan.capacity and newest:
            steps, capacity, load = steps_for(speed)
            cap = throughput_record(rng, speed, plan.context, rounds=1, per_round=20, model=model)
            cap.update({"steps": steps, "capacity": capacity, "capacity_load": load})
            write_json(root / plan.name / run / "capacity.json", cap)
        if index == 0 and plan.baseline:
            # A baseline of three sessions, as verification records it: two earlier runs at the same speed,
            # then this one (vllm_bench_rounds.extended_baseline).
            earlier = [throughput_record(rng, speed, plan.context, model=model)["rounds"] for _ in range(2)]
            sessions = [{"finished_at": when, "rounds": rounds} for rounds in earlier]
            write_json(root / plan.name / "baseline-throughput.json", {**tp, "sessions": sessions})
            baseline_rounds = [*earlier, tp.get("rounds")] if tp.get("rounds") else None
        if newest and not plan.failed_no_numbers:
            rows.append(
                summary_row(root, plan.name, run, tp, tp["passed"], [f"throughput: {p}" for p in tp["problems"]])
            )
    if plan.failed_no_numbers:
        run = stamp(runs)
        rows.append(
            summary_row(
                root,
                plan.name,
                run,
                None,
                False,
                [f"throughput: cannot use the vLLM server at http://{plan.name}:8000: connection refused"],
            )
        )
    if plan.tuning:
        run = stamp(runs, START + timedelta(hours=3))
        write_json(root / "tune" / plan.name / run / "trials.json", trials_record(plan.name, run, plan.speed))


def write_fleet(root: Path, plans: list[HostPlan], seed: int = 7, fleet_json: bool = True) -> list[dict]:
    """Every host's folders; returns this verification's rows (also written as the newest fleet-<stamp>.json)."""
    rng = random.Random(seed)
    rows: list[dict] = []
    for plan in plans:
        write_host(root, plan, rng, rows)
    if fleet_json:
        write_json(root / f"fleet-{stamp(40)}.json", rows)
    return rows


def standard_plans() -> list[HostPlan]:
    """Several peers with one straggler; a failed host with no numbers; one without a baseline; old formats."""
    return [
        HostPlan("gpu-node-1", H100, tuning=True),
        HostPlan("gpu-node-2", H100, Speed(20.6, 39.0, 11.7), capacity=True),
        HostPlan("gpu-node-3", H100, Speed(20.0 * 0.7, 40.0 / 0.7, 12.0 / 0.7)),  # the straggler
        HostPlan("gpu-node-4", H100, Speed(20.3, 39.5, 11.8), drift=-0.025),  # got slower than it was
        HostPlan("gpu-node-5", H100, failed_no_numbers=True),
        HostPlan("l40s-node-1", L40S, Speed(9.0, 70.0, 20.0), baseline=False, runs=1),  # no baseline, class of one
        HostPlan("old-node", H100, Speed(19.8, 40.0, 12.0), runs=3, fmts=["1.0", "1.1", "2"]),  # no samples
        HostPlan("older-node", H100, Speed(19.8, 40.0, 12.0), runs=2, fmts=["1.0", "1.0"]),  # no context
    ]


def large_plans(hosts: int = 50, runs: int = 20) -> list[HostPlan]:
    plans = []
    for index in range(hosts):
        context = H100 if index % 5 else L40S
        speed = Speed(20.0 * (1 + 0.01 * (index % 7)), 40.0, 12.0)
        if index % 17 == 3:
            speed = speed.scaled(0.75)
        plans.append(
            HostPlan(
                f"node-{index + 1:02d}",
                context,
                speed,
                runs=runs,
                drift=-0.003 * (index % 4),
                capacity=index % 3 == 0,
                tuning=index % 4 == 0,
            )
        )
    return plans


def write_large_fleet(root: Path, hosts: int = 50, runs: int = 20, seed: int = 11) -> list[dict]:
    """50 hosts of 20 runs each, quickly: each host's files are made once and rescaled per run.

    The newest run of each host is the full default verification (5 rounds of 200 requests of 64 tokens, so
    5000 ITL samples); older runs have the same samples and metrics scaled, which is all a report reads of them.
    """
    rng = random.Random(seed)
    rows = []
    for plan in large_plans(hosts, runs):
        model = "llama"
        tp = throughput_record(rng, plan.speed, plan.context, rounds=5, per_round=200, output_len=64, model=model)
        lat = latency_record(rng, plan.speed, plan.context, count=10, output_len=64, model=model)
        for index in range(runs):
            run = stamp(index)
            factor = 1 + plan.drift * index
            this_tp, this_lat = scaled(tp, factor), scaled(lat, factor)
            when = datetime.strptime(run, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).isoformat()
            this_tp["finished_at"] = this_lat["finished_at"] = when
            write_json(root / plan.name / run / "throughput.json", this_tp)
            write_json(root / plan.name / run / "latency.json", this_lat)
            if index == 0:
                write_json(root / plan.name / "baseline-throughput.json", this_tp)
            if plan.capacity and index == runs - 1:
                steps, capacity, load = steps_for(plan.speed.scaled(factor))
                write_json(
                    root / plan.name / run / "capacity.json",
                    {**this_tp, "steps": steps, "capacity": capacity, "capacity_load": load},
                )
        if plan.tuning:
            run = stamp(runs)
            write_json(root / "tune" / plan.name / run / "trials.json", trials_record(plan.name, run, plan.speed))
        rows.append(summary_row(root, plan.name, stamp(runs - 1), tp, True, []))
    write_json(root / f"fleet-{stamp(runs - 1)}.json", rows)
    return rows


def scaled(record: dict[str, Any], factor: float) -> dict[str, Any]:
    """The record of a run `factor` times as fast: throughputs times factor, latencies divided by it."""
    out = dict(record)
    metrics = {}
    for key, value in record["metrics"].items():
        if key.endswith("_throughput"):
            metrics[key] = value * factor
        elif key.endswith("_ms"):
            metrics[key] = value / factor
        else:
            metrics[key] = value
    out["metrics"] = metrics
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--standard", action="store_true", help="the unit tests' small fleet instead")
    args = parser.parse_args(argv)
    if args.standard:
        write_fleet(args.dir, standard_plans())
    else:
        write_large_fleet(args.dir, args.hosts, args.runs)
    print(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
