"""vllm_gpu_facts against an nvidia-smi that hangs, drips, floods, lies or prints garbage (issue 11).

Every nvidia-smi output in this file is SYNTHETIC: written here to provoke one failure
each, not captured on any machine (the real captures are in tests/data/nvidia-smi/ and
are replayed by scripts/nvidia-smi-standin). The synthetic nvidia-smi programs are shell
scripts written into each test's tmp_path; their first comment line says they are
synthetic. The commands in the run_with_deadline tests (sleep, yes, sh) stand for an
nvidia-smi that misbehaves in the same way.
"""

import contextlib
import os
import shlex
import signal
import sys
import time
from pathlib import Path

import pytest
from ansible.module_utils.vllm_gpu import (
    GPU_QUERY_FIELDS,
    MINIMAL_QUERY_FIELDS,
    OUTPUT_LIMIT_BYTES,
    accelerator_facts,
    decode_for_message,
    decode_output,
    driver_version_from_banner,
    read_query_output,
    run_with_deadline,
    smallest,
)
from moduletest import REPO, run_module

MODULE = REPO / "library" / "vllm_gpu_facts.py"
STANDIN = REPO / "scripts" / "nvidia-smi-standin"
FIELDS = list(GPU_QUERY_FIELDS)
# Time a module run needs beyond its timeouts on a busy 2-core machine (python start, ansible imports).
SLACK_S = 3.0

# SYNTHETIC rows in the shape of `--query-gpu=<all GPU_QUERY_FIELDS> --format=csv,noheader,nounits`.
SYNTHETIC_ROW_0 = (
    "0, Synthetic GPU 80GB, GPU-00000000-0000-0000-0000-000000000000, 81559, 1, 81106, 565.57.01, Enabled, 9.0"
)
SYNTHETIC_ROW_1 = (
    "1, Synthetic GPU 80GB, GPU-00000000-0000-0000-0000-000000000001, 81559, 1, 81106, 565.57.01, Enabled, 9.0"
)
SYNTHETIC_BANNER = "| NVIDIA-SMI 565.57.01              Driver Version: 565.57.01      CUDA Version: 12.7     |\n"


def synthetic_rows(*rows: str) -> str:
    return "".join(f"{row}\n" for row in rows)


def synthetic_nvidia_smi(folder: Path, query: str, banner: str = 'cat "$D/banner.out"') -> Path:
    """Write a SYNTHETIC nvidia-smi into folder: `query` runs for any arguments, `banner` for none.

    Both are shell snippets; $D is the folder (where query.out and banner.out are kept).
    """
    path = folder / "nvidia-smi"
    path.write_text(
        "#!/bin/sh\n"
        "# SYNTHETIC nvidia-smi for tests/unit/test_vllm_gpu_hostile.py: not NVIDIA's tool, no machine printed this.\n"
        f"D={shlex.quote(str(folder))}\n"
        'if [ "$#" -eq 0 ]; then\n'
        f"{banner}\n"
        "else\n"
        f"{query}\n"
        "fi\n",
        encoding="utf-8",
    )
    path.chmod(0o755)
    if not (folder / "banner.out").exists():
        (folder / "banner.out").write_text(SYNTHETIC_BANNER, encoding="utf-8")
    return path


def synthetic_output(folder: Path, query_out: bytes | str, banner_out: bytes | str = SYNTHETIC_BANNER) -> Path:
    """A SYNTHETIC nvidia-smi that prints query_out for a query and banner_out for no arguments, exit 0."""
    for name, data in (("query.out", query_out), ("banner.out", banner_out)):
        (folder / name).write_bytes(data.encode() if isinstance(data, str) else data)
    return synthetic_nvidia_smi(folder, 'cat "$D/query.out"')


def run_gpu_facts(nvidia_smi: Path, **args) -> tuple[int, dict, float]:
    """(exit status, result, seconds) of vllm_gpu_facts run as a host runs it, on the given nvidia-smi."""
    started = time.monotonic()
    rc, result = run_module(MODULE, {"nvidia_smi_path": str(nvidia_smi), **args})
    return rc, result, time.monotonic() - started


