"""Why a vLLM unit failed, read from its journal, as plain functions.

Standard library only, Python 3.10+: this file runs on managed hosts under their
system python3 (module vllm_server_info).

vLLM's workers and engine core die inside a main process that may keep running
for a while, and the error a client gets ("EngineCore encountered an issue. See
stack trace (above) for the root cause.") names nothing. The journal holds the
cause. `failure_reason` picks the decisive line, most telling first:

1. a worker that died from a signal (`Worker proc VllmWorker-0 died unexpectedly
   (exit code: -4)`: SIGILL, an illegal instruction);
2. an out-of-memory kill (systemd: "killed by the OOM killer");
3. the root Python exception: the first exception line after a traceback that
   is not a consequence of another one (EngineDeadError, "Executor failed", ...);
4. a worker that exited with a status and no exception said why;
5. how systemd saw the main process end (`code=killed, status=9/KILL`).

`evidence` gives a bounded tail of the journal, without the interpreter's
shutdown noise, and `scrub` takes secrets out of any text before it is returned.
"""

from __future__ import annotations

import re
import signal

# "(EngineCore pid=1) ", "(Worker pid=2) ", "(VllmWorker rank=0 pid=3) ", "(APIServer pid=4) "
PROCESS_PREFIX = re.compile(r"\A\((?P<proc>[A-Za-z][\w:.\-]*)(?: [^()]*)?\)\s+")
# "ERROR 12-03 13:52:18 [core.py:1512] " (vLLM's logger; the date may carry milliseconds)
LOG_PREFIX = re.compile(
    r"\A(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+\d\d-\d\d\s+\d\d:\d\d:\d\d(?:[.,]\d+)?\s+\[[^\]]*\]\s?"
)

WORKER_DIED = re.compile(
    r"(?:Worker proc (?P<name>\S+) died unexpectedly|Worker (?P<old>\S+ pid \d+) died)"
    r"(?:.*?exit code:?\s*(?P<code>-?\d+))?"
)
CHILD_DIED = re.compile(r"worker died \((?P<code>-?\d+)\)")
OOM_KILL = re.compile(
    r"killed by the OOM killer|Failed with result 'oom-kill'|Out of memory: Killed process \d+ \((?P<comm>[^)]*)\)"
)
MAIN_EXIT = re.compile(
    r"Main process exited, code=(?P<how>exited|killed|dumped), status=(?P<status>\d+)(?:/(?P<name>\w+))?"
)
SPAWN_FAILED = re.compile(r"Failed at step (?P<step>\S+) spawning (?P<what>.*)")
TRACEBACK = "Traceback (most recent call last):"
LOGGING_ERROR = "--- Logging error ---"
# systemd's own lines around a stop: "Stopping vllm.service - ...", "Stopped vllm.service - ...".
STOPPING = re.compile(r"\AStopping [\w@.\-]+\.service\b")
STOPPED = re.compile(r"\AStopped [\w@.\-]+\.service\b|\A[\w@.\-]+\.service: Deactivated successfully")
STOP_INTERRUPTED = re.compile(r"\AStart(?:ing|ed) [\w@.\-]+\.service\b|\.service: Failed with result|timed out")
FRAME = re.compile(r"\A\s+(?:File \"|\^|~)|\A\s{4,}\S")
EXCEPTION = re.compile(
    r"\A(?P<type>(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Fault|Failure|Warning))(?::\s*(?P<msg>.*))?\Z"
)

# Exceptions raised because another one happened first: never the cause.
CONSEQUENCES = (
    re.compile(r"EngineDeadError"),
    re.compile(r"EngineGenerateError"),
    re.compile(r"\ARuntimeError: Executor failed\.?\Z"),
    re.compile(r"\ARuntimeError: Engine core initialization failed"),
    re.compile(r"\ARuntimeError: Worker failed with error"),
    re.compile(r"\A(?:builtins\.)?(?:SystemExit|KeyboardInterrupt)\b"),
    re.compile(r"\A(?:asyncio\.exceptions\.)?CancelledError\b"),
    re.compile(r"\AChildProcessError\b"),
)

# Lines an interpreter prints on its way out; they push the evidence out of a tail.
NOISE = (
    re.compile(r"\Ananobind: "),
    re.compile(r"\A - (?:leaked|\.\.\. skipped)"),
    re.compile(r"\ASee https://nanobind"),
    re.compile(r"resource_tracker"),
    re.compile(r"\A\s*warnings\.warn\("),
)

SIGNAL_MEANINGS = {
    "SIGILL": "illegal instruction: the process ran an instruction this CPU, or this process, may not use",
    "SIGKILL": "killed outright, often by the kernel's out-of-memory killer",
    "SIGSEGV": "segmentation fault: an invalid memory access",
    "SIGBUS": "bus error: an invalid memory access, for example a full /dev/shm",
    "SIGABRT": "aborted by the program itself (a failed assertion in native code)",
    "SIGFPE": "arithmetic error in native code",
    "SIGTERM": "asked to stop (SIGTERM)",
}

