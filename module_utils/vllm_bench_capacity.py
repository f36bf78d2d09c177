# Copyright: contributors to vllm-fleet
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Goodput within an SLO and the capacity of a server, as plain functions.

Standard library only, Python 3.10+: runs on target hosts (module vllm_benchmark).

Goodput follows `vllm bench serve --goodput`: a request counts only when it meets
every limit of the SLO (TTFT, TPOT, E2E latency, each in ms). SLO attainment is
the share of the requests sent that did (a failed request meets none). The
capacity within the SLO is the highest concurrency at which attainment stays at
or above its target; it is found by doubling the concurrency from 1 until
attainment drops below the target (or the limit is reached), then bisecting
between the last load that met it and the first that did not, within a bounded
number of steps. Concurrency, not request rate: a closed loop of N requests in
flight keeps the server at a known load whatever its speed, where an open loop
that is too fast only grows a queue.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

# SLO keys as vllm bench serve names them, and what they mean here.
SLO_ALIASES = {"ttft_ms": "ttft_ms", "tpot_ms": "tpot_ms", "e2e_ms": "e2e_ms", "e2el_ms": "e2e_ms"}


class SloError(ValueError):
    """An SLO that cannot be judged; the message names the key and what is valid."""


def normalized_slo(slo: Mapping[str, Any]) -> dict[str, float]:
    """{ttft_ms, tpot_ms, e2e_ms} limits from vLLM's or our names; SloError on an unknown key or a bad limit."""
    limits: dict[str, float] = {}
    for key, value in slo.items():
        if key not in SLO_ALIASES:
            raise SloError(f"goodput: unknown SLO metric {key!r}; valid: {', '.join(SLO_ALIASES)}")
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise SloError(f"goodput.{key}={value!r} must be a positive number of milliseconds")
        try:
            number = float(value)
        except ValueError as exc:
            raise SloError(f"goodput.{key}={value!r} must be a positive number of milliseconds") from exc
        if not math.isfinite(number) or number <= 0:
            raise SloError(f"goodput.{key}={value!r} must be a positive number of milliseconds")
        limits[SLO_ALIASES[key]] = number
    return limits


def request_values(result: Any) -> dict[str, float] | None:
    """TTFT, TPOT and E2E (ms) of one completed request, as vllm bench serve computes them; None when it failed."""
    if not getattr(result, "ok", False) or result.ttft is None or result.latency is None:
        return None
    tokens = result.output_tokens or 0
    tpot = (result.latency - result.ttft) / (tokens - 1) if tokens > 1 else 0.0
    return {"ttft_ms": result.ttft * 1000.0, "tpot_ms": tpot * 1000.0, "e2e_ms": result.latency * 1000.0}


def goodput(results: Iterable[Any], duration_s: float, limits: Mapping[str, float]) -> dict[str, Any]:
    """request_goodput (req/s), slo_attainment (share of all requests sent) and each limit's misses."""
    results = list(results)
    misses = {key: 0 for key in limits}
    good = 0
    for result in results:
        values = request_values(result)
        if values is None:
            for key in misses:
                misses[key] += 1
            continue
        met = True
        for key, limit in limits.items():
            if values[key] > limit:
                misses[key] += 1
                met = False
        good += met
    return {
        "good_requests": good,
        "request_goodput": good / duration_s if duration_s > 0 else 0.0,
        "slo_attainment": good / len(results) if results else 0.0,
        "slo_misses": misses,
    }


def step_requests(load: int, per_load: int, minimum: int) -> int:
    """Requests a step sends: enough for the load to be steady (per_load in flight, each several times)."""
    return max(minimum, per_load * load)


def find_capacity(
    measure: Callable[[int], dict[str, Any]],
    target: float,
    max_load: int,
    max_steps: int,
    time_left: Callable[[], float],
) -> dict[str, Any]:
    """Ramp the load (doubling from 1), then bisect, to the highest load whose attainment meets target.

    measure(load) runs one step and returns at least slo_attainment and request_goodput. Returns
    capacity_load, capacity (goodput at that load, req/s), steps (in the order measured) and why the search
    stopped.
    """
    steps: list[dict[str, Any]] = []
    good: dict[str, Any] | None = None
    bad_load: int | None = None

    def run(load: int) -> bool:
        step = {"load": load, **measure(load)}
        steps.append(step)
        return step["slo_attainment"] >= target

    def out_of_budget(phase: str) -> str:
        """Why no further step may run, or "" while steps and time are left."""
        if len(steps) >= max_steps:
            return f"the step limit ({max_steps}) was reached while {phase}"
        if time_left() <= 0:
            return f"total_timeout reached while {phase}"
        return ""

    load, why = 1, ""
    while True:
        why = out_of_budget("ramping")
        if why:
            break
        if run(load):
            good = steps[-1]
            if load >= max_load:
                why = f"the SLO held up to the highest load tried (max concurrency {max_load})"
                break
            load = min(load * 2, max_load)
        else:
            bad_load = load
            break
    if bad_load is not None and good is None:
        why = "the SLO was missed at the lowest load, 1 request in flight"
    elif bad_load is not None:
        low, high = good["load"], bad_load
        why = "bisected to within one request in flight"
        while high - low > 1:
            stop = out_of_budget("bisecting")
            if stop:
                why = stop
                break
            middle = (low + high) // 2
            if run(middle):
                good, low = steps[-1], middle
            else:
                high = middle
    return {
        "capacity_load": good["load"] if good else 0,
        "capacity": good["request_goodput"] if good else 0.0,
        "capacity_attainment": good["slo_attainment"] if good else None,
        "steps": steps,
        "stopped": why,
    }