def warnings_of(result: dict) -> list[str]:
    """The warning texts of a module result (ansible-core 2.19 prints each as {"event": {"msg": ...}, ...})."""
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]


def assert_failed_with(rc: int, result: dict, *phrases: str) -> None:
    assert rc != 0, result
    assert result["failed"] is True
    assert "Traceback" not in result["msg"]
    for phrase in phrases:
        assert phrase in result["msg"], result["msg"]


def gone(pid: int, wait_s: float = 5.0) -> bool:
    """Whether a process ended (or is a zombie nobody reaped yet) within wait_s."""
    end = time.monotonic() + wait_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.05)


def read_pid(path: Path, wait_s: float = 5.0) -> int:
    end = time.monotonic() + wait_s
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < end, f"{path} was never written"
        time.sleep(0.05)
    return int(path.read_text().strip())


# --- run_with_deadline: a deadline for the whole exchange ---------------------------------------------------------


def test_a_command_that_never_returns_is_killed_at_the_deadline():
    result = run_with_deadline(["sleep", "1000"], timeout=0.5)
    assert result.rc is None
    assert result.timed_out
    assert "did not finish within 0.5 s; it was killed" in result.problem
    assert result.elapsed < 0.5 + 2


def test_a_dripping_command_is_killed_at_the_deadline_not_kept_alive_by_each_byte():
    # One byte every 0.05 s: a timeout per read would never trip.
    result = run_with_deadline(["sh", "-c", "while :; do printf 0; sleep 0.05; done"], timeout=1)
    assert result.rc is None
    assert result.timed_out
    assert result.stdout.startswith(b"000")
    assert 1 <= result.elapsed < 1 + 2


def test_a_flood_of_output_is_cut_at_the_limit():
    result = run_with_deadline(["yes"], timeout=30, output_limit=100_000)
    assert result.rc is None
    assert not result.timed_out
    assert "printed more than 100000 bytes" in result.problem
    assert len(result.stdout) < 100_000 + 65536 + 1
    assert result.elapsed < 10


def test_the_default_output_limit_is_a_mebibyte():
    assert OUTPUT_LIMIT_BYTES == 1024 * 1024


def test_the_whole_process_group_is_killed(tmp_path):
    pid_file = tmp_path / "child.pid"
    script = f"sleep 1000 & echo $! > {shlex.quote(str(pid_file))}; sleep 1000"
    result = run_with_deadline(["sh", "-c", script], timeout=1)
    assert result.timed_out
    assert gone(read_pid(pid_file))


def test_a_child_that_keeps_the_output_open_after_the_command_exits(tmp_path):
    pid_file = tmp_path / "child.pid"
    script = f"sleep 1000 & echo $! > {shlex.quote(str(pid_file))}; exit 0"
    result = run_with_deadline(["sh", "-c", script], timeout=1)
    assert result.rc is None
    assert result.timed_out
    assert "exited (status 0) but something it started kept its output open past 1 s" in result.problem
    assert gone(read_pid(pid_file))


def test_a_child_that_escaped_the_process_group_cannot_hold_the_caller(tmp_path):
    # setsid() puts the child out of reach of killpg; the pipes it holds must not keep us waiting.
    pid_file = tmp_path / "escaped.pid"
    escape = f"import os, time; os.setsid(); open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(1000)"
    script = f"{shlex.quote(sys.executable)} -c {shlex.quote(escape)} & exit 0"
    pid = None
    try:
        result = run_with_deadline(["sh", "-c", script], timeout=1)
        pid = read_pid(pid_file)
        assert result.timed_out
        assert result.elapsed < 1 + 2
    finally:
        if pid is None and pid_file.exists():
            pid = read_pid(pid_file)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_stdin_is_not_inherited():
    result = run_with_deadline(["cat"], timeout=5)
    assert result.rc == 0
    assert result.stdout == b""


