"""Reading what `nvidia-smi` says about a host's GPUs, as plain functions.

Standard library only: this file runs on managed hosts under their system python3
(3.10 at the oldest). The parsing is pure (text in, data out) so it is tested without
a GPU; module_utils/vllm_process.py runs nvidia-smi with a deadline for the whole
exchange. The module `vllm_gpu_facts` decides what to run and what to do with a problem.

Everything nvidia-smi prints is treated as untrusted input: a value is either what the
field's shape allows, a marker nvidia-smi uses for "no value" ("[N/A]", ...), or a
ValueError that names the GPU, the field and the value. Nothing is silently skipped or
read as something else.
"""

import re

from ansible.module_utils.vllm_process import (  # noqa: F401 - the runner vllm_gpu_facts and its tests use
    OUTPUT_LIMIT_BYTES,
    CommandResult,
    decode_for_message,
    exit_description,
    run_with_deadline,
    signal_name,
)

# The fields asked of `nvidia-smi --query-gpu`. All exist in every driver branch
# we care about except compute_cap (added in R510); callers retry without it.
GPU_QUERY_FIELDS = (
    "index",
    "name",
    "uuid",
    "memory.total",
    "memory.used",
    "memory.free",
    "driver_version",
    "persistence_mode",
    "compute_cap",
)
OPTIONAL_QUERY_FIELDS = ("compute_cap",)
# What a host must answer at the least (a capture published as nvidia-smi's table has no
# uuid and no memory.free; free is then estimated as total - used).
MINIMAL_QUERY_FIELDS = ("index", "name", "memory.total", "memory.used", "driver_version", "persistence_mode")
CSV_FORMAT = "--format=csv,noheader,nounits"
UNAVAILABLE_VALUES = (
    "",
    "N/A",
    "[N/A]",
    "[Not Supported]",
    "Not Supported",
    "[Unknown Error]",
    "[Insufficient Permissions]",
)
DRIVER_FAILURE_MARKERS = (
    "couldn't communicate with the NVIDIA driver",
    "NVIDIA-SMI has failed",
    "Driver/library version mismatch",
)


MAX_INDEX_DIGITS = 4
MAX_MIB_DIGITS = 8  # 99,999,999 MiB (95 TiB) per GPU: anything longer is not a memory figure
MAX_NAME_CHARS = 128
VERSION_RE = re.compile(r"\A[0-9]+(?:\.[0-9]+)+\Z")
COMPUTE_CAP_RE = re.compile(r"\A[0-9]+\.[0-9]+\Z")
INDEX_RE = re.compile(rf"\A[0-9]{{1,{MAX_INDEX_DIGITS}}}\Z")
MIB_RE = re.compile(rf"\A([0-9]{{1,{MAX_MIB_DIGITS}}})(?: ?MiB)?\Z")
# A line that starts like a GPU row: an index, then a comma or the end of the line.
ROW_START_RE = re.compile(r"\A\s*[0-9]+\s*(?:,|\Z)")
UUID_HEX_DIGITS = 32
HEX_AND_DASH = frozenset("0123456789abcdefABCDEF-")
EXCERPT_CHARS = 300


# --- running nvidia-smi ----------------------------------------------------------------------------------------


def decode_output(data: bytes) -> str:
    """Output that is parsed, as text: strict UTF-8, or a ValueError saying where it is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        around = data[max(exc.start - 20, 0) : exc.end + 20]
        raise ValueError(
            f"printed bytes that are not UTF-8 (byte {exc.start} of {len(data)}, near {around!r}); "
            "nvidia-smi prints ASCII, so this is not its output or it is corrupted"
        ) from None


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """Text for a message: stripped, control characters escaped, cut to `limit` characters."""
    text = text.strip()
    shown = repr(text[:limit])
    return shown + (f" ... ({len(text) - limit} more characters)" if len(text) > limit else "")


# --- the query -------------------------------------------------------------------------------------------------


def query_args(fields: tuple[str, ...] | list[str]) -> list[str]:
    """Arguments for `nvidia-smi` asking the given fields as bare CSV."""
    return [f"--query-gpu={','.join(fields)}", CSV_FORMAT]


def fields_without_optional(fields: tuple[str, ...] | list[str]) -> list[str]:
    """The query fields minus those older drivers do not know (compute_cap)."""
    return [field for field in fields if field not in OPTIONAL_QUERY_FIELDS]


def output_lines(text: str) -> list[str]:
    """Lines of output, split at newlines only (a stray \\x1c or \\x85 stays inside its line and is refused)."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def is_row_line(line: str, fields: tuple[str, ...] | list[str]) -> bool:
    """Whether a line is meant as a GPU row: it starts with an index when the query's first field is `index`.

    nvidia-smi prints notices among the rows ("WARNING: infoROM is corrupted at gpu ...",
    "Unable to determine the device handle for GPU ...: Unknown Error"); they may hold
    commas but never start with a number.
    """
    if not fields or fields[0] != "index":
        return True
    return ROW_START_RE.match(line) is not None


