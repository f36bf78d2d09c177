"""The tuning search: its space, SLO and budget checks, the coordinate descent, and the Optuna study module."""

from __future__ import annotations

import pytest
from ansible.module_utils.vllm_tune import (
    best_trial,
    budget_errors,
    class_errors,
    next_coordinate,
    next_grid,
    normalized_space,
    role_variables,
    slo_errors,
    snap,
    space_errors,
)
from moduletest import run_module

STUDY = "library/vllm_tune_study.py"
SPACE = {"max_num_seqs": [2, 4, 8, 16, 32, 64], "max_num_batched_tokens": [1024, 2048, 4096]}


def capacity_of(settings: dict) -> float:
    """A node whose capacity has one best point (32, 2048) and falls off gently around it."""
    seqs = {2: 2, 4: 4, 8: 7, 16: 11, 32: 14, 64: 12}[settings["max_num_seqs"]]
    tokens = {1024: 0.8, 2048: 1.0, 4096: 0.9}[settings["max_num_batched_tokens"]]
    return seqs * tokens


def search(next_step, limit: int = 100) -> list[dict]:
    history: list[dict] = []
    while len(history) < limit:
        settings = next_step(history)
        if settings is None:
            break
        history.append({"index": len(history), "settings": settings, "status": "ok", "capacity": capacity_of(settings)})
    return history


