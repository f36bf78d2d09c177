"""What playbooks/render.yml does for one host, in-process, with Ansible's own code at each step.

A playbook run costs seconds per host; the hostile-input matrix has hundreds of cases. This takes the
same path for one host's variables in milliseconds, each step done by the code Ansible uses:

1. the role argument specs of vllm (entry point compute) and vllm_service (render), checked by
   ArgumentSpecValidator against the templated variables, as validate_argument_spec does;
2. roles/vllm/tasks/compute.yml's arguments for vllm_config, templated by Ansible's Templar with the
   roles' defaults and vars (loaded as trusted templates, as Ansible loads them), `omit` dropped;
3. the module's own argument spec (ArgumentSpecValidator), then its `run()`;
4. the templates rendered as the template action renders them (trim_blocks, escape_backslashes off,
   generate_ansible_template_vars for ansible_managed).

tests/unit/test_hostile_render.py runs render.yml itself on a few cases and checks that this gives the
same bytes. `render_ray()` does the same for the Ray templates with the vllm_multinode_layout module.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import vllm_config
import vllm_multinode_layout
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, generate_ansible_template_vars, trust_as_template

REPO = Path(__file__).resolve().parent.parent
ROLES = REPO / "roles"
OMIT = "__omit_place_holder__vllm_fleet_tests"
TEMPLATE_OVERRIDES = {"trim_blocks": True, "lstrip_blocks": False, "newline_sequence": "\n"}


@dataclass
class Rendered:
    """A host's outcome: errors (refused) and who refused (stage), or the rendered files by name."""

    errors: list[str] = field(default_factory=list)
    stage: str = ""  # "argument spec" (Ansible's own message), "module arguments", "module"
    files: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)


@functools.cache
def _loaded(path: Path) -> Any:
    return DataLoader().load_from_file(str(path), trusted_as_template=True)


def _load(path: Path) -> Any:
    """A project YAML file as Ansible loads a role's files (trusted as templates); read-only, loaded once."""
    return _loaded(path)


def _spec_errors(role: str, entry: str, templar: Templar, variables: dict[str, Any]) -> list[str]:
    options = _load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"][entry]["options"]
    provided = {name: templar.template(variables[name]) for name in options if name in variables}
    return list(ArgumentSpecValidator(options).validate(provided).error_messages)


def _template(path: Path, variables: dict[str, Any]) -> str:
    variables = dict(variables)
    variables.update(generate_ansible_template_vars(path=path.name, fullpath=str(path), dest_path=path.stem))
    templar = Templar(loader=DataLoader(), variables=variables).copy_with_new_env(searchpath=[str(path.parent)])
    text = trust_as_template(path.read_text(encoding="utf-8"))
    return templar.template(text, escape_backslashes=False, overrides=TEMPLATE_OVERRIDES) or ""


def variables_for(host_vars: dict[str, Any]) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    for path in (
        ROLES / "vllm" / "defaults" / "main.yml",
        ROLES / "vllm_service" / "defaults" / "main.yml",
        ROLES / "ray_cluster" / "defaults" / "main.yml",
        ROLES / "vllm" / "vars" / "main.yml",
        ROLES / "ray_cluster" / "vars" / "main.yml",
    ):
        variables.update(_load(path) or {})
    variables.update(playbook_dir=str(REPO / "playbooks"), inventory_hostname="hostile", omit=OMIT, ansible_facts={})
    variables.update(host_vars)
    return variables


def render_vllm(host_vars: dict[str, Any], render_mode: bool = False) -> Rendered:
    """vllm.service and vllm.env for HOST_VARS (render_mode masks the API key, as render.yml does)."""
    variables = variables_for(host_vars)
    templar = Templar(loader=DataLoader(), variables=variables)
    errors = _spec_errors("vllm", "compute", templar, variables) + _spec_errors(
        "vllm_service", "render", templar, variables
    )
    if errors:
        return Rendered(errors=errors, stage="argument spec")
    task = _load(ROLES / "vllm" / "tasks" / "compute.yml")[0]
    variables.update(task.get("vars") or {})
    templar = Templar(loader=DataLoader(), variables=variables)
    args = {key: templar.template(value) for key, value in task["vllm_config"].items()}
    args = {key: value for key, value in args.items() if value != OMIT}
    checked = ArgumentSpecValidator(vllm_config.argument_spec()).validate(args)
    if checked.error_messages:
        return Rendered(errors=list(checked.error_messages), stage="module arguments")
    result = vllm_config.run(checked.validated_parameters)
    if result["errors"]:
        return Rendered(errors=result["errors"], result=result, stage="module")
    variables.update(_vllm_config=result, __vllm_service_render=render_mode)
    templates = ROLES / "vllm_service" / "templates"
    files = {name: _template(templates / f"{name}.j2", variables) for name in ("vllm.service", "vllm.env")}
    return Rendered(files=files, warnings=result.get("warnings", []), result=result)


def render_ray(host_vars: dict[str, Any], nodes: list[dict[str, Any]], node: str) -> Rendered:
    """ray.service and ray.env of NODE in a deployment of NODES, as roles/ray_cluster/tasks/preflight.yml
    calls vllm_multinode_layout and configure.yml renders them."""
    variables = variables_for(host_vars)
    variables["inventory_hostname"] = node
    templar = Templar(loader=DataLoader(), variables=variables)
    errors = _spec_errors("ray_cluster", "main", templar, variables)
    if errors:
        return Rendered(errors=errors, stage="argument spec")
    task = next(t for t in _load(ROLES / "ray_cluster" / "tasks" / "preflight.yml") if "vllm_multinode_layout" in t)
    args = dict(task["vllm_multinode_layout"])
    args["nodes"] = nodes
    args["model_path"] = OMIT
    args = {key: templar.template(value) for key, value in args.items()}
    args = {key: value for key, value in args.items() if value != OMIT}
    checked = ArgumentSpecValidator(vllm_multinode_layout.argument_spec()).validate(args)
    if checked.error_messages:
        return Rendered(errors=list(checked.error_messages), stage="module arguments")
    result = vllm_multinode_layout.run(checked.validated_parameters)
    if result["errors"]:
        return Rendered(errors=result["errors"], result=result, stage="module")
    variables.update(_ray_cluster_layout=result)
    templates = ROLES / "ray_cluster" / "templates"
    files = {name: _template(templates / f"{name}.j2", variables) for name in ("ray.service", "ray.env")}
    return Rendered(files=files, warnings=result.get("warnings", []), result=result)
