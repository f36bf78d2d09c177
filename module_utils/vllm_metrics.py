"""Reading a vLLM server's Prometheus /metrics text, as plain functions.

Standard library only: this file runs on managed hosts under their system python3.
Covers the text exposition format as vLLM (prometheus_client) writes it: comment
and HELP/TYPE lines, `name{label="value",...} value [timestamp]`, label values
with escaped quotes, backslashes and newlines, and commas inside values.

Nothing in the text is trusted: a line that is not a sample (a truncated one,
an HTML page, a name that is not a metric name) raises ValueError naming its
line number, never another exception, and the figures vllm_server_info
reports must be what they measure (finite, not negative) or ValueError says
which is not. Work is linear in the text's length, whatever its shape.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

METRIC_NAME = re.compile(r"\A[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME = re.compile(r"\A[a-zA-Z_][a-zA-Z0-9_]*\Z")
MAX_SHOWN = 120  # characters of a bad line quoted in a message


class Sample(NamedTuple):
    """One line of exposition text: metric name, its labels, its value."""

    name: str
    labels: dict[str, str]
    value: float


LABEL_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


def shown(text: str) -> str:
    """A line for a message: quoted, and cut when long."""
    return repr(text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "...")


def label_value_end(text: str, start: int) -> tuple[str, int]:
    """(unescaped value, index after the closing quote) of a quoted label value starting after its opening quote.

    Runs of plain characters are copied whole (str.find), so a long value costs one pass, not one step per character.
    """
    parts = []
    i = start
    while True:
        quote = text.find('"', i)
        if quote < 0:
            raise ValueError(f"unterminated label value in {shown(text)}")
        escape = text.find("\\", i, quote)
        if escape < 0:
            parts.append(text[i:quote])
            return "".join(parts), quote + 1
        parts.append(text[i:escape])
        if escape + 1 >= len(text):
            raise ValueError(f"unterminated label value in {shown(text)}")
        parts.append(LABEL_ESCAPES.get(text[escape + 1], "\\" + text[escape + 1]))
        i = escape + 2


def labels_and_rest(text: str) -> tuple[dict[str, str], str]:
    """(labels, remaining text) of `{a="1",b="x,y"} 2.0`, text starting at '{'."""
    labels: dict[str, str] = {}
    i = 1
    while True:
        while i < len(text) and text[i] in " ,":
            i += 1
        if i >= len(text):
            raise ValueError(f"unterminated label set in {text!r}")
        if text[i] == "}":
            return labels, text[i + 1 :]
        eq = text.find("=", i)
        if eq < 0:
            raise ValueError(f"label without a value in {shown(text)}")
        key = text[i:eq].strip()
        if not LABEL_NAME.match(key):
            raise ValueError(f"{shown(key)} is not a label name, in {shown(text)}")
        if text[eq + 1 : eq + 2] != '"':
            raise ValueError(f"label {key!r} value is not quoted in {shown(text)}")
        labels[key], i = label_value_end(text, eq + 2)


def sample_from_line(line: str) -> Sample | None:
    """The sample of one exposition line; None for blank and comment lines."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    brace = line.find("{")
    space = line.find(" ")
    if brace != -1 and (space == -1 or brace < space):
        name = line[:brace]
        labels, rest = labels_and_rest(line[brace:])
    else:
        name, _, rest = line.partition(" ")
        labels = {}
    if not METRIC_NAME.match(name):
        raise ValueError(f"not a metrics line (no metric name): {shown(line)}")
    fields = rest.split()
    if not fields:
        raise ValueError(f"no value in metrics line {shown(line)}")
    if len(fields) > 2:
        raise ValueError(f"more than a value and a timestamp in metrics line {shown(line)}")
    try:
        return Sample(name, labels, float(fields[0]))
    except ValueError:
        raise ValueError(f"value {shown(fields[0])} is not a number in metrics line {shown(line)}") from None


def samples_from_text(text: str) -> list[Sample]:
    """Every sample of a /metrics page; raise ValueError naming the first line that is not one."""
    samples = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            sample = sample_from_line(line)
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
        if sample is not None:
            samples.append(sample)
    return samples


def samples_named(samples: list[Sample], name: str) -> list[Sample]:
    """The samples of one metric name (every label set)."""
    return [sample for sample in samples if sample.name == name]


def sum_named(samples: list[Sample], name: str) -> float | None:
    """The sum of a metric over all its label sets (engines, models); None if absent."""
    matching = samples_named(samples, name)
    return sum(sample.value for sample in matching) if matching else None


def measured(samples: list[Sample], name: str, whole: bool = False) -> float | None:
    """sum_named for a figure that measures something (a count, seconds): finite and >= 0, whole when a count.

    Raise ValueError naming the metric when it cannot be one; None when absent.
    """
    value = sum_named(samples, name)
    if value is not None and not (math.isfinite(value) and value >= 0 and (not whole or value.is_integer())):
        kind = "a count (a whole number, at least 0)" if whole else "a measure (finite, at least 0)"
        raise ValueError(f"{name} is {value!r}, which cannot be {kind}")
    return value


def histogram_summary(samples: list[Sample], name: str) -> dict | None:
    """{sum, count, mean_ms} of a seconds histogram over all label sets; None if absent.

    Raise ValueError when its sum or count cannot be (negative, not finite, a count that is not whole).
    """
    total = measured(samples, f"{name}_sum")
    count = measured(samples, f"{name}_count", whole=True)
    if total is None or count is None:
        return None
    return {"sum": total, "count": number_or_none(count), "mean_ms": (total / count * 1000.0) if count else None}


def cache_config_labels(samples: list[Sample]) -> dict[str, str] | None:
    """The labels of `vllm:cache_config_info` (the live CacheConfig, values as exposed); None before engine start."""
    matching = samples_named(samples, "vllm:cache_config_info")
    return dict(matching[0].labels) if matching else None


def number_or_none(value: float | None) -> int | float | None:
    """A gauge as an int when whole (request counts), else as is; None when absent or not finite."""
    if value is None or not math.isfinite(value):
        return None
    return int(value) if float(value).is_integer() else value


def server_metrics(samples: list[Sample]) -> dict:
    """The server-side figures vllm_server_info reports; raise ValueError naming one that cannot be."""
    return {
        "ttft_seconds": histogram_summary(samples, "vllm:time_to_first_token_seconds"),
        "e2e_latency_seconds": histogram_summary(samples, "vllm:e2e_request_latency_seconds"),
        "num_requests_running": number_or_none(measured(samples, "vllm:num_requests_running", whole=True)),
        "num_requests_waiting": number_or_none(measured(samples, "vllm:num_requests_waiting", whole=True)),
    }
