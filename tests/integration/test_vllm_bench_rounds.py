"""Rounds and verdicts of vllm_benchmark, end to end against a real local server (the fake OpenAI server).

The baselines here are written by hand with rounds far from what the fake server
does, so each verdict is certain whatever this machine's noise; the statistics
themselves are tested on known samples in tests/unit/test_vllm_verdict.py.
"""

from __future__ import annotations

import json

import pytest
from test_vllm_bench_sockets import fake_server, run_module

WORKLOAD = {
    "mode": "throughput",
    "endpoint": "/v1/completions",
    "dataset": "random",
    "input_len": 5,
    "output_len": 6,
    "requests": 6,
    "max_concurrency": 3,
    "request_rate": "inf",
    "ignore_eos": True,
    "model": "fake-model",
}


def baseline_file(
    tmp_path, throughput: float, workload: dict | None = None, context: dict | None = None, rounds=5, sessions=3
):
    """A baseline of `sessions` sessions (the file's own rounds are the newest), each near `throughput`."""
    path = tmp_path / "baseline.json"

    def session(shift: int) -> list[dict]:
        values = [throughput * (1 + 0.01 * i + 0.005 * shift) for i in range(rounds)]
        return [{"request_throughput": v, "total_token_throughput": v * 11} for v in values]

    path.write_text(
        json.dumps(
            {
                "rounds_format": 2,
                "rounds": session(0),
                "sessions": [{"finished_at": f"2026-12-0{n + 1}T00:00:00+00:00", "rounds": session(n + 1)}
                             for n in range(sessions - 1)],
                "finished_at": "2026-12-08T00:00:00+00:00",
                "workload": workload or WORKLOAD,
                "context": context or {"driver_version": "550.54", "vllm_version": "0.31.1"},
            }
        )
    )  # fmt: skip
    return path


def bench(tmp_path, server, **extra):
    return run_module(
        tmp_path,
        url=server.url,
        num_prompts=6,
        max_concurrency=3,
        input_len=5,
        output_len=6,
        warmup_requests=1,
        **extra,
    )


def test_rounds_are_measured_and_summarized(tmp_path):
    result_path = tmp_path / "result.json"
    with fake_server(tokens=6) as server:
        rc, result = bench(tmp_path, server, rounds=3, result_path=str(result_path))
        sent = server.requests
    assert rc == 0, result
    assert sent == 3 * (6 + 1)  # each round has its warm-up
    assert len(result["round_metrics"]) == 3 and result["metrics"]["completed"] == 18
    summary = result["round_summary"]["request_throughput"]
    assert summary["n"] == 3 and summary["min"] <= summary["mean"] <= summary["max"]
    assert summary["ci_low"] <= summary["mean"] <= summary["ci_high"]
    assert any(line.startswith("request_throughput: ") and "over 3 rounds" in line for line in result["summary_lines"])
    saved = json.loads(result_path.read_text())
    assert saved["rounds_format"] == 2 and len(saved["rounds"]) == 3
    assert saved["workload"] == WORKLOAD
    assert result_path.stat().st_mode & 0o777 == 0o600


def test_a_much_faster_baseline_gives_slower_and_fails_the_allowed_regression(tmp_path):
    baseline = baseline_file(tmp_path, 1e6)
    with fake_server(tokens=6) as server:
        rc, result = bench(
            tmp_path,
            server,
            rounds=5,
            baseline=str(baseline),
            max_regression_pct=10,
            context={"driver_version": "580.95", "vllm_version": "0.31.1"},
        )
    assert rc == 1
    row = result["verdicts"]["request_throughput"]
    assert row["verdict"] == "slower" and row["fails"] is True
    assert "request_throughput slower by" in result["msg"] and "beyond the allowed 10% regression" in result["msg"]
    assert result["context_changes"] == ["driver 550.54 → 580.95"]
    assert "Since the baseline: driver 550.54 → 580.95" in result["summary_lines"]


def test_a_much_slower_baseline_gives_faster_and_passes(tmp_path):
    baseline = baseline_file(tmp_path, 0.001)
    with fake_server(tokens=6) as server:
        rc, result = bench(tmp_path, server, rounds=5, baseline=str(baseline), max_regression_pct=10)
    assert rc == 0, result
    assert result["verdicts"]["request_throughput"]["verdict"] == "faster"
    assert result["verdicts"]["request_throughput"]["sessions"] == 3
    assert result["baseline_status"]["judged"] is True and result["baseline_status"]["written"] is False


