"""Thresholds and baseline comparison."""

import json

import pytest
from ansible.module_utils.vllm_bench_checks import (
    baseline_comparison,
    baseline_metrics,
    parse_condition,
    regression_messages,
    threshold_errors,
    unmet_thresholds,
)

METRICS = {"request_throughput": 250.0, "p99_ttft_ms": 612.3, "failed": 0, "median_tpot_ms": 20.0}


@pytest.mark.parametrize(
    ("text", "expected"),
    [(">=300", (">=", 300.0)), ("<= 500", ("<=", 500.0)), ("==0", ("==", 0.0)), ("< 1.5e3", ("<", 1500.0))],
)
def test_parse_condition(text, expected):
    assert parse_condition(text) == expected


@pytest.mark.parametrize("bad", ["300", "=>300", ">= fast", "", None, 300, ">=1,5"])
def test_parse_condition_rejects_malformed(bad):
    with pytest.raises(ValueError, match="valid operators"):
        parse_condition(bad)


def test_threshold_errors_name_key_and_what_is_valid():
    errors = threshold_errors({"p99_ttft": "<=500", "failed": "0", "request_throughput": ">=1"}, METRICS)
    assert len(errors) == 2
    assert "unknown metric 'p99_ttft'" in errors[0] and "p99_ttft_ms" in errors[0]
    assert errors[1].startswith("thresholds.failed:") and ">=" in errors[1]


def test_unmet_thresholds_lists_every_failure_with_measured_and_required():
    unmet = unmet_thresholds({"request_throughput": ">=300", "p99_ttft_ms": "<=500", "failed": "==0"}, METRICS)
    assert unmet == [
        "request_throughput: measured 250.00, required >=300",
        "p99_ttft_ms: measured 612.30, required <=500",
    ]


def test_baseline_comparison_is_direction_aware():
    baseline = {"request_throughput": 300.0, "median_tpot_ms": 10.0, "p99_ttft_ms": 600.0}
    comparison = baseline_comparison(baseline, METRICS, "throughput", max_regression_pct=10)
    assert comparison["request_throughput"]["change_pct"] == pytest.approx(-16.67)
    assert comparison["request_throughput"]["regressed"] is True  # 16.7% less throughput
    assert comparison["median_tpot_ms"]["regressed"] is True  # latency doubled
    assert comparison["p99_ttft_ms"]["regressed"] is False  # 2% slower: within 10%
    messages = regression_messages(comparison, 10)
    assert len(messages) == 2 and "higher is better" in messages[0]


def test_baseline_comparison_without_limit_never_regresses():
    comparison = baseline_comparison({"request_throughput": 1000.0}, METRICS, "throughput", None)
    assert comparison["request_throughput"]["regressed"] is False


def test_baseline_improvement_is_not_regression():
    comparison = baseline_comparison({"request_throughput": 100.0}, METRICS, "throughput", 0)
    assert comparison["request_throughput"]["change_pct"] == pytest.approx(150.0)
    assert not comparison["request_throughput"]["regressed"]


def test_baseline_metrics_reads_our_file_and_vllm_bench_serve_file(tmp_path):
    ours = tmp_path / "ours.json"
    ours.write_text(json.dumps({"metrics": {"request_throughput": 5.0, "median_e2e_ms": 9.0}, "host": "h"}))
    assert baseline_metrics(str(ours)) == {"request_throughput": 5.0, "median_e2e_ms": 9.0}
    theirs = tmp_path / "vllm.json"
    theirs.write_text(json.dumps({"request_throughput": 4.0, "p99_e2el_ms": 7.0, "duration": 3, "backend": "x"}))
    assert baseline_metrics(str(theirs)) == {"request_throughput": 4.0, "p99_e2e_ms": 7.0, "duration_s": 3.0}


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "cannot be read"),
        ("{half", "not JSON"),
        ("[1]", "not a JSON object"),
        ('{"a": 1}', "headline"),
        ("[" * 100000 + "]" * 100000, "nested too deeply"),
        # A NaN compares as "not regressed" with anything: a baseline holding one would pass every run.
        ('{"metrics": {"request_throughput": NaN}}', "not a finite number >= 0"),
        ('{"metrics": {"p99_ttft_ms": Infinity}}', "not a finite number >= 0"),
        ('{"metrics": {"request_throughput": -10}}', "not a finite number >= 0"),
        ('{"metrics": {"request_throughput": 1, "completed": NaN}}', None),  # not a headline metric: dropped
    ],
)
def test_baseline_metrics_errors(tmp_path, content, match):
    path = tmp_path / "b.json"
    if content is not None:
        path.write_text(content)
    if match is None:
        assert baseline_metrics(str(path)) == {"request_throughput": 1.0}
        return
    with pytest.raises(ValueError, match=match):
        baseline_metrics(str(path))


def test_thresholds_take_vllms_e2el_names_too():
    from ansible.module_utils.vllm_bench_checks import threshold_errors, unmet_thresholds

    assert threshold_errors({"p99_e2el_ms": "<=100"}, ["p99_e2e_ms"]) == []
    assert unmet_thresholds({"p99_e2el_ms": "<=100"}, {"p99_e2e_ms": 150.0}) == [
        "p99_e2el_ms: measured 150.00, required <=100"
    ]
