#!/usr/bin/python
"""Ansible module vllm_gpu_facts: what accelerator a vLLM host has, read from nvidia-smi."""

DOCUMENTATION = r"""
---
module: vllm_gpu_facts
short_description: Gather the NVIDIA GPUs of a vLLM host as facts
description:
  - Runs C(nvidia-smi --query-gpu=index,name,uuid,memory.total,memory.used,memory.free,driver_version,
    persistence_mode,compute_cap --format=csv,noheader,nounits) and plain C(nvidia-smi) (for the CUDA version in
    its banner) and returns them as the
    C(vllm_accelerator) fact.
  - C(compute_cap) is only known to drivers from R510 on; when the full query fails the module asks again without it
    and reports C(compute_cap) as null.
  - A host without C(nvidia-smi) is reported as a CPU host (C(accelerator=cpu), no GPUs); this is not an error.
  - A host whose C(nvidia-smi) cannot reach the kernel driver (driver not loaded, or a driver installed without the
    reboot it needs) fails with a message saying how to fix it, unless O(fail_on_error=false).
  - Read-only; never changes the host. Supports check mode.
version_added: "1.0.0"
author:
  - vllm-fleet maintainers
options:
  nvidia_smi_path:
    description:
      - Path of the C(nvidia-smi) binary.
      - When not set, C(nvidia-smi) is looked up on E(PATH) and in the usual system folders; not finding it means a
        CPU host.
      - When set, the file must exist; a wrong path fails instead of silently reporting a CPU host.
    type: path
  fail_on_error:
    description:
      - Fail when C(nvidia-smi) exists but does not answer (driver not loaded, version mismatch, unexpected output).
      - When V(false), the host is reported with C(accelerator=cpu), no GPUs, and the reason in C(nvidia_smi_error),
        and a warning is shown.
    type: bool
    default: true
notes:
  - Memory figures are MiB as printed by C(nvidia-smi) (C(nounits)); C(memory_free_mib) excludes memory the driver
    reserves, so C(used + free) is usually a few hundred MiB less than C(total).
  - Check mode is supported; the module only reads.
seealso:
  - module: vllm_server_info
"""

EXAMPLES = r"""
- name: Read the accelerator of each vLLM host
  vllm_gpu_facts:

- name: Refuse to deploy a tensor-parallel size the host cannot hold
  ansible.builtin.assert:
    that:
      - ansible_facts['vllm_accelerator']['gpu_count'] >= vllm_service_tensor_parallel_size
      - ansible_facts['vllm_accelerator']['homogeneous']
    fail_msg: >-
      vllm_service_tensor_parallel_size={{ vllm_service_tensor_parallel_size }} but the host has
      {{ ansible_facts['vllm_accelerator']['gpu_count'] }} GPU(s)

- name: Use a nvidia-smi outside PATH and do not fail on a broken driver
  vllm_gpu_facts:
    nvidia_smi_path: /usr/lib/wsl/lib/nvidia-smi
    fail_on_error: false
"""

