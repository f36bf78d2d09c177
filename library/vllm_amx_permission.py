#!/usr/bin/python
"""Ansible module vllm_amx_permission: let vLLM's CPU workers use AMX, in the venv that runs them."""

DOCUMENTATION = r"""
---
module: vllm_amx_permission
short_description: Install or remove the AMX permission hook of a vLLM CPU venv
description:
  - On an Intel CPU with AMX (Sapphire Rapids and later), vLLM's CPU build runs its AMX attention kernel for
    bfloat16 models, but Linux lets a process use AMX tile data only after it asked with
    C(arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)). vLLM's CPU workers are spawned processes that never ask,
    so the first request kills the worker with SIGILL (checked on vllm-cpu 0.32.0).
  - This module writes C(vllm_fleet_amx.pth) and C(vllm_fleet_amx.py) into the venv's site-packages. Python runs
    the C(.pth) at the start of every process of that venv, spawned workers included, and it asks for the
    permission. The bfloat16 AMX kernel then runs; nothing falls back to float32.
  - With O(mode=auto) the hook is installed only where it is needed, the C(cpu) variant on a CPU with C(amx_tile),
    for the vLLM releases that do not ask themselves; elsewhere it is removed, so a host without AMX is left as it
    was. The releases are listed in C(module_utils/vllm_cpu.py) (C(AMX_PERMISSION_FIXED_IN)).
  - Reports C(changed) when it wrote or removed a file; a running server needs a restart to pick it up.
version_added: "1.1.0"
author:
  - vllm-fleet maintainers
options:
  venv:
    description: The venv of vLLM (its root, holding C(lib/pythonX.Y/site-packages)).
    type: path
    required: true
  variant:
    description: The vLLM build in the venv.
    type: str
    choices: [cpu, cuda]
    required: true
  version:
    description: The vLLM release in the venv, such as V(0.32.0).
    type: str
    required: true
  mode:
    description:
      - V(auto) decides from the variant, the release and the CPU; V(always) installs the hook on any host;
        V(never) removes it (to see the failure it prevents).
    type: str
    choices: [auto, always, never]
    default: auto
  cpuinfo_path:
    description: Where the CPU's flags are read; tests point it at a captured copy.
    type: path
    default: /proc/cpuinfo
attributes:
  check_mode:
    support: full
notes:
  - The hook never raises. When the kernel refuses, the interpreter starts as before and
    C(vllm_fleet_amx.STATUS) says why.
seealso:
  - module: vllm_cpu_facts
"""

EXAMPLES = r"""
- name: Let the CPU workers of vLLM use AMX where they need to
  vllm_amx_permission:
    venv: /opt/vllm/venvs/vllm-cpu-0.32.0
    variant: cpu
    version: "0.32.0"
  notify: Restart vllm
"""

RETURN = r"""
installed:
  description: Whether the hook is in the venv after the task.
  returned: always
  type: bool
reason:
  description: Why it is installed or not.
  returned: always
  type: str
  sample: "not needed: this CPU has no AMX (no amx_tile in /proc/cpuinfo)"
site_packages:
  description: The venv's site-packages folder the hook goes to.
  returned: always
  type: str
"""

import glob
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.vllm_cpu import (
    AMX_HOOK_MODULE,
    AMX_HOOK_MODULE_NAME,
    AMX_HOOK_PTH,
    AMX_HOOK_PTH_NAME,
    CpuInfoError,
    amx_hook_decision,
    cpu_flags,
    cpuinfo_fields,
)
from ansible.module_utils.vllm_files import write_text_atomic


def site_packages(venv: str) -> str:
    """The one site-packages folder of a venv; ValueError when there is none or several."""
    found = sorted(glob.glob(os.path.join(glob.escape(venv), "lib", "python3.*", "site-packages")))
    if len(found) != 1:
        raise ValueError(
            f"venv={venv!r} has {len(found)} lib/python3.*/site-packages folders, not one: is it a venv of vLLM?"
        )
    return found[0]


def write_if_different(path: str, content: str, check_mode: bool) -> bool:
    """Write content to path (mode 0644, atomically) unless it holds it already; True when it (would have) changed."""
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == content:
                return False
    except FileNotFoundError:
        pass
    if not check_mode:
        write_text_atomic(path, content, 0o644)
    return True


def remove_if_present(path: str, check_mode: bool) -> bool:
    if not os.path.lexists(path):
        return False
    if not check_mode:
        os.unlink(path)
    return True


def hook_files(folder: str) -> dict[str, str]:
    """Path to content of the two files of the hook."""
    return {
        os.path.join(folder, AMX_HOOK_PTH_NAME): AMX_HOOK_PTH,
        os.path.join(folder, AMX_HOOK_MODULE_NAME + ".py"): AMX_HOOK_MODULE,
    }


def has_amx_tile(path: str) -> bool:
    with open(path, "rb") as handle:
        return "amx_tile" in cpu_flags(cpuinfo_fields(handle.read(8 * 1024 * 1024).decode("utf-8", "replace")))


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "venv": {"type": "path", "required": True},
            "variant": {"type": "str", "choices": ["cpu", "cuda"], "required": True},
            "version": {"type": "str", "required": True},
            "mode": {"type": "str", "choices": ["auto", "always", "never"], "default": "auto"},
            "cpuinfo_path": {"type": "path", "default": "/proc/cpuinfo"},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        folder = site_packages(params["venv"])
        install, reason = amx_hook_decision(
            params["variant"], params["version"], has_amx_tile(params["cpuinfo_path"]), params["mode"]
        )
    except (ValueError, CpuInfoError) as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"cannot read {exc.filename or params['cpuinfo_path']}: {exc.strerror or exc}")
    changed = False
    try:
        for path, content in hook_files(folder).items():
            if install:
                changed |= write_if_different(path, content, module.check_mode)
            else:
                changed |= remove_if_present(path, module.check_mode)
    except OSError as exc:
        module.fail_json(msg=f"cannot {'write' if install else 'remove'} the AMX hook in {folder}: {exc}")
    module.exit_json(changed=changed, installed=install, reason=reason, site_packages=folder)


if __name__ == "__main__":
    main()
