#!/usr/bin/python
# Copyright: vllm-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vllm_variables
short_description: Refuse misspelled vllm-fleet variables and wrong types, one line each, before any role starts
description:
  - Checks every variable of the fleet's hosts whose name starts with a prefix the project's roles own
    (C(vllm_), C(ray_cluster_), and the name of any new role followed by C(_)) against the roles'
    C(meta/argument_specs.yml). A name that no spec declares is refused with the closest declared name
    ("did you mean ..."); a value is refused exactly when the role's own argument validation would refuse it,
    with one line naming the variable, the value and what is valid; a required variable that is missing says
    so. A problem several hosts share (group_vars, C(-e)) is one line naming them, and says where it was set.
  - Ansible's own variables (C(ansible_host), C(inventory_hostname), C(groups), ...), internal ones
    (C(__vllm_...), C(_vllm_...), C(__ray_cluster_...)) and variables of any other prefix are never reported.
    Names of the user's own under our prefixes are allowed when listed in C(vllm_fleet_own_variables).
  - "Used through its action plugin (C(action_plugins/vllm_variables.py)), which reads the specs under
    O(roles_dir), the variables of every host of the play (each templated on its own: one that needs facts not
    gathered yet has only its name checked) and where each was set, and runs this module on the controller.
    C(playbooks/check_variables.yml) runs it first in every playbook of the project."
  - The logic is in C(module_utils/vllm_variables.py).
version_added: "0.1.0"
author: vllm-fleet contributors
options:
  roles_dir:
    description:
      - The project's roles folder, for the action plugin; relative to the folder of the file that holds the
        task. Every role in it owns the prefix C(NAME_), and its C(meta/argument_specs.yml) declares names.
    type: path
  declared:
    description:
      - For the action plugin. Variables the playbooks read themselves (play keywords such as C(serial)), by
        name, each an option like those of an argument spec (C(type), C(choices), C(description), ...).
    type: dict
    default: {}
  required:
    description:
      - "Names that must be set (and not empty) on the hosts of a group, by group name, e.g.
        C({vllm_servers: [vllm_model]})."
    type: dict
    default: {}
  specs:
    description:
      - Set by the action plugin. The declared options by source (C(roles/vllm main)), each a mapping of
        variable name to its option spec.
    type: dict
  roles:
    description: Set by the action plugin. The names of the project's roles; each owns the prefix C(NAME_).
    type: list
    elements: str
  hosts:
    description:
      - Set by the action plugin. Per host, C(variables) (name to templated value, for names under our
        prefixes), C(unresolved) (names whose value could not be templated yet), C(origins) (name to where it
        was set, e.g. C(inventory/prod.yml:12) or C(-e)) and C(groups).
    type: dict
  secret_values_b64:
    description:
      - Set by the action plugin. Per host, the values of options the specs mark C(no_log), as base64 of their
        JSON. Never shown; a refusal says "its value is not shown".
    type: dict
    default: {}
notes:
  - Supports check mode; it never changes anything.
  - "Runs on the controller (C(delegate_to: localhost), C(run_once: true))."
"""

EXAMPLES = r"""
# playbooks/check_variables.yml, imported at the top of every playbook of the project
- name: Check every variable under the roles' prefixes against their argument specs
  vllm_variables:
    roles_dir: ../roles
    required:
      vllm_servers: [vllm_model]
      vllm_multinode: [vllm_model, ray_cluster_group]
    declared:
      vllm_rolling_serial:
        type: raw
        description: serial of playbooks/rolling_update.yml, with -e.
  delegate_to: localhost
  run_once: true

# A refusal (vllm_gpu_memory_utilisation set in inventory/prod.yml, vllm_port: eighty for one host):
#   Invalid vllm-fleet variables (nothing was changed):
#   - vllm_gpu_memory_utilisation is not a variable of any vllm-fleet role: did you mean
#     vllm_gpu_memory_utilization? (set in inventory/prod.yml:14; all 2 hosts)
#   - vllm_port='eighty' is invalid: must be a whole number, e.g. 8000 (set in inventory/prod.yml:9; host gpu-node-01)
"""

RETURN = r"""
msg:
  description: The refusal, one line per problem, or how much was checked.
  returned: always
  type: str
hosts_checked:
  description: Hosts whose variables were checked.
  returned: always
  type: int
variables_checked:
  description: Variables under the roles' prefixes that were checked, over all hosts.
  returned: always
  type: int
problems:
  description: The number of problems found (each is one line of RV(msg)).
  returned: always
  type: int
"""

import base64
import json

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.vllm_variables import (
    declared_options,
    failure_message,
    fleet_report,
    host_problems,
    owned_prefixes,
)


def secret_names(specs: dict) -> set[str]:
    """Names some spec marks no_log."""
    return {name for options in specs.values() for name, option in (options or {}).items() if option.get("no_log")}


def decode_secrets(encoded: dict) -> dict:
    """{name: base64 of JSON} -> {name: value}."""
    return {name: json.loads(base64.b64decode(value)) for name, value in (encoded or {}).items()}


def required_for(groups: list, required: dict) -> set[str]:
    """The names a host must have set, from the groups it is in."""
    return {name for group in groups or [] for name in required.get(group) or []}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "roles_dir": {"type": "path"},
            "declared": {"type": "dict", "default": {}},
            "required": {"type": "dict", "default": {}},
            "specs": {"type": "dict", "required": True},
            "roles": {"type": "list", "elements": "str", "required": True},
            "hosts": {"type": "dict", "required": True},
            "secret_values_b64": {"type": "dict", "default": {}, "no_log": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    specs = dict(p["specs"])
    if p["declared"]:
        specs["playbooks"] = p["declared"]
    declared = declared_options(specs)
    prefixes = owned_prefixes(p["roles"])
    secrets = secret_names(specs)

    problems_by_host, origins_by_host = {}, {}
    checked = 0
    for host, data in p["hosts"].items():
        data = data or {}
        variables = dict(data.get("variables") or {})
        variables.update(decode_secrets((p["secret_values_b64"] or {}).get(host)))
        unresolved = data.get("unresolved") or []
        checked += len(variables) + len(unresolved)
        problems_by_host[host] = host_problems(
            variables,
            declared,
            prefixes,
            unresolved=unresolved,
            required=required_for(data.get("groups"), p["required"]),
            secrets=secrets,
        )
        origins_by_host[host] = data.get("origins") or {}

    lines = fleet_report(problems_by_host, origins_by_host, hosts_checked=len(p["hosts"]))
    result = {"changed": False, "hosts_checked": len(p["hosts"]), "variables_checked": checked, "problems": len(lines)}
    if lines:
        unknown = any(name not in declared for found in problems_by_host.values() for name, _ in found)
        module.fail_json(msg=failure_message(lines, prefixes, unknown), **result)
    hosts = len(p["hosts"])
    module.exit_json(
        msg=f"{checked} variables of {hosts} host{'s' if hosts != 1 else ''} checked: every name is declared "
        "and every value valid",
        **result,
    )


if __name__ == "__main__":
    main()
