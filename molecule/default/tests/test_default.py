"""The tuned state holds: checked on the real systemd host, against the real vLLM server."""

from __future__ import annotations

import json
import os
import re

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts(
    "vllm_servers"
)

UNIT = "/etc/systemd/system/vllm.service"
ENV_FILE = "/etc/vllm/vllm.env"
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "CapabilityBoundingSet": "",
}


def unit_property(host, name: str) -> str:
    return host.check_output(f"systemctl show vllm.service --property={name} --value")


def service_pids(host) -> list[str]:
    """The server's main process and all its descendants (the engine core runs in a child)."""
    main = unit_property(host, "MainPID")
    assert main != "0", "vllm.service has no main process"
    children: dict[str, list[str]] = {}
    for line in host.check_output("ps -e -o pid=,ppid=").splitlines():
        pid, ppid = line.split()
        children.setdefault(ppid, []).append(pid)
    pids, todo = [], [main]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids


def test_service_enabled_and_active_as_its_own_user(host, host_vars):
    service = host.service("vllm")
    assert service.is_enabled
    assert service.is_running
    user = host_vars.get("vllm_user", "vllm")
    for pid in service_pids(host):
        assert host.check_output(f"ps -o user= -p {pid}") == user


def test_unit_is_hardened(host):
    for name, expected in HARDENING.items():
        assert unit_property(host, name) == expected, name
    assert unit_property(host, "User") == "vllm"


def test_unit_exposure_score(host):
    out = host.run("systemd-analyze security vllm.service --no-pager")
    match = re.search(r"Overall exposure level for vllm.service: ([0-9.]+)", out.stdout)
    assert match, out.stdout[-500:] + out.stderr
    score = float(match.group(1))
    print(f"systemd-analyze security exposure: {score}")
    assert score <= 3.0


def test_environment_file_is_root_only_and_holds_the_key(host, host_vars):
    env = host.file(ENV_FILE)
    assert env.user == "root" and env.group == "root"
    assert env.mode == 0o600
    assert f'VLLM_API_KEY="{host_vars["vllm_api_key"]}"' in env.content_string


def test_secret_is_nowhere_but_the_environment_file(host, host_vars):
    key = host_vars["vllm_api_key"]
    assert key not in host.file(UNIT).content_string
    for pid in service_pids(host):
        cmdline = host.file(f"/proc/{pid}/cmdline").content_string
        assert key not in cmdline, f"API key on the command line of PID {pid}"
    journal = host.check_output("journalctl -u vllm.service --no-pager -o cat")
    assert key not in journal


def test_listens_on_the_configured_address(host, host_vars):
    assert host.socket(f"tcp://{host_vars['vllm_host']}:{host_vars['vllm_port']}").is_listening


def test_serves_the_model_and_requires_the_key(http, host_vars):
    status, _ = http("/v1/models")
    assert status == 401
    status, text = http("/v1/models", key=host_vars["vllm_api_key"])
    assert status == 200
    served = host_vars.get("vllm_served_model_name") or host_vars["vllm_model"].rstrip("/").rsplit("/", 1)[-1]
    assert served in [m["id"] for m in json.loads(text)["data"]]
    status, text = http(
        "/v1/completions",
        key=host_vars["vllm_api_key"],
        body={"model": served, "prompt": "hello", "max_tokens": 4, "ignore_eos": True},
    )
    assert status == 200
    assert json.loads(text)["usage"]["completion_tokens"] == 4


def test_running_server_reports_the_tuning_the_role_set(http, host_vars):
    status, text = http("/metrics")
    assert status == 200
    line = next(ln for ln in text.splitlines() if ln.startswith("vllm:cache_config_info{"))
    labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
    assert float(labels["gpu_memory_utilization"]) == float(host_vars["vllm_gpu_memory_utilization"])
    assert int(labels["kv_cache_memory_bytes"]) == int(host_vars["vllm_cpu_kvcache_space_gb"]) * 2**30


def test_server_runs_the_pinned_version_from_its_venv(host, http, host_vars):
    status, text = http("/version")
    assert status == 200 and json.loads(text)["version"] == host_vars["vllm_version"]
    exec_start = unit_property(host, "ExecStart")
    assert f"/venvs/vllm-{host_vars['vllm_variant']}-{host_vars['vllm_version']}/bin/python" in exec_start


def venv_site_packages(host, host_vars) -> str:
    venv = f"/opt/vllm/venvs/vllm-{host_vars['vllm_variant']}-{host_vars['vllm_version']}"
    return host.check_output(f"ls -d {venv}/lib/python3.*/site-packages")


def test_amx_permission_hook_is_there_exactly_when_the_cpu_has_amx(host, host_vars):
    """vllm_install puts the hook in only for the CPU build on an AMX CPU (README, CPUs with AMX)."""
    has_amx = "amx_tile" in host.file("/proc/cpuinfo").content_string.split()
    site = venv_site_packages(host, host_vars)
    assert host.file(f"{site}/vllm_fleet_amx.pth").exists is has_amx
    assert host.file(f"{site}/vllm_fleet_amx.py").exists is has_amx


def test_a_spawned_process_of_the_venv_holds_amx_permission_on_amx_cpus(host, host_vars):
    """vLLM's CPU workers are spawned children of the venv's python; one such child must hold the permission.

    The permission is visible only to the process itself (ARCH_GET_XCOMP_PERM), so the check spawns a
    child the way vLLM does and asks it; the hook records what the kernel answered.
    """
    if "amx_tile" not in host.file("/proc/cpuinfo").content_string.split():
        return
    venv = f"/opt/vllm/venvs/vllm-{host_vars['vllm_variant']}-{host_vars['vllm_version']}"
    script = (
        "import multiprocessing as mp, sys\n"
        "def child(q):\n"
        "    q.put(sys.modules['vllm_fleet_amx'].STATUS if 'vllm_fleet_amx' in sys.modules else 'no hook')\n"
        "if __name__ == '__main__':\n"
        "    c = mp.get_context('spawn'); q = c.Queue(); p = c.Process(target=child, args=(q,)); p.start()\n"
        "    print(q.get(timeout=60)); p.join(60)\n"
    )
    host.check_output("printf '%%s' %s > /tmp/vllm_fleet_amx_check.py", script)
    assert host.check_output(f"{venv}/bin/python /tmp/vllm_fleet_amx_check.py") == "granted"


# The fleet report of this scenario's real runs, opened in headless Chromium the way a person
# opens it (tests/integration/test_fleet_report_browser.py): every chart drawn, no errors, no
# request leaves the page. Once per scenario, not per host; default and fleet only (one host
# and three), which keeps the other scenarios' time for what they prove.
REPORT_SCENARIOS = ("default", "fleet")


def test_the_fleet_report_of_these_runs_loads_in_a_browser():
    import subprocess
    import sys
    from pathlib import Path

    import pytest

    scenario = os.environ.get("MOLECULE_SCENARIO_NAME", "")
    if scenario not in REPORT_SCENARIOS:
        pytest.skip(f"the report's browser check runs in the {' and '.join(REPORT_SCENARIOS)} scenarios")
    report = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "results" / "report.html"
    assert report.is_file(), f"converge wrote no fleet report at {report}"
    project = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
    env = dict(os.environ, VLLM_FLEET_REPORT=str(report))
    test = "tests/integration/test_fleet_report_browser.py"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", test, "-k", "real_runs"]
    done = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"the browser check of {report} failed:\n{out[-4000:]}"
    # A skip (no Chromium) is not a pass: make deps installs it.
    assert re.search(r"\b1 passed\b", out) and "skipped" not in out, f"the browser check did not run:\n{out[-2000:]}"
