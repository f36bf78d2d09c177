"""playbooks/check_variables.yml run by ansible-playbook with the project's ansible.cfg, on inventories of
hosts that are never contacted: misspelled names and wrong types are refused before any role starts, one
line each, and what Ansible and the roles own passes. Every playbook of the project runs it first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHECK = REPO / "playbooks" / "check_variables.yml"
PLAYBOOKS = [
    "site.yml",
    "playbooks/verify.yml",
    "playbooks/render.yml",
    "playbooks/rolling_update.yml",
    "playbooks/multinode.yml",
]


def run_playbook(tmp: Path, inventory: dict | str, playbook: Path, *extra: str) -> subprocess.CompletedProcess:
    text = inventory if isinstance(inventory, str) else yaml.safe_dump(inventory, sort_keys=False)
    (tmp / "inventory.yml").write_text(text, encoding="utf-8")
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-local"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-i",
            str(tmp / "inventory.yml"),
            str(playbook),
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        timeout=300,
        check=False,
    )


def fleet(hosts: dict, group_vars: dict, multinode: dict | None = None) -> dict:
    children = {"vllm_servers": {"hosts": hosts, "vars": group_vars}}
    if multinode:
        children["vllm_multinode"] = {"children": multinode}
    return {"all": {"children": children}}


def problem_lines(run: subprocess.CompletedProcess) -> list[str]:
    """The refusal's lines, once: ansible-core prints the message unindented after [ERROR] (on stdout, or on
    stderr with display_failed_stderr) and again, indented, in the fatal block."""
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("- ")]


# Written out, so that the lines the refusal names are known.
BAD = """\
all:
  children:
    vllm_servers:
      hosts:
        gpu-node-01:
          ansible_host: 192.0.2.11
          vllm_port: eighty
        gpu-node-02:
          ansible_host: 192.0.2.12
          vllm_gpu_memory_utilization: high
      vars:
        ansible_user: ubuntu
        vllm_model: meta-llama/Llama-3.1-8B-Instruct
        vllm_gpu_memory_utilisation: 0.8
