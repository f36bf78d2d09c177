# Copyright: contributors to vllm-fleet
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Statistics of a benchmark run, with the definitions of `vllm bench serve`.

Standard library only: this file runs on target hosts.

Definitions follow vLLM 0.32.0 `vllm/benchmarks/serve.py` (`calculate_metrics`)
and `vllm/benchmarks/lib/endpoint_request_func.py` (read from the installed
package, not copied):

- TTFT: time from sending the request to the first streamed event that
  carries a non-empty `choices` list.
- ITL: every gap between two consecutive such events (all requests pooled).
- E2E latency: time from sending the request to the LAST such event (the
  trailing usage-only event and `[DONE]` are not counted).
- TPOT: (E2E - TTFT) / (output_tokens - 1), only for requests with more than
  one output token; output tokens come from the server's `usage`.
- Percentiles: numpy's default linear interpolation; std is the population
  standard deviation (numpy's `np.std`, ddof=0).
- Throughputs divide by the wall time of the measured phase (warm-up excluded).

The result file also holds the per-request latencies (`latency_samples`), for
the fleet report's distributions: sorted, in ms, at most SAMPLE_CAP values per
metric (beyond that, evenly spaced order statistics, smallest and largest kept).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

HEADLINE_PERCENTILES = (90, 99)
LATENCY_EXTRA_PERCENTILES = (10, 25, 75)
LATENCY_METRIC_GROUPS = ("ttft", "tpot", "itl", "e2e")
# Most values per metric in a result file's samples: ITL has one per streamed token, so a run of 1,000
# requests of 128 tokens would write 127,000 of them.
SAMPLE_CAP = 5000


def percentile(values: Sequence[float], pct: float) -> float:
    """Return the pct-th percentile of values with linear interpolation (numpy's default)."""
    if not values:
        return 0.0
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile must be within [0, 100], got {pct}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def mean(values: Sequence[float]) -> float:
    """Return the arithmetic mean of values, 0.0 for none (as vLLM reports)."""
    return math.fsum(values) / len(values) if values else 0.0


def median(values: Sequence[float]) -> float:
    """Return the median of values."""
    return percentile(values, 50)


def stdev(values: Sequence[float]) -> float:
    """Return the population standard deviation of values (numpy's np.std)."""
    if not values:
        return 0.0
    avg = mean(values)
    return math.sqrt(math.fsum((v - avg) ** 2 for v in values) / len(values))


def distribution_ms(name: str, seconds: Sequence[float], extra_percentiles: Iterable[int] = ()) -> dict[str, float]:
    """Return mean/median/std/min/max/pNN of a list of seconds as `<stat>_<name>_ms` keys in milliseconds."""
    ordered = sorted(seconds)
    result = {
        f"mean_{name}_ms": mean(ordered) * 1000.0,
        f"median_{name}_ms": percentile(ordered, 50) * 1000.0,
        f"std_{name}_ms": stdev(ordered) * 1000.0,
        f"min_{name}_ms": (ordered[0] if ordered else 0.0) * 1000.0,
        f"max_{name}_ms": (ordered[-1] if ordered else 0.0) * 1000.0,
    }
    for pct in (*sorted(extra_percentiles), *HEADLINE_PERCENTILES):
        result[f"p{pct}_{name}_ms"] = percentile(ordered, pct) * 1000.0
    return result


def tpot_seconds(e2e: float, ttft: float, output_tokens: int) -> float | None:
    """Return the time per output token after the first, or None when there is only one token."""
    if output_tokens is None or output_tokens <= 1:
        return None
    return (e2e - ttft) / (output_tokens - 1)


def benchmark_metrics(results: Sequence[Any], duration_s: float, mode: str = "throughput") -> dict[str, float]:
    """Return the metrics dict of a run from its per-request results.

    Each result needs the attributes `ok`, `ttft`, `latency`, `itl`, `output_tokens`, `prompt_tokens`.
    """
    ok = [r for r in results if r.ok]
    ttfts = [r.ttft for r in ok]
    e2es = [r.latency for r in ok]
    itls = [gap for r in ok for gap in r.itl]
    tpots = [t for t in (tpot_seconds(r.latency, r.ttft, r.output_tokens) for r in ok) if t is not None]
    total_output = sum(r.output_tokens or 0 for r in ok)
    total_input = sum(r.prompt_tokens or 0 for r in ok)
    duration = duration_s if duration_s > 0 else float("nan")
    metrics: dict[str, float] = {
        "completed": len(ok),
        "failed": len(results) - len(ok),
        "duration_s": duration_s,
        "total_input_tokens": total_input,
        "total_output_tokens": total_output,
        "request_throughput": _finite(len(ok) / duration),
        "output_throughput": _finite(total_output / duration),
        "total_token_throughput": _finite((total_input + total_output) / duration),
    }
    extra = LATENCY_EXTRA_PERCENTILES if mode == "latency" else ()
    metrics.update(distribution_ms("ttft", ttfts))
    metrics.update(distribution_ms("tpot", tpots))
    metrics.update(distribution_ms("itl", itls))
    metrics.update(distribution_ms("e2e", e2es, extra))
    return metrics


def _finite(value: float) -> float:
    """Return value, or 0.0 when it is NaN or infinite (a zero-length run)."""
    return value if math.isfinite(value) else 0.0


def thinned(values: Sequence[float], cap: int = SAMPLE_CAP) -> list[float]:
    """Return values sorted; beyond cap of them, cap evenly spaced order statistics (the smallest and largest kept).

    Every kept value is a measured one, and the kept ones have the distribution of the whole: the k-th of cap
    values is the whole's quantile (k / (cap - 1)).
    """
    ordered = sorted(values)
    if len(ordered) <= cap:
        return ordered
    if cap < 2:
        raise ValueError(f"cap must be at least 2, got {cap}")
    step = (len(ordered) - 1) / (cap - 1)
    return [ordered[round(index * step)] for index in range(cap)]


def latency_samples(results: Sequence[Any], cap: int = SAMPLE_CAP) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Return (samples, counts) of the completed requests' latencies in ms, for the result file.

    samples has `ttft_ms`, `tpot_ms` and `e2e_ms` (one value per completed request; TPOT only for requests of more
    than one output token) and `itl_ms` (every gap, all requests pooled), each as `thinned` returns it, rounded to
    the microsecond; counts has how many values each had before thinning.
    """
    ok = [r for r in results if r.ok]
    seconds = {
        "ttft_ms": [r.ttft for r in ok],
        "tpot_ms": [t for t in (tpot_seconds(r.latency, r.ttft, r.output_tokens) for r in ok) if t is not None],
        "itl_ms": [gap for r in ok for gap in r.itl],
        "e2e_ms": [r.latency for r in ok],
    }
    samples = {name: [round(v * 1000.0, 3) for v in thinned(values, cap)] for name, values in seconds.items()}
    return samples, {name: len(values) for name, values in seconds.items()}
