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
    and reports C(compute_cap) as null, then once more with the minimal fields (index, name, memory.total,
    memory.used, driver_version, persistence_mode; free memory is then estimated as total - used).
  - A host without C(nvidia-smi) is reported as a CPU host (C(accelerator=cpu), no GPUs); this is not an error.
  - A host whose C(nvidia-smi) cannot reach the kernel driver (driver not loaded, or a driver installed without the
    reboot it needs) fails with a message saying how to fix it, unless O(fail_on_error=false).
  - Every run of C(nvidia-smi) has O(timeout) seconds for the whole exchange (start, all of its output, exit),
    and at most 1 MiB of output (stdout and stderr together). Past either it is killed with SIGKILL together
    with anything it started (it runs in a process group of its own), and the module fails naming the command.
    A query that hangs is not retried.
  - The module runs C(nvidia-smi) at most four times (the query, two retries with fewer fields, the banner), so
    it ends within about 4 x O(timeout) seconds, plus up to 5 seconds to reap a run it killed (a killed run is
    always the last). A process that does not go even after SIGKILL (stuck in the kernel on a hung driver) is
    left behind rather than waited on.
  - Everything C(nvidia-smi) prints is validated, never guessed at. The query's output must be UTF-8; a byte
    that is not fails the module. Each GPU row must have one value per field asked. The index and a printable
    product name are required; memory figures (whole MiB, used and free not above the total), UUID (C(GPU-)
    and 32 hex digits), persistence mode (C(Enabled), C(Disabled) or C([N/A])), compute capability and driver
    version (dotted numbers, the same on every GPU) must have their shape or be one of nvidia-smi's markers for
    no value (C([N/A]), C([Not Supported]), ...), which give null. The GPUs must be listed as 0, 1, ..., n-1;
    a gap is a GPU that nvidia-smi could not read, and fails the module.
  - 'A line of the query''s output that does not start with a GPU index (nvidia-smi prints notices such as
    C(WARNING: infoROM is corrupted at gpu ...) among the rows) is not counted as a GPU; it is passed on as a
    warning.'
  - Output with no GPU row at all (an empty output with exit status 0 included) fails with C(nvidia-smi listed
    no GPUs); only a host without C(nvidia-smi) is a CPU host.
  - The banner is only searched for the CUDA and driver versions, and its process list can hold any program's
    name, so it is decoded leniently (undecodable bytes become U+FFFD); when it fails or hangs the CUDA version
    is null and a warning says why.
  - An unexpected error inside the module ends in a failure whose message names it, never in a bare traceback.
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
      - Fail when C(nvidia-smi) exists but does not answer (driver not loaded, version mismatch, a hang past
        O(timeout), output that is not what was asked for).
      - When V(false), the host is reported with C(accelerator=cpu), no GPUs, and the reason in C(nvidia_smi_error),
        and a warning is shown.
    type: bool
    default: true
  timeout:
    description:
      - Seconds each run of C(nvidia-smi) may take in all, from its start to its exit with all of its output read.
        A run that takes longer is killed and the module fails (or, with O(fail_on_error=false), reports a CPU
        host with the reason).
      - A healthy C(nvidia-smi) answers in well under a second to a few seconds on a large host; one that hangs
        usually has a stuck driver or a GPU fallen off the bus.
      - Must be above 0.
    type: float
    default: 30
notes:
  - C(nvidia-smi) runs with E(LC_ALL=C) and stdin from C(/dev/null).
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

- name: Give a slow host's nvidia-smi two minutes per run
  vllm_gpu_facts:
    timeout: 120
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
              sample: true
            compute_cap:
              description: CUDA compute capability such as V(9.0); null on drivers older than R510.
              type: str
        driver_version:
          description:
            - NVIDIA driver version, dotted numbers (C(565.57.01)), from the query or else from the banner.
            - Null when nvidia-smi reports none (C([N/A])) and its banner has none either; never anything else.
          type: str
          sample: 565.57.01
        cuda_version:
          description: Highest CUDA version the driver supports, from the nvidia-smi banner; null when not shown.
          type: str
          sample: "12.7"
        memory_total_mib_min:
          description: Total memory of the smallest GPU, MiB; null without GPUs, or when a GPU's total is not reported.
          type: int
        memory_free_mib_min:
          description:
            - Free memory of the GPU with the least free, MiB; null without GPUs, or when a GPU's free memory is
              not known (neither memory.free nor memory.used reported; a warning says which GPU).
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

