"""vllm_preflight's "Check the NVIDIA driver version" against what vllm_gpu_facts returns, null included.

The task is read from roles/vllm_preflight/tasks/assert.yml by name and run with
ansible-playbook on local hosts, right after vllm_gpu_facts on a stand-in: the real
captures through scripts/nvidia-smi-standin, and one SYNTHETIC nvidia-smi (written
here, no machine printed it) whose driver version is [N/A].
"""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from moduletest import REPO

ASSERTS = REPO / "roles" / "vllm_preflight" / "tasks" / "assert.yml"
TASK_NAME = "Check the NVIDIA driver version"
STANDIN = REPO / "scripts" / "nvidia-smi-standin"
MIN_DRIVER = "550.54"
SBIN_DIRS = ("/sbin", "/usr/sbin", "/usr/local/sbin")
# SYNTHETIC: a GPU row in the shape of the module's full query, with driver_version [N/A].
SYNTHETIC_ROW = "0, Synthetic GPU 80GB, GPU-00000000-0000-0000-0000-000000000000, 81559, 1, 81106, [N/A], Enabled, 9.0"


def driver_task() -> dict:
    tasks = [task for task in yaml.safe_load(ASSERTS.read_text()) if task.get("name") == TASK_NAME]
    assert len(tasks) == 1, f"{ASSERTS} has {len(tasks)} tasks named {TASK_NAME!r}"
    return tasks[0]


def synthetic_driver_na(folder: Path) -> Path:
    """A SYNTHETIC nvidia-smi: one GPU whose driver_version is [N/A], and a banner without a version."""
    path = folder / "nvidia-smi"
    path.write_text(
        "#!/bin/sh\n"
        "# SYNTHETIC nvidia-smi for tests/unit/test_vllm_gpu_driver_assert.py: no machine printed this.\n"
        'if [ "$#" -eq 0 ]; then\n'
        "  echo '| NVIDIA-SMI [N/A]    Driver Version: [N/A]    CUDA Version: [N/A]   |'\n"
        "else\n"
        f"  echo '{SYNTHETIC_ROW}'\n"
        "fi\n",
        encoding="utf-8",
    )
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, dict]:
    """One local host per case, all in one ansible-playbook run; each case's assert result, by host name."""
    if any(Path(folder, "nvidia-smi").exists() for folder in SBIN_DIRS):
        pytest.skip("this machine has an nvidia-smi where vllm_gpu_facts looks for one; the CPU case cannot run")
    tmp = tmp_path_factory.mktemp("driver-assert")
    (tmp / "empty").mkdir()
    hosts = {
        "capture_h100": {"smi": str(STANDIN), "smi_env": {"NVIDIA_SMI_STANDIN": "h100-80gb-x8"}},
        "capture_a10g": {"smi": str(STANDIN), "smi_env": {"NVIDIA_SMI_STANDIN": "a10g-24gb-x4"}},
        "synthetic_na": {"smi": str(synthetic_driver_na(tmp)), "smi_env": {}},
        "cpu_host": {"smi": "", "smi_env": {"PATH": str(tmp / "empty")}},
    }
    inventory = {
        "all": {
            "hosts": {
                name: {**vars_, "ansible_connection": "local", "ansible_python_interpreter": sys.executable}
                for name, vars_ in hosts.items()
            }
        }
    }
    play = {
        "name": "The driver-version assert on each case",
        "hosts": "all",
        "gather_facts": False,
        "vars": {"vllm_variant": "cuda", "vllm_preflight_min_driver_version": MIN_DRIVER},
        "tasks": [
            {
                "name": "Gather GPU facts",
                "vllm_gpu_facts": {"nvidia_smi_path": "{{ smi | default(omit, true) }}"},
                "environment": "{{ smi_env }}",
            },
            {**driver_task(), "register": "_result", "ignore_errors": True},
            {
                "name": "Keep the result",
                "ansible.builtin.copy": {
                    "content": "{{ _result | to_json }}",
                    "dest": f"{tmp}/{{{{ inventory_hostname }}}}.json",
                    "mode": "0644",
                },
            },
        ],
    }
    (tmp / "inventory.yml").write_text(yaml.safe_dump(inventory), encoding="utf-8")
    (tmp / "play.yml").write_text(yaml.safe_dump([play], sort_keys=False), encoding="utf-8")
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(tmp / "none.cfg"),
        "ANSIBLE_LIBRARY": str(REPO / "library"),
        "ANSIBLE_MODULE_UTILS": str(REPO / "module_utils"),
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-local"),
        "ANSIBLE_NOCOLOR": "1",
    }
    playbook = Path(sys.executable).with_name("ansible-playbook")
    run = subprocess.run(
        [str(playbook), "-i", str(tmp / "inventory.yml"), str(tmp / "play.yml")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        timeout=300,
        check=False,
    )
    results = {name: tmp / f"{name}.json" for name in hosts}
    missing = [name for name, path in results.items() if not path.exists()]
    assert not missing, f"no result for {missing}: {shlex.join(run.args)}\n{run.stdout}\n{run.stderr}"
    return {name: json.loads(path.read_text()) for name, path in results.items()}


def test_a_driver_new_enough_passes(outcomes):
    assert outcomes["capture_h100"].get("failed") is not True, outcomes["capture_h100"]


def test_a_driver_too_old_is_refused(outcomes):
    result = outcomes["capture_a10g"]
    assert result["failed"] is True
    assert result["msg"] == (
        f"NVIDIA driver 515.65.01 is older than vllm_preflight_min_driver_version={MIN_DRIVER}: "
        "upgrade the driver and reboot."
    )


def test_a_driver_version_of_n_a_is_refused_with_a_message_not_a_crash(outcomes):
    result = outcomes["synthetic_na"]
    assert result["failed"] is True
    assert result["msg"].startswith("No NVIDIA driver version is known on this host (nvidia-smi at /")
    assert "reported none; accelerator cuda)" in result["msg"]
    assert f"vllm_preflight_min_driver_version={MIN_DRIVER} cannot be checked" in result["msg"]
    assert 'set vllm_preflight_min_driver_version to "" to skip this check.' in result["msg"]


def test_a_host_without_nvidia_smi_is_refused_with_a_message(outcomes):
    result = outcomes["cpu_host"]
    assert result["failed"] is True
    assert "(no nvidia-smi was found; accelerator cpu)" in result["msg"]
