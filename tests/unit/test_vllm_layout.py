"""Multi-node layout (module_utils/vllm_layout.py): sizes from the group, and the messages that refuse bad input."""

from __future__ import annotations

import pytest
from ansible.module_utils.vllm_layout import (
    cluster_report,
    layout,
    parse_ray_status,
    ray_requirement,
    ray_unit,
    ray_version_for,
    resolve_ray_version,
    validate_nodes,
)


def nodes(count: int, gpus: int = 8) -> list[dict]:
    return [{"name": f"gpu-{i}", "address": f"10.0.0.{11 + i}", "gpu_count": gpus} for i in range(count)]


def settings(tp="auto", pp="auto", variant="cuda", **model) -> dict:
    return {"group": "llama", "variant": variant, "tensor_parallel_size": tp, "pipeline_parallel_size": pp, **model}


@pytest.mark.parametrize(
    ("count", "gpus", "tp", "pp", "expected"),
    [
        (2, 8, "auto", "auto", (8, 2)),  # TP inside a node, PP across nodes
        (4, 8, "auto", "auto", (8, 4)),
        (2, 8, 4, "auto", (4, 4)),  # two stages per node
        (2, 8, "auto", 4, (4, 4)),
        (2, 8, 16, 1, (16, 1)),  # TP across nodes: allowed, with a warning
        (2, 4, 2, 4, (2, 4)),
    ],
)
def test_sizes_from_group_and_gpus(count, gpus, tp, pp, expected):
    result = layout(settings(tp, pp), nodes(count, gpus))
    assert result["errors"] == []
    assert (result["tensor_parallel_size"], result["pipeline_parallel_size"]) == expected
    assert result["world_size"] == count * gpus
    assert result["head"] == "gpu-0" and result["workers"] == [f"gpu-{i}" for i in range(1, count)]


def test_cpu_variant_runs_one_worker_per_node():
    result = layout(settings(variant="cpu"), nodes(2, gpus=0))
    assert (result["tensor_parallel_size"], result["pipeline_parallel_size"]) == (1, 2)
    assert result["device_resource"] == "CPU"


def test_tp_across_nodes_warns():
    result = layout(settings(16, 1), nodes(2))
    assert any("spans 2 nodes" in w for w in result["warnings"])


@pytest.mark.parametrize(
    ("tp", "pp", "count", "gpus", "message"),
    [
        (4, 3, 2, 8, "TP x PP must equal that number exactly; valid: TP 8 x PP 2, TP 4 x PP 4, TP 2 x PP 8"),
        (4, 3, 2, 8, "ray_cluster_group='llama' has 16 GPUs: 2 nodes x 8"),
        (3, "auto", 2, 8, "ray_cluster_tensor_parallel_size=3 x ray_cluster_pipeline_parallel_size='auto'"),
        ("auto", 5, 2, 8, "does not fit"),
        (0, "auto", 2, 8, "ray_cluster_tensor_parallel_size=0 is invalid: must be 'auto' or a whole number"),
        ("auto", "two", 2, 8, "ray_cluster_pipeline_parallel_size='two' is invalid"),
        (4, 3, 2, 6, "a tensor parallel group must not straddle two nodes: with 6 GPUs per node use one of 1, 2, 3, 6"),
        (12, 1, 2, 8, "does not fit"),
    ],
)
def test_refused_layouts_name_variable_value_and_valid(tp, pp, count, gpus, message):
    result = layout(settings(tp, pp), nodes(count, gpus))
    assert any(message in error for error in result["errors"]), result["errors"]


def test_tp_must_divide_attention_heads():
    result = layout(settings(8, 2, num_attention_heads=12), nodes(2))
    assert any("must divide the model's 12 attention heads" in e for e in result["errors"])


def test_pipeline_stages_at_most_layers():
    result = layout(settings(1, 4, variant="cpu", num_hidden_layers=2), nodes(4, 0))
    assert any("the model has 2 layers, so at most 2 pipeline stages" in e for e in result["errors"])