import math
import os
import shlex
import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.vllm_gpu import (
    GPU_QUERY_FIELDS,
    MINIMAL_QUERY_FIELDS,
    CommandResult,
    accelerator_facts,
    cpu_facts,
    cuda_version_from_banner,
    decode_for_message,
    decode_output,
    driver_failure_message,
    driver_version_from_banner,
    excerpt,
    exit_description,
    fields_without_optional,
    is_driver_failure,
    query_args,
    read_query_output,
    run_with_deadline,
    unknown_memory_notes,
)

# Lines that were not GPU rows are passed on as warnings, this many at most.
MAX_NOTICE_WARNINGS = 5


class NvidiaSmiFailure(Exception):
    """nvidia-smi could not be run, hung, failed or printed what cannot be read; the message says which."""


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


def run(module: AnsibleModule, argv: list[str]) -> CommandResult:
    """One run of nvidia-smi within the module's timeout, in the C locale."""
    return run_with_deadline(argv, module.params["timeout"], env={**os.environ, "LC_ALL": "C"})


def printed(result: CommandResult) -> str:
    """What a run printed (stdout and stderr), for a message: decoded leniently, shortened."""
    text = "\n".join(
        part for part in (decode_for_message(result.stdout), decode_for_message(result.stderr)) if part.strip()
    )
    return excerpt(text) if text.strip() else "nothing"


def problem_message(argv: list[str], result: CommandResult) -> str:
    """Why a run gave no exit status (hung, too much output, not started), and what to do."""
    command = shlex.join(argv)
    message = f"`{command}` {result.problem}."
    if result.timed_out:
        message += (
            " nvidia-smi hangs when the driver is stuck (a GPU fallen off the bus, an Xid error: "
            "`dmesg | grep -i xid`) or the host is overloaded. Run it by hand on the host; raise the module's "
            "timeout only if it does answer, slowly."
        )
    if result.stdout or result.stderr:
        message += f" It printed: {printed(result)}"
    return message


def query_output(module: AnsibleModule, nvidia_smi: str) -> tuple[str, list[str], list[str]]:
    """(CSV output, the fields it holds, the command that printed it); NvidiaSmiFailure when there is none.

    A run that hangs, prints too much or cannot start is not retried: a retry would
    only take as long again. A non-zero exit is retried without the optional fields,
    then with the minimal ones (drivers before R510 do not know compute_cap; a
    table-only capture has no uuid or memory.free).
    """
    first_error = ""
    attempts = (list(GPU_QUERY_FIELDS), fields_without_optional(GPU_QUERY_FIELDS), list(MINIMAL_QUERY_FIELDS))
    for fields in attempts:
        argv = [nvidia_smi, *query_args(fields)]
        result = run(module, argv)
        if result.rc is None:
            raise NvidiaSmiFailure(problem_message(argv, result))
        if result.rc == 0:
            try:
                return decode_output(result.stdout), fields, argv
            except ValueError as exc:
                raise NvidiaSmiFailure(f"`{shlex.join(argv)}` {exc}") from None
        error = f"`{shlex.join(argv)}` {exit_description(result.rc)}; it printed: {printed(result)}"
        if is_driver_failure(decode_for_message(result.stdout + result.stderr)):
            raise NvidiaSmiFailure(driver_failure_message(error, nvidia_smi))
        first_error = first_error or error
    raise NvidiaSmiFailure(
        f"{first_error}; the retries with fewer fields failed too (last: {error}). "
        "Run it by hand on the host to see why."
    )


