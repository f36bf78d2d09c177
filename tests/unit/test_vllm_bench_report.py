"""Summary lines, Markdown and the atomic result file."""

import json
import os
import stat
from types import SimpleNamespace

import pytest
from ansible.module_utils.vllm_bench_report import (
    comparison_markdown,
    markdown_table,
    summary_lines,
    write_json_atomic,
)
from ansible.module_utils.vllm_bench_stats import benchmark_metrics


def metrics(mode="throughput"):
    result = SimpleNamespace(ok=True, ttft=0.1, latency=1.0, itl=[0.1] * 9, output_tokens=10, prompt_tokens=6)
    return benchmark_metrics([result, result], 0.5, mode)


def test_summary_starts_with_the_two_grep_lines():
    lines = summary_lines(metrics(), {"http_500": 2})
    assert lines[0] == "Throughput: 4.00 requests/s"
    assert lines[1] == "Throughput: 64.00 tokens/s"
    assert lines[-1] == "Failures: http_500 x2"


def test_markdown_tables():
    table = markdown_table(metrics(), "throughput")
    assert "| Request throughput (req/s) | 4.00 |" in table and "| TTFT | 100.00 |" in table
    assert "Std" in markdown_table(metrics("latency"), "latency")
    row = {"baseline": 2.0, "current": 1.0, "change_pct": -50.0, "regressed": True, "higher_is_better": True}
    assert "| request_throughput | 2.00 | 1.00 | -50.00% | yes |" in comparison_markdown({"request_throughput": row})
    assert comparison_markdown({}) == ""


def test_result_files_are_for_their_owner_only(tmp_path):
    path = tmp_path / "result.json"
    write_json_atomic(str(path), {"a": 1})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    write_json_atomic(str(path), {"a": 2}, mode=0o640)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_write_json_atomic_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "result.json"
    write_json_atomic(str(path), {"a": 1})
    write_json_atomic(str(path), {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert os.listdir(path.parent) == ["result.json"]


def test_write_json_atomic_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "result.json"
    write_json_atomic(str(path), {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(str(path), {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["result.json"]


def test_an_itl_median_of_zero_is_explained():
    data = metrics()
    data["median_itl_ms"] = 0.0
    lines = summary_lines(data, {})
    assert any(line.startswith("ITL median 0: most tokens arrived several to a read") for line in lines)
    assert not any(line.startswith("ITL median 0") for line in summary_lines(metrics(), {}))


def test_a_latency_run_shows_std_min_and_max():
    line = next(x for x in summary_lines(metrics(), {}, "latency") if x.startswith("TTFT (ms)"))
    assert "std " in line and "min " in line and "max " in line and "; p90 " in line