def test_different_gpu_counts_are_refused_with_the_counts():
    group = nodes(2)
    group[1]["gpu_count"] = 4
    errors = validate_nodes("llama", "cuda", group)
    assert any("different GPU counts (gpu-0=8, gpu-1=4)" in e for e in errors)


def test_node_without_gpu_is_named():
    group = nodes(2)
    group[1]["gpu_count"] = 0
    assert any("gpu-1 has no NVIDIA GPU" in e for e in validate_nodes("llama", "cuda", group))


def test_missing_and_duplicate_addresses():
    group = nodes(3)
    group[1]["address"] = ""
    group[2]["address"] = group[0]["address"]
    errors = validate_nodes("llama", "cuda", group)
    assert any("no Ray address for gpu-1" in e for e in errors)
    assert any("gpu-2 and gpu-0 both use the Ray address 10.0.0.11" in e for e in errors)


def test_empty_group():
    assert "no such group" in layout(settings(), [])["errors"][0]


def test_one_host_is_not_a_deployment():
    errors = layout(settings(), nodes(1))["errors"]
    assert any("it has 1 host (gpu-0); a multi-node deployment needs at least 2" in e for e in errors), errors


def test_node_lost_in_this_run_is_named():
    group = nodes(3)
    group[2].update(address="", lost=True)
    errors = validate_nodes("llama", "cuda", group)
    assert any("gpu-2 of ray_cluster_group='llama' is not in this run (unreachable" in e for e in errors), errors
    assert not any("no Ray address" in e for e in errors)


def test_ray_version_auto_and_explicit():
    assert resolve_ray_version("auto", "0.32.0") == ("2.56.1", [])
    assert resolve_ray_version("2.55.1", "0.32.0") == ("2.55.1", [])
    version, errors = resolve_ray_version("auto", "0.17.1")
    assert version == "" and "no Ray release on record for vllm_version='0.17.1'" in errors[0]
    assert "ray_cluster_version='latest' is invalid" in resolve_ray_version("latest", "0.32.0")[1][0]


def test_ray_requirement_has_compiled_graph_on_cuda():
    assert ray_requirement("cuda", "2.56.1") == "ray[cgraph]==2.56.1"
    assert ray_requirement("cpu", "2.56.1") == "ray==2.56.1"


def test_ray_version_table():
    assert ray_version_for("0.32.0") == "2.56.1"
    assert ray_version_for("0.32.1") == "2.56.1"
    assert ray_version_for("0.31.0") is None
    assert ray_version_for("latest") is None


# Captured from `ray status -v` of Ray 2.56.1 on this project's machine (one node started with
# --num-gpus=2 --resources='{"vllm_fleet_host:gpu-a": 1}'), with a second node section appended as
# Ray prints it for a worker, and the first node's long name shortened to fit a line.
RAY_STATUS = """\
======== Autoscaler status: 2026-11-23 22:30:59.435939 ========
GCS request time: 0.002728s
Node Provider non_terminated_nodes time: 0.000008s

Node status
---------------------------------------------------------------
Active:
 1 node_5554909e76071115499e2d14d84bef6a73d4f787a8b377b0f1c3beb3
 1 node_77aa
Pending:
 (no pending nodes)
Recent failures:
 (no failures)

Resources
---------------------------------------------------------------
Total Usage:
 0.0/4.0 CPU
 0.0/4.0 GPU
 0B/12.85GiB memory
 0B/5.51GiB object_store_memory
 0.0/1.0 vllm_fleet_host:gpu-a
 0.0/1.0 vllm_fleet_host:gpu-b

From request_resources:
 (none)
Pending Demands:
 (no resource demands)

Node: 5554909e76071115499e2d14d84bef6a73d4f787a8b377b0f1c3beb3 (node_5554909e76071115499e2d14d84bef6a7)
 Usage:
  0.0/2.0 CPU
  0.0/2.0 GPU
  0B/12.85GiB memory
  0B/5.51GiB object_store_memory
  0.0/1.0 vllm_fleet_host:gpu-a
Node: 77aa (node_77aa)
 Usage:
  0.0/2.0 CPU
  0.0/1.0 GPU
  0B/12.85GiB memory
  0B/5.51GiB object_store_memory
  0.0/1.0 vllm_fleet_host:gpu-b
"""