"""


@pytest.fixture(scope="module")
def refused(tmp_path_factory) -> subprocess.CompletedProcess:
    tmp = tmp_path_factory.mktemp("refused")
    return run_playbook(tmp, BAD, CHECK, "-e", "vllm_verison=0.32.0")


def test_a_misspelled_name_and_wrong_types_are_refused_one_line_each(refused):
    assert refused.returncode != 0
    assert problem_lines(refused) == [
        "- vllm_gpu_memory_utilisation is not a variable of any vllm-fleet role: did you mean "
        "vllm_gpu_memory_utilization? (set in inventory.yml:14; both hosts)",
        "- vllm_gpu_memory_utilization='high' is invalid: must be a number, e.g. 0.9 "
        "(set in inventory.yml:10; host gpu-node-02)",
        "- vllm_port='eighty' is invalid: must be a whole number, e.g. 8000 (set in inventory.yml:7; host gpu-node-01)",
        "- vllm_verison is not a variable of any vllm-fleet role: did you mean vllm_version? "
        "(given with -e; both hosts)",
    ]


def test_the_refusal_is_short_and_holds_no_argument_spec(refused):
    output = refused.stdout + refused.stderr
    # Ansible's own validation printed about 150 lines of spec per host.
    assert len(output.splitlines()) < 45, output
    for text in ("argument_spec", "Validating arguments", "_AnsibleTagged", "<class", "Origin: <unknown>"):
        assert text not in output


def test_the_refusal_names_the_escape_hatch(refused):
    assert "allowed once listed in vllm_fleet_own_variables" in refused.stdout + refused.stderr


def test_ansible_internal_own_and_fact_dependent_variables_pass(tmp_path):
    inventory = fleet(
        {
            "gpu-node-01": {"ansible_host": "192.0.2.11", "ansible_port": 2222, "vllm_site_rack": "r1"},
            "gpu-node-02": {"ansible_host": "192.0.2.12", "_vllm_note": 1, "__vllm_mine": 2, "__ray_cluster_x": 3},
        },
        {
            "ansible_user": "ubuntu",
            "ansible_python_interpreter": "/usr/bin/python3",
            "molecule_yml": {"scenario": "x"},
            "vllm_fleet_own_variables": ["vllm_site_*"],
            "vllm_model": "meta-llama/Llama-3.1-8B-Instruct",
            "vllm_port": "8000",  # Ansible's int type takes it
            "vllm_enforce_eager": "yes",
            # Needs facts that are not gathered yet: its name is checked, its value left to the roles.
            "vllm_host": "{{ ansible_default_ipv4.address }}",
            "vllm_extra_env": {"NODE_IP": "{{ ansible_default_ipv4.address }}"},
        },
    )
    run = run_playbook(tmp_path, inventory, CHECK, "-v")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "variables of 2 hosts checked: every name is declared and every value valid" in run.stdout


def test_a_required_variable_that_is_missing_says_required_not_set(tmp_path):
    inventory = fleet(
        {"gpu-node-01": {}},
        {},
        multinode={"llama70b": {"hosts": {"gpu-node-11": {"vllm_model": "org/m"}}}},
    )
    run = run_playbook(tmp_path, inventory, CHECK)
    assert run.returncode != 0
    found = problem_lines(run)
    assert len(found) == 2, found
    assert found[0].startswith("- ray_cluster_group is required, not set: The inventory group of this deployment")
    assert found[0].endswith("(host gpu-node-11)")
    assert found[1].startswith("- vllm_model is required, not set: A Hugging Face repo id")
    assert found[1].endswith("(host gpu-node-01)")


def test_a_second_import_skips_hosts_already_checked(tmp_path):
    # site.yml imports it, then playbooks/multinode.yml imports it again: facts and role outputs set in
    # between (vllm_service_summary, cached facts) are no inputs and must not be refused.
    playbook = tmp_path / "twice.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "A fact from the cache (a module's ansible_facts are variables too)",
                    "hosts": "vllm_servers",
                    "gather_facts": False,
                    "tasks": [{"ansible.builtin.set_fact": {"vllm_cpu": {"isa_level": "AVX2"}, "cacheable": True}}],
                },
                {"ansible.builtin.import_playbook": str(CHECK)},
                {
                    "name": "Set what roles set",
                    "hosts": "vllm_servers",
                    "gather_facts": False,
                    "tasks": [
                        {"ansible.builtin.set_fact": {"vllm_service_summary": {"version": "0.32.0"}}},
                        {"ansible.builtin.set_fact": {"vllm_accelerator": {"count": 0}, "cacheable": True}},
                    ],
                },
                {"ansible.builtin.import_playbook": str(CHECK)},
            ],
            sort_keys=False,
        ),
        encoding="utf-8",
    )
    inventory = fleet({"gpu-node-01": {}}, {"vllm_model": "org/m"})
    run = run_playbook(tmp_path, inventory, playbook, "-v")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "variables of 1 host checked: every name is declared" in run.stdout
    assert "every host of the play was checked before" in run.stdout


def test_render_is_refused_before_it_renders(tmp_path):
    rendered = tmp_path / "rendered"
    run = run_playbook(tmp_path, BAD, REPO / "playbooks" / "render.yml", "-e", f"vllm_render_dir={rendered}")
    assert run.returncode != 0
    assert "vllm_port='eighty' is invalid" in run.stdout + run.stderr
    assert "Render vllm.service offline" not in run.stdout
    assert not rendered.exists()


def test_the_check_runs_under_tags_too(tmp_path):
    run = run_playbook(tmp_path, BAD, REPO / "playbooks" / "render.yml", "--tags", "vllm_service")
    assert run.returncode != 0
    assert "vllm_port='eighty' is invalid" in run.stdout + run.stderr


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_every_playbook_checks_the_variables_first(playbook):
    plays = yaml.safe_load((REPO / playbook).read_text())
    first = plays[0]
    imported = first.get("ansible.builtin.import_playbook")
    assert imported, f"{playbook}: its first play is {first.get('name')!r}, not the variables check"
    assert (REPO / playbook).parent.joinpath(imported).resolve() == CHECK
