"""Goodput and the capacity search (module_utils/vllm_bench_capacity.py), on requests and servers of known shape."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ansible.module_utils.vllm_bench_capacity import SloError, find_capacity, goodput, normalized_slo


def request(ttft_ms: float, e2e_ms: float, tokens: int = 11, ok: bool = True):
    return SimpleNamespace(ok=ok, ttft=ttft_ms / 1000, latency=e2e_ms / 1000, output_tokens=tokens)


def test_goodput_counts_a_request_only_when_it_meets_every_limit():
    results = [
        request(100, 600),  # tpot (600-100)/10 = 50 ms
        request(100, 1100),  # tpot 100 ms: misses tpot
        request(900, 1000),  # misses ttft
        request(0, 0, ok=False),  # a failed request meets none
    ]
    got = goodput(results, 2.0, {"ttft_ms": 500, "tpot_ms": 60})
    assert got["good_requests"] == 1
    assert got["request_goodput"] == 0.5
    assert got["slo_attainment"] == 0.25
    assert got["slo_misses"] == {"ttft_ms": 2, "tpot_ms": 2}


def test_vllm_key_names_are_accepted_and_bad_limits_refused():
    assert normalized_slo({"ttft_ms": 500, "e2el_ms": "9000"}) == {"ttft_ms": 500.0, "e2e_ms": 9000.0}
    for bad, says in [({"ttfb_ms": 1}, "unknown SLO metric 'ttfb_ms'"), ({"tpot_ms": 0}, "positive"),
                      ({"tpot_ms": "nan"}, "positive"), ({"tpot_ms": True}, "positive")]:  # fmt: skip
        with pytest.raises(SloError, match=says):
            normalized_slo(bad)


def server(limit: int):
    """A server that meets the SLO up to `limit` requests in flight, with goodput growing with the load."""
    loads = []

    def measure(load: int) -> dict:
        loads.append(load)
        return {"slo_attainment": 1.0 if load <= limit else 0.5, "request_goodput": float(min(load, limit))}

    return measure, loads


@pytest.mark.parametrize(("limit", "expected_loads"), [(6, [1, 2, 4, 8, 6, 7]), (1, [1, 2]), (16, [1, 2, 4, 8, 16])])
def test_ramp_then_bisect_to_the_highest_load_that_meets_the_slo(limit, expected_loads):
    measure, loads = server(limit)
    found = find_capacity(measure, 0.9, max_load=16, max_steps=10, time_left=lambda: 100)
    assert loads == expected_loads
    assert found["capacity_load"] == limit and found["capacity"] == float(limit)
    assert [s["load"] for s in found["steps"]] == loads


def test_a_server_that_misses_the_slo_at_once_has_no_capacity():
    measure, loads = server(0)
    found = find_capacity(measure, 0.9, max_load=64, max_steps=10, time_left=lambda: 100)
    assert loads == [1] and found["capacity_load"] == 0 and found["capacity"] == 0.0
    assert "missed at the lowest load" in found["stopped"]


def test_the_search_is_bounded_in_steps_and_time():
    measure, loads = server(1000)
    found = find_capacity(measure, 0.9, max_load=10_000, max_steps=3, time_left=lambda: 100)
    assert loads == [1, 2, 4] and "step limit (3)" in found["stopped"] and found["capacity_load"] == 4
    ticks = iter([5, 5, 0, 0])
    measure, loads = server(1000)
    found = find_capacity(measure, 0.9, max_load=10_000, max_steps=10, time_left=lambda: next(ticks))
    assert loads == [1, 2] and "total_timeout" in found["stopped"]
