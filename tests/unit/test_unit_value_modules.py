"""vllm_config and vllm_multinode_layout run end to end the way Ansible runs them (tests/moduletest.py): the unit
values they return, the API key under no_log, refusals that name the variable."""

from __future__ import annotations

import base64

from moduletest import REPO, run_module

CONFIG = REPO / "library" / "vllm_config.py"
LAYOUT = REPO / "library" / "vllm_multinode_layout.py"
ARGS = {
    "variant": "cuda",
    "version": "0.32.0",
    "model": "org/model",
    "model_path": "/opt/vllm/models/org--model",
    "gpu_count": 2,
    "gpu_memory_total_mib": 81559,
    "host": "0.0.0.0",
}


def b64(key: str) -> str:
    return base64.b64encode(key.encode()).decode()


def test_a_short_common_key_does_not_mangle_the_returned_unit():
    """no_log masks its value wherever it occurs in the result; 'vllm' is in every path. Encoded, it is not."""
    rc, result = run_module(CONFIG, dict(ARGS, api_key_b64=b64("vllm")))
    assert rc == 0, result
    assert result["unit"]["command"][0] == "/opt/vllm/venvs/vllm-cuda-0.32.0/bin/python"
    assert "********" not in str({k: v for k, v in result.items() if k != "invocation"})
    assert b64("vllm") not in str(result)


def test_a_key_that_needs_escaping_is_refused_and_never_shown():
    key = 'line1\nVLLM_X="1"'
    rc, result = run_module(CONFIG, dict(ARGS, api_key_b64=b64(key)))
    assert rc == 1 and result["failed"]
    assert "vllm_api_key is invalid (its value is not shown)" in result["msg"]
    assert key not in str(result) and b64(key) not in str(result)


def test_root_warns_and_the_refusals_name_the_variable():
    rc, result = run_module(CONFIG, dict(ARGS, api_key_b64=b64("k"), user="root"))
    assert rc == 0 and "vllm_user='root': vllm.service runs as root" in str(result.get("warnings"))
    rc, result = run_module(CONFIG, dict(ARGS, api_key_b64=b64("k"), home="/var/lib/my vllm", gpu_count=-1))
    assert rc == 1
    assert "- vllm_home='/var/lib/my vllm' is invalid: must be an absolute, normalized path" in result["msg"]
    assert "- vllm_gpu_count=-1 is invalid" in result["msg"]


def test_layout_module_returns_the_ray_units_values_quoted():
    nodes = [{"name": f"gpu-{i}", "address": f"10.0.0.{11 + i}", "ifname": "ib0", "gpu_count": 8} for i in range(2)]
    service = {
        "node": "gpu-0", "ray_bin": "/opt/vllm/venvs/vllm-cuda-0.32.0/bin/ray", "temp_dir": "/var/lib/vllm/ray",
        "user": "vllm", "group": "vllm", "home": "/var/lib/vllm", "env_file": "/etc/ray/ray.env", "network": "ib0",
        "port": "6379", "object_manager_port": 8076, "node_manager_port": 8077, "min_worker_port": 10002,
        "max_worker_port": 19999, "num_cpus": 0, "object_store_memory_mb": 0, "restart_sec": 10,
    }  # fmt: skip
    args = {"group": "llama", "variant": "cuda", "vllm_version": "0.32.0", "nodes": nodes, "service": service}
    rc, result = run_module(LAYOUT, args)
    assert rc == 0, result
    assert result["unit"]["options"][:3] == ["--head", "--port=6379", "--include-dashboard=false"]
    assert result["env_lines"][0] == 'VLLM_HOST_IP="10.0.0.11"'
    rc, result = run_module(LAYOUT, dict(args, service=dict(service, port="6379\nExecStartPre=+sh")))
    assert rc == 1 and "ray_cluster_port='6379\\nExecStartPre=+sh' is invalid" in result["msg"]
