# Copyright: contributors to vllm-fleet
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rounds of a benchmark and verdicts on them against a baseline's sessions, as plain functions.

Standard library only, Python 3.10+: runs on target hosts (module vllm_benchmark).
A run measures the same workload in several rounds; each round gives one value of
every headline metric. The rounds are summarized (mean, its confidence interval,
spread) and compared with the baseline's sessions by module_utils/vllm_verdict.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from ansible.module_utils.vllm_bench_checks import HEADLINE_METRICS, HIGHER_IS_BETTER
from ansible.module_utils.vllm_verdict import VerdictError, context_changes, describe, verdict, workload_differences

# Format of the rounds in a result file; a baseline without it cannot give a verdict.
ROUNDS_FORMAT = 2
# Judged by default: a verdict on these decides pass or fail; the other headline metrics get a verdict shown.
DEFAULT_JUDGED = {
    "throughput": ("request_throughput", "total_token_throughput", "median_ttft_ms", "median_tpot_ms"),
    "latency": ("median_e2e_ms", "median_ttft_ms", "median_tpot_ms"),
}
UNITS = {"request_throughput": "req/s", "output_throughput": "tok/s", "total_token_throughput": "tok/s"}


class BaselineError(ValueError):
    """A baseline that cannot be compared with this run; the message says why and what to do."""


def round_values(metrics: Mapping[str, Any], mode: str) -> dict[str, float]:
    """The values of one round that rounds are compared on: the mode's headline metrics that were measured."""
    return {
        name: float(metrics[name])
        for name in HEADLINE_METRICS[mode]
        if isinstance(metrics.get(name), int | float) and math.isfinite(float(metrics[name]))
    }


def summaries(rounds: list[Mapping[str, float]], mode: str, confidence: float) -> dict[str, dict[str, Any]]:
    """Per headline metric: n, mean, std, cv_pct, the mean's confidence interval, median, min, max."""
    result = {}
    for name in HEADLINE_METRICS[mode]:
        values = [r[name] for r in rounds if name in r]
        if values:
            stats = describe(values, confidence)
            result[name] = {key: (round(v, 4) if isinstance(v, float) else v) for key, v in stats.items()}
    return result


def workload_of(plan: Mapping[str, Any], model: str, ignore_eos: bool) -> dict[str, Any]:
    """What must be the same for two runs to compare: what was sent, and to which model."""
    return {
        "mode": plan["mode"],
        "endpoint": plan["endpoint"],
        "dataset": plan["dataset"],
        "input_len": plan["input_len"],
        "output_len": plan["output_len"],
        "requests": plan["requests"],
        "max_concurrency": plan["max_concurrency"],
        "request_rate": str(plan["request_rate"]),
        "ignore_eos": ignore_eos,
        "model": model,
    }


def clean_rounds(rounds: Any, where: str, record_hint: str) -> list[dict[str, float]]:
    """The rounds of one session, each metric a number >= 0; BaselineError naming the round otherwise."""
    if not isinstance(rounds, list) or not rounds or not all(isinstance(r, dict) for r in rounds):
        raise BaselineError(f"{where}: 'rounds' is not a list of rounds; {record_hint}")
    clean = []
    for index, values in enumerate(rounds, 1):
        row = {}
        for name, value in values.items():
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise BaselineError(f"{where}: round {index}: {name}={value!r} is not a number >= 0")
            row[name] = float(value)
        clean.append(row)
    return clean


def read_baseline(path: str) -> dict[str, Any]:
    """{sessions, workload, context, finished_at} of a baseline file; BaselineError when it cannot be one.

    A baseline is a result file with rounds (format 2), whose own rounds are its latest session, plus
    'sessions': the earlier sessions, oldest first, each {finished_at, rounds}. The sessions returned are the
    rounds of every session, oldest first.
    """
    record_hint = "record a new one: ansible-playbook playbooks/verify.yml -e vllm_verify_record_baseline=true"
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError, RecursionError) as exc:
        raise BaselineError(f"baseline {path!r} cannot be read as JSON ({exc}); {record_hint}") from exc
    if not isinstance(data, dict) or data.get("rounds_format") != ROUNDS_FORMAT:
        raise BaselineError(
            f"baseline {path!r} holds no rounds (it was written before vllm-fleet stored every round, or by another "
            f"tool), so no verdict can rest on it; {record_hint}"
        )
    earlier = data.get("sessions", [])
    if not isinstance(earlier, list) or not all(isinstance(s, dict) for s in earlier):
        raise BaselineError(f"baseline {path!r}: 'sessions' is not a list of sessions; {record_hint}")
    sessions = [
        clean_rounds(session.get("rounds"), f"baseline {path!r}, session {index}", record_hint)
        for index, session in enumerate(earlier, 1)
    ]
    sessions.append(clean_rounds(data.get("rounds"), f"baseline {path!r}", record_hint))
    finished = [str(s.get("finished_at", "?")) for s in earlier] + [str(data.get("finished_at", "?"))]
    workload = data.get("workload") if isinstance(data.get("workload"), dict) else {}
    context = data.get("context") if isinstance(data.get("context"), dict) else {}
    return {"sessions": sessions, "finished_at": finished, "workload": workload, "context": context}


def extended_baseline(baseline: Mapping[str, Any] | None, record: Mapping[str, Any]) -> dict[str, Any]:
    """This run's result record as the baseline's newest session, the baseline's sessions before it."""
    if baseline is None:
        return {**record, "sessions": []}
    earlier = [
        {"finished_at": finished, "rounds": rounds}
        for finished, rounds in zip(baseline["finished_at"], baseline["sessions"], strict=True)
    ]
    return {**record, "sessions": earlier}


