"""The per-request latencies a result file keeps for the fleet report's distributions (vllm_bench_stats)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ansible.module_utils.vllm_bench_stats import SAMPLE_CAP, latency_samples, percentile, thinned


def request(ttft: float, gaps: list[float], ok: bool = True) -> SimpleNamespace:
    return SimpleNamespace(ok=ok, ttft=ttft, latency=ttft + sum(gaps), itl=gaps, output_tokens=len(gaps) + 1)


def test_few_values_are_kept_whole_and_sorted():
    assert thinned([3.0, 1.0, 2.0], cap=5) == [1.0, 2.0, 3.0]


def test_many_values_keep_the_extremes_and_evenly_spaced_order_statistics():
    values = [float(v) for v in range(10_001)][::-1]  # 0 .. 10000, in reverse
    kept = thinned(values, cap=101)
    assert len(kept) == 101
    assert kept[0] == 0.0 and kept[-1] == 10_000.0
    assert kept == [float(100 * i) for i in range(101)]  # the k-th kept is the whole's k/100 quantile
    for pct in (10, 50, 90, 99):
        assert percentile(kept, pct) == pytest.approx(percentile(values, pct), rel=0.01)


def test_the_cap_must_keep_both_ends():
    with pytest.raises(ValueError, match="cap must be at least 2"):
        thinned([1.0, 2.0, 3.0], cap=1)


def test_samples_are_each_completed_requests_latencies_in_ms():
    results = [
        request(0.010, [0.002, 0.003]),
        request(0.020, [0.004]),
        request(0.5, [], ok=False),  # a failed request counts nowhere
        request(0.030, []),  # one output token: no TPOT
    ]
    samples, counts = latency_samples(results)
    assert samples["ttft_ms"] == [10.0, 20.0, 30.0]
    assert samples["e2e_ms"] == [15.0, 24.0, 30.0]
    assert samples["itl_ms"] == [2.0, 3.0, 4.0]
    assert samples["tpot_ms"] == [2.5, 4.0]
    assert counts == {"ttft_ms": 3, "tpot_ms": 2, "itl_ms": 3, "e2e_ms": 3}


def test_itl_of_a_long_run_is_capped_and_counted():
    results = [request(0.01, [0.001 * (1 + (i * 7 + j) % 13) for j in range(127)]) for i in range(100)]
    samples, counts = latency_samples(results)
    assert counts["itl_ms"] == 12_700 and len(samples["itl_ms"]) == SAMPLE_CAP
    assert samples["itl_ms"][0] == 1.0 and samples["itl_ms"][-1] == 13.0
    assert len(samples["ttft_ms"]) == counts["ttft_ms"] == 100
