# Copyright: contributors to vllm-fleet
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Human-readable output of a benchmark (summary lines, Markdown table) and the atomic result file.

Standard library only: this file runs on target hosts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ansible.module_utils.vllm_files import write_text_atomic

_GROUPS = (("TTFT", "ttft"), ("TPOT", "tpot"), ("ITL", "itl"), ("E2E latency", "e2e"))


def run_label(plan: Mapping[str, Any]) -> str:
    """What the run sent, for the first line: 'Latency run: 10 requests, one at a time, 128 in / 64 out tokens'."""
    output = f"{plan['output_len']} out" if plan.get("output_len") else "the dataset's output lengths"
    shape = f"{plan['input_len']} in / {output} tokens ({plan['dataset']})"
    rounds = plan.get("rounds", 1)
    per_round = f"{rounds} rounds of " if rounds > 1 else ""
    if plan["mode"] == "latency":
        return f"Latency run: {per_round}{plan['requests']} requests, one at a time, {shape}"
    concurrency = f"{plan['max_concurrency']} at a time" if plan.get("max_concurrency") else "all at once"
    rate = "" if str(plan.get("request_rate")) == "inf" else f", {plan['request_rate']} req/s"
    return f"Throughput run: {per_round}{plan['requests']} requests, {concurrency}{rate}, {shape}"


def summary_lines(metrics: Mapping[str, float], failures: Mapping[str, int], mode: str = "throughput") -> list[str]:
    """Return the plain-text summary; its first two lines are the ones operators grep for.

    A latency run shows what it is for, each latency's mean, median, standard deviation, minimum and
    maximum, then p90 and p99; a throughput run the mean, median, p90 and p99.
    """
    lines = [
        f"Throughput: {metrics['request_throughput']:.2f} requests/s",
        f"Throughput: {metrics['total_token_throughput']:.2f} tokens/s",
        f"Output token throughput: {metrics['output_throughput']:.2f} tokens/s",
        f"Requests: {metrics['completed']} completed, {metrics['failed']} failed in {metrics['duration_s']:.2f} s",
    ]
    for label, key in _GROUPS:
        if mode == "latency":
            lines.append(
                f"{label} (ms): mean {metrics[f'mean_{key}_ms']:.2f}, median {metrics[f'median_{key}_ms']:.2f}, "
                f"std {metrics[f'std_{key}_ms']:.2f}, min {metrics[f'min_{key}_ms']:.2f}, "
                f"max {metrics[f'max_{key}_ms']:.2f}; "
                f"p90 {metrics[f'p90_{key}_ms']:.2f}, p99 {metrics[f'p99_{key}_ms']:.2f}"
            )
        else:
            lines.append(
                f"{label} (ms): mean {metrics[f'mean_{key}_ms']:.2f}, median {metrics[f'median_{key}_ms']:.2f}, "
                f"p90 {metrics[f'p90_{key}_ms']:.2f}, p99 {metrics[f'p99_{key}_ms']:.2f}"
            )
    if metrics.get("completed") and metrics.get("median_itl_ms") == 0:
        lines.append(
            "ITL median 0: most tokens arrived several to a read (the server wrote them together), and the gaps "
            "between tokens of one read count 0, as vllm bench serve counts them"
        )
    if failures:
        lines.append("Failures: " + ", ".join(f"{reason} x{count}" for reason, count in sorted(failures.items())))
    return lines


def markdown_table(metrics: Mapping[str, float], mode: str) -> str:
    """Return a Markdown summary: a throughput table and a latency table (ms)."""
    rows = [
        "| Metric | Value |",
        "|---|---:|",
        f"| Completed requests | {metrics['completed']} |",
        f"| Failed requests | {metrics['failed']} |",
        f"| Duration (s) | {metrics['duration_s']:.2f} |",
        f"| Request throughput (req/s) | {metrics['request_throughput']:.2f} |",
        f"| Output token throughput (tok/s) | {metrics['output_throughput']:.2f} |",
        f"| Total token throughput (tok/s) | {metrics['total_token_throughput']:.2f} |",
        "",
        "| Latency (ms) | Mean | Median | P90 | P99 |" + (" Std | Min | Max |" if mode == "latency" else ""),
        "|---|---:|---:|---:|---:|" + ("---:|---:|---:|" if mode == "latency" else ""),
    ]
    for label, key in _GROUPS:
        cells = [metrics[f"{stat}_{key}_ms"] for stat in ("mean", "median", "p90", "p99")]
        if mode == "latency":
            cells += [metrics[f"{stat}_{key}_ms"] for stat in ("std", "min", "max")]
        rows.append(f"| {label} | " + " | ".join(f"{value:.2f}" for value in cells) + " |")
    return "\n".join(rows) + "\n"


def comparison_markdown(comparison: Mapping[str, Mapping[str, Any]]) -> str:
    """Return a Markdown table of a baseline comparison (empty string when there is none)."""
    if not comparison:
        return ""
    rows = ["| Metric | Baseline | Current | Change | Regressed |", "|---|---:|---:|---:|---|"]
    for metric, row in comparison.items():
        change = "n/a" if row["change_pct"] is None else f"{row['change_pct']:+.2f}%"
        rows.append(
            f"| {metric} | {row['baseline']:.2f} | {row['current']:.2f} | {change} | "
            f"{'yes' if row['regressed'] else 'no'} |"
        )
    return "\n".join(rows) + "\n"


RESULT_FILE_MODE = 0o600  # a result holds what the server said (error bodies): for its owner only


def write_json_atomic(path: str, data: Mapping[str, Any], mode: int = RESULT_FILE_MODE) -> None:
    """Write data as JSON to path through a temporary file in the same directory and a rename, with mode.

    Readers see the old file or the complete new one, never a half-written one. Raise OSError on failure
    (the temporary file is removed). Scrubbing secrets is the caller's (vllm_http.redact).
    """
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode)