def baseline_status(baseline: Mapping[str, Any] | None, needed: int, changes: list[str]) -> dict[str, Any]:
    """Whether this run is judged against the baseline or added to it, and why, for people and machines."""
    have = len(baseline["sessions"]) if baseline is not None else 0
    judged = have >= needed
    add = not judged and not changes
    if baseline is None:
        text = f"no baseline: this run is its first session of the {needed} a verdict needs"
    elif judged:
        text = (
            f"judged against a baseline of {have} sessions ({baseline['finished_at'][0]} to "
            f"{baseline['finished_at'][-1]})"
        )
    elif changes:
        text = (
            f"not judged: the baseline holds {have} of the {needed} sessions a verdict needs, and this run was not "
            f"added to it because what it ran on changed ({', '.join(changes)}); record a new baseline on the new "
            "setup (vllm_verify_record_baseline=true)"
        )
    else:
        text = (
            f"not judged yet: the baseline holds {have} of the {needed} sessions a verdict needs; this run is added "
            f"as session {have + 1} (each verification of the unchanged host adds one)"
        )
    return {"sessions": have, "needed": needed, "judged": judged, "add": add, "text": text}


def comparability_errors(baseline: Mapping[str, Any], workload: Mapping[str, Any], path: str) -> list[str]:
    """Why the baseline's workload is not this run's: such runs are not comparable, and are not compared."""
    differences = workload_differences(baseline["workload"], workload)
    if not differences:
        return []
    return [
        f"not comparable with baseline {path!r}: the workload differs ({'; '.join(differences)}); run the "
        "baseline's workload, or record a new baseline for this one (vllm_verify_record_baseline=true)"
    ]


def verdicts(
    baseline_sessions: list[list[Mapping[str, float]]],
    rounds: list[Mapping[str, float]],
    mode: str,
    confidence: float,
    max_regression_pct: float | None,
    detect_pct: float,
) -> dict[str, dict[str, Any]]:
    """Per headline metric both sides measured: the verdict of module_utils/vllm_verdict.py."""
    result = {}
    for name in HEADLINE_METRICS[mode]:
        before = [[r[name] for r in session if name in r] for session in baseline_sessions]
        now = [r[name] for r in rounds if name in r]
        if not all(before) or len(now) < 2:
            continue
        try:
            result[name] = verdict(before, now, name in HIGHER_IS_BETTER, confidence, max_regression_pct, detect_pct)
        except VerdictError as exc:
            result[name] = {"verdict": "not judged", "text": str(exc), "fails": False}
    return result


def verdict_problems(
    judged_verdicts: Mapping[str, Mapping[str, Any]], judged: Iterable[str], allowed: float | None
) -> list[str]:
    """One message per judged metric that fails the allowed regression."""
    return [
        f"{name} {judged_verdicts[name]['text']}, beyond the allowed {allowed:g}% regression"
        for name in judged
        if judged_verdicts.get(name, {}).get("fails")
    ]


def too_noisy(judged_verdicts: Mapping[str, Mapping[str, Any]], judged: Iterable[str]) -> list[str]:
    """One message per judged metric whose rounds are too noisy to tell a detect_pct change from noise."""
    return [
        f"{name}: {judged_verdicts[name]['text']}"
        for name in judged
        if judged_verdicts.get(name, {}).get("verdict") == "too noisy"
    ]


def number(value: float) -> str:
    return f"{value:.2f}" if abs(value) < 1000 else f"{value:,.0f}"


def round_lines(stats: Mapping[str, Mapping[str, Any]], rounds: int) -> list[str]:
    """'request_throughput: 87.10 ± 3.20 req/s (95% CI), 82.00…91.30 over 5 rounds' per metric."""
    lines = []
    for name, row in stats.items():
        unit = UNITS.get(name, "ms")
        if row["n"] > 1 and row["ci_high"] is not None:
            half = (row["ci_high"] - row["ci_low"]) / 2
            level = f"{row['confidence'] * 100:g}%"
            lines.append(
                f"{name}: {number(row['mean'])} ± {number(half)} {unit} ({level} CI of the mean), "
                f"{number(row['min'])}…{number(row['max'])} over {row['n']} rounds (CV {row['cv_pct'] or 0:.1f}%)"
            )
        else:
            lines.append(f"{name}: {number(row['mean'])} {unit} ({rounds} round)")
    return lines


def verdict_lines(rows: Mapping[str, Mapping[str, Any]], judged: Iterable[str], changes: list[str]) -> list[str]:
    """The comparison with the baseline, a line per metric, judged ones marked, and what changed since."""
    judged = set(judged)
    since = ", ".join(changes) if changes else "same hardware and software"
    lines = [f"Since the baseline: {since}"]
    for name, row in rows.items():
        mark = " [FAILS]" if row.get("fails") else (" [judged]" if name in judged else "")
        lines.append(f"{name}: {row['text']}{mark}")
    return lines


def context_diff(baseline: Mapping[str, Any], context: Mapping[str, Any]) -> list[str]:
    return context_changes(baseline.get("context") or {}, context)


BRIEF = (("request_throughput", "req/s"), ("total_token_throughput", "tok/s"), ("median_ttft_ms", "median TTFT"))


def brief(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """The fleet table's cell: 'req/s slower by 15.2% (95% CI 11.0% to 19.0%); tok/s ...; median TTFT ...'."""
    return "; ".join(f"{label} {rows[name]['text']}" for name, label in BRIEF if name in rows)
