"""Verdicts on benchmark sessions that noise cannot flip, as plain functions.

Standard library only, Python 3.10+: this file runs on managed hosts (module
vllm_benchmark compares a run with its baseline there).

The method, and why (docs/benchmarks.md has the measurements behind it):

- A run (a session) measures each metric in several rounds, each after a
  warm-up. The rounds of one session are not independent samples of the
  noise: on the 2-core test machines a slow stretch lasts longer than a
  round (12 runs of 5 rounds: lag-1 autocorrelation 0.43, run means varying
  2.3 times as much as their rounds predict; rounds of 1000 prompts as noisy
  as rounds of 200). A test on rounds (Mann-Whitney U, or a bootstrap of
  them) therefore calls two sessions of an unchanged server different far
  more often than its level says: 15% of 132 such pairs were "slower".
- So the unit of comparison is the session, not the round (Kalibera and
  Jones, "Rigorous benchmarking in reasonable time", ISMM 2013: replicate at
  the level that varies). A baseline holds several sessions, recorded at
  different times (each verification of an unchanged host adds one until
  the baseline is complete). The question "is this run unlike the
  baseline's sessions?" is answered by the prediction interval of a new
  session's mean, on the log scale so that the change reads as a ratio:

      d = y - mean(x_i),  var = s_b^2 + s_w^2 / n_now + s_m^2 / S,
      d +/- t(S - 1, (1 + confidence) / 2) * sqrt(var)

  with x_i the mean log value of baseline session i (S of them), y this
  run's, s_m^2 the variance of the x_i, s_w^2 the pooled variance of rounds
  within sessions, and s_b^2 = max(0, s_m^2 - s_w^2 / n_baseline) the part
  that comes from session to session. With equal rounds on both sides this
  is the textbook interval mean +/- t * s_m * sqrt(1 + 1/S). Student's t
  with S - 1 degrees of freedom is conservative when sessions vary little,
  and right when they vary a lot, which is the case that flips verdicts.
- A change is significant when its interval excludes 0. It fails the allowed
  regression only when the whole interval lies beyond it, so noise can
  neither invent a failure nor hide one that the sessions prove.
- When the interval is so wide that a change of `detect_pct` could go unseen,
  the verdict is "too noisy" and says what to do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


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


def session_means(sessions: Sequence[Sequence[float]], name: str) -> tuple[list[float], float, int]:
    """(mean log value of each session, sum of squared deviations within sessions, their degrees of freedom)."""
    means, squares, freedom = [], 0.0, 0
    for index, values in enumerate(sessions, 1):
        if not values:
            raise VerdictError(f"{name}: session {index} has no rounds")
        logged = logs(values, f"{name}, session {index},")
        mean = math.fsum(logged) / len(logged)
        means.append(mean)
        squares += math.fsum((v - mean) ** 2 for v in logged)
        freedom += len(logged) - 1
    return means, squares, freedom


def verdict(
    baseline_sessions: Sequence[Sequence[float]],
    current: Sequence[float],
    higher_is_better: bool,
    confidence: float = 0.95,
    max_regression_pct: float | None = None,
    detect_pct: float = 10.0,
) -> dict[str, Any]:
    """The verdict on one metric: faster, slower, no significant change, or too noisy; and whether it fails.

    baseline_sessions holds the rounds of each baseline session, current this run's rounds. Returns verdict,
    change_pct (this run's mean against the baseline sessions' mean, geometric), ci_low_pct and ci_high_pct (the
    prediction interval), p_value (Student's t), detectable_pct (the change the interval could just tell from
    noise), fails (a significant worsening whose whole interval lies beyond max_regression_pct), sessions and
    text for people.
    """
    if not 0.0 < confidence < 1.0:
        raise VerdictError(f"confidence={confidence!r} must be between 0 and 1 (e.g. 0.95)")
    sessions = len(baseline_sessions)
    if sessions < 2:
        raise VerdictError(
            f"a verdict needs a baseline of at least 2 sessions (runs at different times), got {sessions}: the "
            "spread between sessions cannot be known from one"
        )
    if len(current) < 2:
        raise VerdictError(f"a verdict needs at least 2 rounds in this run, got {len(current)}")
    means, squares, freedom = session_means(baseline_sessions, "the baseline")
    (now,), now_squares, now_freedom = session_means([current], "this run")
    grand = math.fsum(means) / sessions
    between = math.fsum((m - grand) ** 2 for m in means) / (sessions - 1)
    within = (squares + now_squares) / (freedom + now_freedom) if freedom + now_freedom else 0.0
    rounds_baseline = sessions / math.fsum(1.0 / len(s) for s in baseline_sessions)  # harmonic mean
    session_part = max(0.0, between - within / rounds_baseline)
    spread = math.sqrt(session_part + within / len(current) + between / sessions)
    shift = now - grand
    half = student_t_quantile(0.5 + confidence / 2.0, sessions - 1) * spread
    low_log, high_log = shift - half, shift + half
    if spread > 0:
        p_value = 2.0 * (1.0 - student_t_cdf(abs(shift) / spread, sessions - 1))
    else:
        p_value = 1.0 if shift == 0 else 0.0
    change, low, high, detectable = percent(shift), percent(low_log), percent(high_log), percent(half)
    significant = low_log > 0.0 or high_log < 0.0
    better = (shift > 0) == higher_is_better
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
        "ci_low_pct": round(low, 2),
        "ci_high_pct": round(high, 2),
        "confidence": confidence,
        "p_value": round(min(1.0, max(0.0, p_value)), 4),
        "detectable_pct": round(detectable, 2),
        "fails": fails,
        "sessions": sessions,
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
            "add sessions to the baseline (vllm_verify_baseline_sessions; the interval narrows as they grow) or "
            "run on a quieter host"
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
