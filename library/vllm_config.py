#!/usr/bin/python
# Copyright: vllm-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vllm_config
short_description: Validate vLLM settings and compute the flags of vllm.service
description:
  - The single place where vllm-fleet turns its variables and a host's facts into the command line and
    environment of C(vllm.service). Used by the converge (roles C(vllm_preflight) and C(vllm_service)) and by
    the offline render (C(playbooks/render.yml)), so both produce the same unit.
  - Validates every setting before anything on a host changes and fails with one line per problem, each naming
    the variable, the value and what would be valid.
  - Picks the flag for KV-cache swap/offload space by vLLM version (C(--swap-space) before 0.18,
    C(--kv-offloading-size) from 0.18, the total across tensor-parallel ranks).
  - Given the installed vLLM's C(--help=all) text, refuses any rendered flag that version does not know, so a
    wrong flag is a converge-time error and never a dead service.
  - "Pure computation, meant to run on the controller (C(delegate_to: localhost)); it only reads the model's
    C(config.json) when O(model) is a local directory."
version_added: "0.1.0"
author: vllm-fleet contributors
options:
  variant:
    description: Which vLLM build runs, C(vllm_variant).
    type: str
    required: true
  version:
    description: The vLLM version, C(vllm_version).
    type: str
    required: true
  model:
    description: C(vllm_model), a Hugging Face repo id or a local directory on the controller.
    type: str
    required: true
  model_path:
    description: Where the model lies on the host; what C(--model) gets.
    type: str
    required: true
  served_model_name:
    description: Name clients use; empty means the repo id or the local directory's name.
    type: str
    default: ""
  host:
    description: Address the server binds.
    type: str
    default: 127.0.0.1
  api_key_set:
    description: Whether C(vllm_api_key) is set (implied by O(api_key_b64)).
    type: bool
    default: false
  api_key_b64:
    description:
      - C(vllm_api_key), base64-encoded. Checked (it must read back from the environment file exactly as
        written, so the template may place it between double quotes unescaped), never returned, never shown in
        a message.
      - Base64 because C(no_log) masks a secret wherever its value occurs in the result, inside other strings
        too; the encoded form keeps a short or common key (C(vllm)) from mangling the returned unit.
    type: str
    default: ""
  require_api_key:
    description: Refuse a server bound beyond loopback without an API key.
    type: bool
    default: true
  port:
    description: Port the server listens on.
    type: raw
    default: 8000
  tensor_parallel_size:
    description: C(auto) (the GPU count per pipeline stage, reduced to divide the attention heads) or a number.
    type: raw
    default: auto
  pipeline_parallel_size:
    description: Pipeline stages.
    type: raw
    default: 1
  gpu_memory_utilization:
    description: Fraction of each GPU's memory vLLM may use, in (0, 1].
    type: raw
    default: 0.9
  swap_space_gb:
    description: GiB of CPU memory per GPU for KV-cache swap/offload; 0 for none.
    type: raw
    default: 0
  cpu_kvcache_space_gb:
    description: GiB of RAM for the KV cache on the CPU variant (C(VLLM_CPU_KVCACHE_SPACE)).
    type: raw
    default: 4
  max_model_len:
    description: C(--max-model-len); 0 leaves vLLM's default.
    type: raw
    default: 0
  max_num_seqs:
    description: C(--max-num-seqs); 0 leaves vLLM's default.
    type: raw
    default: 0
  max_num_batched_tokens:
    description: C(--max-num-batched-tokens); 0 leaves vLLM's default.
    type: raw
    default: 0
  enforce_eager:
    description: Render C(--enforce-eager).
    type: bool
    default: false
  extra_args:
    description: More flags, appended as given; flags the role manages are refused.
    type: raw
    default: []
  extra_env:
    description: More environment variables for the service.
    type: dict
    default: {}
  gpu_count:
    description: GPUs on the host (from C(vllm_gpu_facts), or set for an offline render).
    type: int
    default: 0
  gpu_memory_total_mib:
    description: Total memory of the smallest GPU, MiB.
    type: int
  gpu_memory_free_mib:
    description: Free memory of the fullest GPU, MiB.
    type: int
  num_attention_heads:
    description: The model's attention heads; read from the local model's C(config.json) when not given.
    type: int
  help_text:
    description:
      - Output of C(python -m vllm.entrypoints.openai.api_server --help=all) from the installed vLLM.
      - When given, every rendered flag must appear in it.
    type: str
  user:
    description: C(vllm_user), the service account (User=); a strict user name. C(root) draws a warning.
    type: str
    default: vllm
  group:
    description: C(vllm_group) (Group=); a strict group name.
    type: str
    default: vllm
  home:
    description: C(vllm_home) (WorkingDirectory=, ReadWritePaths=, HOME); a safe absolute path.
    type: str
    default: /var/lib/vllm
  install_dir:
    description: C(vllm_install_dir); a safe absolute path (the venv's python lies under it).
    type: str
    default: /opt/vllm
  model_dir:
    description: C(vllm_model_dir); a safe absolute path (O(model_path) lies under it).
    type: str
    default: /opt/vllm/models
  python:
    description: The venv's python, the executable of C(ExecStart=); by default derived from O(install_dir),
      O(variant) and O(version) as role C(vllm) derives it.
    type: str
  env_file:
    description: The EnvironmentFile= path.
    type: str
    default: /etc/vllm/vllm.env
  multinode:
    description:
      - The head of a multi-node deployment (docs/multinode.md) gives the layout role C(ray_cluster) computed
        (module C(vllm_multinode_layout)), with C(tensor_parallel_size), C(pipeline_parallel_size), C(nodes),
        C(ray_address), C(node_ip), C(ifname) and optionally C(group) and C(notes).
      - Then the sizes are the layout's (C(vllm_tensor_parallel_size) must stay C(auto) and
        C(vllm_pipeline_parallel_size) 1), C(--distributed-executor-backend ray) is rendered, and the environment
        gets C(RAY_ADDRESS), C(VLLM_HOST_IP), C(NCCL_SOCKET_IFNAME) and C(GLOO_SOCKET_IFNAME).
      - Left out on a single host, whose unit does not change.
    type: dict
