# Copyright: contributors to vllm-fleet
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pass/fail logic of a benchmark: thresholds on metrics and regressions against a baseline result.

Standard library only: this file runs on target hosts.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_CONDITION = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")

HIGHER_IS_BETTER = frozenset({"completed", "request_throughput", "output_throughput", "total_token_throughput"})
HEADLINE_METRICS = {
    "throughput": (
        "request_throughput",
        "output_throughput",
        "total_token_throughput",
        "median_ttft_ms",
        "p99_ttft_ms",
        "median_tpot_ms",
        "p99_tpot_ms",
        "median_itl_ms",
        "median_e2e_ms",
        "p99_e2e_ms",
    ),
    "latency": ("mean_e2e_ms", "median_e2e_ms", "p99_e2e_ms", "median_ttft_ms", "median_tpot_ms"),
}
# Key names of a `vllm bench serve` result file, so one can serve as a baseline too.
_VLLM_KEY_ALIASES = {"duration": "duration_s"}


def parse_condition(condition: Any) -> tuple[str, float]:
    """Return (operator, number) of a condition such as ">=300" or "<= 500"; raise ValueError otherwise."""
    match = _CONDITION.match(condition) if isinstance(condition, str) else None
    if not match:
        raise ValueError(
            f"condition {condition!r} is not OPERATOR NUMBER; valid operators: {', '.join(OPERATORS)} "
            '(write e.g. ">=300" or "==0", quoted in YAML)'
        )
    return match.group(1), float(match.group(2))


def canonical_metric(name: str) -> str:
    """A metric name as RV(metrics) keys it; vllm bench serve's e2el spelling (p99_e2el_ms) is accepted too."""
    return name.replace("_e2el_ms", "_e2e_ms") if isinstance(name, str) else name


def threshold_errors(thresholds: Mapping[str, Any], valid_metrics: Iterable[str]) -> list[str]:
    """Return one message per unknown metric name or malformed condition in thresholds (empty when all valid)."""
    valid = sorted(set(valid_metrics))
    errors = []
    for metric, condition in thresholds.items():
        if canonical_metric(metric) not in valid:
            errors.append(f"thresholds: unknown metric {metric!r}; valid metrics: {', '.join(valid)}")
            continue
        try:
            parse_condition(condition)
        except ValueError as exc:
            errors.append(f"thresholds.{metric}: {exc}")
    return errors


def unmet_thresholds(thresholds: Mapping[str, Any], metrics: Mapping[str, float]) -> list[str]:
    """Return a message for EVERY threshold the metrics do not meet, with measured and required values."""
    unmet = []
    for metric, condition in thresholds.items():
        op, number = parse_condition(condition)
        measured = metrics.get(canonical_metric(metric))
        if measured is None or not OPERATORS[op](float(measured), number):
            shown = "missing" if measured is None else f"{float(measured):.2f}"
            unmet.append(f"{metric}: measured {shown}, required {op}{number:g}")
    return unmet


def baseline_metrics(path: str) -> dict[str, float]:
    """Return the metrics of an earlier result file (ours or `vllm bench serve`); raise ValueError if unusable."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise ValueError(f"baseline {path!r} cannot be read: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ValueError(f"baseline {path!r} is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise ValueError(f"baseline {path!r} is JSON nested too deeply to read") from exc
    if not isinstance(data, dict):
        raise ValueError(f"baseline {path!r} is not a JSON object")
    source = data.get("metrics") if isinstance(data.get("metrics"), dict) else data
    metrics = {}
    headline = {name for names in HEADLINE_METRICS.values() for name in names}
    for key, value in source.items():
        if not isinstance(key, str) or not isinstance(value, int | float) or isinstance(value, bool):
            continue
        name = _VLLM_KEY_ALIASES.get(key, key.replace("_e2el_ms", "_e2e_ms"))
        number = float(value)
        if name in headline and not (math.isfinite(number) and number >= 0):
            # A NaN would compare as "not regressed" with anything: a false pass. Throughputs and latencies are >= 0.
            raise ValueError(f"baseline {path!r}: {key} is {value!r}, not a finite number >= 0")
        if math.isfinite(number):
            metrics[name] = number
    if not any(name in metrics for name in headline):
        raise ValueError(f"baseline {path!r} has none of the headline metrics (e.g. request_throughput)")
    return metrics


def baseline_comparison(
    baseline: Mapping[str, float],
    current: Mapping[str, float],
    mode: str,
    max_regression_pct: float | None,
) -> dict[str, dict[str, Any]]:
    """Return metric -> {baseline, current, change_pct, regressed, higher_is_better} for the headline metrics.

    change_pct is (current - baseline) / baseline * 100. A metric regressed when it is worse than the
    baseline by more than max_regression_pct in its own direction (lower throughput, higher latency);
    with no max_regression_pct nothing counts as regressed.
    """
    comparison = {}
    for metric in HEADLINE_METRICS.get(mode, ()):
        if metric not in baseline or metric not in current:
            continue
        before, now = float(baseline[metric]), float(current[metric])
        change = (now - before) / before * 100.0 if before else None
        higher = metric in HIGHER_IS_BETTER
        worse_pct = None if change is None else (-change if higher else change)
        regressed = bool(max_regression_pct is not None and worse_pct is not None and worse_pct > max_regression_pct)
        comparison[metric] = {
            "baseline": before,
            "current": now,
            "change_pct": None if change is None or not math.isfinite(change) else round(change, 2),
            "regressed": regressed,
            "higher_is_better": higher,
        }
    return comparison


def regression_messages(comparison: Mapping[str, Mapping[str, Any]], max_regression_pct: float) -> list[str]:
    """Return one message per regressed metric."""
    return [
        f"{metric}: {row['current']:.2f} vs baseline {row['baseline']:.2f} ({row['change_pct']:+.2f}%, "
        f"{'higher' if row['higher_is_better'] else 'lower'} is better, allowed {max_regression_pct:g}%)"
        for metric, row in comparison.items()
        if row["regressed"]
    ]