def test_a_file_that_cannot_be_executed(tmp_path):
    not_a_program = tmp_path / "nvidia-smi"
    not_a_program.write_bytes(b"\x7fELF garbage, SYNTHETIC\n")
    not_a_program.chmod(0o755)
    result = run_with_deadline([str(not_a_program)], timeout=5)
    assert result.rc is None
    assert result.problem.startswith("could not be started: ")


def test_a_normal_exit_keeps_status_and_output():
    result = run_with_deadline(["sh", "-c", "printf out; printf err >&2; exit 3"], timeout=5)
    assert (result.rc, result.stdout, result.stderr, result.problem) == (3, b"out", b"err", "")


# --- decoding --------------------------------------------------------------------------------------------------


def test_query_output_must_be_utf8():
    with pytest.raises(ValueError, match=r"printed bytes that are not UTF-8 \(byte 10 of"):
        decode_output(b"0, NVIDIA \xff\xfe, 81559\n")
    assert decode_output(b"0, NVIDIA L40S\n") == "0, NVIDIA L40S\n"


def test_text_that_is_only_shown_or_searched_is_decoded_leniently():
    assert decode_for_message(b"proc \xff name") == "proc \ufffd name"


# --- validation of every value (all inputs SYNTHETIC) -----------------------------------------------------------


def test_synthetic_rows_read_back():
    gpus, driver, notices = read_query_output(synthetic_rows(SYNTHETIC_ROW_0, SYNTHETIC_ROW_1), FIELDS)
    assert [gpu["index"] for gpu in gpus] == [0, 1]
    assert gpus[1]["uuid"] == "GPU-00000000-0000-0000-0000-000000000001"
    assert gpus[0]["compute_cap"] == "9.0"
    assert driver == "565.57.01"
    assert notices == []


@pytest.mark.parametrize("output", ["", "\n", "  \n\n", "\r\n"])
def test_empty_output_is_not_a_cpu_host(output):
    with pytest.raises(ValueError, match=r"nvidia-smi listed no GPUs \(its output was empty\)"):
        read_query_output(output, FIELDS)


def test_a_warning_line_with_commas_is_not_a_gpu():
    warning = "WARNING: infoROM is corrupted at gpu 0000:3B:00.0, please reflash, or contact support"
    assert len(warning.split(", ")) == 3
    gpus, _driver, notices = read_query_output(synthetic_rows(warning, SYNTHETIC_ROW_0, SYNTHETIC_ROW_1), FIELDS)
    assert len(gpus) == 2
    assert notices == [warning]


def test_a_warning_line_with_as_many_commas_as_a_row_is_not_a_gpu():
    warning = ", ".join(["Unable to determine the device handle for GPU0000:3B:00.0: Unknown Error"] * len(FIELDS))
    gpus, _driver, notices = read_query_output(synthetic_rows(SYNTHETIC_ROW_0, warning), FIELDS)
    assert len(gpus) == 1
    assert notices == [warning]


def test_only_warning_lines_is_no_gpus_and_says_what_was_printed():
    with pytest.raises(ValueError, match=r"nvidia-smi listed no GPUs; instead it printed: 'No devices were found'"):
        read_query_output("No devices were found\n", FIELDS)


def test_a_gap_in_the_indices_is_a_missing_gpu():
    row_2 = SYNTHETIC_ROW_1.replace("1, ", "2, ", 1)
    with pytest.raises(ValueError, match=r"listed GPU indices 0, 2 \(GPU 1 missing\)"):
        read_query_output(synthetic_rows(SYNTHETIC_ROW_0, row_2), FIELDS)


@pytest.mark.parametrize(
    "rows",
    [(SYNTHETIC_ROW_0, SYNTHETIC_ROW_0), (SYNTHETIC_ROW_1, SYNTHETIC_ROW_0)],
    ids=["twice", "out-of-order"],
)
def test_repeated_or_reordered_indices_are_refused(rows):
    with pytest.raises(ValueError, match="listed out of order or twice"):
        read_query_output(synthetic_rows(*rows), FIELDS)