def split_query_lines(text: str, fields: tuple[str, ...] | list[str]) -> tuple[list[tuple[int, list[str]]], list[str]]:
    """(GPU rows as (line number, cells), the other non-empty lines) of `--format=csv,noheader,nounits` output.

    nvidia-smi separates values with ", ". A row with the wrong number of values
    raises ValueError naming the line: better to stop than to shift every value into
    the wrong field.
    """
    rows: list[tuple[int, list[str]]] = []
    others: list[str] = []
    for number, line in enumerate(output_lines(text), start=1):
        if not line.strip():
            continue
        if not is_row_line(line, fields):
            others.append(line)
            continue
        cells = [cell.strip() for cell in line.split(", ")]
        if len(cells) != len(fields):
            raise ValueError(
                f"line {number}: nvidia-smi printed {len(cells)} values where {len(fields)} were asked "
                f"({', '.join(fields)}): {excerpt(line)}"
            )
        rows.append((number, cells))
    return rows, others


def csv_rows(text: str, fields: tuple[str, ...] | list[str]) -> list[dict[str, str]]:
    """The GPU rows of the output, each keyed by field name (see split_query_lines)."""
    rows, _others = split_query_lines(text, fields)
    return [dict(zip(fields, cells, strict=True)) for _number, cells in rows]


def value_or_none(raw: str | None) -> str | None:
    """A reported value, or None where nvidia-smi says it has none ("[N/A]", "[Not Supported]", ...)."""
    if raw is None:
        return None
    value = raw.strip()
    return None if value in UNAVAILABLE_VALUES else value


def mib_or_none(raw: str | None) -> int | None:
    """A memory amount in MiB ("81559" or "81559 MiB"); None when nvidia-smi has none; ValueError otherwise."""
    value = value_or_none(raw)
    if value is None:
        return None
    match = MIB_RE.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a whole number of MiB")
    return int(match.group(1))


def int_or_none(raw: str | None) -> int | None:
    """An integer value (a GPU index), or None when absent; ValueError when it is not one."""
    value = value_or_none(raw)
    if value is None:
        return None
    if INDEX_RE.match(value) is None:
        raise ValueError(f"{value!r} is not a GPU index")
    return int(value)


def enabled_or_none(raw: str | None) -> bool | None:
    """True for "Enabled"/"On", False for "Disabled"/"Off", None otherwise (lenient; rows use persistence_mode)."""
    value = (value_or_none(raw) or "").lower()
    if value in ("enabled", "on"):
        return True
    if value in ("disabled", "off"):
        return False
    return None


def persistence_mode(raw: str | None) -> bool | None:
    """The CSV form's "Enabled"/"Disabled" as a bool, None for "[N/A]"; ValueError for anything else."""
    value = value_or_none(raw)
    if value is None:
        return None
    if value == "Enabled":
        return True
    if value == "Disabled":
        return False
    raise ValueError(f"{value!r} is neither Enabled, Disabled nor [N/A]")


def product_name(raw: str | None) -> str | None:
    """A GPU's product name: printable, at most 128 characters; ValueError when missing or odd."""
    if raw is None:
        return None
    value = value_or_none(raw)
    if value is None:
        raise ValueError(f"no product name ({raw.strip()!r})")
    if len(value) > MAX_NAME_CHARS or not value.isprintable():
        raise ValueError(f"{excerpt(value, 60)} is not a product name")
    return value