notes:
  - Supports check mode; it never changes anything.
  - Every value the templates place in C(vllm.service) and C(vllm.env) is returned already written for its
    place by C(module_utils/vllm_systemd.py) (RV(exec_args), RV(env_lines), RV(unit)), or the input is refused -
    user and group names and paths that those directives cannot escape, environment keys that are not variable
    names, numbers that are not plain finite numbers, flags the role manages in any spelling vLLM accepts.
seealso:
  - name: vLLM engine arguments
    description: The flags this module renders.
    link: https://docs.vllm.ai/en/latest/configuration/engine_args.html
"""

EXAMPLES = r"""
- name: Compute the service flags for this host
  vllm_config:
    variant: cuda
    version: "0.32.0"
    model: meta-llama/Llama-3.1-8B-Instruct
    model_path: /var/lib/vllm/models/meta-llama--Llama-3.1-8B-Instruct
    tensor_parallel_size: auto
    gpu_memory_utilization: 0.9
    swap_space_gb: 4
    gpu_count: "{{ ansible_facts['vllm_accelerator']['gpu_count'] }}"
    gpu_memory_total_mib: "{{ ansible_facts['vllm_accelerator']['memory_total_mib_min'] }}"
    gpu_memory_free_mib: "{{ ansible_facts['vllm_accelerator']['memory_free_mib_min'] }}"
  delegate_to: localhost
  register: _vllm_config
"""

RETURN = r"""
args:
  description: The command-line arguments after C(python -m vllm.entrypoints.openai.api_server).
  returned: success
  type: list
  elements: str
  sample: ["--model", "/var/lib/vllm/models/tiny", "--tensor-parallel-size", "8"]
exec_args:
  description: The same arguments, each quoted and escaped for a systemd C(ExecStart=) line.
  returned: success
  type: list
  elements: str
env:
  description: Environment of the service that holds no secret.
  returned: success
  type: dict
  sample: {"VLLM_CPU_KVCACHE_SPACE": "4", "HF_HUB_OFFLINE": "1"}
env_lines:
  description: The same environment as the lines of C(vllm.env), C(KEY="VALUE") quoted for an EnvironmentFile=,
    sorted by key.
  returned: success
  type: list
  elements: str
  sample: ['HF_HUB_OFFLINE="1"', 'VLLM_CPU_KVCACHE_SPACE="4"']