def test_used_memory_above_total_names_the_gpu():
    row = SYNTHETIC_ROW_1.replace("81559, 1, 81106", "81559, 90000, 81106")
    with pytest.raises(ValueError, match=r"GPU 1: memory.used 90000 MiB is more than memory.total 81559 MiB"):
        read_query_output(synthetic_rows(SYNTHETIC_ROW_0, row), FIELDS)


def test_free_memory_above_total_names_the_gpu():
    row = SYNTHETIC_ROW_0.replace("81559, 1, 81106", "81559, 1, 81560")
    with pytest.raises(ValueError, match=r"GPU 0: memory.free 81560 MiB is more than memory.total"):
        read_query_output(synthetic_rows(row), FIELDS)


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ("81559, 1, 81106", "81559, -1, 81106", "memory.used: '-1' is not a whole number of MiB"),
        ("81559, 1, 81106", "81559, 1.5, 81106", "memory.used: '1.5' is not a whole number of MiB"),
        ("81559, 1, 81106", "80 GiB, 1, 81106", "memory.total: '80 GiB' is not a whole number of MiB"),
        ("81559, 1, 81106", "123456789, 1, 81106", "memory.total: '123456789' is not a whole number of MiB"),
        ("Enabled", "Maybe", "persistence_mode: 'Maybe' is neither Enabled, Disabled nor [N/A]"),
        ("Enabled", "On", "persistence_mode: 'On' is neither"),
        ("GPU-00000000-0000-0000-0000-000000000000", "GPU-xyz", "uuid: 'GPU-xyz' is not a GPU UUID"),
        ("GPU-00000000-0000-0000-0000-000000000000", "00000000-0000", "uuid: '00000000-0000' is not a GPU UUID"),
        (", 9.0", ", nine", "compute_cap: 'nine' is not a compute capability"),
        ("565.57.01", "565.57.01-beta", "driver_version: '565.57.01-beta' is not a dotted version"),
        ("565.57.01", "565", "driver_version: '565' is not a dotted version"),
        ("Synthetic GPU 80GB", "[N/A]", "name: no product name ('[N/A]')"),
        ("Synthetic GPU 80GB", "\x1b[31mred\x1b[0m", "name: '\\x1b[31mred\\x1b[0m' is not a product name"),
        ("Synthetic GPU 80GB", "GPU\x1cSplit", "is not a product name"),
        ("Synthetic GPU 80GB", "X" * 200, "is not a product name"),
        ("Synthetic GPU 80GB", "Synthetic, GPU", "line 1: nvidia-smi printed 10 values where 9 were asked"),
    ],
)
def test_every_value_is_validated_and_the_gpu_named(old, new, says):
    row = SYNTHETIC_ROW_0.replace(old, new, 1)
    assert row != SYNTHETIC_ROW_0
    with pytest.raises(ValueError) as raised:
        read_query_output(synthetic_rows(row), FIELDS)
    assert says in str(raised.value)
    if "values where" not in says:
        assert str(raised.value).startswith("GPU 0: ")


def test_an_index_too_long_to_be_one_is_refused():
    with pytest.raises(ValueError, match="GPU 12345: index: '12345' is not a GPU index"):
        read_query_output(synthetic_rows(SYNTHETIC_ROW_0.replace("0, ", "12345, ", 1)), FIELDS)


def test_markers_for_no_value_give_null():
    row = "0, Synthetic GPU 80GB, [N/A], 81559, 1, [N/A], [N/A], [N/A], [Not Supported]"  # SYNTHETIC
    gpus, driver, _notices = read_query_output(synthetic_rows(row), FIELDS)
    assert driver is None
    assert gpus[0]["uuid"] is None
    assert gpus[0]["memory_free_mib"] is None
    assert gpus[0]["persistence_mode"] is None
    assert gpus[0]["compute_cap"] is None
    assert accelerator_facts(gpus, driver, None)["memory_free_mib_min"] == 81559 - 1


