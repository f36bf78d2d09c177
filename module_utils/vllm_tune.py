"""Closed-loop tuning of a vLLM node, as plain functions: the search space, the SLO, the search, the result.

Standard library only, Python 3.10+ (modules vllm_tune_plan and vllm_tune_study, on
the controller). A tune measures the capacity within an SLO (the highest load whose
requests meet every limit often enough, vllm_benchmark mode=capacity) of the starting
settings and of candidates, and keeps the best. The search is a coordinate descent
over the space's ordered values, started from the current settings: it tries the
neighbours (one step up or down in one knob) of the best settings so far, moves when
one is better, and stops when none is, or at the budget. On the space of knobs that
each have a best value and a gentle slope (batch sizes, cache sizes) it finds the
grid's best in a fraction of the grid's trials (expected, not yet measured here).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from ansible.module_utils.vllm_tuning import decimal_number

# knob -> (the role variable it sets, type, lowest, highest, variants)
KNOBS: dict[str, tuple[str, type, float, float, tuple[str, ...]]] = {
    "max_num_seqs": ("vllm_max_num_seqs", int, 1, 2**20, ("cpu", "cuda")),
    "max_num_batched_tokens": ("vllm_max_num_batched_tokens", int, 16, 2**24, ("cpu", "cuda")),
    "cpu_kvcache_space_gb": ("vllm_cpu_kvcache_space_gb", int, 1, 65536, ("cpu",)),
    "gpu_memory_utilization": ("vllm_gpu_memory_utilization", float, 0.05, 1.0, ("cuda",)),
    "swap_space_gb": ("vllm_swap_space_gb", float, 0, 65536, ("cuda",)),
    "layout": ("vllm_tensor_parallel_size", str, 0, 0, ("cuda",)),
}
DEFAULT_SPACES: dict[str, dict[str, list[Any]]] = {
    "cpu": {
        "max_num_seqs": [2, 4, 8, 16, 32, 64],
        "max_num_batched_tokens": [1024, 2048, 4096, 8192],
    },
    "cuda": {
        "max_num_seqs": [64, 128, 256, 512],
        "max_num_batched_tokens": [2048, 4096, 8192, 16384],
        "gpu_memory_utilization": [0.85, 0.9, 0.92, 0.95],
    },
}
# SLO limits as vllm bench serve --goodput names them, and our names for them.
SLO_METRICS = {"ttft_ms": "ttft_ms", "tpot_ms": "tpot_ms", "e2e_ms": "e2e_ms", "e2el_ms": "e2e_ms"}


def typed(knob: str, value: Any) -> Any:
    """The value as the knob's type; ValueError when it is not one."""
    _, kind, low, high, _ = KNOBS[knob]
    if kind is str:
        text = str(value)
        parts = text.lower().split("x")
        if len(parts) != 2 or not all(p.isdigit() and int(p) >= 1 for p in parts):
            raise ValueError(f"{value!r} is not a layout TPxPP such as 2x1")
        return f"{int(parts[0])}x{int(parts[1])}"
    number = decimal_number(value)
    if number is None or (kind is int and not float(number).is_integer()):
        raise ValueError(f"{value!r} is not {'a whole number' if kind is int else 'a number'}")
    if not low <= number <= high:
        raise ValueError(f"{value!r} is outside {low:g}..{high:g}")
    return int(number) if kind is int else number


