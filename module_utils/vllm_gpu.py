"""Reading what `nvidia-smi` says about a host's GPUs, as plain functions.

Standard library only: this file runs on managed hosts under their system python3.
Everything here is pure (text in, data out) so it is tested without a GPU; the
module `vllm_gpu_facts` runs the commands.
"""

import re

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


def query_args(fields: tuple[str, ...] | list[str]) -> list[str]:
    """Arguments for `nvidia-smi` asking the given fields as bare CSV."""
    return [f"--query-gpu={','.join(fields)}", CSV_FORMAT]


def fields_without_optional(fields: tuple[str, ...] | list[str]) -> list[str]:
    """The query fields minus those older drivers do not know (compute_cap)."""
    return [field for field in fields if field not in OPTIONAL_QUERY_FIELDS]


def csv_rows(text: str, fields: tuple[str, ...] | list[str]) -> list[dict[str, str]]:
    """Rows of `--format=csv,noheader,nounits` output, each keyed by field name.

    nvidia-smi separates values with ", ". A line with the wrong number of
    values raises ValueError naming the line: better to stop than to shift
    every value into the wrong field.
    """
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        cells = [cell.strip() for cell in line.split(", ")]
        if len(cells) != len(fields):
            raise ValueError(
                f"nvidia-smi printed {len(cells)} values where {len(fields)} were asked ({', '.join(fields)}): {line!r}"
            )
        rows.append(dict(zip(fields, cells, strict=True)))
    return rows


def value_or_none(raw: str | None) -> str | None:
    """A reported value, or None where nvidia-smi says it has none ("[N/A]", "[Not Supported]", ...)."""
    if raw is None:
        return None
    value = raw.strip()
    return None if value in UNAVAILABLE_VALUES else value


def mib_or_none(raw: str | None) -> int | None:
    """A memory amount in MiB ("81559" or "81559 MiB"), or None when not available."""
    value = value_or_none(raw)
    if value is None:
        return None
    number = value.removesuffix("MiB").strip()
    return int(number) if number.isdigit() else None


def int_or_none(raw: str | None) -> int | None:
    """An integer value (a GPU index), or None."""
    value = value_or_none(raw)
    return int(value) if value is not None and value.isdigit() else None


def enabled_or_none(raw: str | None) -> bool | None:
    """True for "Enabled"/"On", False for "Disabled"/"Off", None otherwise."""
    value = (value_or_none(raw) or "").lower()
    if value in ("enabled", "on"):
        return True
    if value in ("disabled", "off"):
        return False
    return None


def gpu_from_row(row: dict[str, str]) -> dict:
    """One GPU's facts from a parsed CSV row; fields not asked or not available are None."""
    return {
        "index": int_or_none(row.get("index")),
        "name": value_or_none(row.get("name")),
        "uuid": value_or_none(row.get("uuid")),
        "memory_total_mib": mib_or_none(row.get("memory.total")),
        "memory_used_mib": mib_or_none(row.get("memory.used")),
        "memory_free_mib": mib_or_none(row.get("memory.free")),
        "persistence_mode": enabled_or_none(row.get("persistence_mode")),
        "compute_cap": value_or_none(row.get("compute_cap")),
    }


def gpus_from_csv(text: str, fields: tuple[str, ...] | list[str]) -> list[dict]:
    """Every GPU's facts from `--query-gpu` CSV output."""
    return [gpu_from_row(row) for row in csv_rows(text, fields)]


def driver_version_from_csv(text: str, fields: tuple[str, ...] | list[str]) -> str | None:
    """The driver version reported by the first GPU, or None."""
    if "driver_version" not in fields:
        return None
    rows = csv_rows(text, fields)
    return value_or_none(rows[0]["driver_version"]) if rows else None


def cuda_version_from_banner(text: str) -> str | None:
    """The "CUDA Version: X.Y" of plain `nvidia-smi` (or `nvidia-smi -q`), or None if absent or N/A."""
    match = re.search(r"CUDA Version\s*:\s*([0-9]+(?:\.[0-9]+)*)", text)
    return match.group(1) if match else None


def driver_version_from_banner(text: str) -> str | None:
    """The "Driver Version: X" of plain `nvidia-smi`, or None."""
    match = re.search(r"Driver Version\s*:\s*([0-9][0-9.]*)", text)
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


def smallest(values: list[int | None]) -> int | None:
    """The smallest known value, or None when none is known."""
    known = [value for value in values if value is not None]
    return min(known) if known else None


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
