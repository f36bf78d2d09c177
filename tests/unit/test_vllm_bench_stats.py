"""Statistics with vLLM's definitions (numpy-style percentiles, population std, TPOT)."""

from types import SimpleNamespace

import pytest
from ansible.module_utils.vllm_bench_stats import (
    benchmark_metrics,
    distribution_ms,
    mean,
    median,
    percentile,
    stdev,
    tpot_seconds,
)


def result(ok=True, ttft=0.1, latency=1.1, itl=(), output_tokens=11, prompt_tokens=5):
    return SimpleNamespace(
        ok=ok, ttft=ttft, latency=latency, itl=list(itl), output_tokens=output_tokens, prompt_tokens=prompt_tokens
    )


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        ([1, 2, 3, 4], 50, 2.5),  # numpy.percentile([1,2,3,4], 50)
        ([1, 2, 3, 4], 90, 3.7),  # numpy.percentile([1,2,3,4], 90)
        ([1, 2, 3, 4], 99, 3.97),
        ([10], 99, 10.0),
        ([3, 1, 2], 0, 1.0),
        ([3, 1, 2], 100, 3.0),
        ([], 50, 0.0),
    ],
)
def test_percentile_interpolates_linearly_like_numpy(values, pct, expected):
    assert percentile(values, pct) == pytest.approx(expected)


def test_percentile_rejects_out_of_range():
    with pytest.raises(ValueError, match="within"):
        percentile([1.0], 101)


def test_mean_median_stdev():
    values = [2, 4, 4, 4, 5, 5, 7, 9]
    assert mean(values) == 5
    assert median(values) == 4.5
    assert stdev(values) == 2.0  # population std, as numpy.std
    assert mean([]) == 0.0 and stdev([]) == 0.0


def test_distribution_ms_keys_and_units():
    dist = distribution_ms("e2e", [0.1, 0.2, 0.3], extra_percentiles=(25,))
    assert dist["mean_e2e_ms"] == pytest.approx(200.0)
    assert dist["min_e2e_ms"] == pytest.approx(100.0)
    assert dist["max_e2e_ms"] == pytest.approx(300.0)
    assert dist["p25_e2e_ms"] == pytest.approx(150.0)
    assert set(dist) >= {"median_e2e_ms", "p90_e2e_ms", "p99_e2e_ms", "std_e2e_ms"}


def test_tpot_excludes_first_token_and_single_token_requests():
    assert tpot_seconds(1.1, 0.1, 11) == pytest.approx(0.1)
    assert tpot_seconds(0.5, 0.5, 1) is None
    assert tpot_seconds(0.5, 0.5, 0) is None


def test_benchmark_metrics_counts_throughput_and_pools_itl():
    results = [
        result(itl=[0.1] * 10),
        result(ttft=0.3, latency=1.3, itl=[0.05, 0.15]),
        result(ok=False),
    ]
    metrics = benchmark_metrics(results, duration_s=2.0)
    assert metrics["completed"] == 2 and metrics["failed"] == 1
    assert metrics["request_throughput"] == pytest.approx(1.0)
    assert metrics["output_throughput"] == pytest.approx(11.0)
    assert metrics["total_token_throughput"] == pytest.approx(16.0)
    assert metrics["median_ttft_ms"] == pytest.approx(200.0)
    assert metrics["mean_tpot_ms"] == pytest.approx(100.0)
    assert metrics["mean_itl_ms"] == pytest.approx(100.0)  # 12 gaps pooled, as vLLM does
    assert metrics["median_e2e_ms"] == pytest.approx(1200.0)


def test_benchmark_metrics_of_nothing_is_zero_not_an_error():
    metrics = benchmark_metrics([result(ok=False)], duration_s=0.0, mode="latency")
    assert metrics["completed"] == 0 and metrics["request_throughput"] == 0.0
    assert metrics["p10_e2e_ms"] == 0.0 and metrics["std_e2e_ms"] == 0.0