# What to look at first, by kind of failure: it leads the user to the likely fix.
HINTS = {
    "SIGILL": (
        "on an Intel CPU with AMX this is the AMX permission vLLM's CPU workers do not ask for "
        "(vllm_install_amx_permission, README 'CPUs with AMX'); otherwise a vLLM build for a newer CPU"
    ),
    "oom": "lower vllm_cpu_kvcache_space_gb / vllm_gpu_memory_utilization or vllm_max_num_seqs, or add memory",
}

REDACTED = "<redacted>"
SECRET_PATTERNS = (
    re.compile(r"(?i)(authorization:\s*bearer\s+)\S+"),
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=\-]{8,}"),
    re.compile(r"(--api[-_]key[= ]\s*)\S+"),
    re.compile(r"(?i)((?:VLLM_API_KEY|HF_TOKEN|HUGGING_FACE_HUB_TOKEN)\s*[=:]\s*)\S+"),
    re.compile(r"""(['"]?api_key['"]?\s*[:=]\s*)(?:\[\s*)?(['"])[^'"]*\2"""),
    re.compile(r"()\bhf_[A-Za-z0-9]{20,}"),
)


def message_of(line: str) -> str:
    """A journal line without vLLM's process and logger prefixes."""
    line = line.rstrip("\r")
    match = PROCESS_PREFIX.match(line)
    if match:
        line = line[match.end() :]
    match = LOG_PREFIX.match(line)
    if match:
        line = line[match.end() :]
    return line


def signal_text(code: int) -> tuple[str, str]:
    """(signal name, meaning) of a negative exit code, as multiprocessing reports a death by signal."""
    try:
        name = signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}", "an unknown signal"
    return name, SIGNAL_MEANINGS.get(name, signal.strsignal(-code) or "a signal")


def with_hint(reason: str, key: str) -> str:
    """The reason, followed by what to look at when one is known for its kind."""
    hint = HINTS.get(key)
    return f"{reason}. Likely cause: {hint}" if hint else reason


def worker_killed(messages: list[str]) -> tuple[str, int] | None:
    """(reason, index) of the first worker killed by a signal: the cause, whatever follows."""
    found = worker_death(messages, signals_only=True)
    return found


def worker_death(messages: list[str], signals_only: bool = False) -> tuple[str, int] | None:
    """(reason, index) of the first worker that died, named with its signal or exit code.

    With signals_only, only a death by a signal counts: a worker that exits with a status after an
    exception of its own is that exception's consequence.
    """
    for index, text in enumerate(messages):
        match = WORKER_DIED.search(text)
        child = None if match else CHILD_DIED.search(text)
        if not match and not child:
            continue
        name = (match.group("name") or match.group("old")) if match else "a worker"
        code = (match or child).group("code")
        if signals_only and (code is None or int(code) >= 0):
            continue
        if code is None:
            return f"vLLM worker {name} died unexpectedly", index
        code_int = int(code)
        if code_int < 0:
            sig, meaning = signal_text(code_int)
            return with_hint(f"vLLM worker {name} died from {sig} ({meaning})", sig), index
        return f"vLLM worker {name} died with exit code {code_int}", index
    return None


def oom_kill(messages: list[str]) -> tuple[str, int] | None:
    """(reason, index) of an out-of-memory kill of a process of the unit."""
    for index, text in enumerate(messages):
        match = OOM_KILL.search(text)
        if match:
            who = f" ({match.group('comm')})" if match.group("comm") else ""
            reason = f"a process of the unit{who} was killed by the kernel's out-of-memory killer"
            return with_hint(reason, "oom"), index
    return None


def exception_block_end(messages: list[str], index: int) -> tuple[str, int]:
    """The exception line at index with up to two indented continuation lines (pydantic's style), joined."""
    parts = [messages[index].strip()]
    for text in messages[index + 1 : index + 3]:
        if not text.startswith(" ") or not text.strip() or text.strip().startswith(("File ", TRACEBACK)):
            break
        parts.append(text.strip())
    return " ".join(parts), index


def python_exceptions(messages: list[str]) -> list[tuple[str, int]]:
    """Every (exception text, index) that ends a traceback, in journal order.

    A traceback under Python's "--- Logging error ---" is left out: logging reports a handler that could
    not write (a server stopping while its processes log at once) and carries on; it stops nothing.
    """
    found = []
    in_traceback = False
    logging_error = False
    for index, text in enumerate(messages):
        if text.strip() == LOGGING_ERROR:
            logging_error = True
            continue
        if text.strip() == TRACEBACK:
            in_traceback = True
            continue
        if not in_traceback:
            continue
        if FRAME.match(text) or not text.strip():
            continue
        if EXCEPTION.match(text.strip()) and not logging_error:
            found.append(exception_block_end(messages, index))
        in_traceback = False
        logging_error = False
    return found


