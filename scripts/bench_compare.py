#!/usr/bin/env python3
"""Side-by-side benchmark: our vllm_benchmark engine vs vLLM's own `vllm bench serve`, same server, same workload.

Prints numbers; it is not a pass/fail test. Each round runs both clients one after the other (the order
alternates between rounds), each as a child process whose CPU time is read with os.wait4, so both clients
are measured the same way:

- "CPU total": everything the client process used, start-up and imports included;
- "CPU load": CPU used while sending load and computing metrics only (ours: the engine's own counter;
  vLLM: its `benchmark()` coroutine, timed by scripts/bench_compare_peer.py).

Run it with the controller venv (it runs our module from this checkout with the same python):

    .venv/bin/python scripts/bench_compare.py --url http://127.0.0.1:8011 --model tiny \\
        --tokenizer /tmp/tiny-llama --vllm-python /tmp/vllmvenv/bin/python --api-key sekret

Only point it at a server you may load (127.0.0.1 here).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNNER = (
    "import runpy, sys, ansible.module_utils;"
    f"ansible.module_utils.__path__.append({str(REPO / 'module_utils')!r});"
    f"runpy.run_path({str(REPO / 'library' / 'vllm_benchmark.py')!r}, run_name='__main__')"
)
COLUMNS = (
    ("request_throughput", "req/s", "{:.2f}"),
    ("output_throughput", "out tok/s", "{:.1f}"),
    ("total_token_throughput", "total tok/s", "{:.1f}"),
    ("median_ttft_ms", "med TTFT ms", "{:.1f}"),
    ("median_tpot_ms", "med TPOT ms", "{:.2f}"),
    ("median_itl_ms", "med ITL ms", "{:.2f}"),
    ("failed", "failed", "{:.0f}"),
    ("cpu_total_s", "CPU total s", "{:.2f}"),
    ("cpu_load_s", "CPU load s", "{:.2f}"),
    ("cpu_total_per_1k", "CPU total s/1k req", "{:.2f}"),
    ("cpu_load_per_1k", "CPU load s/1k req", "{:.2f}"),
)
HIGHER_IS_BETTER = {"request_throughput", "output_throughput", "total_token_throughput"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="vLLM server base URL")
    parser.add_argument("--model", required=True, help="served model name")
    parser.add_argument("--tokenizer", help="tokenizer path for vLLM's random dataset (default: --model)")
    parser.add_argument("--api-key", default=os.environ.get("VLLM_API_KEY"), help="API key (default $VLLM_API_KEY)")
    parser.add_argument("--vllm-python", required=True, help="python of a venv with vLLM (runs the peer)")
    parser.add_argument("--endpoint", choices=("completions", "chat"), default="completions")
    parser.add_argument("--num-prompts", type=int, default=200)
    parser.add_argument("--input-len", type=int, default=64)
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument("--max-concurrency", type=int, default=32)
    parser.add_argument("--request-rate", default="inf")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--warmup-round",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run each client once, unmeasured, before the rounds",
    )
    parser.add_argument("--child-timeout", type=float, default=600, help="seconds one client run may take")
    parser.add_argument("--json-out", help="also write every measurement to this JSON file")
    return parser.parse_args()


def run_child(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, str, float]:
    """Run cmd; return (rc, stdout, stderr, CPU seconds of the child from os.wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=REPO)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read().decode(), err.read().decode(), usage.ru_utime + usage.ru_stime


def run_ours(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    params = {
        "url": args.url,
        "model": args.model,
        "endpoint": args.endpoint,
        "mode": "throughput",
        "dataset": "random",
        "num_prompts": args.num_prompts,
        "max_concurrency": args.max_concurrency,
        "request_rate": args.request_rate,
        "input_len": args.input_len,
        "output_len": args.output_len,
        "ignore_eos": True,
        "timeout": 300,
        "total_timeout": args.child_timeout,
    }
    if args.api_key:
        params["api_key"] = args.api_key
    args_file = workdir / "ours-args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": params}))
    rc, out, err, cpu = run_child([sys.executable, "-c", RUNNER, str(args_file)], dict(os.environ), args.child_timeout)
    try:
        result = json.loads(out)
    except ValueError:
        raise SystemExit(f"our module printed no JSON (rc {rc}): {err[-2000:]}") from None
    if "metrics" not in result:
        raise SystemExit(f"our module failed: {result.get('msg')}")
    row = dict(result["metrics"])
    row.update(cpu_total_s=cpu, cpu_load_s=result["client_cpu_s"], prompt_source=result["prompt_source"])
    return row


