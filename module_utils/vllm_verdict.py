"""Verdicts on benchmark rounds that noise cannot flip, as plain functions.

Standard library only, Python 3.10+: this file runs on managed hosts (module
vllm_benchmark compares a run's rounds with its baseline's there).

The method, and why:

- Each metric is measured in several rounds (a warm-up, then `rounds` runs of
  the same workload). A round's value is one sample; a verdict compares the
  baseline's samples with the current ones.
- The test is the Mann-Whitney U test (exact, with ties handled by the exact
  permutation distribution of the midrank sum). It assumes no normal
  distribution, which benchmark rounds do not follow (one slow round from a
  noisy neighbour is common), and it is exact for the handful of rounds a
  verification can afford, where a bootstrap of 5 values has only 126 distinct
  resamples and gives intervals that are too narrow.
- The size of the change is the Hodges-Lehmann estimate (the median of all
  pairwise differences) of log(current / baseline), with its distribution-free
  confidence interval from the same U distribution (Bauer, JASA 1972): the
  interval between order statistics k+1 and n1*n2-k of the pairwise
  differences, k the largest count with P(U <= k) <= alpha/2. On the log scale
  the change reads as a ratio: "slower by 15% (CI 11% to 19%)".
- A change is significant when its interval excludes 0. It fails the allowed
  regression only when the whole interval lies beyond it, so noise can
  neither invent a failure nor hide one that the rounds prove.
- When the interval is so wide that a change of `detect_pct` could go unseen,
  the verdict is "too noisy" and says what to do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

MAX_EXACT_TOTAL = 60  # rounds in both samples together for the exact distribution (cheap far beyond that)


class VerdictError(ValueError):
    """Rounds or settings that cannot give a verdict."""


# ------------------------------------------------------------------ descriptive


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df degrees of freedom (regularized incomplete beta)."""
    x = df / (df + t * t)
    tail = 0.5 * regularized_beta(x, df / 2.0, 0.5)
    return 1.0 - tail if t >= 0 else tail


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), by the continued fraction of Numerical Recipes (betacf), to 1e-12."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - regularized_beta(1.0 - x, b, a)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= d * c
        if abs(d * c - 1.0) < 1e-12:
            break
    return front * result / a


def student_t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, by bisection on the CDF."""
    low, high = -1e6, 1e6
    for _ in range(200):
        mid = (low + high) / 2.0
        if student_t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2.0


def describe(values: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """n, mean, std (sample), cv_pct, the confidence interval of the mean (Student's t), median, min, max."""
    n = len(values)
    if n == 0:
        raise VerdictError("no values to describe")
    mean = math.fsum(values) / n
    ordered = sorted(values)
    median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2.0
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    half = student_t_quantile(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n) if n > 1 else None
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "cv_pct": (std / abs(mean) * 100.0) if mean else None,
        "ci_low": None if half is None else mean - half,
        "ci_high": None if half is None else mean + half,
        "confidence": confidence,
        "median": median,
        "min": ordered[0],
        "max": ordered[-1],
    }


# ------------------------------------------------------------------ Mann-Whitney U