def test_gpus_that_report_different_drivers_are_refused():
    row = SYNTHETIC_ROW_1.replace("565.57.01", "550.54.14")
    with pytest.raises(ValueError, match="different driver versions"):
        read_query_output(synthetic_rows(SYNTHETIC_ROW_0, row), FIELDS)


def test_crlf_line_ends_are_read():
    gpus, _driver, notices = read_query_output(f"{SYNTHETIC_ROW_0}\r\n{SYNTHETIC_ROW_1}\r\n", FIELDS)
    assert len(gpus) == 2
    assert notices == []


def test_an_unknown_figure_makes_the_minimum_unknown():
    # The GPU whose free memory nobody knows may be the fullest one.
    assert smallest([81106, None]) is None
    assert smallest([]) is None
    assert smallest([3, 1]) == 1


def test_banner_driver_version_must_be_dotted():
    assert driver_version_from_banner("Driver Version: 565.57.01   CUDA") == "565.57.01"
    assert driver_version_from_banner("Driver Version: [N/A]   CUDA") is None
    assert driver_version_from_banner("Driver Version: 565.   CUDA") is None


def test_the_minimal_fields_still_start_with_the_index():
    # Telling rows from notices relies on it.
    assert GPU_QUERY_FIELDS[0] == MINIMAL_QUERY_FIELDS[0] == "index"


# --- the module, run as a host runs it, on SYNTHETIC nvidia-smi programs ------------------------------------------


def test_module_kills_an_nvidia_smi_that_never_returns_and_does_not_retry(tmp_path):
    nvidia_smi = synthetic_nvidia_smi(tmp_path, "exec sleep 1000")
    rc, result, elapsed = run_gpu_facts(nvidia_smi, timeout=2)
    assert_failed_with(rc, result, f"`{nvidia_smi} --query-gpu=", "did not finish within 2 s; it was killed")
    assert "dmesg" in result["msg"]
    # Three tries would take 6 s.
    assert elapsed < 2 + SLACK_S


def test_module_kills_an_nvidia_smi_that_drips(tmp_path):
    nvidia_smi = synthetic_nvidia_smi(tmp_path, "while :; do printf 0; sleep 0.05; done")
    rc, result, elapsed = run_gpu_facts(nvidia_smi, timeout=1)
    assert_failed_with(rc, result, "did not finish within 1 s", "It printed: '000")
    assert elapsed < 1 + SLACK_S


def test_module_kills_what_a_hung_nvidia_smi_started(tmp_path):
    pid_file = tmp_path / "child.pid"
    nvidia_smi = synthetic_nvidia_smi(tmp_path, f"sleep 1000 & echo $! > {shlex.quote(str(pid_file))}; sleep 1000")
    rc, result, _elapsed = run_gpu_facts(nvidia_smi, timeout=1)
    assert_failed_with(rc, result, "did not finish within 1 s")
    assert gone(read_pid(pid_file))


def test_module_stops_an_nvidia_smi_that_floods(tmp_path):
    nvidia_smi = synthetic_nvidia_smi(tmp_path, "exec yes '0, Synthetic GPU'")
    rc, result, elapsed = run_gpu_facts(nvidia_smi, timeout=60)
    assert_failed_with(rc, result, f"printed more than {OUTPUT_LIMIT_BYTES} bytes; it was killed")
    assert len(result["msg"]) < 2000
    assert elapsed < 20


def test_module_with_a_hung_banner_keeps_the_gpus_and_warns(tmp_path):
    (tmp_path / "query.out").write_text(synthetic_rows(SYNTHETIC_ROW_0), encoding="utf-8")
    nvidia_smi = synthetic_nvidia_smi(tmp_path, 'cat "$D/query.out"', banner="exec sleep 1000")
    rc, result, elapsed = run_gpu_facts(nvidia_smi, timeout=1)
    assert rc == 0, result
    facts = result["ansible_facts"]["vllm_accelerator"]
    assert facts["gpu_count"] == 1
    assert facts["cuda_version"] is None
    assert any(f"CUDA version unknown: `{nvidia_smi}` did not finish within 1 s" in w for w in warnings_of(result))
    assert elapsed < 1 + SLACK_S


