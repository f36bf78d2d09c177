#!/usr/bin/python
# Copyright: vllm-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vllm_ray_status
short_description: Compare the nodes `ray status` lists with the nodes a deployment expects
description:
  - Runs C(ray status -v) against the head's GCS and matches every node to an inventory host through the custom
    resource C(vllm_fleet_host:<name>) that role ray_cluster gives each node.
  - Reports nodes that are missing, nodes Ray has that the group does not, and nodes with fewer GPUs than
    expected. Never fails for a cluster that is not ready, so it serves as the readiness probe (C(until)).
version_added: "0.1.0"
author: vllm-fleet contributors
options:
  ray_bin:
    description: The C(ray) command of the venv.
    type: path
    required: true
  address:
    description: The head's GCS address, HOST:PORT.
    type: str
    required: true
  expected:
    description: The group's nodes, each C(name), C(address) and C(devices) (GPUs expected; 0 skips the check).
    type: list
    elements: dict
    required: true
  device_resource:
    description: Ray resource that counts the devices (C(GPU)).
    type: str
    default: GPU
  timeout:
    description:
      - Seconds C(ray status) may take in all. After that it is killed with every process it started (its process
        group), even one that keeps its output open, and the cluster is reported not ready, saying so.
    type: int
    default: 30
notes:
  - Supports check mode; it only reads.
  - Never ends in a traceback; an error nobody foresaw fails the task with a message saying what it was doing.
"""

EXAMPLES = r"""
- name: Wait until every node joined
  vllm_ray_status:
    ray_bin: /opt/vllm/venvs/vllm-cuda-0.32.0/bin/ray
    address: 10.0.0.11:6379
    expected:
      - {name: gpu-a, address: 10.0.0.11, devices: 8}
      - {name: gpu-b, address: 10.0.0.12, devices: 8}
  register: _status
  until: _status.ready
  retries: 60
  delay: 5
"""

RETURN = r"""
ready:
  description: Every expected node is listed with its resources, and no other node is.
  returned: always
  type: bool
missing:
  description: Expected nodes Ray does not list.
  returned: always
  type: list
  elements: str
unexpected:
  description: Nodes Ray lists that the group does not have.
  returned: always
  type: list
  elements: str
nodes:
  description: The nodes C(ray status -v) lists, each C(node_id), C(host), C(resources).
  returned: always
  type: list
  elements: dict
message:
  description: One line on the state of the cluster.
  returned: always
  type: str
status_text:
  description: The last 40 lines of C(ray status) (or its error).
  returned: always
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.vllm_layout import cluster_report, parse_ray_status
from ansible.module_utils.vllm_process import run_text


class Step:
    """What the module is doing now, for the message of an error nobody foresaw."""

    def __init__(self, doing: str) -> None:
        self.doing = doing


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "ray_bin": {"type": "path", "required": True},
            "address": {"type": "str", "required": True},
            "expected": {"type": "list", "elements": "dict", "required": True},
            "device_resource": {"type": "str", "default": "GPU"},
            "timeout": {"type": "int", "default": 30},
        },
        supports_check_mode=True,
    )
    step = Step("checking the options")
    try:
        run(module, step)
    except Exception as exc:  # the last guard: a message naming what failed, never a traceback
        module.fail_json(
            msg=f"vllm_ray_status: unexpected {type(exc).__name__} while {step.doing}: {str(exc)[:500]} "
            "(a defect of the module: please report it with this message)"
        )


def run(module: AnsibleModule, step: Step) -> None:
    """Run `ray status` against the head and compare its nodes with the group; exit the module."""
    p = module.params
    if p["timeout"] < 1:
        module.fail_json(msg=f"timeout={p['timeout']} must be a number of seconds of at least 1")
    step.doing = f"running {p['ray_bin']} status against {p['address']}"
    command = [p["ray_bin"], "status", "-v", f"--address={p['address']}"]
    rc, out, err = run_text(command, p["timeout"], {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    step.doing = "reading the output of ray status"
    nodes = parse_ray_status(out) if rc == 0 else []
    report = cluster_report(p["expected"], nodes, p["device_resource"])
    if rc != 0:
        reason = (err or out).strip().splitlines()[-1:] or [f"exit {rc}"]
        report["message"] = f"`ray status` against {p['address']} failed ({reason[0]}); " + report["message"]
        report["ready"] = False
    text = "\n".join((out if rc == 0 else (err or out)).splitlines()[-40:])
    module.exit_json(changed=False, nodes=nodes, status_text=text, **report)


if __name__ == "__main__":
    main()
