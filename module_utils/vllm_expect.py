"""Does a running vLLM server report the configuration the roles set: plain functions.

Standard library only, Python 3.10+: this file runs on managed hosts (module
vllm_server_info compares there, option `expect`).

What is compared, and where the server's side comes from:

- version: `GET /version`;
- served_model_name: the ids `GET /v1/models` lists;
- gpu_memory_utilization and kv_cache_memory_bytes: the labels of
  `vllm:cache_config_info` in `/metrics` (the live CacheConfig);
- tensor_parallel_size and pipeline_parallel_size: the engine's start-up line
  in the unit's journal ("Initializing a V1 LLM engine (v0.32.0) with config:
  ..., tensor_parallel_size=1, pipeline_parallel_size=1, ..."), the last one,
  which is the running engine's. No endpoint of vLLM 0.32 reports them.

Each mismatch is one line naming the field, what the server reports, what was
expected, and the inventory variable it comes from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

ENGINE_LINE = "Initializing a V1 LLM engine"
LAYOUT_FIELDS = ("tensor_parallel_size", "pipeline_parallel_size")
FIELDS = (
    "version",
    "served_model_name",
    "gpu_memory_utilization",
    "kv_cache_memory_bytes",
    *LAYOUT_FIELDS,
)
# The inventory variable each field comes from, for the message.
SOURCES = {
    "version": "vllm_version",
    "served_model_name": "vllm_served_model_name / vllm_model",
    "gpu_memory_utilization": "vllm_gpu_memory_utilization",
    "kv_cache_memory_bytes": "vllm_cpu_kvcache_space_gb",
    "tensor_parallel_size": "vllm_tensor_parallel_size",
    "pipeline_parallel_size": "vllm_pipeline_parallel_size",
}
_LAYOUT_RE = {name: re.compile(rf"[ ,(]{name}=(\d+)\b") for name in LAYOUT_FIELDS}


def engine_layout(lines: Sequence[str]) -> dict[str, int] | None:
    """TP and PP from the last engine start-up line among lines; None when there is none (or it lacks them)."""
    for line in reversed(lines):
        if ENGINE_LINE not in line:
            continue
        found = {}
        for name, pattern in _LAYOUT_RE.items():
            match = pattern.search(line)
            if match is None:
                return None
            found[name] = int(match.group(1))
        return found
    return None


def wanted(expect: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fields of expect that are set (None means: not checked)."""
    return {name: value for name, value in (expect or {}).items() if name in FIELDS and value is not None}


def needs_journal(expect: Mapping[str, Any] | None) -> bool:
    """Whether checking expect needs the engine's start-up line from the journal."""
    return any(name in wanted(expect) for name in LAYOUT_FIELDS)


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _differs(name: str, reported: Any, expected: Any) -> bool:
    if name == "gpu_memory_utilization":
        number = _number(reported)
        return number is None or not math.isclose(number, float(expected), rel_tol=0, abs_tol=1e-9)
    if name == "kv_cache_memory_bytes":
        number = _number(reported)
        return number is None or int(number) != int(expected)
    return reported != expected


def mismatches(
    expect: Mapping[str, Any] | None, report: Mapping[str, Any], layout: Mapping[str, int] | None
) -> tuple[list[str], list[str]]:
    """(mismatches, notes): one line per field of expect the server does not report as set, and why a field could
    not be checked (no engine start-up line in the journal read)."""
    fields = wanted(expect)
    problems: list[str] = []
    notes: list[str] = []
    if fields and not report.get("ready"):
        return [f"the server is not ready: {report.get('error') or 'no answer'}"], notes
    cache = report.get("cache_config") or {}
    served = [model.get("id") for model in report.get("models") or [] if isinstance(model, Mapping)]
    for name, expected in fields.items():
        source = SOURCES[name]
        if name == "served_model_name":
            if expected not in served:
                problems.append(f"served_model_name: /v1/models lists {served}, not {expected!r} ({source})")
            continue
        if name in LAYOUT_FIELDS:
            if layout is None:
                notes.append(
                    f"{name} not checked: the journal of the unit's running invocation has no engine start-up line "
                    f"({ENGINE_LINE!r}); was it rotated away, or is the journal not persistent?"
                )
                continue
            reported = layout[name]
        elif name == "version":
            reported = report.get("version")
        else:
            reported = cache.get(name)
        if _differs(name, reported, expected):
            shown = "absent" if reported is None else reported
            problems.append(f"{name}: the server reports {shown}, expected {expected} ({source})")
    return problems, notes
