"""Verdicts on benchmark rounds (module_utils/vllm_verdict.py).

The reference values (U, p, t quantiles, the mean's interval) were computed
with SciPy 1.17.1 (scipy.stats.mannwhitneyu method="exact", permutation_test
for the tied case, t.ppf, t.cdf); the interval ranks are the textbook
critical values of U (two-sided).
"""

from __future__ import annotations

import math

import pytest
from ansible.module_utils.vllm_verdict import (
    VerdictError,
    context_changes,
    describe,
    hodges_lehmann,
    interval_rank,
    mann_whitney,
    student_t_cdf,
    student_t_quantile,
    verdict,
    workload_differences,
)

SEPARATED = ([10.0, 11.0, 12.0, 13.0, 14.0], [15.0, 16.0, 17.0, 18.0, 19.0])
OVERLAP = ([87.1, 92.3, 79.8, 90.5, 85.0], [84.2, 88.0, 91.7, 80.3, 86.9])
TIES = ([1.0, 2.0, 2.0, 3.0, 3.0], [2.0, 3.0, 3.0, 4.0, 4.0])
UNEQUAL = ([5.1, 4.9, 5.3], [5.8, 6.1, 5.9, 6.3, 6.0, 5.7])


@pytest.mark.parametrize(
    ("sample", "u", "p"),
    [
        (SEPARATED, 25.0, 0.007936507936507936),
        (OVERLAP, 11.0, 0.8412698412698413),
        (TIES, 20.0, 0.19047619047619047),
        (UNEQUAL, 18.0, 0.023809523809523808),
    ],
)
def test_mann_whitney_matches_scipy(sample, u, p):
    result = mann_whitney(*sample)
    assert result["u"] == u
    assert result["p_value"] == pytest.approx(p, rel=1e-12)


def test_mann_whitney_is_symmetric_in_its_p_value():
    a, b = OVERLAP
    assert mann_whitney(a, b)["p_value"] == pytest.approx(mann_whitney(b, a)["p_value"])


def test_large_samples_use_the_normal_approximation():
    a = [float(i) for i in range(40)]
    b = [float(i) + 10.0 for i in range(40)]
    result = mann_whitney(a, b)
    # scipy.stats.mannwhitneyu(b, a, method="asymptotic"): U 1150, p 0.0007691714821234269
    assert result["u"] == 1150.0
    assert result["p_value"] == pytest.approx(0.0007691714821234269, rel=1e-9)


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
    stats = describe(OVERLAP[0])
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


@pytest.mark.parametrize(
    ("n1", "n2", "confidence", "k"),
    [(5, 5, 0.95, 2), (5, 5, 0.99, 0), (4, 4, 0.95, 0), (3, 3, 0.95, -1), (10, 10, 0.95, 23), (6, 8, 0.95, 8)],
)
def test_interval_ranks_are_the_critical_values_of_u(n1, n2, confidence, k):
    assert interval_rank(n1, n2, confidence) == k


def test_hodges_lehmann_on_a_known_shift():
    shift = hodges_lehmann([1.0, 2.0, 3.0, 4.0, 5.0], [3.0, 4.0, 5.0, 6.0, 7.0], 0.95)
    # 25 differences from -2 to 6 (-2 once, -1 twice, ...), median 2; k=2: the 3rd smallest and 3rd largest.
    assert shift == {"estimate": 2.0, "low": -1.0, "high": 5.0, "attainable": True}


def test_a_clear_slowdown_is_slower_and_fails_beyond_the_allowed_regression():
    result = verdict([90, 88, 91, 89, 92], [76, 75, 78, 77, 74], higher_is_better=True, max_regression_pct=10)
    assert result["verdict"] == "slower"
    assert result["change_pct"] == pytest.approx(-15.56, abs=0.01)
    assert result["ci_high_pct"] < -10
    assert result["fails"] is True
    assert result["text"].startswith("slower by 15.6% (95% CI 12.5% to 18.5%)")


def test_a_significant_slowdown_within_the_allowed_regression_does_not_fail():
    result = verdict([100, 101, 99, 100, 100.5], [96, 97, 95.5, 96.5, 96], higher_is_better=True, max_regression_pct=10)
    assert result["verdict"] == "slower"
    assert result["fails"] is False


def test_a_slowdown_whose_interval_reaches_into_the_allowance_does_not_fail():
    # Slower by about 12%, but the interval's near end is under 10%: noise could explain a 10% loss.
    result = verdict([100, 104, 97, 101, 99], [92, 86, 88, 84, 90], higher_is_better=True, max_regression_pct=10)
    assert result["verdict"] == "slower"
    assert -result["ci_high_pct"] < 10
    assert result["fails"] is False


def test_latency_direction_is_the_other_way():
    result = verdict([100, 101, 99, 100, 102], [120, 119, 121, 122, 118], higher_is_better=False, max_regression_pct=10)
    assert result["verdict"] == "slower"
    assert result["change_pct"] > 0
    assert result["fails"] is True
    faster = verdict([120, 119, 121, 122, 118], [100, 101, 99, 100, 102], higher_is_better=False)
    assert faster["verdict"] == "faster" and faster["fails"] is False


def test_noise_within_the_rounds_is_no_significant_change():
    result = verdict(*OVERLAP, higher_is_better=True, max_regression_pct=10)
    assert result["verdict"] == "no significant change"
    assert result["fails"] is False
    assert result["text"] == "no significant change (±9.3% detectable at 95%)"


def test_too_much_noise_says_so_and_what_to_do():
    result = verdict([60, 100, 140, 80, 120], [70, 130, 90, 110, 150], higher_is_better=True, detect_pct=10)
    assert result["verdict"] == "too noisy"
    assert "vllm_verify_rounds" in result["text"]
    assert result["fails"] is False


def test_three_rounds_cannot_bound_an_interval_at_95_percent():
    result = verdict([100, 100, 100], [50, 50, 50], higher_is_better=True)
    assert result["verdict"] == "too noisy"
    assert result["ci_low_pct"] is None and result["ci_high_pct"] is None


def test_zero_variance_on_both_sides():
    same = verdict([5.0] * 5, [5.0] * 5, higher_is_better=True)
    assert same["verdict"] == "no significant change" and same["change_pct"] == 0.0
    assert same["text"] == "no significant change (±0.0% detectable at 95%)"
    apart = verdict([5.0] * 5, [4.0] * 5, higher_is_better=True, max_regression_pct=10)
    assert apart["verdict"] == "slower" and apart["change_pct"] == -20.0 and apart["fails"] is True


@pytest.mark.parametrize(
    ("baseline", "current", "kwargs", "says"),
    [
        ([1.0], [1.0, 2.0], {}, "at least 2 rounds"),
        ([1.0, 2.0], [3.0], {}, "at least 2 rounds"),
        ([1.0, 2.0], [1.0, 2.0], {"confidence": 1.0}, "confidence=1.0"),
        ([1.0, 2.0], [1.0, 2.0], {"confidence": 0}, "confidence=0"),
        ([1.0, 0.0], [1.0, 2.0], {}, "not a positive number"),
        ([1.0, math.nan], [1.0, 2.0], {}, "not a positive number"),
        ([1.0, "2"], [1.0, 2.0], {}, "not a positive number"),
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
