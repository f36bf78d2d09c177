"""Verdicts on benchmark sessions (module_utils/vllm_verdict.py).

The reference values were computed with SciPy 1.17.1 (scipy.stats.t.ppf,
t.cdf, t.sf) from the formulas the module's docstring states: with equal
rounds, the textbook prediction interval of a new session's mean, mean
+/- t(S-1) * s * sqrt(1 + 1/S) on the log scale; when sessions vary less
than their rounds predict, var = s_w^2 / n_now + s_m^2 / S.
"""

from __future__ import annotations

import math

import pytest
from ansible.module_utils.vllm_verdict import (
    VerdictError,
    context_changes,
    describe,
    student_t_cdf,
    student_t_quantile,
    verdict,
    workload_differences,
)

OVERLAP = [87.1, 92.3, 79.8, 90.5, 85.0]
# Three sessions whose rounds agree within each, about 90 req/s.
STEADY = [[90.0, 88.0, 91.0], [89.0, 92.0, 90.0], [91.0, 89.0, 90.0]]
# Three sessions whose rounds agree within each, but far apart from session to session.
DRIFTING = [[60.0, 61.0, 59.0], [80.0, 81.0, 79.0], [100.0, 101.0, 99.0]]


@pytest.mark.parametrize(
    ("p", "df", "t"),
    [(0.975, 4, 2.7764451051977934), (0.975, 9, 2.262157162798205), (0.995, 1, 63.656741162871526),
     (0.95, 30, 1.697260886593957)],
)  # fmt: skip
def test_student_t_quantiles(p, df, t):
    assert student_t_quantile(p, df) == pytest.approx(t, rel=1e-9)


def test_student_t_cdf():
    assert student_t_cdf(2.0, 3) == pytest.approx(0.9303370157205785, rel=1e-9)
    assert student_t_cdf(-1.5, 7) == pytest.approx(0.088649243494985, rel=1e-9)


def test_describe_gives_the_mean_and_its_interval():
    stats = describe(OVERLAP)
    assert stats["mean"] == pytest.approx(86.94)
    assert stats["std"] == pytest.approx(4.9033661906898205)
    assert stats["ci_low"] == pytest.approx(80.85166673101091)
    assert stats["ci_high"] == pytest.approx(93.02833326898909)
    assert (stats["min"], stats["median"], stats["max"]) == (79.8, 87.1, 92.3)
    assert stats["cv_pct"] == pytest.approx(5.6399, abs=1e-3)


def test_describe_a_single_round_and_zero_variance():
    single = describe([42.0])
    assert single["std"] == 0.0 and single["ci_low"] is None and single["n"] == 1
    flat = describe([7.0, 7.0, 7.0])
    assert flat["std"] == 0.0 and flat["ci_low"] == flat["ci_high"] == 7.0
    with pytest.raises(VerdictError):
        describe([])


def test_a_clear_slowdown_is_slower_and_fails_beyond_the_allowed_regression():
    result = verdict(STEADY, [76.0, 75.0, 78.0], higher_is_better=True, max_regression_pct=10)
    # Sessions vary less than their rounds: var = s_w^2 / 3 + s_m^2 / 3 (SciPy: p 0.0035205082456045604).
    assert result["verdict"] == "slower" and result["sessions"] == 3
    assert result["change_pct"] == pytest.approx(-15.19, abs=0.01)
    assert result["ci_low_pct"] == pytest.approx(-18.69, abs=0.01)
    assert result["ci_high_pct"] == pytest.approx(-11.54, abs=0.01)
    assert result["detectable_pct"] == pytest.approx(4.31, abs=0.01)
    assert result["p_value"] == pytest.approx(0.0035, abs=1e-4)
    assert result["fails"] is True
    assert result["text"] == "slower by 15.2% (95% CI 11.5% to 18.7%)"


def test_sessions_that_drift_make_tight_rounds_too_noisy_to_judge():
    # Each session's rounds agree to 1%, and this run is 10% under the baseline's mean: a test on the rounds
    # would call it slower. The sessions themselves spread from 60 to 100, so a run at 70 is one of them.
    # The textbook prediction interval (SciPy): change -10.60%, interval -74.96% to +219.14%, p 0.7413.
    result = verdict(DRIFTING, [70.0, 71.0, 69.0], higher_is_better=True, max_regression_pct=10)
    assert result["verdict"] == "too noisy" and result["fails"] is False
    assert result["change_pct"] == pytest.approx(-10.60, abs=0.01)
    assert result["ci_low_pct"] == pytest.approx(-74.96, abs=0.01)
    assert result["ci_high_pct"] == pytest.approx(219.14, abs=0.01)
    assert result["p_value"] == pytest.approx(0.7413, abs=1e-4)
    assert "add sessions to the baseline (vllm_verify_baseline_sessions" in result["text"]


def test_a_significant_slowdown_within_the_allowed_regression_does_not_fail():
    result = verdict([[100, 101, 99], [100, 100.5, 99.5], [101, 100, 100]], [96, 97, 95.5], higher_is_better=True,
                     max_regression_pct=10)  # fmt: skip
    assert result["verdict"] == "slower"
    assert result["fails"] is False


