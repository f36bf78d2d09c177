"""The fleet report as the playbooks build it: role vllm_verify's report entry point, and playbooks/report.yml.

ansible-playbook runs with the project's ansible.cfg. The verified hosts are stood in for by their
vllm_verify_summary (what collect.yml sets on each host), set by a first play; no host is contacted.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fleet_fixtures import standard_plans, write_fleet

REPO = Path(__file__).resolve().parents[2]

PLAYBOOK = [
    {
        "name": "Stand in for the verified hosts: their summaries, as collect.yml sets them",
        "hosts": "vllm_servers",
        "gather_facts": False,
        "tasks": [
            {
                "name": "Set the summary",
                "ansible.builtin.set_fact": {"vllm_verify_summary": "{{ summaries[inventory_hostname] }}"},
            }
        ],
    },
    {
        "name": "Report on the fleet",
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [
            {
                "name": "Print and write the fleet table",
                "ansible.builtin.include_role": {"name": "vllm_verify", "tasks_from": "report"},
            }
        ],
    },
]


def ansible_playbook(tmp: Path, playbook: Path, hosts: list[str], *extra: str) -> subprocess.CompletedProcess:
    inventory = {
        "all": {
            "children": {
                "vllm_servers": {
                    "hosts": {h: {"ansible_connection": "local"} for h in hosts},
                    "vars": {"vllm_model": "/opt/models/llama"},
                }
            }
        }
    }
    (tmp / "inventory.yml").write_text(yaml.safe_dump(inventory), encoding="utf-8")
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
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


@pytest.fixture
def verified(tmp_path) -> tuple[Path, Path, list[dict]]:
    results = tmp_path / "results"
    rows = write_fleet(results, standard_plans(), fleet_json=False)
    (tmp_path / "summaries.json").write_text(json.dumps({"summaries": {r["host"]: r for r in rows}}))
    playbook = tmp_path / "verify.yml"
    playbook.write_text(yaml.safe_dump(PLAYBOOK, sort_keys=False))
    return tmp_path, results, rows


def test_the_role_writes_the_tables_and_the_report_and_flags_the_straggler(verified):
    tmp, results, rows = verified
    run = ansible_playbook(
        tmp,
        tmp / "verify.yml",
        [r["host"] for r in rows],
        "-e",
        "@summaries.json",
        "-e",
        f"vllm_verify_results_dir={results}",
    )
    output = " ".join((run.stdout + run.stderr).split())  # the callback wraps long lines
    # gpu-node-5 failed (no numbers): the play fails as before, naming it; the straggler only flagged.
    assert run.returncode == 2, output
    assert "gpu-node-5 failed verification: throughput: cannot use the vLLM server" in output
    assert {m.strip() for m in re.findall(r"([\w, -]+) failed verification:", output)} == {"gpu-node-5"}
    (table,) = results.glob("fleet-*.json")
    stamp = table.name[len("fleet-") : -len(".json")]
    written = json.loads(table.read_text())
    assert [r["host"] for r in written] == [r["host"] for r in rows]
    assert {r["host"] for r in written if r["straggler"]} == {"gpu-node-3"}
    markdown = (results / f"fleet-{stamp}.md").read_text()
    assert "| peer deviation | capacity in SLO req/s | Result |" in markdown.splitlines()[0]
    assert "PASS, straggler |" in next(line for line in markdown.splitlines() if line.startswith("| gpu-node-3 |"))
    assert (results / "report.html").exists() and (results / f"report-{stamp}.html").exists()
    assert "Slower than their peers (worse than the class median by more than 10%): gpu-node-3 (" in output


def test_fail_on_straggler_fails_the_play_naming_host_metric_value_and_median(verified):
    tmp, results, rows = verified
    summaries = {r["host"]: r for r in rows if r["host"] != "gpu-node-5"}
    (tmp / "summaries.json").write_text(json.dumps({"summaries": summaries}))
    run = ansible_playbook(
        tmp,
        tmp / "verify.yml",
        list(summaries),
        "-e",
        "@summaries.json",
        "-e",
        f"vllm_verify_results_dir={results}",
        "-e",
        "vllm_verify_fail_on_straggler=true",
        "-e",
        "vllm_verify_peer_tolerance_pct=10",
    )
    output = " ".join((run.stdout + run.stderr).split())  # the callback wraps long lines
    assert run.returncode == 2, output
    assert "gpu-node-3 failed verification: gpu-node-3: request_throughput " in output
    assert "below its class median" in output and "(worse by more than the peer tolerance of 10%)" in output


def test_report_playbook_rebuilds_the_report_from_the_results_alone(tmp_path):
    results = tmp_path / "results"
    write_fleet(results, standard_plans())
    run = ansible_playbook(tmp_path, REPO / "playbooks" / "report.yml", [], "-e", f"vllm_verify_results_dir={results}")
    output = " ".join((run.stdout + run.stderr).split())  # the callback wraps long lines
    assert run.returncode == 0, output
    assert "Fleet report: 8 hosts, 7 PASS, 1 FAIL, 1 stragglers (peer tolerance 10%)" in output
    assert (results / "report.html").exists() and len(list(results.glob("report-*.html"))) == 1
    assert not list(results.glob("fleet-2026*.md"))  # no verification ran: no new fleet table