def gpu_uuid(raw: str | None) -> str | None:
    """A GPU UUID ("GPU-" and 32 hex digits with dashes), None for "[N/A]"; ValueError otherwise."""
    value = value_or_none(raw)
    if value is None:
        return None
    rest = value.removeprefix("GPU-")
    if rest == value or not set(rest) <= HEX_AND_DASH or len(rest.replace("-", "")) != UUID_HEX_DIGITS:
        raise ValueError(f"{excerpt(value, 60)} is not a GPU UUID (GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
    return value


def compute_capability(raw: str | None) -> str | None:
    """A compute capability such as "9.0", None for "[N/A]"; ValueError otherwise."""
    value = value_or_none(raw)
    if value is None:
        return None
    if COMPUTE_CAP_RE.match(value) is None:
        raise ValueError(f"{excerpt(value, 60)} is not a compute capability such as 9.0")
    return value


def dotted_version(raw: str | None) -> str | None:
    """A driver version such as "565.57.01", None for "[N/A]"; ValueError otherwise."""
    value = value_or_none(raw)
    if value is None:
        return None
    if VERSION_RE.match(value) is None:
        raise ValueError(f"{excerpt(value, 60)} is not a dotted version such as 565.57.01")
    return value


CELL_READERS = {
    "index": ("index", int_or_none),
    "name": ("name", product_name),
    "uuid": ("uuid", gpu_uuid),
    "memory.total": ("memory_total_mib", mib_or_none),
    "memory.used": ("memory_used_mib", mib_or_none),
    "memory.free": ("memory_free_mib", mib_or_none),
    "persistence_mode": ("persistence_mode", persistence_mode),
    "compute_cap": ("compute_cap", compute_capability),
}


def gpu_from_row(row: dict[str, str]) -> dict:
    """One GPU's facts from a parsed CSV row; fields not asked or not available are None.

    Raises ValueError naming the GPU (its index cell) and the field whose value is
    malformed, and when memory used or free is above the total.
    """
    gpu: dict = {}
    label = f"GPU {row.get('index', '?').strip()}"
    for field, (key, reader) in CELL_READERS.items():
        try:
            gpu[key] = reader(row.get(field))
        except ValueError as exc:
            raise ValueError(f"{label}: {field}: {exc}") from None
    if gpu["index"] is None and "index" in row:
        raise ValueError(f"{label}: index: no index")
    total = gpu["memory_total_mib"]
    for key, field in (("memory_used_mib", "memory.used"), ("memory_free_mib", "memory.free")):
        if total is not None and gpu[key] is not None and gpu[key] > total:
            raise ValueError(
                f"{label}: {field} {gpu[key]} MiB is more than memory.total {total} MiB; "
                "nvidia-smi's figures are inconsistent, so no free memory can be worked out from them"
            )
    return gpu


def check_indices(gpus: list[dict]) -> None:
    """The GPUs must be listed as 0, 1, ..., n-1, in order: a gap is a GPU nvidia-smi could not read."""
    indices = [gpu["index"] for gpu in gpus]
    if None in indices or indices == list(range(len(gpus))):
        return
    missing = sorted(set(range(max(indices) + 1)) - set(indices))
    detail = f"GPU {', '.join(map(str, missing))} missing" if missing else "listed out of order or twice"
    raise ValueError(
        f"nvidia-smi listed GPU indices {', '.join(map(str, indices))} ({detail}): a GPU it lists no row for "
        "usually failed (fallen off the bus, an Xid error; see `nvidia-smi -q` and `dmesg | grep -i xid` on the "
        "host)"
    )


def read_query_output(text: str, fields: tuple[str, ...] | list[str]) -> tuple[list[dict], str | None, list[str]]:
    """(GPUs, driver version or None, lines that were not GPU rows) of `--query-gpu` CSV output, validated.

    Raises ValueError, with a message a person can act on, when a row is malformed,
    when the output lists no GPU at all (empty output is not a host without GPUs: that
    is a host without nvidia-smi), when the GPUs' indices have gaps, or when the GPUs
    report different driver versions.
    """
    rows, others = split_query_lines(text, fields)
    if not rows:
        printed = f"; instead it printed: {excerpt(chr(10).join(others))}" if others else " (its output was empty)"
        raise ValueError(f"nvidia-smi listed no GPUs{printed}")
    keyed = [dict(zip(fields, cells, strict=True)) for _number, cells in rows]
    gpus = [gpu_from_row(row) for row in keyed]
    check_indices(gpus)
    return gpus, driver_version_from_rows(keyed), others


def driver_version_from_rows(rows: list[dict[str, str]]) -> str | None:
    """The one driver version every row reports, None when not asked or [N/A]; ValueError when they differ."""
    versions = []
    for row in rows:
        if "driver_version" not in row:
            return None
        try:
            versions.append(dotted_version(row["driver_version"]))
        except ValueError as exc:
            raise ValueError(f"GPU {row.get('index', '?')}: driver_version: {exc}") from None
    if len(set(versions)) > 1:
        shown = ", ".join(f"GPU {row.get('index', '?')}: {row['driver_version']}" for row in rows)
        raise ValueError(f"the GPUs report different driver versions ({shown}); one host has one driver")
    return versions[0] if versions else None


def gpus_from_csv(text: str, fields: tuple[str, ...] | list[str]) -> list[dict]:
    """Every GPU's facts from `--query-gpu` CSV output (validated; see read_query_output)."""
    return read_query_output(text, fields)[0]


def driver_version_from_csv(text: str, fields: tuple[str, ...] | list[str]) -> str | None:
    """The driver version the GPUs report, or None (validated; see read_query_output)."""
    return read_query_output(text, fields)[1]


def unknown_memory_notes(gpus: list[dict]) -> list[str]:
    """A sentence for each GPU whose total or free memory nvidia-smi does not report."""
    notes = []
    for gpu in gpus:
        if gpu["memory_total_mib"] is None:
            notes.append(f"GPU {gpu['index']}: nvidia-smi reports no memory.total; the memory checks cannot run")
        elif free_mib(gpu) is None:
            notes.append(
                f"GPU {gpu['index']}: nvidia-smi reports neither memory.free nor memory.used; "
                "the free-memory check cannot run"
            )
    return notes


# --- the banner ------------------------------------------------------------------------------------------------


def cuda_version_from_banner(text: str) -> str | None:
    """The "CUDA Version: X.Y" of plain `nvidia-smi` (or `nvidia-smi -q`), or None if absent or N/A."""
    match = re.search(r"CUDA Version\s*:\s*([0-9]+(?:\.[0-9]+)*)", text)
    return match.group(1) if match else None


def driver_version_from_banner(text: str) -> str | None:
    """The "Driver Version: X.Y[.Z]" of plain `nvidia-smi`, or None."""
    match = re.search(r"Driver Version\s*:\s*([0-9]+(?:\.[0-9]+)+)(?![0-9.])", text)
    return match.group(1) if match else None


def is_driver_failure(text: str) -> bool:
    """Whether nvidia-smi's output says it cannot reach a working driver."""
    return any(marker.lower() in text.lower() for marker in DRIVER_FAILURE_MARKERS)


def driver_failure_message(output: str, nvidia_smi: str) -> str:
    """An actionable message for a host whose nvidia-smi cannot talk to the driver."""
    return (
        f"{nvidia_smi} is installed but cannot talk to the NVIDIA kernel driver: {output.strip()} "
        "Fix on the host: load the driver (`sudo modprobe nvidia`; check `lsmod | grep nvidia` and "
        "`dmesg | grep -i nvidia`), or reboot if a driver or kernel was installed or upgraded since the last boot "
        "(a 'Driver/library version mismatch' always needs the reboot). "
        "Set fail_on_error=false to report the host without GPUs instead of failing."
    )


# --- the fact --------------------------------------------------------------------------------------------------


def smallest(values: list[int | None]) -> int | None:
    """The smallest value; None when there is none or any is unknown (an unknown one may be the smallest)."""
    if not values or None in values:
        return None
    return min(value for value in values if value is not None)


def free_mib(gpu: dict) -> int | None:
    """Free memory of a GPU: reported, else total - used (an upper bound: the driver reserves some)."""
    if gpu["memory_free_mib"] is not None:
        return gpu["memory_free_mib"]
    if gpu["memory_total_mib"] is None or gpu["memory_used_mib"] is None:
        return None
    return gpu["memory_total_mib"] - gpu["memory_used_mib"]


def accelerator_facts(gpus: list[dict], driver_version: str | None, cuda_version: str | None) -> dict:
    """The `vllm_accelerator` fact for a host: 'cuda' with its GPUs, or 'cpu' when it has none."""
    names = {gpu["name"] for gpu in gpus}
    return {
        "accelerator": "cuda" if gpus else "cpu",
        "gpu_count": len(gpus),
        "gpus": gpus,
        "driver_version": driver_version,
        "cuda_version": cuda_version,
        "memory_total_mib_min": smallest([gpu["memory_total_mib"] for gpu in gpus]),
        "memory_free_mib_min": smallest([free_mib(gpu) for gpu in gpus]),
        "memory_free_estimated": any(gpu["memory_free_mib"] is None and free_mib(gpu) is not None for gpu in gpus),
        "homogeneous": len(names) <= 1,
    }


def cpu_facts() -> dict:
    """The `vllm_accelerator` fact for a host without nvidia-smi."""
    return accelerator_facts([], None, None)