def midranks(values: Sequence[float]) -> list[float]:
    """The rank of each value among all of them, ties sharing their mean rank (1-based)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j + 2) / 2.0
        i = j + 1
    return ranks


def rank_sum_counts(doubled_ranks: Sequence[int], take: int) -> dict[int, int]:
    """Number of ways to choose `take` of the ranks for every possible sum (ranks doubled to stay whole)."""
    # ways[k][s]: subsets of size k with sum s among the ranks seen so far
    ways: list[dict[int, int]] = [{0: 1}] + [{} for _ in range(take)]
    for rank in doubled_ranks:
        for k in range(min(take, len(doubled_ranks)), 0, -1):
            below = ways[k - 1]
            here = ways[k]
            for total, count in below.items():
                here[total + rank] = here.get(total + rank, 0) + count
    return ways[take]


def mann_whitney(baseline: Sequence[float], current: Sequence[float]) -> dict[str, Any]:
    """U of the current sample (pairs where current > baseline, ties half) and its exact two-sided p-value."""
    n1, n2 = len(baseline), len(current)
    if n1 < 1 or n2 < 1:
        raise VerdictError("both samples need at least one value")
    ranks = midranks(list(baseline) + list(current))
    doubled = [round(r * 2) for r in ranks]
    observed = sum(doubled[n1:])
    u_current = observed / 2.0 - n2 * (n2 + 1) / 2.0
    if n1 + n2 <= MAX_EXACT_TOTAL:
        # Two-sided: twice the smaller one-sided probability (with ties the distribution need not be symmetric).
        counts = rank_sum_counts(doubled, n2)
        total = sum(counts.values())
        at_most = sum(c for s, c in counts.items() if s <= observed)
        at_least = sum(c for s, c in counts.items() if s >= observed)
        p = min(1.0, 2.0 * min(at_most, at_least) / total)
    else:
        p = normal_two_sided_p(u_current, n1, n2, ranks)
    return {"u": u_current, "n_baseline": n1, "n_current": n2, "p_value": p}


def normal_two_sided_p(u: float, n1: int, n2: int, ranks: Sequence[float]) -> float:
    """Normal approximation with the tie correction, for samples too large for the exact count."""
    n = n1 + n2
    ties: dict[float, int] = {}
    for r in ranks:
        ties[r] = ties.get(r, 0) + 1
    tie_term = sum(t**3 - t for t in ties.values()) / (n * (n - 1))
    variance = n1 * n2 / 12.0 * ((n + 1) - tie_term)
    if variance <= 0:
        return 1.0
    z = (abs(u - n1 * n2 / 2.0) - 0.5) / math.sqrt(variance)
    return min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2.0)))


def u_null_cdf(n1: int, n2: int) -> list[float]:
    """P(U <= k) for k = 0..n1*n2 under the null, no ties (the distribution the interval uses)."""
    counts = rank_sum_counts([2 * r for r in range(1, n1 + n2 + 1)], n2)
    total = sum(counts.values())
    minimum = n2 * (n2 + 1)
    cdf, running = [], 0
    by_u = {(s - minimum) // 2: c for s, c in counts.items()}
    for k in range(n1 * n2 + 1):
        running += by_u.get(k, 0)
        cdf.append(running / total)
    return cdf


def interval_rank(n1: int, n2: int, confidence: float) -> int:
    """k: the interval runs from the (k+1)-th smallest to the (k+1)-th largest pairwise difference."""
    alpha = 1.0 - confidence
    if n1 + n2 > MAX_EXACT_TOTAL:
        z = math.sqrt(2.0) * inverse_erfc(alpha)
        k = math.floor(n1 * n2 / 2.0 - z * math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12.0))
        return max(k, 0)
    cdf = u_null_cdf(n1, n2)
    k = -1
    while k + 1 < len(cdf) and cdf[k + 1] <= alpha / 2.0:
        k += 1
    return max(k, 0) if k >= 0 else -1


def inverse_erfc(y: float) -> float:
    """x with erfc(x) = y, by bisection (0 < y < 2)."""
    low, high = -10.0, 10.0
    for _ in range(200):
        mid = (low + high) / 2.0
        if math.erfc(mid) > y:
            low = mid
        else:
            high = mid
    return (low + high) / 2.0


def hodges_lehmann(baseline: Sequence[float], current: Sequence[float], confidence: float) -> dict[str, Any]:
    """Estimate and confidence interval of the shift current - baseline (pairwise differences)."""
    differences = sorted(c - b for b in baseline for c in current)
    m = len(differences)
    middle = differences[m // 2] if m % 2 else (differences[m // 2 - 1] + differences[m // 2]) / 2.0
    k = interval_rank(len(baseline), len(current), confidence)
    if k < 0:
        # Too few rounds for any interval at this confidence: the interval is unbounded.
        return {"estimate": middle, "low": -math.inf, "high": math.inf, "attainable": False}
    return {"estimate": middle, "low": differences[k], "high": differences[m - 1 - k], "attainable": True}


# ------------------------------------------------------------------ verdicts


def logs(values: Sequence[float], name: str) -> list[float]:
    for value in values:
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
            raise VerdictError(f"{name} has a value that is not a positive number: {value!r}")
    return [math.log(v) for v in values]


def percent(log_ratio: float) -> float:
    """A log ratio as a percent change (log(1.15) -> +15.0); an unbounded one stays unbounded."""
    if math.isinf(log_ratio):
        return log_ratio
    return (math.exp(log_ratio) - 1.0) * 100.0


def verdict(
    baseline: Sequence[float],
    current: Sequence[float],
    higher_is_better: bool,
    confidence: float = 0.95,
    max_regression_pct: float | None = None,
    detect_pct: float = 10.0,
) -> dict[str, Any]:
    """The verdict on one metric: faster, slower, no significant change, or too noisy; and whether it fails.

    Returns verdict, change_pct (Hodges-Lehmann, current against baseline), ci_low_pct and ci_high_pct,
    p_value, detectable_pct (the change the interval could just tell from noise), fails (a significant
    worsening whose whole interval lies beyond max_regression_pct) and text for people.
    """
    if not 0.0 < confidence < 1.0:
        raise VerdictError(f"confidence={confidence!r} must be between 0 and 1 (e.g. 0.95)")
    if len(baseline) < 2 or len(current) < 2:
        raise VerdictError(
            f"a verdict needs at least 2 rounds on each side, got {len(baseline)} in the baseline and "
            f"{len(current)} now"
        )
    log_b, log_c = logs(baseline, "the baseline"), logs(current, "this run")
    shift = hodges_lehmann(log_b, log_c, confidence)
    test = mann_whitney(log_b, log_c)
    change = percent(shift["estimate"])
    low, high = percent(shift["low"]), percent(shift["high"])
    half_width_log = (shift["high"] - shift["low"]) / 2.0
    detectable = percent(half_width_log) if math.isfinite(half_width_log) else math.inf
    significant = shift["low"] > 0.0 or shift["high"] < 0.0
    better = (shift["estimate"] > 0) == higher_is_better
    if significant:
        word = "faster" if better else "slower"
    elif detectable > detect_pct:
        word = "too noisy"
    else:
        word = "no significant change"
    # The interval's bound nearest to no change, in the metric's worse direction.
    worse_bound = (-high if higher_is_better else low) if significant and not better else None
    fails = bool(max_regression_pct is not None and worse_bound is not None and worse_bound > max_regression_pct)
    return {
        "verdict": word,
        "change_pct": round(change, 2),
        "ci_low_pct": round(low, 2) if math.isfinite(low) else None,
        "ci_high_pct": round(high, 2) if math.isfinite(high) else None,
        "confidence": confidence,
        "p_value": round(test["p_value"], 4),
        "detectable_pct": round(detectable, 2) if math.isfinite(detectable) else None,
        "fails": fails,
        "text": verdict_text(word, change, low, high, detectable, confidence),
    }


def verdict_text(word: str, change: float, low: float, high: float, detectable: float, confidence: float) -> str:
    """One line: 'slower by 14.8% (95% CI 11.2% to 18.1%)', 'no significant change (±4.1% detectable)'."""
    level = f"{confidence * 100:g}%"
    if word in ("faster", "slower"):
        # A significant interval does not straddle 0: its bounds' sizes, nearest first.
        near, far = sorted((abs(low), abs(high)))
        return f"{word} by {abs(change):.1f}% ({level} CI {near:.1f}% to {far:.1f}%)"
    shown = "∞" if not math.isfinite(detectable) else f"{detectable:.1f}%"
    if word == "too noisy":
        return (
            f"too noisy to judge: only a change beyond ±{shown} could be told from noise at {level}; "
            "run more rounds (vllm_verify_rounds) or more prompts per round (vllm_verify_throughput_prompts)"
        )
    return f"no significant change (±{shown} detectable at {level})"


# ------------------------------------------------------------------ what is compared

WORKLOAD_FIELDS = (
    "mode",
    "endpoint",
    "dataset",
    "input_len",
    "output_len",
    "requests",
    "max_concurrency",
    "request_rate",
    "ignore_eos",
    "model",
)

CONTEXT_LABELS = {
    "vllm_version": "vLLM",
    "vllm_variant": "variant",
    "gpu_model": "GPU",
    "gpu_count": "GPU count",
    "driver_version": "driver",
    "cpu_model": "CPU",
    "cpu_isa_level": "CPU instruction set",
    "vcpus": "vCPUs",
    "flags": "flags",
}


def workload_differences(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """One 'field: baseline -> now' per workload field that differs: such runs are not comparable."""
    return [
        f"{field} {baseline.get(field)!r} in the baseline, {current.get(field)!r} now"
        for field in WORKLOAD_FIELDS
        if baseline.get(field) != current.get(field)
    ]


def context_changes(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What differs between the hardware and software the baseline ran on and now: 'driver 550.54 → 580.95'."""
    changes = []
    for field, label in CONTEXT_LABELS.items():
        before, now = baseline.get(field), current.get(field)
        if before == now:
            continue
        if field == "flags" and isinstance(before, list) and isinstance(now, list):
            gone = [f for f in before if f not in now]
            added = [f for f in now if f not in before]
            parts = ([f"-{' '.join(gone)}"] if gone else []) + ([f"+{' '.join(added)}"] if added else [])
            changes.append(f"flags {' '.join(parts) or 'reordered'}")
            continue
        changes.append(f"{label} {before if before is not None else '?'} → {now if now is not None else '?'}")
    return changes