def test_coordinate_descent_reaches_the_grid_best_within_half_its_trials():
    start = {"max_num_seqs": 2, "max_num_batched_tokens": 1024}
    grid = search(lambda h: next_grid(SPACE, h))
    assert len(grid) == 18
    ours = search(lambda h: next_coordinate(SPACE, start, h), limit=len(grid) // 2)
    assert best_trial(ours)["capacity"] == best_trial(grid)["capacity"] == 14.0
    assert best_trial(ours)["settings"] == {"max_num_seqs": 32, "max_num_batched_tokens": 2048}
    # Left alone, it stops by itself once no neighbour of the best is better.
    converged = search(lambda h: next_coordinate(SPACE, start, h))
    assert len(converged) < len(grid) and best_trial(converged) == best_trial(ours)


def test_a_failed_trial_is_never_the_best_and_the_search_goes_on():
    history = [
        {"index": 0, "settings": {"max_num_seqs": 2}, "status": "ok", "capacity": 3.0},
        {"index": 1, "settings": {"max_num_seqs": 4}, "status": "failed", "capacity": None},
    ]
    assert best_trial(history)["settings"] == {"max_num_seqs": 2}
    assert next_coordinate({"max_num_seqs": [2, 4, 8]}, {"max_num_seqs": 2}, history) is None


def test_the_start_off_the_grid_is_tried_as_it_is_then_snapped():
    space = {"max_num_seqs": [8, 16, 32]}
    start = {"max_num_seqs": 0}  # vLLM's default
    assert next_coordinate(space, start, []) == start
    history = [{"index": 0, "settings": start, "status": "ok", "capacity": 5.0}]
    assert next_coordinate(space, start, history) == {"max_num_seqs": 32}
    assert snap(space, {"max_num_seqs": 10}) == {"max_num_seqs": 8}


def test_space_errors_name_the_knob_and_what_is_valid():
    errors = space_errors(
        {"max_num_seq": [1], "max_num_batched_tokens": [], "cpu_kvcache_space_gb": [1, "x", 1e9], "layout": ["2x1"]},
        "cpu",
    )
    assert any("'max_num_seq' is not a knob; did you mean max_num_seqs?" in e for e in errors)
    assert any("max_num_batched_tokens=[] is invalid: must be a non-empty list" in e for e in errors)
    assert any("cpu_kvcache_space_gb: 'x' is not a whole number" in e for e in errors)
    assert any("cpu_kvcache_space_gb: 1000000000.0 is outside" in e for e in errors)
    assert any("layout does not apply to the cpu build" in e for e in errors)
    assert space_errors({"max_num_seqs": [4, 4]}, "cpu") == ["vllm_tune_space.max_num_seqs: 4 is listed twice"]
    assert space_errors([], "cpu")[0].startswith("vllm_tune_space=[] is invalid")
    assert space_errors(SPACE, "cpu") == []


def test_slo_and_budget_errors():
    assert slo_errors({"ttft_ms": 500, "e2el_ms": 9000}, 0.9) == []
    errors = slo_errors({"ttfb_ms": 500, "tpot_ms": -1}, 1.5)
    assert any("'ttfb_ms' is not an SLO metric; did you mean ttft_ms?" in e for e in errors)
    assert any("tpot_ms=-1 is invalid" in e for e in errors)
    assert any("vllm_tune_slo_attainment=1.5" in e for e in errors)
    assert budget_errors(0, 10)[0].startswith("vllm_tune_max_trials=0 is invalid")
    assert budget_errors(3, 0)[0].startswith("vllm_tune_time_budget=0 is invalid")
    assert budget_errors(3, -5)[0].startswith("vllm_tune_time_budget=-5 is invalid")
    assert budget_errors(2.5, 10)[0].startswith("vllm_tune_max_trials=2.5")


def test_a_group_of_two_hardware_classes_is_refused():
    a = {"gpu_model": "NVIDIA H100", "gpu_count": 8, "driver_version": "550.54", "vllm_version": "0.32.0"}
    b = {**a, "gpu_model": "NVIDIA A100"}
    assert class_errors("gpu", {"n1": a, "n2": dict(a)}) == []
    errors = class_errors("gpu", {"n1": a, "n2": b})
    assert len(errors) == 1 and "n2 is of another hardware class than n1" in errors[0] and "A100" in errors[0]


def test_settings_become_role_variables():
    assert role_variables({"max_num_seqs": 8, "layout": "2x4"}) == {
        "vllm_max_num_seqs": 8,
        "vllm_tensor_parallel_size": 2,
        "vllm_pipeline_parallel_size": 4,
    }
    assert normalized_space({"max_num_seqs": ["16", 4]}) == {"max_num_seqs": [4, 16]}


def study(tmp_path, **args) -> tuple[int, dict]:
    return run_module(STUDY, {"path": str(tmp_path / "study.db"), "space": SPACE, **args})


def test_the_study_runs_a_search_and_survives_a_stop(tmp_path):
    start = {"max_num_seqs": 2, "max_num_batched_tokens": 1024}
    asked = []
    for _ in range(4):
        rc, trial = study(tmp_path, action="ask", start=start, max_trials=20)
        assert rc == 0 and trial["done"] is False, trial
        asked.append(trial["settings"])
        status = "failed" if trial["settings"]["max_num_seqs"] == 4 else "ok"
        capacity = None if status == "failed" else capacity_of(trial["settings"])
        rc, told = study(
            tmp_path, action="tell", number=trial["number"], status=status, capacity=capacity, reason="boom"
        )
        assert rc == 0, told
    assert asked[0] == start
    # A tune stopped between an ask and its tell: the next run asks that trial again.
    rc, left = study(tmp_path, action="ask", start=start, max_trials=20)
    rc, again = study(tmp_path, action="ask", start=start, max_trials=20)
    assert again["settings"] == left["settings"]
    rc, report = study(tmp_path, action="report")
    assert rc == 0 and len(report["trials"]) == 4
    failed = [t for t in report["trials"] if t["status"] == "failed"]
    assert failed and failed[0]["reason"] == "boom" and failed[0]["capacity"] is None
    assert report["best"]["capacity"] == max(t["capacity"] or 0 for t in report["trials"])


def test_the_study_stops_at_the_budget(tmp_path):
    start = {"max_num_seqs": 2, "max_num_batched_tokens": 1024}
    rc, trial = study(tmp_path, action="ask", start=start, max_trials=1)
    study(tmp_path, action="tell", number=trial["number"], status="ok", capacity=1.0)
    rc, done = study(tmp_path, action="ask", start=start, max_trials=1)
    assert rc == 0 and done["done"] is True and "vllm_tune_max_trials=1" in done["why"]
    rc, late = run_module(
        STUDY, {"path": str(tmp_path / "other.db"), "space": SPACE, "action": "ask", "start": start, "deadline": 1.0}
    )
    assert late["done"] is True and "time_budget" in late["why"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ({"action": "tell", "number": 0}, "needs number and status"),
        ({"action": "tell", "number": 99, "status": "ok", "capacity": 1.0}, "is not a trial of the study"),
        ({"action": "tell", "number": 0, "status": "ok"}, "status=ok needs capacity"),
    ],
)
def test_bad_tells_are_refused(tmp_path, args, says):
    rc, result = study(tmp_path, **args)
    assert rc == 1 and says in result["msg"]
