"""vllm_benchmark writes the measured requests' latencies into its result file, not into the task's result."""

from __future__ import annotations

import json

from test_vllm_bench_sockets import fake_server, run_module


def test_the_result_file_holds_the_samples_and_the_task_result_does_not(tmp_path):
    result_path = tmp_path / "result.json"
    with fake_server(tokens=6) as server:
        rc, result = run_module(
            tmp_path,
            url=server.url,
            num_prompts=6,
            max_concurrency=3,
            input_len=5,
            output_len=6,
            rounds=2,
            warmup_requests=1,
            result_path=str(result_path),
        )
    assert rc == 0, result
    assert "samples" not in result and "sample_counts" not in result
    saved = json.loads(result_path.read_text())
    samples, counts = saved["samples"], saved["sample_counts"]
    assert counts == {"ttft_ms": 12, "tpot_ms": 12, "itl_ms": 60, "e2e_ms": 12}  # 2 rounds of 6, no warm-up
    for name, values in samples.items():
        assert len(values) == counts[name] and values == sorted(values)
    metrics = saved["metrics"]
    assert samples["ttft_ms"][0] == round(metrics["min_ttft_ms"], 3)
    assert samples["e2e_ms"][-1] == round(metrics["max_e2e_ms"], 3)