def run_peer(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    cpu_json = workdir / "peer-cpu.json"
    result_name = "peer-result.json"
    path = "/v1/chat/completions" if args.endpoint == "chat" else "/v1/completions"
    cmd = [
        args.vllm_python, str(REPO / "scripts" / "bench_compare_peer.py"), "--cpu-json", str(cpu_json), "--",
        "--backend", "openai-chat" if args.endpoint == "chat" else "openai",
        "--base-url", args.url, "--endpoint", path, "--model", args.model,
        "--tokenizer", args.tokenizer or args.model,
        "--dataset-name", "random", "--random-input-len", str(args.input_len),
        "--random-output-len", str(args.output_len), "--ignore-eos",
        "--num-prompts", str(args.num_prompts), "--max-concurrency", str(args.max_concurrency),
        "--request-rate", str(args.request_rate), "--num-warmups", "0", "--disable-tqdm",
        "--save-result", "--result-dir", str(workdir), "--result-filename", result_name,
    ]  # fmt: skip
    env = dict(os.environ)
    if args.api_key:
        env["OPENAI_API_KEY"] = args.api_key  # how vllm bench serve sends a bearer token
    rc, out, err, cpu = run_child(cmd, env, args.child_timeout)
    if rc != 0 or not (workdir / result_name).exists():
        raise SystemExit(f"vllm bench serve failed (rc {rc}):\n{(out + err)[-3000:]}")
    result = json.loads((workdir / result_name).read_text())
    (workdir / result_name).unlink()
    row = {key: result[key] for key in ("completed", "failed", "request_throughput", "output_throughput",
                                        "total_token_throughput", "median_ttft_ms", "median_tpot_ms",
                                        "median_itl_ms", "p99_ttft_ms", "mean_ttft_ms")}  # fmt: skip
    row["duration_s"] = result["duration"]
    row.update(cpu_total_s=cpu, cpu_load_s=json.loads(cpu_json.read_text())["load_cpu_s"])
    return row


def per_1k(row: dict[str, float], num_prompts: int) -> dict[str, float]:
    row["cpu_total_per_1k"] = row["cpu_total_s"] * 1000 / num_prompts
    row["cpu_load_per_1k"] = row["cpu_load_s"] * 1000 / num_prompts
    return row


def table(rows: list[tuple[str, dict[str, float]]]) -> str:
    header = ["client"] + [label for _, label, _ in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for name, row in rows:
        cells = [fmt.format(row[key]) if key in row else "-" for key, _, fmt in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_row(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.fmean(r[key] for r in rows) for key, _, _ in COLUMNS if all(key in r for r in rows)}


def main() -> None:
    args = parse_args()
    measured: dict[str, list[dict[str, float]]] = {"ours": [], "vllm": []}
    rows: list[tuple[str, dict[str, float]]] = []
    runners = {"ours": run_ours, "vllm": run_peer}
    with tempfile.TemporaryDirectory(prefix="bench_compare.") as tmp:
        workdir = Path(tmp)
        if args.warmup_round:
            for name in ("vllm", "ours"):
                print(f"warm-up run: {name}", file=sys.stderr, flush=True)
                runners[name](args, workdir)
        for round_no in range(1, args.rounds + 1):
            order = ("vllm", "ours") if round_no % 2 else ("ours", "vllm")
            for name in order:
                print(f"round {round_no}: {name}", file=sys.stderr, flush=True)
                row = per_1k(runners[name](args, workdir), args.num_prompts)
                measured[name].append(row)
                rows.append((f"{name} r{round_no}", row))
    ours, theirs = mean_row(measured["ours"]), mean_row(measured["vllm"])
    rows += [("ours mean", ours), ("vllm mean", theirs)]
    print(
        f"\nWorkload: {args.endpoint}, random dataset, input {args.input_len} / output {args.output_len} tokens, "
        f"ignore_eos, {args.num_prompts} prompts, max_concurrency {args.max_concurrency}, "
        f"request_rate {args.request_rate}, {args.rounds} rounds (alternating order)\n"
    )
    print(table(rows))
    print("\n| metric | ours / vllm |\n|---|---:|")
    for key, label, _ in COLUMNS:
        if key in ours and key in theirs and theirs[key]:
            print(f"| {label} | {ours[key] / theirs[key]:.2f} |")
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as handle:
            json.dump({"args": {k: v for k, v in vars(args).items() if k != "api_key"}, "runs": rows}, handle,
                      indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