RETURN = r"""
ansible_facts:
  description: Facts added to the host.
  returned: always
  type: dict
  contains:
    vllm_accelerator:
      description: The host's accelerator as vLLM would see it.
      returned: always
      type: dict
      contains:
        accelerator:
          description: V(cuda) when NVIDIA GPUs answered, V(cpu) otherwise.
          type: str
          sample: cuda
        gpu_count:
          description: Number of GPUs nvidia-smi listed.
          type: int
          sample: 8
        gpus:
          description: One entry per GPU, in nvidia-smi's index order.
          type: list
          elements: dict
          contains:
            index:
              description: nvidia-smi's GPU index.
              type: int
            name:
              description: Product name.
              type: str
              sample: NVIDIA H100 80GB HBM3
            uuid:
              description: GPU UUID.
              type: str
              sample: GPU-b42dd28e-ffdd-8720-1df0-98bd8cdc05b1
            memory_total_mib:
              description: Total framebuffer memory, MiB.
              type: int
              sample: 81559
            memory_used_mib:
              description: Memory in use by any process, MiB.
              type: int
              sample: 1
            memory_free_mib:
              description: Memory free, MiB.
              type: int
              sample: 81106
            persistence_mode:
              description: Whether persistence mode is enabled; null where nvidia-smi reports N/A.
              type: bool
            compute_cap:
              description: CUDA compute capability such as V(9.0); null on drivers older than R510.
              type: str
        driver_version:
          description: NVIDIA driver version.
          type: str
          sample: 565.57.01
        cuda_version:
          description: Highest CUDA version the driver supports, from the nvidia-smi banner; null when not shown.
          type: str
          sample: "12.7"
        memory_total_mib_min:
          description: Total memory of the smallest GPU, MiB; null without GPUs.
          type: int
        memory_free_mib_min:
          description:
            - Free memory of the GPU with the least free, MiB; null without GPUs.
            - Where nvidia-smi does not report memory.free, total - used (an upper bound).
          type: int
        memory_free_estimated:
          description: Whether memory_free_mib_min was estimated as total - used.
          type: bool
        homogeneous:
          description: Whether all GPUs have the same product name (true without GPUs).
          type: bool
        nvidia_smi_path:
          description: The nvidia-smi that was run; null when none was found.
          type: str
        nvidia_smi_error:
          description: Why nvidia-smi gave no GPUs, when O(fail_on_error=false) let the module continue.
          returned: when nvidia-smi failed and O(fail_on_error=false)
          type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.vllm_gpu import (
    GPU_QUERY_FIELDS,
    MINIMAL_QUERY_FIELDS,
    accelerator_facts,
    cpu_facts,
    cuda_version_from_banner,
    driver_failure_message,
    driver_version_from_banner,
    driver_version_from_csv,
    fields_without_optional,
    gpus_from_csv,
    is_driver_failure,
    query_args,
)


def nvidia_smi_location(module: AnsibleModule) -> str | None:
    """The nvidia-smi to run: the configured path (which must exist) or the one found on PATH."""
    configured = module.params["nvidia_smi_path"]
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            module.fail_json(
                msg=f"nvidia_smi_path={configured!r} is not an executable file; give the path of nvidia-smi "
                "or leave nvidia_smi_path unset to look it up on PATH"
            )
        return configured
    return module.get_bin_path("nvidia-smi")


def query_output(module: AnsibleModule, nvidia_smi: str) -> tuple[str | None, list[str], str]:
    """(CSV output or None, the fields it holds, the error text when it failed)."""
    fields = list(GPU_QUERY_FIELDS)
    rc, out, err = module.run_command([nvidia_smi, *query_args(fields)])
    if rc == 0:
        return out, fields, ""
    first_error = "\n".join(part.strip() for part in (out, err) if part.strip())
    if is_driver_failure(first_error):
        return None, fields, first_error
    for fallback in (fields_without_optional(fields), list(MINIMAL_QUERY_FIELDS)):
        rc, out, err = module.run_command([nvidia_smi, *query_args(fallback)])
        if rc == 0:
            return out, fallback, ""
    return None, fields, f"rc={rc}: {(out + err).strip() or first_error}"


def failure_facts(module: AnsibleModule, message: str, nvidia_smi: str) -> dict:
    """Fail, or (fail_on_error=false) warn and return CPU facts carrying the reason."""
    if module.params["fail_on_error"]:
        module.fail_json(msg=message, ansible_facts={})
    module.warn(message)
    facts = cpu_facts()
    facts["nvidia_smi_path"] = nvidia_smi
    facts["nvidia_smi_error"] = message
    return facts


def gpu_facts(module: AnsibleModule, nvidia_smi: str) -> dict:
    """The vllm_accelerator fact from a present nvidia-smi."""
    csv_text, fields, error = query_output(module, nvidia_smi)
    if csv_text is None:
        if is_driver_failure(error):
            return failure_facts(module, driver_failure_message(error, nvidia_smi), nvidia_smi)
        return failure_facts(
            module,
            f"{nvidia_smi} --query-gpu failed ({error}); run it by hand on the host to see why",
            nvidia_smi,
        )
    try:
        gpus = gpus_from_csv(csv_text, fields)
        driver_version = driver_version_from_csv(csv_text, fields)
    except ValueError as exc:
        return failure_facts(module, f"could not read the output of {nvidia_smi}: {exc}", nvidia_smi)
    rc, banner, banner_err = module.run_command([nvidia_smi])
    cuda_version = cuda_version_from_banner(banner) if rc == 0 else None
    if rc != 0:
        module.warn(f"{nvidia_smi} (banner for the CUDA version) failed rc={rc}: {(banner + banner_err).strip()}")
    facts = accelerator_facts(gpus, driver_version or driver_version_from_banner(banner), cuda_version)
    facts["nvidia_smi_path"] = nvidia_smi
    return facts


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "nvidia_smi_path": {"type": "path"},
            "fail_on_error": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    nvidia_smi = nvidia_smi_location(module)
    if nvidia_smi is None:
        facts = cpu_facts()
        facts["nvidia_smi_path"] = None
    else:
        facts = gpu_facts(module, nvidia_smi)
    module.exit_json(changed=False, ansible_facts={"vllm_accelerator": facts})


if __name__ == "__main__":
    main()