unit:
  description:
    - The other values of C(vllm.service), each written for its directive - C(header) (comment lines, without the
      C(#)), C(description), C(user), C(group), C(working_directory), C(read_write_paths), C(environment_file),
      C(environment) (Environment= words), C(command) (the first words of ExecStart=) and, in a multi-node
      deployment, C(ray_group) (comment text).
  returned: success
  type: dict
notes:
  description: Where a computed flag's value came from, by flag.
  returned: success
  type: dict
layout:
  description:
    - The parallel layout and names in force.
    - With O(multinode) also C(nodes), C(group), C(distributed_executor_backend) (C(ray)) and C(ray_address).
  returned: success
  type: dict
  sample: {"tensor_parallel_size": 8, "pipeline_parallel_size": 1, "gpus_used": 8, "served_model_name": "llama"}
errors:
  description: Every problem found, one line each; the task fails when any.
  returned: failure
  type: list
  elements: str
"""

import base64
import binascii
import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.vllm_tuning import compute, model_kind, parse_help_flags

SETTINGS = (
    "variant",
    "version",
    "model",
    "model_path",
    "served_model_name",
    "host",
    "api_key_set",
    "require_api_key",
    "port",
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "gpu_memory_utilization",
    "swap_space_gb",
    "cpu_kvcache_space_gb",
    "max_model_len",
    "max_num_seqs",
    "max_num_batched_tokens",
    "enforce_eager",
    "extra_args",
    "extra_env",
    "multinode",
    "user",
    "group",
    "home",
    "install_dir",
    "model_dir",
    "python",
    "env_file",
)


def argument_spec() -> dict:
    return dict(
        variant=dict(type="str", required=True),
        version=dict(type="str", required=True),
        model=dict(type="str", required=True),
        model_path=dict(type="str", required=True),
        served_model_name=dict(type="str", default=""),
        host=dict(type="str", default="127.0.0.1"),
        api_key_set=dict(type="bool", default=False),
        api_key_b64=dict(type="str", default="", no_log=True),
        require_api_key=dict(type="bool", default=True),
        port=dict(type="raw", default=8000),
        tensor_parallel_size=dict(type="raw", default="auto"),
        pipeline_parallel_size=dict(type="raw", default=1),
        gpu_memory_utilization=dict(type="raw", default=0.9),
        swap_space_gb=dict(type="raw", default=0),
        cpu_kvcache_space_gb=dict(type="raw", default=4),
        max_model_len=dict(type="raw", default=0),
        max_num_seqs=dict(type="raw", default=0),
        max_num_batched_tokens=dict(type="raw", default=0),
        enforce_eager=dict(type="bool", default=False),
        extra_args=dict(type="raw", default=[]),
        extra_env=dict(type="dict", default={}),
        gpu_count=dict(type="int", default=0),
        gpu_memory_total_mib=dict(type="int"),
        gpu_memory_free_mib=dict(type="int"),
        num_attention_heads=dict(type="int"),
        help_text=dict(type="str"),
        multinode=dict(type="dict"),
        user=dict(type="str", default="vllm"),
        group=dict(type="str", default="vllm"),
        home=dict(type="str", default="/var/lib/vllm"),
        install_dir=dict(type="str", default="/opt/vllm"),
        model_dir=dict(type="str", default="/opt/vllm/models"),
        python=dict(type="str"),
        env_file=dict(type="str", default="/etc/vllm/vllm.env"),
    )


def local_model_heads(model: str) -> int | None:
    """num_attention_heads from a local model directory's config.json, if readable."""
    path = os.path.join(os.path.expanduser(model), "config.json")
    try:
        with open(path, encoding="utf-8") as fh:
            config = json.load(fh)
    except (OSError, ValueError):
        return None
    heads = config.get("num_attention_heads") or (config.get("text_config") or {}).get("num_attention_heads")
    return heads if isinstance(heads, int) and not isinstance(heads, bool) and heads > 0 else None


def decoded_api_key(encoded: str) -> str | None:
    """vllm_api_key from O(api_key_b64), or None when that is not base64 of UTF-8 text."""
    try:
        return base64.b64decode(encoded or "", validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def run(p: dict) -> dict:
    """The module's work on validated parameters P: compute()'s result (errors, or what the templates place)."""
    api_key = decoded_api_key(p["api_key_b64"])
    if api_key is None:
        return {"errors": ["api_key_b64 is invalid: it must be vllm_api_key | b64encode (its value is not shown)"]}
    settings = {key: p[key] for key in SETTINGS}
    settings["api_key"] = api_key
    local = model_kind(p["model"]) == "local"
    settings["model_exists"] = os.path.isdir(os.path.expanduser(p["model"])) if local else None
    facts = {
        "gpu_count": p["gpu_count"],
        "gpu_memory_total_mib": p["gpu_memory_total_mib"],
        "gpu_memory_free_mib": p["gpu_memory_free_mib"],
        "num_attention_heads": p["num_attention_heads"] or (local_model_heads(p["model"]) if local else None),
        "known_flags": parse_help_flags(p["help_text"]) if p["help_text"] else [],
    }
    return compute(settings, facts)


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    result = run(module.params)
    if result["errors"]:
        module.fail_json(
            msg="Invalid vLLM settings:\n- " + "\n- ".join(result["errors"]),
            errors=result["errors"],
        )
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(changed=False, **{k: v for k, v in result.items() if k != "errors"})


if __name__ == "__main__":
    main()