def test_a_baseline_of_one_session_is_not_judged_and_grows_by_this_run(tmp_path):
    baseline = baseline_file(tmp_path, 1e6, sessions=1, context={"vllm_version": "0.32.0"})
    grown = tmp_path / "next.json"
    with fake_server(tokens=6) as server:
        rc, result = bench(tmp_path, server, rounds=3, baseline=str(baseline), max_regression_pct=10,
                           baseline_update_path=str(grown), context={"vllm_version": "0.32.0"})  # fmt: skip
    # Far slower than the baseline's one session, yet not failed: one session cannot say how sessions vary.
    assert rc == 0, result
    assert result["verdicts"] == {} and result["changed"] is True
    status = result["baseline_status"]
    assert (status["sessions"], status["needed"], status["judged"], status["written"]) == (1, 3, False, True)
    assert "holds 1 of the 3 sessions" in status["text"] and "added as session 2" in status["text"]
    assert f"Baseline: {status['text']}" in result["summary_lines"]
    saved = json.loads(grown.read_text())
    assert len(saved["sessions"]) == 1 and saved["sessions"][0]["finished_at"] == "2026-12-08T00:00:00+00:00"
    assert len(saved["rounds"]) == 3 and saved["workload"] == WORKLOAD
    assert grown.stat().st_mode & 0o777 == 0o600


def test_sessions_accumulate_until_the_baseline_judges(tmp_path):
    path = tmp_path / "baseline.json"
    with fake_server(tokens=6) as server:
        rc, first = bench(tmp_path, server, rounds=2, baseline_update_path=str(path))
        assert rc == 0, first
        assert first["baseline_status"]["sessions"] == 0 and first["baseline_status"]["written"] is True
        for have in (1, 2):
            nxt = tmp_path / f"next-{have}.json"
            rc, result = bench(tmp_path, server, rounds=2, baseline=str(path), baseline_update_path=str(nxt))
            assert rc == 0, result
            assert result["verdicts"] == {} and result["baseline_status"]["sessions"] == have
            nxt.replace(path)
        rc, judged = bench(tmp_path, server, rounds=2, baseline=str(path), baseline_update_path=str(tmp_path / "x"))
    assert judged["baseline_status"]["judged"] is True and judged["baseline_status"]["written"] is False
    assert judged["verdicts"]["request_throughput"]["sessions"] == 3
    assert not (tmp_path / "x").exists()
    assert len(json.loads(path.read_text())["sessions"]) == 2


def test_a_changed_host_does_not_join_an_incomplete_baseline(tmp_path):
    baseline = baseline_file(tmp_path, 10.0, sessions=2)
    grown = tmp_path / "next.json"
    with fake_server(tokens=6) as server:
        rc, result = bench(tmp_path, server, rounds=3, baseline=str(baseline), baseline_update_path=str(grown),
                           context={"driver_version": "580.95", "vllm_version": "0.31.1"})  # fmt: skip
    assert rc == 0, result
    status = result["baseline_status"]
    assert status["written"] is False and not grown.exists()
    assert "driver 550.54 → 580.95" in status["text"] and "vllm_verify_record_baseline=true" in status["text"]


def test_a_failed_run_does_not_join_the_baseline(tmp_path):
    grown = tmp_path / "next.json"
    with fake_server(tokens=6) as server:
        rc, result = bench(tmp_path, server, rounds=2, baseline_update_path=str(grown),
                           thresholds={"request_throughput": ">= 1e12"})  # fmt: skip
    assert rc == 1 and result["baseline_status"]["written"] is False and not grown.exists()


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"rounds": 1}, "needs at least 2 rounds on each side"),
        ({"rounds": 5, "confidence": 1.0}, "confidence must be between 0 and 1"),
        ({"rounds": 5, "detect_pct": 0}, "detect_pct must be a positive percentage"),
        ({"rounds": 0}, "rounds must be at least 1"),
        ({"rounds": 5, "judged_metrics": ["p42_ttft_ms"]}, "is not a headline metric"),
        ({"rounds": 5, "baseline_sessions": 1}, "baseline_sessions must be at least 2"),
        ({"rounds": 1, "baseline_update_path": "/tmp/x.json"}, "baseline_update_path needs rounds of 2 or more"),
    ],
)
def test_bad_verdict_settings_are_refused_before_any_load(tmp_path, extra, says):
    baseline = baseline_file(tmp_path, 10.0)
    with fake_server(tokens=6) as server:
        rc, result = bench(tmp_path, server, baseline=str(baseline), **extra)
        sent = server.requests
    assert rc == 1 and says in result["msg"]
    assert sent == 0


def test_a_baseline_written_before_rounds_is_refused_with_how_to_record_one(tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"metrics": {"request_throughput": 10.0, "median_ttft_ms": 5.0}}))
    with fake_server(tokens=6) as server:
        rc, result = bench(tmp_path, server, rounds=5, baseline=str(old))
        sent = server.requests
    assert rc == 1 and sent == 0
    assert "holds no rounds" in result["msg"] and "vllm_verify_record_baseline=true" in result["msg"]


