#!/usr/bin/python
# Copyright: vllm-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vllm_multinode_layout
short_description: Validate a multi-node vLLM deployment and compute its tensor and pipeline parallel sizes
description:
  - Turns one inventory group (its hosts' Ray addresses and GPU counts) and the user's sizes into the layout
    vLLM runs on a Ray cluster. By default TP is the GPUs of one node and PP the number of nodes; sizes the user
    sets must multiply to the GPUs of the whole group.
  - Fails with one line per problem, each naming the variable, the value and what would be valid.
  - Also picks the Ray release to install for the vLLM version (C(ray_version=auto)).
  - "Pure computation, meant to run on the controller (C(delegate_to: localhost)); it only reads the model's
    C(config.json) when O(model_path) is given."
version_added: "0.1.0"
author: vllm-fleet contributors
options:
  group:
    description: The inventory group of the deployment (C(ray_cluster_group)).
    type: str
    required: true
  variant:
    description: C(cuda) or C(cpu) (C(vllm_variant)); the cpu variant runs one engine worker per node.
    type: str
    required: true
  vllm_version:
    description: The vLLM version (C(vllm_version)).
    type: str
    required: true
  ray_version:
    description: C(auto) or a Ray release (C(ray_cluster_version)).
    type: str
    default: auto
  tensor_parallel_size:
    description: C(auto) or a number (C(ray_cluster_tensor_parallel_size)).
    type: raw
    default: auto
  pipeline_parallel_size:
    description: C(auto) or a number (C(ray_cluster_pipeline_parallel_size)).
    type: raw
    default: auto
  nodes:
    description: The group's hosts, head first, each C(name), C(address), C(ifname) and C(gpu_count).
    type: list
    elements: dict
    required: true
  model_path:
    description: A local model directory on the controller; its C(config.json) gives the attention heads and layers.
    type: path
  service:
    description:
      - The Ray unit of one node of the group. When given, RV(unit) and RV(env_lines) are returned for it, every
        value already written for its place in C(ray.service) and C(ray.env) by C(module_utils/vllm_systemd.py),
        or refused with one line naming the variable.
      - C(node) (this host's name in the group), C(ray_bin), C(temp_dir), C(user), C(group), C(home),
        C(env_file), C(network) (C(ray_cluster_network), shown in a comment), and the whole numbers C(port),
        C(object_manager_port), C(node_manager_port), C(min_worker_port), C(max_worker_port), C(num_cpus),
        C(object_store_memory_mb) and C(restart_sec).
    type: dict
notes:
  - Supports check mode; it never changes anything.
"""

EXAMPLES = r"""
- name: Compute the layout of the deployment llama70b
  vllm_multinode_layout:
    group: llama70b
    variant: cuda
    vllm_version: "0.32.0"
    nodes:
      - {name: gpu-a, address: 10.0.0.11, ifname: ib0, gpu_count: 8}
      - {name: gpu-b, address: 10.0.0.12, ifname: ib0, gpu_count: 8}
  delegate_to: localhost
  register: _layout
"""

RETURN = r"""
layout:
  description: The layout; C(tensor_parallel_size), C(pipeline_parallel_size), C(world_size), C(devices_per_node),
    C(device_resource), C(nodes), C(head), C(workers), C(notes).
  returned: success
  type: dict
ray_version:
  description: The Ray release to install.
  returned: success
  type: str
  sample: 2.56.1
ray_requirement:
  description: The pip requirement for it, C(ray[cgraph]==VERSION) on cuda (Compiled Graph, what pipeline parallelism
    uses on GPUs), C(ray==VERSION) on cpu.
  returned: success
  type: str
  sample: ray[cgraph]==2.56.1
unit:
  description:
    - With O(service), the values of that node's Ray unit - C(name), C(header) and C(env_header) (comment lines,
      without the C(#)), C(description), C(user), C(group), C(working_directory), C(read_write_paths),
      C(environment_file), C(environment) (Environment= words), C(command) and C(options) (the words of
      ExecStart=), C(restart_sec), C(temp_dir) (comment text).
  returned: success, with O(service)
  type: dict
env_lines:
  description: With O(service), the C(KEY="VALUE") lines of that node's C(ray.env).
  returned: success, with O(service)
  type: list
  elements: str
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.vllm_layout import layout, ray_requirement, ray_unit, resolve_ray_version


def model_shape(path: str | None) -> dict:
    """num_attention_heads and num_hidden_layers of a local model directory, if readable."""
    if not path:
        return {}
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return {}
    return {key: config.get(key) for key in ("num_attention_heads", "num_hidden_layers")}


def argument_spec() -> dict:
    return {
        "group": {"type": "str", "required": True},
        "variant": {"type": "str", "required": True},
        "vllm_version": {"type": "str", "required": True},
        "ray_version": {"type": "str", "default": "auto"},
        "tensor_parallel_size": {"type": "raw", "default": "auto"},
        "pipeline_parallel_size": {"type": "raw", "default": "auto"},
        "nodes": {"type": "list", "elements": "dict", "required": True},
        "model_path": {"type": "path"},
        "service": {"type": "dict"},
    }


def run(p: dict) -> dict:
    """The module's work on validated parameters P: errors and warnings, and when valid what it returns."""
    settings = dict(
        group=p["group"],
        variant=p["variant"],
        tensor_parallel_size=p["tensor_parallel_size"],
        pipeline_parallel_size=p["pipeline_parallel_size"],
        **model_shape(p["model_path"]),
    )
    result = layout(settings, p["nodes"])
    errors = list(result.pop("errors"))
    warnings = result.pop("warnings")
    ray_version, ray_errors = resolve_ray_version(p["ray_version"], p["vllm_version"])
    errors += ray_errors
    unit: dict = {}
    if not errors and p["service"] is not None:
        unit = ray_unit(dict(settings, ray_version=ray_version), result, p["service"])
        errors += unit.pop("errors")
    if errors:
        return {"errors": errors, "warnings": warnings}
    return {
        "errors": [],
        "warnings": warnings,
        "layout": result,
        "ray_version": ray_version,
        "ray_requirement": ray_requirement(p["variant"], ray_version),
        **unit,
    }


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    result = run(module.params)
    if result["errors"]:
        module.fail_json(
            msg="Invalid multi-node settings:\n- " + "\n- ".join(result["errors"]), errors=result["errors"]
        )
    # A layout that works but is slow (tensor parallel across nodes) is a warning, not an error.
    for warning in result.pop("warnings"):
        module.warn(warning)
    result.pop("errors")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
