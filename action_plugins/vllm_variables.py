# Copyright: vllm-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of module vllm_variables (its documentation: ansible-doc -M library vllm_variables).

Collects what only the controller knows, then runs the module there:
- the argument specs of every role under roles_dir, and the role names (each owns the prefix NAME_);
- for every host of the play, its variables under those prefixes, each templated on its own, so that one
  whose template needs facts not gathered yet (ansible_default_ipv4, ...) has only its name checked and
  does not stop the check of the others;
- where each was set (inventory file and line, or -e), from the origin Ansible 2.19 tags values with.

Values of options a spec marks no_log travel base64-encoded in a no_log option of the module, as
vllm_config's API key does. Hosts that already passed in this run (__vllm_fleet_variables_checked, set by
playbooks/check_variables.yml) are skipped: the play's facts and outputs set since then are no inputs.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

CHECKED_FLAG = "__vllm_fleet_variables_checked"
SPEC_FILES = ("argument_specs.yml", "argument_specs.yaml")


def plain(value: Any) -> Any:
    """A JSON-ready copy of a templated value; walking it templates every lazy part, so errors raise here."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def origin_text(*values: Any) -> str:
    """Where a variable was set: 'inventory/prod.yml:12' (relative to the working folder when inside it),
    '-e', or '' when Ansible did not record it. The name's own origin is tried first, then the value's."""
    try:
        from ansible._internal._datatag._tags import Origin
    except ImportError:  # an ansible-core without data tags: no origins, the check itself still runs
        return ""
    for value in values:
        origin = Origin.get_tag(value)
        if origin is None:
            continue
        if origin.path:
            path = origin.path
            cwd = os.getcwd()
            if path.startswith(cwd + os.sep):
                path = os.path.relpath(path, cwd)
            return f"{path}:{origin.line_num}" if origin.line_num else path
        if origin.description and "'-e'" in origin.description:
            return "-e"
        if origin.description:
            return origin.description.strip("<>")
    return ""


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("roles_dir", "declared", "required"))

    def run(self, tmp: Any = None, task_vars: dict | None = None) -> dict:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self._task.args
        if not args.get("roles_dir"):
            raise AnsibleActionFail("vllm_variables: roles_dir is required (the project's roles folder)")
        roles_dir = self._task_relative(str(args["roles_dir"]))
        roles, specs = self._read_specs(roles_dir)
        declared = plain(args.get("declared") or {})
        prefixes = tuple(f"{role}_" for role in roles)
        secret = {
            name
            for options in [*specs.values(), declared]
            for name, option in options.items()
            if (option or {}).get("no_log")
        }

        hostvars = task_vars["hostvars"]
        hosts, secrets = {}, {}
        for host in task_vars.get("ansible_play_hosts") or []:
            raw = hostvars.raw_get(host)
            if raw.get(CHECKED_FLAG):
                continue
            facts = raw.get("ansible_facts") or {}
            templated = hostvars[host]
            variables, unresolved, origins, hidden = {}, [], {}, {}
            for name in raw:
                # Facts a module returned (vllm_accelerator, ...) are injected as variables too: not inputs.
                if not str(name).startswith(prefixes) or name in facts:
                    continue
                key = str(name)
                origin = origin_text(name, raw[name])
                if origin:
                    origins[key] = origin
                try:
                    value = plain(templated[name])
                except Exception:  # any templating error: the role reports it when it starts
                    unresolved.append(key)
                    continue
                if key in secret:
                    hidden[key] = base64.b64encode(json.dumps(value).encode()).decode()
                else:
                    variables[key] = value
            hosts[str(host)] = {
                "variables": variables,
                "unresolved": sorted(unresolved),
                "origins": origins,
                "groups": [str(g) for g in raw.get("group_names") or []],
            }
            if hidden:
                secrets[str(host)] = hidden

        if not hosts:
            result.update(changed=False, msg="every host of the play was checked before", hosts_checked=0)
            return result

        module_args = {
            "specs": specs,
            "roles": roles,
            "declared": declared,
            "required": plain(args.get("required") or {}),
            "hosts": hosts,
            "secret_values_b64": secrets,
        }
        return merge_hash(
            result,
            self._execute_module(module_name="vllm_variables", module_args=module_args, task_vars=task_vars),
        )

    def _task_relative(self, path: str) -> str:
        """path, relative to the folder of the file that holds the task."""
        path = os.path.expanduser(path)
        if os.path.isabs(path):
            return path
        task_file = (self._task.get_path() or "").rsplit(":", 1)[0]
        base = os.path.dirname(task_file) if task_file else self._loader.get_basedir()
        return os.path.normpath(os.path.join(base, path))

    def _read_specs(self, roles_dir: str) -> tuple[list[str], dict[str, dict]]:
        """The role names under roles_dir, and their argument specs as {'roles/NAME ENTRY': options}."""
        if not os.path.isdir(roles_dir):
            raise AnsibleActionFail(f"vllm_variables: roles_dir {roles_dir} is not a folder")
        roles, specs = [], {}
        for role in sorted(os.listdir(roles_dir)):
            role_dir = os.path.join(roles_dir, role)
            if not (os.path.isdir(os.path.join(role_dir, "tasks")) or os.path.isdir(os.path.join(role_dir, "meta"))):
                continue
            roles.append(role)
            for spec_file in SPEC_FILES:
                path = os.path.join(role_dir, "meta", spec_file)
                if os.path.isfile(path):
                    data = self._loader.load_from_file(path) or {}
                    for entry, spec in (data.get("argument_specs") or {}).items():
                        specs[f"roles/{role} {entry}"] = plain((spec or {}).get("options") or {})
                    break
        return roles, specs