def test_a_baseline_with_broken_sessions_is_refused_before_any_load(tmp_path):
    baseline = baseline_file(tmp_path, 10.0)
    data = json.loads(baseline.read_text())
    data["sessions"][1]["rounds"] = [{"request_throughput": "fast"}]
    baseline.write_text(json.dumps(data))
    with fake_server(tokens=6) as server:
        rc, result = bench(tmp_path, server, rounds=5, baseline=str(baseline))
        sent = server.requests
    assert rc == 1 and sent == 0
    assert "session 2: round 1: request_throughput='fast' is not a number >= 0" in result["msg"]


def test_a_baseline_of_another_workload_is_not_compared(tmp_path):
    baseline = baseline_file(tmp_path, 10.0, workload={**WORKLOAD, "input_len": 128})
    with fake_server(tokens=6) as server:
        rc, result = bench(tmp_path, server, rounds=5, baseline=str(baseline))
        completions = server.requests
    assert rc == 1 and completions == 0
    assert "not comparable" in result["msg"] and "input_len 128 in the baseline, 5 now" in result["msg"]
    assert "verdicts" not in result


def capacity_run(tmp_path, **overrides):
    """A capacity run against a fake server of 6 output tokens a request, with an SLO every request meets."""
    options = {
        "mode": "capacity",
        "goodput": {"ttft_ms": 60000, "e2el_ms": 60000},
        "max_concurrency": 8,
        "capacity_steps": 6,
        "capacity_min_requests": 4,
        "capacity_requests_per_load": 2,
        "input_len": 5,
        "output_len": 6,
        **overrides,
    }
    with fake_server(tokens=6) as server:
        return run_module(tmp_path, url=server.url, **options)


def test_a_capacity_step_counts_impossible_usage_as_failures(tmp_path):
    # The server reports 6 output tokens for requests that allowed 2: no request may count as within the SLO.
    rc, result = capacity_run(tmp_path, max_concurrency=4, capacity_steps=3, capacity_requests_per_load=1, output_len=2)
    assert rc == 0, result
    first = result["steps"][0]
    assert first["failed"] == first["requests"] == 4
    assert first["slo_attainment"] == 0.0
    assert result["capacity"] == 0.0 and result["capacity_load"] == 0


def test_capacity_ramps_to_the_highest_load_that_meets_the_slo(tmp_path):
    rc, result = capacity_run(tmp_path)
    assert rc == 0, result
    assert [s["load"] for s in result["steps"]] == [1, 2, 4, 8]
    assert result["capacity_load"] == 8 and result["capacity"] > 0
    assert all(s["slo_attainment"] == 1.0 for s in result["steps"])
    assert "highest load tried" in result["stopped"]
    assert result["summary_lines"][-1].startswith("Capacity within the SLO: ")


def test_capacity_is_zero_when_even_one_request_misses_the_slo(tmp_path):
    with fake_server(tokens=6) as server:
        rc, result = run_module(
            tmp_path, url=server.url, mode="capacity", goodput={"ttft_ms": 0.0001}, max_concurrency=8,
            capacity_min_requests=4, input_len=5, output_len=6,
        )  # fmt: skip
    assert rc == 0, result
    assert result["capacity"] == 0.0 and result["capacity_load"] == 0
    assert [s["load"] for s in result["steps"]] == [1] and result["steps"][0]["slo_misses"]["ttft_ms"] == 4


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"mode": "capacity"}, "mode=capacity needs goodput"),
        ({"mode": "capacity", "goodput": {"ttfb_ms": 1}}, "unknown SLO metric 'ttfb_ms'"),
        ({"mode": "capacity", "goodput": {"ttft_ms": 1}, "slo_attainment": 0}, "slo_attainment must be above 0"),
        ({"goodput": {"tpot_ms": -1}}, "goodput.tpot_ms=-1 must be a positive number"),
    ],
)
def test_bad_capacity_settings_are_refused_before_any_load(tmp_path, extra, says):
    with fake_server(tokens=6) as server:
        rc, result = bench(tmp_path, server, **extra)
        sent = server.requests
    assert rc == 1 and says in result["msg"] and sent == 0


def test_goodput_in_a_throughput_run_feeds_thresholds(tmp_path):
    with fake_server(tokens=6) as server:
        rc, result = bench(tmp_path, server, goodput={"ttft_ms": 60000}, thresholds={"slo_attainment": ">=1"})
    assert rc == 0, result
    assert result["metrics"]["slo_attainment"] == 1.0 and result["metrics"]["request_goodput"] > 0