def test_parse_ray_status_maps_nodes_to_hosts():
    parsed = parse_ray_status(RAY_STATUS)
    assert [n["host"] for n in parsed] == ["gpu-a", "gpu-b"]
    assert parsed[0]["resources"]["GPU"] == 2.0
    assert parsed[0]["resources"]["memory"] == pytest.approx(12.85 * 2**30)


def expected(*names: str, devices: int = 2) -> list[dict]:
    return [{"name": n, "address": f"10.0.0.{i}", "devices": devices} for i, n in enumerate(names, 11)]


def test_cluster_ready_when_every_node_listed():
    report = cluster_report(expected("gpu-a", "gpu-b", devices=1), parse_ray_status(RAY_STATUS), "GPU")
    assert report["ready"], report["message"]
    assert report["message"] == "all 2 nodes joined: gpu-a, gpu-b"


def test_missing_node_is_named_with_its_address():
    report = cluster_report(expected("gpu-a", "gpu-b", "gpu-c", devices=1), parse_ray_status(RAY_STATUS), "GPU")
    assert not report["ready"]
    assert report["missing"] == ["gpu-c"]
    assert "not in the Ray cluster: gpu-c (10.0.0.13)" in report["message"]


def test_node_not_in_group_and_short_of_gpus():
    report = cluster_report(expected("gpu-a"), parse_ray_status(RAY_STATUS), "GPU")
    assert report["unexpected"] == ["gpu-b"]
    assert "in the Ray cluster but not in the group: gpu-b" in report["message"]
    report = cluster_report(expected("gpu-a", "gpu-b"), parse_ray_status(RAY_STATUS), "GPU")
    assert report["short"] == ["gpu-b has 1 GPU, expected 2"]


# What `ray status -v` showed on the multinode scenario's head after `systemctl restart ray-worker.service`
# (Ray 2.56.1): the worker's old node stays listed, Active and with an empty Usage, beside its new one.
OLD_ID = "5c1ee4900e27816a76a45fc643577725055206509c121ed99e87f6ce"
RAY_STATUS_AFTER_WORKER_RESTART = (
    RAY_STATUS
    + f"""
Node: {OLD_ID} (node_{OLD_ID})
 Usage:

"""
)


def test_a_departed_node_listed_without_resources_is_ignored():
    parsed = parse_ray_status(RAY_STATUS_AFTER_WORKER_RESTART)
    assert len(parsed) == 3 and parsed[2]["resources"] == {}
    report = cluster_report(expected("gpu-a", "gpu-b", devices=1), parsed, "GPU")
    assert report["ready"], report["message"]
    assert report["unexpected"] == []


def test_only_a_departed_entry_does_not_count_as_the_node():
    gone = RAY_STATUS.split("Node: 77aa")[0] + "Node: 77aa (node_77aa)\n Usage:\n\n"
    report = cluster_report(expected("gpu-a", "gpu-b", devices=1), parse_ray_status(gone), "GPU")
    assert not report["ready"]
    assert report["missing"] == ["gpu-b"]