def outside_stops(messages: list[str]) -> list[str]:
    """The messages with those of a stop blanked out: from systemd's "Stopping U..." to its "Stopped U".

    A stop that times out, fails or is followed by a start without "Stopped" ends the blanking there.

    A restart's window holds the old server's shutdown first; what it wrote while stopping is not why the
    new one failed. Blanked, not removed, so indexes still point into the journal.
    """
    result, stopping = [], False
    for text in messages:
        line = text.strip()
        if STOPPING.match(line):
            stopping = True
        elif stopping and STOP_INTERRUPTED.search(line):
            # A stop that did not end cleanly (a timeout, a new start): what follows counts again.
            stopping = False
        result.append("" if stopping else text)
        if stopping and STOPPED.search(line):
            stopping = False
    return result


def is_consequence(text: str) -> bool:
    return any(pattern.search(text) for pattern in CONSEQUENCES)


def root_exception(messages: list[str]) -> tuple[str, int] | None:
    """(text, index) of the first exception that is not a consequence of another; else the first one."""
    found = python_exceptions(messages)
    for text, index in found:
        if not is_consequence(text):
            return f"Python exception: {text}", index
    if found:
        return f"Python exception: {found[0][0]}", found[0][1]
    return None


def main_process_end(messages: list[str]) -> tuple[str, int] | None:
    """(reason, index) of the last way systemd saw the main process end badly."""
    result = None
    for index, text in enumerate(messages):
        match = MAIN_EXIT.search(text)
        if match:
            how, status, name = match.group("how"), int(match.group("status")), match.group("name")
            if how == "exited" and status == 0:
                continue
            if how in ("killed", "dumped"):
                sig, meaning = signal_text(-status)
                result = (with_hint(f"the server process was killed by {sig} ({meaning})", sig), index)
            else:
                result = (f"the server process exited with status {status}{'/' + name if name else ''}", index)
            continue
        match = SPAWN_FAILED.search(text)
        if match:
            result = (f"systemd could not start the server: {text.strip()}", index)
    return result


MAX_REASON_CHARS = 600


def failure_reason(lines: list[str]) -> dict | None:
    """{reason, kind, line, index}: the decisive cause of a failure in journal lines; None when none is found."""
    messages = outside_stops([message_of(line) for line in lines])
    for kind, finder in (
        ("signal", worker_killed),
        ("oom", oom_kill),
        ("exception", root_exception),
        ("signal", worker_death),
        ("exit", main_process_end),
    ):
        found = finder(messages)
        if found:
            reason, index = found
            if len(reason) > MAX_REASON_CHARS:
                reason = reason[: MAX_REASON_CHARS - 3] + "..."
            return {"reason": reason, "kind": kind, "line": lines[index].strip(), "index": index}
    return None


def is_noise(line: str) -> bool:
    text = message_of(line)
    return any(pattern.search(text) for pattern in NOISE)


def bounded(lines: list[str], max_lines: int, max_line_chars: int = 400) -> list[str]:
    """The last max_lines lines, each cut to max_line_chars."""
    tail = lines[-max_lines:] if max_lines > 0 else []
    return [line if len(line) <= max_line_chars else line[: max_line_chars - 3] + "..." for line in tail]


CONTEXT_LINES = 6
GAP = "[...]"


def evidence(lines: list[str], max_lines: int, focus: int | None = None) -> list[str]:
    """At most max_lines lines that say something (interpreter shutdown noise left out), each bounded.

    With focus (the index of the decisive line), the lines leading up to it come
    first when the tail would not show them, then "[...]" and the tail.
    """
    kept = [(index, line) for index, line in enumerate(lines) if not is_noise(line)]
    if max_lines <= 0:
        return []
    tail = kept[-max_lines:]
    if focus is None or not tail or focus >= tail[0][0] or max_lines < 2 * CONTEXT_LINES:
        return bounded([line for _, line in tail], max_lines)
    before = [pair for pair in kept if pair[0] <= focus][-CONTEXT_LINES:]
    tail = kept[-(max_lines - len(before) - 1) :]
    tail = [pair for pair in tail if pair[0] > focus]
    return bounded([line for _, line in before] + [GAP] + [line for _, line in tail], max_lines)


def scrub(text: str, secrets: list[str]) -> str:
    """text with every known secret and every credential-looking value replaced by <redacted>."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for pattern in SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def scrub_all(lines: list[str], secrets: list[str]) -> list[str]:
    return [scrub(line, secrets) for line in lines]