def failure_facts(module: AnsibleModule, message: str, nvidia_smi: str) -> dict:
    """Fail, or (fail_on_error=false) warn and return CPU facts carrying the reason."""
    if module.params["fail_on_error"]:
        module.fail_json(msg=message, ansible_facts={})
    module.warn(message)
    facts = cpu_facts()
    facts["nvidia_smi_path"] = nvidia_smi
    facts["nvidia_smi_error"] = message
    return facts


def warn_about_notices(module: AnsibleModule, command: str, notices: list[str]) -> None:
    """Pass on the lines of the query output that were not GPU rows (nvidia-smi's own warnings)."""
    for line in notices[:MAX_NOTICE_WARNINGS]:
        module.warn(f"`{command}` printed a line that is not a GPU row; not counted as a GPU: {excerpt(line)}")
    if len(notices) > MAX_NOTICE_WARNINGS:
        module.warn(f"`{command}` printed {len(notices) - MAX_NOTICE_WARNINGS} more such lines")


def banner_versions(module: AnsibleModule, nvidia_smi: str) -> tuple[str | None, str | None]:
    """(CUDA version, driver version) from plain nvidia-smi's banner; (None, None) with a warning on failure.

    The banner is only searched for two version numbers, and its process list may hold
    any process's name, so it is decoded leniently (bad bytes become U+FFFD).
    """
    result = run(module, [nvidia_smi])
    if result.rc is None:
        module.warn(f"CUDA version unknown: {problem_message([nvidia_smi], result)}")
        return None, None
    if result.rc != 0:
        module.warn(
            f"CUDA version unknown: `{nvidia_smi}` (the banner) {exit_description(result.rc)}; "
            f"it printed: {printed(result)}"
        )
        return None, None
    banner = decode_for_message(result.stdout)
    return cuda_version_from_banner(banner), driver_version_from_banner(banner)


def gpu_facts(module: AnsibleModule, nvidia_smi: str) -> dict:
    """The vllm_accelerator fact from a present nvidia-smi."""
    try:
        csv_text, fields, argv = query_output(module, nvidia_smi)
    except NvidiaSmiFailure as exc:
        return failure_facts(module, str(exc), nvidia_smi)
    command = shlex.join(argv)
    try:
        gpus, driver_version, notices = read_query_output(csv_text, fields)
    except ValueError as exc:
        return failure_facts(module, f"could not read the output of `{command}`: {exc}", nvidia_smi)
    warn_about_notices(module, command, notices)
    for note in unknown_memory_notes(gpus):
        module.warn(note)
    cuda_version, banner_driver = banner_versions(module, nvidia_smi)
    facts = accelerator_facts(gpus, driver_version or banner_driver, cuda_version)
    facts["nvidia_smi_path"] = nvidia_smi
    return facts


def accelerator(module: AnsibleModule) -> dict:
    """The vllm_accelerator fact of this host."""
    timeout = module.params["timeout"]
    if not (math.isfinite(timeout) and timeout > 0):
        module.fail_json(msg=f"timeout={timeout:g}: give the seconds each nvidia-smi run may take, a number above 0")
    nvidia_smi = nvidia_smi_location(module)
    if nvidia_smi is None:
        facts = cpu_facts()
        facts["nvidia_smi_path"] = None
        return facts
    return gpu_facts(module, nvidia_smi)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "nvidia_smi_path": {"type": "path"},
            "fail_on_error": {"type": "bool", "default": True},
            "timeout": {"type": "float", "default": 30},
        },
        supports_check_mode=True,
    )
    try:
        facts = accelerator(module)
    except Exception as exc:  # the module must end in a message, never a traceback
        module.fail_json(
            msg=f"vllm_gpu_facts failed unexpectedly ({type(exc).__name__}: {exc}); this is a bug in the module, "
            "please report it with the output of nvidia-smi on this host",
            exception=traceback.format_exc(),
        )
    module.exit_json(changed=False, ansible_facts={"vllm_accelerator": facts})


if __name__ == "__main__":
    main()