def space_errors(space: Any, variant: str) -> list[str]:
    """One line per problem in vllm_tune_space: unknown knobs (with the closest one), empty or bad value lists."""
    if not isinstance(space, Mapping) or not space:
        return [f"vllm_tune_space={space!r} is invalid: must be a mapping of knob to a list of values, e.g. "
                "{max_num_seqs: [8, 16, 32]}"]  # fmt: skip
    errors = []
    for knob, values in space.items():
        if knob not in KNOBS:
            close = difflib.get_close_matches(str(knob), list(KNOBS), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            errors.append(f"vllm_tune_space: {knob!r} is not a knob; {hint}knobs: {', '.join(KNOBS)}")
            continue
        if variant not in KNOBS[knob][4]:
            errors.append(
                f"vllm_tune_space: {knob} does not apply to the {variant} build (only {', '.join(KNOBS[knob][4])})"
            )
            continue
        if not isinstance(values, list) or not values:
            errors.append(f"vllm_tune_space.{knob}={values!r} is invalid: must be a non-empty list of values")
            continue
        seen = []
        for value in values:
            try:
                value = typed(knob, value)
            except ValueError as exc:
                errors.append(f"vllm_tune_space.{knob}: {exc}")
                continue
            if value in seen:
                errors.append(f"vllm_tune_space.{knob}: {value!r} is listed twice")
            seen.append(value)
    return errors


def normalized_space(space: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
    """The space with typed values, each knob's values in ascending order (layouts as given)."""
    result = {}
    for knob, values in space.items():
        typed_values = [typed(knob, v) for v in values]
        result[knob] = typed_values if KNOBS[knob][1] is str else sorted(typed_values)
    return result


def slo_errors(slo: Any, attainment: Any) -> list[str]:
    """One line per problem in vllm_tune_slo and vllm_tune_slo_attainment."""
    errors = []
    if not isinstance(slo, Mapping) or not slo:
        errors.append(f"vllm_tune_slo={slo!r} is invalid: must be limits in ms, e.g. {{ttft_ms: 500, tpot_ms: 50}}")
    else:
        for key, value in slo.items():
            if key not in SLO_METRICS:
                close = difflib.get_close_matches(str(key), list(SLO_METRICS), n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                errors.append(f"vllm_tune_slo: {key!r} is not an SLO metric; {hint}valid: {', '.join(SLO_METRICS)}")
            elif (decimal_number(value) or 0) <= 0:
                errors.append(f"vllm_tune_slo.{key}={value!r} is invalid: must be a positive number of milliseconds")
    share = decimal_number(attainment)
    if share is None or not 0 < share <= 1:
        errors.append(
            f"vllm_tune_slo_attainment={attainment!r} is invalid: must be a fraction above 0, at most 1 (e.g. 0.9)"
        )
    return errors


def budget_errors(max_trials: Any, time_budget: Any) -> list[str]:
    errors = []
    trials = decimal_number(max_trials)
    if trials is None or trials < 1 or not float(trials).is_integer():
        errors.append(f"vllm_tune_max_trials={max_trials!r} is invalid: must be a whole number of trials, at least 1")
    seconds = decimal_number(time_budget)
    if seconds is None or seconds <= 0:
        errors.append(f"vllm_tune_time_budget={time_budget!r} is invalid: must be a positive number of seconds")
    return errors


def hardware_class(facts: Mapping[str, Any]) -> dict[str, Any]:
    """What makes hosts peers for a tune: GPU model and count (or the CPU), driver, vLLM version and variant."""
    return {
        key: facts.get(key)
        for key in ("gpu_model", "gpu_count", "driver_version", "cpu_model", "vllm_version", "vllm_variant")
    }


def class_errors(group: str, classes: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A group file must fit every host of the group: refuse hosts of different hardware classes, naming them."""
    if len(classes) < 2:
        return []
    first_host, first = next(iter(classes.items()))
    errors = []
    for host, cls in classes.items():
        differs = [
            f"{k} {first.get(k)!r} on {first_host}, {cls.get(k)!r} here" for k in first if cls.get(k) != first.get(k)
        ]
        if differs:
            errors.append(f"vllm_tune_group={group!r}: {host} is of another hardware class than {first_host} "
                          f"({'; '.join(differs)}): tune one host per class and write a file per class")  # fmt: skip
    return errors


def key_of(settings: Mapping[str, Any]) -> tuple:
    return tuple(sorted(settings.items()))


def neighbours(space: Mapping[str, list[Any]], point: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The settings one step away from point in one knob, up first (batches and caches help more than hurt)."""
    result = []
    for knob, values in space.items():
        if point.get(knob) not in values:
            continue
        index = values.index(point[knob])
        for step in (1, -1):
            if 0 <= index + step < len(values):
                result.append({**point, knob: values[index + step]})
    return result


def snap(space: Mapping[str, list[Any]], settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings put on the space's grid: each knob at its value nearest to the given one.

    0 means vLLM's own default, which depends on the platform and sits at the top of the usual values
    (batch sizes of 128 to 256 and more): it maps to the knob's highest value.
    """
    point = {}
    for knob, values in space.items():
        current = settings.get(knob)
        if current in values:
            point[knob] = current
        elif KNOBS[knob][1] is str:
            point[knob] = values[0]
        else:
            number = decimal_number(current)
            if number is None or number == 0:
                point[knob] = values[-1]
            else:
                point[knob] = min(values, key=lambda v: (abs(v - number), v))
    return point


def next_coordinate(
    space: Mapping[str, list[Any]], start: Mapping[str, Any], history: list[Mapping[str, Any]]
) -> dict[str, Any] | None:
    """The next settings a coordinate descent tries, given the trials so far ({settings, capacity}); None when done.

    The start (the settings in force) first, as they are; then the untried neighbours of the best settings
    so far, put on the grid; when every neighbour of the best has been tried and none was better, the
    search has converged.
    """
    tried = {key_of(t["settings"]) for t in history}
    if key_of(start) not in tried:
        return dict(start)
    best = best_trial(history)
    centre = snap(space, best["settings"] if best else start)
    if key_of(centre) not in tried:
        return centre
    for candidate in neighbours(space, centre):
        if key_of(candidate) not in tried:
            return candidate
    return None


def next_grid(space: Mapping[str, list[Any]], history: list[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The next untried point of the full grid (what an exhaustive sweep, like vLLM's auto_tune, does)."""
    tried = {key_of(t["settings"]) for t in history}
    points = [{}]
    for knob, values in space.items():
        points = [{**p, knob: v} for p in points for v in values]
    for point in points:
        if key_of(point) not in tried:
            return point
    return None


def best_trial(history: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The trial with the highest capacity among those that served; ties go to the earliest."""
    served = [t for t in history if t.get("status") == "ok" and t.get("capacity") is not None]
    return max(served, key=lambda t: (t["capacity"], -t.get("index", 0))) if served else None


def role_variables(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The role variables that put settings in force (a layout sets both parallel sizes)."""
    result = {}
    for knob, value in settings.items():
        if knob == "layout":
            tp, pp = (int(x) for x in str(value).split("x"))
            result["vllm_tensor_parallel_size"] = tp
            result["vllm_pipeline_parallel_size"] = pp
        else:
            result[KNOBS[knob][0]] = value
    return result


def settings_text(settings: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in settings.items())
