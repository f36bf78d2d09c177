"""Reading a vLLM server's Prometheus /metrics text, as plain functions.

Standard library only: this file runs on managed hosts under their system python3.
Covers the text exposition format as vLLM (prometheus_client) writes it: comment
and HELP/TYPE lines, `name{label="value",...} value [timestamp]`, label values
with escaped quotes, backslashes and newlines, and commas inside values.
"""

from typing import NamedTuple


class Sample(NamedTuple):
    """One line of exposition text: metric name, its labels, its value."""

    name: str
    labels: dict[str, str]
    value: float


LABEL_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


def label_value_end(text: str, start: int) -> tuple[str, int]:
    """(unescaped value, index after the closing quote) of a quoted label value starting after its opening quote."""
    chars = []
    i = start
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            chars.append(LABEL_ESCAPES.get(text[i + 1], "\\" + text[i + 1]))
            i += 2
        elif char == '"':
            return "".join(chars), i + 1
        else:
            chars.append(char)
            i += 1
    raise ValueError(f"unterminated label value in {text!r}")


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
        eq = text.index("=", i)
        key = text[i:eq].strip()
        if text[eq + 1] != '"':
            raise ValueError(f"label {key!r} value is not quoted in {text!r}")
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
    fields = rest.split()
    if not fields:
        raise ValueError(f"no value in metrics line {line!r}")
    return Sample(name, labels, float(fields[0]))


def samples_from_text(text: str) -> list[Sample]:
    """Every sample of a /metrics page."""
    return [sample for sample in map(sample_from_line, text.splitlines()) if sample is not None]


def samples_named(samples: list[Sample], name: str) -> list[Sample]:
    """The samples of one metric name (every label set)."""
    return [sample for sample in samples if sample.name == name]


def sum_named(samples: list[Sample], name: str) -> float | None:
    """The sum of a metric over all its label sets (engines, models); None if absent."""
    matching = samples_named(samples, name)
    return sum(sample.value for sample in matching) if matching else None


def histogram_summary(samples: list[Sample], name: str) -> dict | None:
    """{sum, count, mean_ms} of a seconds histogram over all label sets; None if absent."""
    total = sum_named(samples, f"{name}_sum")
    count = sum_named(samples, f"{name}_count")
    if total is None or count is None:
        return None
    return {"sum": total, "count": number_or_none(count), "mean_ms": (total / count * 1000.0) if count else None}


def cache_config_labels(samples: list[Sample]) -> dict[str, str] | None:
    """The labels of `vllm:cache_config_info` (the live CacheConfig, values as exposed); None before engine start."""
    matching = samples_named(samples, "vllm:cache_config_info")
    return dict(matching[0].labels) if matching else None


def number_or_none(value: float | None) -> int | float | None:
    """A gauge as an int when whole (request counts), else as is."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def server_metrics(samples: list[Sample]) -> dict:
    """The server-side figures vllm_server_info reports."""
    return {
        "ttft_seconds": histogram_summary(samples, "vllm:time_to_first_token_seconds"),
        "e2e_latency_seconds": histogram_summary(samples, "vllm:e2e_request_latency_seconds"),
        "num_requests_running": number_or_none(sum_named(samples, "vllm:num_requests_running")),
        "num_requests_waiting": number_or_none(sum_named(samples, "vllm:num_requests_waiting")),
    }