def test_module_fails_clearly_on_output_that_is_not_utf8(tmp_path):
    nvidia_smi = synthetic_output(tmp_path, SYNTHETIC_ROW_0.replace("Synthetic", "Synth\xe9tic").encode("latin-1"))
    rc, result, _elapsed = run_gpu_facts(nvidia_smi)
    assert_failed_with(rc, result, f"`{nvidia_smi} --query-gpu=", "printed bytes that are not UTF-8")


def test_module_reads_a_banner_with_bytes_that_are_not_utf8(tmp_path):
    banner = SYNTHETIC_BANNER.encode() + b"|    0   N/A  N/A   4269   C   /opt/caf\xe9/python   11753MiB |\n"
    nvidia_smi = synthetic_output(tmp_path, synthetic_rows(SYNTHETIC_ROW_0), banner)
    rc, result, _elapsed = run_gpu_facts(nvidia_smi)
    assert rc == 0, result
    assert result["ansible_facts"]["vllm_accelerator"]["cuda_version"] == "12.7"


def test_module_refuses_empty_output_with_status_0(tmp_path):
    nvidia_smi = synthetic_output(tmp_path, b"")
    rc, result, _elapsed = run_gpu_facts(nvidia_smi)
    assert_failed_with(rc, result, "nvidia-smi listed no GPUs", f"`{nvidia_smi} --query-gpu=")


def test_module_reports_empty_output_as_an_error_even_when_told_not_to_fail(tmp_path):
    nvidia_smi = synthetic_output(tmp_path, b"")
    rc, result, _elapsed = run_gpu_facts(nvidia_smi, fail_on_error=False)
    assert rc == 0, result
    facts = result["ansible_facts"]["vllm_accelerator"]
    assert facts["accelerator"] == "cpu"
    assert "nvidia-smi listed no GPUs" in facts["nvidia_smi_error"]
    assert any("nvidia-smi listed no GPUs" in w for w in warnings_of(result))


def test_module_does_not_count_a_warning_line_and_passes_it_on(tmp_path):
    warning = "WARNING: infoROM is corrupted at gpu 0000:3B:00.0, please reflash, or contact support"
    nvidia_smi = synthetic_output(tmp_path, synthetic_rows(warning, SYNTHETIC_ROW_0, SYNTHETIC_ROW_1))
    rc, result, _elapsed = run_gpu_facts(nvidia_smi)
    assert rc == 0, result
    assert result["ansible_facts"]["vllm_accelerator"]["gpu_count"] == 2
    assert any("not a GPU row" in w and "infoROM is corrupted" in w for w in warnings_of(result))


def test_module_refuses_used_memory_above_total(tmp_path):
    row = SYNTHETIC_ROW_0.replace("81559, 1, 81106", "81559, 90000, 81106")
    nvidia_smi = synthetic_output(tmp_path, synthetic_rows(row))
    rc, result, _elapsed = run_gpu_facts(nvidia_smi)
    assert_failed_with(rc, result, "GPU 0: memory.used 90000 MiB is more than memory.total 81559 MiB")


def test_module_returns_null_for_a_driver_version_of_n_a(tmp_path):
    row = SYNTHETIC_ROW_0.replace("565.57.01", "[N/A]")
    banner = "| NVIDIA-SMI [N/A]    Driver Version: [N/A]    CUDA Version: [N/A]   |\n"
    nvidia_smi = synthetic_output(tmp_path, synthetic_rows(row), banner)
    rc, result, _elapsed = run_gpu_facts(nvidia_smi)
    assert rc == 0, result
    facts = result["ansible_facts"]["vllm_accelerator"]
    assert facts["driver_version"] is None
    assert facts["cuda_version"] is None
    assert facts["gpu_count"] == 1