def test_a_slowdown_whose_interval_reaches_into_the_allowance_does_not_fail():
    # Slower by about 12%, but the interval's near end is under 10%: noise could explain a 10% loss.
    result = verdict([[100, 104, 97], [101, 99, 100], [98, 103, 100]], [92, 86, 88], higher_is_better=True,
                     max_regression_pct=10)  # fmt: skip
    assert result["verdict"] == "slower"
    assert -result["ci_high_pct"] < 10
    assert result["fails"] is False


def test_latency_direction_is_the_other_way():
    # Lower is better: 11.7% more milliseconds (SciPy: interval +9.55% to +13.94%) is slower.
    sessions = [[100, 101, 99], [102, 100, 101], [99, 100, 101], [101, 100, 99]]
    result = verdict(sessions, [112, 113, 111], higher_is_better=False, max_regression_pct=5)
    assert result["verdict"] == "slower" and result["change_pct"] == pytest.approx(11.72, abs=0.01)
    assert result["ci_low_pct"] == pytest.approx(9.55, abs=0.01) and result["fails"] is True
    faster = verdict([[112, 113, 111], [113, 112, 111], [111, 112, 113]], [100, 101, 99], higher_is_better=False)
    assert faster["verdict"] == "faster" and faster["fails"] is False


def test_a_run_like_the_baseline_is_no_significant_change():
    result = verdict(STEADY, [90.0, 89.0, 91.0], higher_is_better=True, max_regression_pct=10)
    assert result["verdict"] == "no significant change"
    assert result["fails"] is False
    assert result["text"].startswith("no significant change (±") and result["text"].endswith("% detectable at 95%)")
    assert 0 < result["detectable_pct"] < 10


def test_ties_and_zero_variance():
    same = verdict([[5.0] * 3] * 3, [5.0] * 3, higher_is_better=True)
    assert same["verdict"] == "no significant change" and same["change_pct"] == 0.0
    assert same["text"] == "no significant change (±0.0% detectable at 95%)" and same["p_value"] == 1.0
    apart = verdict([[5.0] * 3] * 3, [4.0] * 3, higher_is_better=True, max_regression_pct=10)
    assert apart["verdict"] == "slower" and apart["change_pct"] == -20.0 and apart["fails"] is True
    # Rounds tied inside one session, not in the others: the pooled within-session spread still counts.
    tied = verdict([[90.0, 90.0, 90.0], [89.0, 92.0, 90.0], [91.0, 89.0, 90.0]], [90.0, 90.0, 90.0], True)
    assert tied["verdict"] == "no significant change" and tied["detectable_pct"] > 0


def test_sessions_of_unequal_rounds():
    result = verdict([[90.0, 88.0], [89.0, 92.0, 90.0, 91.0], [91.0, 89.0, 90.0]], [90.0, 91.0], True)
    assert result["verdict"] == "no significant change" and result["sessions"] == 3


def test_more_sessions_narrow_the_interval():
    three = verdict(DRIFTING, [70.0, 71.0, 69.0], True)
    five = verdict([*DRIFTING, [70.0, 71.0, 69.0], [90.0, 91.0, 89.0]], [70.0, 71.0, 69.0], True)
    assert five["detectable_pct"] < three["detectable_pct"]


@pytest.mark.parametrize(
    ("baseline", "current", "kwargs", "says"),
    [
        ([[1.0, 2.0]], [1.0, 2.0], {}, "at least 2 sessions"),
        ([], [1.0, 2.0], {}, "at least 2 sessions"),
        ([[1.0, 2.0], [1.0, 2.0]], [3.0], {}, "at least 2 rounds in this run"),
        ([[1.0, 2.0], []], [1.0, 2.0], {}, "session 2 has no rounds"),
        ([[1.0, 2.0], [1.0, 2.0]], [1.0, 2.0], {"confidence": 1.0}, "confidence=1.0"),
        ([[1.0, 2.0], [1.0, 2.0]], [1.0, 2.0], {"confidence": 0}, "confidence=0"),
        ([[1.0, 0.0], [1.0, 2.0]], [1.0, 2.0], {}, "not a positive number"),
        ([[1.0, 2.0], [1.0, math.nan]], [1.0, 2.0], {}, "session 2, has a value that is not a positive number"),
        ([[1.0, "2"], [1.0, 2.0]], [1.0, 2.0], {}, "not a positive number"),
        ([[1.0, 2.0], [1.0, 2.0]], [1.0, True], {}, "this run"),
    ],
)
def test_bad_input_is_refused(baseline, current, kwargs, says):
    with pytest.raises(VerdictError, match=says):
        verdict(baseline, current, higher_is_better=True, **kwargs)


def test_a_workload_that_differs_is_named_field_by_field():
    base = {"mode": "throughput", "dataset": "random", "input_len": 128, "output_len": 64, "requests": 200}
    assert workload_differences(base, dict(base)) == []
    differences = workload_differences(base, {**base, "input_len": 256})
    assert differences == ["input_len 128 in the baseline, 256 now"]


def test_context_changes_read_as_before_and_after():
    before = {"driver_version": "550.54", "vllm_version": "0.31.1", "cpu_isa_level": "AMX", "flags": ["--a", "--b"]}
    now = {"driver_version": "580.95", "vllm_version": "0.32.0", "cpu_isa_level": "AMX", "flags": ["--a", "--c"]}
    assert context_changes(before, now) == ["vLLM 0.31.1 → 0.32.0", "driver 550.54 → 580.95", "flags ---b +--c"]
    assert context_changes(before, before) == []
