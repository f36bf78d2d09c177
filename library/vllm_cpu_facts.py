#!/usr/bin/python
"""Ansible module vllm_cpu_facts: the host CPU's model and the instruction sets vLLM's CPU kernels use."""

DOCUMENTATION = r"""
---
module: vllm_cpu_facts
short_description: Gather the CPU model and instruction-set level of a vLLM host as facts
description:
  - Reads C(/proc/cpuinfo) and returns the C(vllm_cpu) fact, the CPU's model, its online CPU count and the
    instruction-set features that decide which kernels vLLM's CPU build runs (AVX2, AVX-512, AVX-512 BF16, AMX).
  - A benchmark figure means little without the CPU it ran on, so preflight records this on every host, GPU hosts
    included (the CPU feeds the GPUs and runs the tokenizer); the fleet table and the result files show it.
  - Read-only; never changes the host. Supports check mode.
version_added: "1.1.0"
author:
  - vllm-fleet maintainers
options:
  cpuinfo_path:
    description:
      - The file to read; tests point it at a captured copy.
    type: path
    default: /proc/cpuinfo
attributes:
  check_mode:
    support: full
notes:
  - Only the first processor entry is read; the CPUs of one host are alike.
seealso:
  - module: vllm_gpu_facts
  - module: vllm_amx_permission
"""

EXAMPLES = r"""
- name: Read the CPU of each vLLM host
  vllm_cpu_facts:

- name: Say which kernels the CPU build will use
  ansible.builtin.debug:
    msg: "{{ ansible_facts['vllm_cpu']['model'] }}: {{ ansible_facts['vllm_cpu']['isa_level'] }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts added to the host.
  returned: always
  type: dict
  contains:
    vllm_cpu:
      description: The host's CPU.
      returned: always
      type: dict
      contains:
        model:
          description: The CPU's model name; null when /proc/cpuinfo has none.
          type: str
          sample: Intel(R) Xeon(R) Platinum 8480+
        vendor:
          description: The vendor id (V(GenuineIntel), V(AuthenticAMD)); null on CPUs that do not report one.
          type: str
        vcpus:
          description: CPUs this process may run on.
          type: int
          sample: 2
        isa:
          description:
            - The features among V(avx2), V(avx512f), V(avx512_vnni), V(avx512_bf16), V(avx512_fp16), V(amx_tile),
              V(amx_bf16), V(amx_int8) that the CPU has, in that order.
          type: list
          elements: str
        isa_level:
          description: V(AMX), V(AVX-512 BF16), V(AVX-512), V(AVX2) or V(base), the best the CPU build can use.
          type: str
          sample: AVX-512 BF16
        amx:
          description: Whether the CPU has AMX tiles (C(amx_tile)), which vLLM's CPU build needs permission for.
          type: bool
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.vllm_cpu import CpuInfoError, cpu_facts

MAX_CPUINFO_BYTES = 8 * 1024 * 1024


def online_cpus() -> int:
    """CPUs this process may run on (its affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 0


def main() -> None:
    module = AnsibleModule(
        argument_spec={"cpuinfo_path": {"type": "path", "default": "/proc/cpuinfo"}},
        supports_check_mode=True,
    )
    path = module.params["cpuinfo_path"]
    try:
        with open(path, "rb") as handle:
            text = handle.read(MAX_CPUINFO_BYTES).decode("utf-8", "replace")
        facts = cpu_facts(text, online_cpus())
    except OSError as exc:
        module.fail_json(msg=f"cannot read {path}: {exc.strerror or exc}")
    except CpuInfoError as exc:
        module.fail_json(msg=f"cannot read {path} as /proc/cpuinfo: {exc}")
    module.exit_json(changed=False, ansible_facts={"vllm_cpu": facts})


if __name__ == "__main__":
    main()