def test_module_takes_the_banners_driver_when_the_query_has_none(tmp_path):
    row = SYNTHETIC_ROW_0.replace("565.57.01", "[N/A]")
    nvidia_smi = synthetic_output(tmp_path, synthetic_rows(row))
    rc, result, _elapsed = run_gpu_facts(nvidia_smi)
    assert rc == 0, result
    assert result["ansible_facts"]["vllm_accelerator"]["driver_version"] == "565.57.01"


def test_module_warns_when_a_gpus_free_memory_is_unknown(tmp_path):
    row = "0, Synthetic GPU 80GB, [N/A], 81559, [N/A], [N/A], 565.57.01, Enabled, 9.0"  # SYNTHETIC
    nvidia_smi = synthetic_output(tmp_path, synthetic_rows(row, SYNTHETIC_ROW_1))
    rc, result, _elapsed = run_gpu_facts(nvidia_smi)
    assert rc == 0, result
    assert result["ansible_facts"]["vllm_accelerator"]["memory_free_mib_min"] is None
    assert any("GPU 0: nvidia-smi reports neither memory.free nor memory.used" in w for w in warnings_of(result))


def test_module_names_the_signal_that_killed_nvidia_smi(tmp_path):
    nvidia_smi = synthetic_nvidia_smi(tmp_path, "kill -SEGV $$")
    rc, result, _elapsed = run_gpu_facts(nvidia_smi)
    assert_failed_with(rc, result, "was killed by SIGSEGV", "the retries with fewer fields failed too")


def test_module_fails_clearly_on_a_file_that_cannot_run(tmp_path):
    not_a_program = tmp_path / "nvidia-smi"
    not_a_program.write_bytes(b"SYNTHETIC: not a program\n\x00\x01")
    not_a_program.chmod(0o755)
    rc, result, _elapsed = run_gpu_facts(not_a_program)
    assert_failed_with(rc, result, f"`{not_a_program} --query-gpu=", "could not be started: ")


@pytest.mark.parametrize("timeout", [0, -1])
def test_module_refuses_a_timeout_that_is_not_positive(tmp_path, timeout):
    nvidia_smi = synthetic_output(tmp_path, synthetic_rows(SYNTHETIC_ROW_0))
    rc, result, _elapsed = run_gpu_facts(nvidia_smi, timeout=timeout)
    assert_failed_with(rc, result, f"timeout={timeout}: give the seconds")


def test_module_turns_an_unexpected_exception_into_a_message(tmp_path):
    # A wrapper that breaks the parser (a SYNTHETIC bug), then runs the real module file as a host would.
    wrapper = tmp_path / "broken_vllm_gpu_facts.py"
    wrapper.write_text(
        "import runpy\n"
        "import ansible.module_utils.vllm_gpu as parsing\n"
        "def broken(*args, **kwargs):\n"
        "    raise KeyError('synthetic bug')\n"
        "parsing.read_query_output = broken\n"
        f"runpy.run_path({str(MODULE)!r}, run_name='__main__')\n",
        encoding="utf-8",
    )
    nvidia_smi = synthetic_output(tmp_path, synthetic_rows(SYNTHETIC_ROW_0))
    rc, result = run_module(wrapper, {"nvidia_smi_path": str(nvidia_smi)})
    assert_failed_with(rc, result, "vllm_gpu_facts failed unexpectedly (KeyError: 'synthetic bug')")


def test_module_with_a_timeout_on_a_real_capture(tmp_path):
    rc, result = run_module(
        MODULE, {"nvidia_smi_path": str(STANDIN), "timeout": 20}, env={"NVIDIA_SMI_STANDIN": "h100-80gb-x8"}
    )
    assert rc == 0, result
    facts = result["ansible_facts"]["vllm_accelerator"]
    assert facts["gpu_count"] == 8
    assert facts["driver_version"] == "565.57.01"
    assert warnings_of(result) == []
