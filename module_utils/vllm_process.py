"""Running a command with a deadline for the whole exchange, as plain functions.

Standard library only, Python 3.10+: runs on managed hosts (vllm_gpu_facts,
vllm_server_info) and on the controller (vllm_wheelhouse).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass

# Default bound on what one run may print: nvidia-smi's query prints about 150 bytes per
# GPU and its banner a few KiB, journalctl's 5000 lines stay below it.
OUTPUT_LIMIT_BYTES = 1024 * 1024
# After SIGKILL, how long to wait for the process to go. One stuck in the kernel (state D,
# a hung driver) never goes; it is then left behind rather than waited on for ever.
KILL_GRACE_SECONDS = 5.0
READ_CHUNK_BYTES = 65536


@dataclass(frozen=True)
class CommandResult:
    """What one bounded run of a command gave.

    rc is None when the command did not exit by itself (killed at the deadline or for too
    much output) or could not be started; `problem` then says which, in words.
    """

    rc: int | None
    stdout: bytes
    stderr: bytes
    problem: str = ""
    timed_out: bool = False
    elapsed: float = 0.0


def run_with_deadline(
    argv: list[str],
    timeout: float,
    output_limit: int = OUTPUT_LIMIT_BYTES,
    env: dict[str, str] | None = None,
) -> CommandResult:
    """Run argv with `timeout` seconds for the whole exchange: start, all output, exit.

    The command gets its own process group (session), stdin from /dev/null, and is killed
    with SIGKILL, group and all, when the deadline passes or stdout + stderr exceed
    `output_limit` bytes. A per-read timeout would not do: a command that prints a byte
    a second never trips one. The pipes are read until the deadline only, so a child that
    escaped the group and holds them open cannot keep this waiting either.
    """
    started = time.monotonic()
    deadline = started + timeout
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    except OSError as exc:
        return CommandResult(None, b"", b"", f"could not be started: {exc.strerror or exc}")
    stdout, stderr = bytearray(), bytearray()
    try:
        problem, timed_out = _read_until_deadline(process, stdout, stderr, deadline, output_limit, timeout)
        if not problem:
            try:
                process.wait(max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                problem, timed_out = f"closed its output but did not exit within {timeout:g} s", True
        if problem:
            problem += _kill_group(process)
    finally:
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    rc = None if problem else process.returncode
    return CommandResult(rc, bytes(stdout), bytes(stderr), problem, timed_out, time.monotonic() - started)


def _read_until_deadline(
    process: subprocess.Popen,
    stdout: bytearray,
    stderr: bytearray,
    deadline: float,
    output_limit: int,
    timeout: float,
) -> tuple[str, bool]:
    """Read both pipes to their end: ('', False) when both ended in time, else (why reading stopped, timed out)."""
    buffers = {process.stdout.fileno(): stdout, process.stderr.fileno(): stderr}
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        selector.register(process.stderr, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if process.poll() is not None:
                    return (
                        f"exited (status {process.returncode}) but something it started kept its output open "
                        f"past {timeout:g} s",
                        True,
                    )
                return f"did not finish within {timeout:g} s", True
            for key, _events in selector.select(remaining):
                chunk = os.read(key.fd, READ_CHUNK_BYTES)
                if chunk:
                    buffers[key.fd] += chunk
                else:
                    selector.unregister(key.fileobj)
            if len(stdout) + len(stderr) > output_limit:
                return f"printed more than {output_limit} bytes", False
    return "", False


def _kill_group(process: subprocess.Popen) -> str:
    """SIGKILL the command's process group and reap it; '' or a note when it would not go."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    try:
        process.wait(KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        return (
            f"; it was killed but had not exited {KILL_GRACE_SECONDS:g} s later "
            "(stuck in the kernel: a hung driver or filesystem, usually until a reboot)"
        )
    return "; it was killed"


def decode_for_message(data: bytes) -> str:
    """Output that is only shown (stderr, an error) or searched (the banner): bad bytes become U+FFFD."""
    return data.decode("utf-8", errors="replace")


def signal_name(rc: int) -> str:
    """'SIGSEGV' for a return code of -11; the number where the signal is unknown."""
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f"signal {-rc}"


def exit_description(rc: int) -> str:
    """'exited with status 6' or 'was killed by SIGSEGV'."""
    return f"was killed by {signal_name(rc)}" if rc < 0 else f"exited with status {rc}"


KILLED_RC = 124  # as timeout(1) reports a command it stopped


def run_text(
    argv: list[str], timeout: float, env: dict[str, str] | None = None, output_limit: int = OUTPUT_LIMIT_BYTES
) -> tuple[int, str, str]:
    """(rc, stdout, stderr) as text of a run bounded as run_with_deadline bounds it.

    A run that did not exit by itself gets rc 124 (127 when it could not start) and
    the reason in stderr, after what it printed there.
    """
    result = run_with_deadline(argv, timeout, output_limit, env)
    out, err = decode_for_message(result.stdout), decode_for_message(result.stderr)
    if result.rc is None:
        rc = 127 if result.problem.startswith("could not be started") else KILLED_RC
        return rc, out, (err + "\n" if err else "") + f"{os.path.basename(argv[0])} {result.problem}"
    return result.rc, out, err
