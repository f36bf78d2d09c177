"""module_utils/vllm_variables.py: unknown names with the closest declared one, Ansible's own type rules, one line each.

The specs are the project's own (roles/*/meta/argument_specs.yml), and acceptance is compared with Ansible's
own ArgumentSpecValidator, the check a role runs when it starts: the project must refuse exactly what it
refuses.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.vllm_variables import (
    OWN_VARIABLES,
    closest_name,
    declared_options,
    failure_message,
    fleet_report,
    host_problems,
    owned_prefix,
    owned_prefixes,
    value_problem,
)

REPO = Path(__file__).resolve().parents[2]
ROLE_NAMES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir())


def project_specs() -> dict[str, dict]:
    specs = {}
    for path in sorted((REPO / "roles").glob("*/meta/argument_specs.yml")):
        for entry, spec in yaml.safe_load(path.read_text())["argument_specs"].items():
            specs[f"roles/{path.parent.parent.name} {entry}"] = spec.get("options", {})
    return specs


DECLARED = declared_options(project_specs())
PREFIXES = owned_prefixes(ROLE_NAMES)


def problems(variables, **kwargs):
    return host_problems(variables, DECLARED, PREFIXES, **kwargs)


def lines(variables, **kwargs):
    return [line for _, line in problems(variables, **kwargs)]


# -- prefixes ------------------------------------------------------------------------------------------------------


def test_the_project_owns_vllm_and_ray_cluster():
    assert PREFIXES == ("vllm_", "ray_cluster_")


def test_a_new_role_brings_its_prefix_unless_one_covers_it():
    assert owned_prefixes(["vllm", "vllm_router", "ray_cluster", "lmcache"]) == ("vllm_", "lmcache_", "ray_cluster_")
    assert owned_prefix("ray_cluster_port", PREFIXES) == "ray_cluster_"
    assert owned_prefix("my_vllm_port", PREFIXES) is None


# -- unknown names -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("vllm_gpu_memory_utilisation", "vllm_gpu_memory_utilization"),
        ("vllm_prot", "vllm_port"),
        ("vllm_verison", "vllm_version"),
        ("vllm_tensor_parallel", "vllm_tensor_parallel_size"),
        ("vllm_max_model_length", "vllm_max_model_len"),
        ("vllm_servce_state", "vllm_service_state"),
        ("vllm_verify_treshholds", "vllm_verify_thresholds"),
        ("vllm_install_pip_extra_arg", "vllm_install_pip_extra_args"),
        ("vllm_enforce_eagre", "vllm_enforce_eager"),
        ("ray_cluster_gruop", "ray_cluster_group"),
        ("ray_cluster_netwrok", "ray_cluster_network"),
        ("vllm_fleet_own_variable", "vllm_fleet_own_variables"),
    ],
)
def test_a_misspelled_name_is_refused_with_the_closest_declared_one(typo, meant):
    assert closest_name(typo, DECLARED, PREFIXES) == meant
    assert lines({typo: 1}) == [f"{typo} is not a variable of any vllm-fleet role: did you mean {meant}?"]


def test_a_name_like_no_declared_one_is_refused_without_a_guess():
    assert lines({"vllm_zzzzqqq": 1}) == [
        "vllm_zzzzqqq is not a variable of any vllm-fleet role, and none is close (roles/*/meta/argument_specs.yml)"
    ]


def test_the_closest_name_prefers_its_own_prefix():
    # "version" follows both vllm_ and ray_cluster_.
    assert closest_name("vllm_versoin", DECLARED, PREFIXES) == "vllm_version"
    assert closest_name("ray_cluster_versoin", DECLARED, PREFIXES) == "ray_cluster_version"


def test_every_declared_name_at_its_default_passes():
    defaults = {}
    for role in ROLE_NAMES:
        path = REPO / "roles" / role / "defaults" / "main.yml"
        if path.exists():
            defaults.update(yaml.safe_load(path.read_text()) or {})
    assert set(defaults) <= set(DECLARED)
    assert problems(defaults) == []


ANSIBLE_OWN = {
    "ansible_host": "192.0.2.1",
    "ansible_user": "ubuntu",
    "ansible_port": "22",
    "ansible_python_interpreter": "/usr/bin/python3",
    "ansible_facts": {"vllm_accelerator": {}},
    "ansible_check_mode": False,
    "inventory_hostname": "gpu-node-01",
    "inventory_dir": "/x",
    "group_names": ["vllm_servers"],
    "groups": {"all": ["gpu-node-01"]},
    "hostvars": {},
    "omit": "__omit_place_holder__",
    "playbook_dir": "/x",
    "role_path": "/x/roles/vllm",
    "role_name": "vllm",
    "environment": [],
    "vars": {},
    "molecule_yml": {},
    "molecule_ephemeral_directory": "/x",
    "molecule_no_log": False,
}
INTERNAL = {
    "__vllm_venv": "/opt/vllm/venvs/x",
    "_vllm_install_pip": {"changed": True},
    "_vllm_service_probe": {"ready": False},
    "__ray_cluster_bin": "/x/ray",
    "_ray_cluster_status": {},
    "__vllm_fleet_variables_checked": True,
}
OTHER_PREFIXES = {
    "vllmport": 1,
    "my_vllm_port": "eighty",
    "VLLM_PORT": "eighty",
    "ray_head": 1,
    "gpu_standin_results": [],
}


@pytest.mark.parametrize("name", sorted(ANSIBLE_OWN) + sorted(INTERNAL) + sorted(OTHER_PREFIXES))
def test_ansible_internal_and_other_variables_are_never_reported(name):
    value = {**ANSIBLE_OWN, **INTERNAL, **OTHER_PREFIXES}[name]
    assert problems({name: value}) == []


def test_own_variables_are_allowed_by_name_or_pattern():
    variables = {"vllm_site_label": "a", "vllm_team": "b", "vllm_gpu_memory_utilisation": 0.8}
    assert lines({**variables, OWN_VARIABLES: ["vllm_site_*", "vllm_team"]}) == [
        "vllm_gpu_memory_utilisation is not a variable of any vllm-fleet role: "
        "did you mean vllm_gpu_memory_utilization?"
    ]
    # Ansible's list type splits a string on commas: so does the escape hatch.
    assert problems({"vllm_team": 1, "vllm_site": 2, OWN_VARIABLES: "vllm_team,vllm_site"}) == []


def test_the_escape_hatch_is_itself_checked():
    assert lines({OWN_VARIABLES: {"vllm_team": 1}}) == [
        "vllm_fleet_own_variables={'vllm_team': 1} is invalid: must be a list of strings, e.g. [one, two]"
    ]


def test_an_unresolved_value_has_its_name_checked_only():
    assert problems({}, unresolved=["vllm_host"]) == []
    assert lines({}, unresolved=["vllm_hots"]) == [
        "vllm_hots is not a variable of any vllm-fleet role: did you mean vllm_host?"
    ]


# -- types: exactly Ansible's -------------------------------------------------------------------------------------


def ansible_accepts(option: dict, value) -> bool:
    result = ArgumentSpecValidator({"x": dict(option)}).validate({"x": value})
    return not result.error_messages


CASES = [
    ({"type": "int", "default": 8000}, ["8000", 8000, "8000.0", 8e3, True, " 42 ", "eighty", "80.5", None, [], "", {}]),
    ({"type": "int", "default": None}, [None, "x", 3]),
    ({"type": "float", "default": 0.9}, ["0.8", 0.8, 1, "1e-1", "high", None, "inf", [], True]),
    (
        {"type": "bool", "default": False},
        [True, "yes", "no", "on", "off", "1", 0, "true", "True", "maybe", 2, None, []],
    ),
    ({"type": "str", "default": ""}, ["x", 1, 0.5, True, None, [1], {"a": 1}]),
    ({"type": "path", "default": "/opt"}, ["/x", "~/x", 1, None]),
    ({"type": "raw", "default": "auto"}, ["auto", 4, None, [1], {"a": 1}]),
    ({"type": "list", "elements": "str", "default": []}, [[], ["a", 1], "a,b", "a", 5, 1.5, {"a": 1}, None, True]),
    ({"type": "list", "elements": "int", "default": []}, [[1, "2"], ["x"], "1,2", "1,x"]),
    ({"type": "dict", "default": {}}, [{}, {"A": "1"}, "A=1 B=2", '{"A": 1}', "{bad", "nothing", [1], 3, None]),
    ({"type": "str", "choices": ["cuda", "cpu"], "default": "cuda"}, ["cuda", "cpu", "rocm", "CPU", 1, None]),
    ({"type": "str", "choices": ["yes", "no"], "default": "no"}, [True, False, "yes", "maybe"]),
    ({"type": "str", "choices": ["started", "stopped"], "default": "started"}, ["started", True]),
    ({"type": "list", "elements": "str", "choices": ["a", "b"], "default": []}, [["a"], ["a", "c"], "a,b", "c"]),
]


@pytest.mark.parametrize(
    ("option", "value"), [(option, value) for option, values in CASES for value in values], ids=repr
)
def test_a_value_is_refused_exactly_when_ansible_refuses_it(option, value):
    problem = value_problem("vllm_x", value, option)
    assert (problem is None) == ansible_accepts(option, value), problem


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"vllm_port": "eighty"}, "vllm_port='eighty' is invalid: must be a whole number, e.g. 8000"),
        (
            {"vllm_gpu_memory_utilization": "high"},
            "vllm_gpu_memory_utilization='high' is invalid: must be a number, e.g. 0.9",
        ),
        ({"vllm_port": None}, "vllm_port=null is invalid: must be a whole number, e.g. 8000"),
        (
            {"vllm_enforce_eager": "maybe"},
            "vllm_enforce_eager='maybe' is invalid: must be true or false (yes/no, on/off and 1/0 work too)",
        ),
        ({"vllm_variant": "rocm"}, "vllm_variant='rocm' is invalid: must be one of: cuda, cpu"),
        ({"vllm_extra_env": [1, 2]}, "vllm_extra_env=[1, 2] is invalid: must be a mapping, e.g. {NAME: value}"),
        ({"vllm_extra_args": 7.5}, None),  # Ansible makes ['7.5'] of it; vllm_config judges the flag
        ({"ray_cluster_port": "6379"}, None),
        (
            {"vllm_verify_dataset": "imagenet"},
            "vllm_verify_dataset='imagenet' is invalid: must be one of: random, sonnet",
        ),
    ],
)
def test_a_wrong_value_is_one_line_naming_variable_value_and_what_is_valid(variables, expected):
    found = lines(variables)
    assert found == ([expected] if expected else [])
    for line in found:
        assert "\n" not in line
        assert "class" not in line and "Tagged" not in line and "Origin" not in line


def test_a_long_value_is_cut():
    (line,) = lines({"vllm_port": "x" * 500})
    assert len(line) < 140 and line.endswith("is invalid: must be a whole number, e.g. 8000")


def test_a_secret_value_is_never_shown():
    option = {"type": "int", "no_log": True, "default": 0}
    assert value_problem("vllm_secret", "hunter2", option, secret=True) == (
        "vllm_secret is invalid (its value is not shown): must be a whole number, e.g. 0"
    )
    declared = {"vllm_secret": [option]}
    found = host_problems({"vllm_secret": "hunter2"}, declared, PREFIXES, secrets=["vllm_secret"])
    assert "hunter2" not in repr(found)


def test_a_required_variable_that_is_missing_says_so():
    (line,) = lines({}, required=["vllm_model"])
    assert line.startswith("vllm_model is required, not set: A Hugging Face repo id")
    assert "''" not in line and "Required." not in line
    (line,) = lines({"vllm_model": ""}, required=["vllm_model"])
    assert line.startswith("vllm_model is required, but set to '': A Hugging Face repo id")
    assert lines({"vllm_model": "org/model"}, required=["vllm_model"]) == []
    # One whose value waits for facts is not called missing.
    assert lines({}, unresolved=["vllm_model"], required=["vllm_model"]) == []


def test_a_required_hint_reads_ansible_doc_markup_as_text():
    declared = {"vllm_thing": [{"type": "str", "description": ["Set C(this) to V(that). Required."]}]}
    found = host_problems({}, declared, PREFIXES, required=["vllm_thing"])
    assert found == [("vllm_thing", "vllm_thing is required, not set: Set this to that.")]


# -- the fleet's report --------------------------------------------------------------------------------------------


def test_a_problem_hosts_share_is_one_line_naming_them_and_where_it_was_set():
    typo = ("vllm_gpu_memory_utilisation", "vllm_gpu_memory_utilisation is not a variable ...")
    port = ("vllm_port", "vllm_port='eighty' is invalid: ...")
    report = fleet_report(
        {"gpu-node-01": [typo, port], "gpu-node-02": [typo]},
        {
            "gpu-node-01": {
                "vllm_gpu_memory_utilisation": "inventory/prod.yml:14",
                "vllm_port": "inventory/prod.yml:9",
            },
            "gpu-node-02": {"vllm_gpu_memory_utilisation": "inventory/prod.yml:14"},
        },
    )
    assert report == [
        "- vllm_gpu_memory_utilisation is not a variable ... (set in inventory/prod.yml:14; both hosts)",
        "- vllm_port='eighty' is invalid: ... (set in inventory/prod.yml:9; host gpu-node-01)",
    ]


def test_one_host_gets_no_host_names_and_extra_variables_say_so():
    report = fleet_report({"h": [("vllm_x", "vllm_x is not ...")]}, {"h": {"vllm_x": "-e"}})
    assert report == ["- vllm_x is not ... (given with -e)"]


def test_many_hosts_are_counted_not_listed():
    found = {f"h{i}": [("vllm_x", "vllm_x is not ...")] for i in range(7)}
    found["h7"] = []
    (line,) = fleet_report(found)
    assert line == "- vllm_x is not ... (hosts h0, h1, h2, h3 and 3 more)"
    del found["h7"]
    assert fleet_report(found) == ["- vllm_x is not ... (all 7 hosts)"]


def test_the_message_names_the_escape_hatch_only_for_unknown_names():
    text = failure_message(["- a", "- b"], PREFIXES, any_unknown=True)
    assert text.splitlines() == [
        "Invalid vllm-fleet variables (nothing was changed):",
        "- a",
        "- b",
        "A variable of your own named vllm_* or ray_cluster_* is allowed once listed in vllm_fleet_own_variables "
        "(README: Variables are checked).",
    ]
    assert OWN_VARIABLES not in failure_message(["- a"], PREFIXES, any_unknown=False)