@pytest.mark.parametrize("value", ["inf", "nan", "2.0", "2e0", 2.0, "-1"])
def test_sizes_that_would_crash_int_are_refused(value):
    """Issue 11, part 5: 'inf' raised OverflowError and 'nan' ValueError inside int() before."""
    errors = layout(settings(value, "auto"), nodes(2))["errors"]
    assert any(e.startswith(f"ray_cluster_tensor_parallel_size={value!r} is invalid: must be 'auto'") for e in errors)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "gpu b", "the inventory host 'gpu b' of ray_cluster_group='llama' is invalid as a Ray node"),
        ("name", "gpu-b\n", "is invalid as a Ray node"),
        ("address", "10.0.0.12\nX=1", "the Ray address of gpu-1='10.0.0.12\\nX=1' is invalid: must be an IP address"),
        ("ifname", "eth 0", "the network interface of gpu-1='eth 0' is invalid: must be a Linux interface name"),
        ("ifname", "a" * 16, "must be a Linux interface name"),
    ],
)
def test_node_values_the_units_cannot_carry_are_refused(field, value, message):
    group = nodes(2)
    group[1][field] = value
    assert any(message in e for e in validate_nodes("llama", "cuda", group)), validate_nodes("llama", "cuda", group)


SERVICE = {
    "node": "gpu-1",
    "ray_bin": "/opt/vllm/venvs/vllm-cuda-0.32.0/bin/ray",
    "temp_dir": "/var/lib/vllm/ray",
    "user": "vllm",
    "group": "vllm",
    "home": "/var/lib/vllm",
    "env_file": "/etc/ray/ray.env",
    "network": "ib0",
    "port": 6379,
    "object_manager_port": 8076,
    "node_manager_port": 8077,
    "min_worker_port": 10002,
    "max_worker_port": 19999,
    "num_cpus": 0,
    "object_store_memory_mb": 0,
    "restart_sec": 10,
}


def ray_unit_of(service: dict, group=None) -> dict:
    result = layout(settings(), group or [dict(n, ifname="ib0") for n in nodes(2)])
    return ray_unit({"group": "llama", "variant": "cuda", "ray_version": "2.56.1"}, result, service)


def test_ray_unit_of_a_worker():
    out = ray_unit_of(SERVICE)
    assert out["errors"] == []
    unit = out["unit"]
    assert unit["command"] == ["/opt/vllm/venvs/vllm-cuda-0.32.0/bin/ray", "start", "--block"]
    assert unit["options"][:2] == ["--address=10.0.0.11:6379", "--node-ip-address=10.0.0.12"]
    assert "--num-gpus=8" in unit["options"]
    assert unit["options"][-1] == '"--resources={\\"vllm_fleet_host:gpu-1\\": 1}"'
    assert out["env_lines"][:3] == ['VLLM_HOST_IP="10.0.0.12"', 'NCCL_SOCKET_IFNAME="ib0"', 'GLOO_SOCKET_IFNAME="ib0"']
    assert unit["header"][0] == "Ray 2.56.1 worker of the vLLM deployment llama"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("port", "6379\nExecStartPre=+sh", "ray_cluster_port='6379\\nExecStartPre=+sh' is invalid: must be a whole"),
        ("num_cpus", "inf", "ray_cluster_num_cpus='inf' is invalid"),
        ("object_store_memory_mb", -1, "ray_cluster_object_store_memory_mb=-1 is invalid"),
        ("user", "vllm user", "vllm_user='vllm user' is invalid"),
        ("home", "/var/lib/my vllm", "vllm_home='/var/lib/my vllm' is invalid"),
        ("ray_bin", "/opt/my vllm/ray", "the Ray executable (from vllm_install_dir)='/opt/my vllm/ray' is invalid"),
        ("node", "gpu-9", "'gpu-9' is not a node of ray_cluster_group='llama'"),
    ],
)
def test_ray_unit_refuses_what_it_cannot_write(key, value, message):
    errors = ray_unit_of(dict(SERVICE, **{key: value}))["errors"]
    assert any(message in e for e in errors), errors


def test_comments_and_the_description_keep_a_hostile_group_name_on_one_line():
    out = ray_unit({"group": "g\nExecStartPre=+sh", "variant": "cpu", "ray_version": "2.56.1"},
                   layout(settings(variant="cpu"), nodes(2, 0)), SERVICE)  # fmt: skip
    assert out["unit"]["description"] == "Ray worker for the vLLM deployment g\\x0aExecStartPre=+sh"
    assert all("\n" not in line for line in out["unit"]["header"])
