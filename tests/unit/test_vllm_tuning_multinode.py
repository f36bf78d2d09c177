"""The head of a multi-node deployment: flags and environment from the layout (vllm_tuning's multinode mode)."""

from __future__ import annotations

import pytest
from ansible.module_utils.vllm_layout import layout
from ansible.module_utils.vllm_tuning import compute, parse_help_flags
from tuning_settings import H100_X8, HELP_0_32, settings


def multinode(count: int = 2, gpus: int = 8, variant: str = "cuda", tp="auto", pp="auto") -> dict:
    """What role ray_cluster hands to vllm_config: the layout module's result for COUNT nodes."""
    nodes = [{"name": f"gpu-{i}", "address": f"10.0.0.{11 + i}", "gpu_count": gpus} for i in range(count)]
    result = layout(
        {"group": "llama70b", "variant": variant, "tensor_parallel_size": tp, "pipeline_parallel_size": pp}, nodes
    )
    assert result["errors"] == [], result["errors"]
    return {
        "group": "llama70b",
        "nodes": len(nodes),
        "tensor_parallel_size": result["tensor_parallel_size"],
        "pipeline_parallel_size": result["pipeline_parallel_size"],
        "notes": result["notes"],
        "ray_address": "10.0.0.11:6379",
        "node_ip": "10.0.0.11",
        "ifname": "ib0",
    }


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def test_head_runs_tp_per_node_pp_across_nodes_on_ray():
    out = compute(settings(multinode=multinode(2, 8)), H100_X8)
    assert out["errors"] == []
    args = out["args"]
    assert flag(args, "--tensor-parallel-size") == "8"
    assert flag(args, "--pipeline-parallel-size") == "2"
    assert flag(args, "--distributed-executor-backend") == "ray"
    assert out["layout"]["gpus_used"] == 16
    assert out["layout"]["nodes"] == 2 and out["layout"]["distributed_executor_backend"] == "ray"
    assert "multi-node llama70b" in out["notes"]["--tensor-parallel-size"]


def test_user_sizes_from_the_layout():
    out = compute(settings(multinode=multinode(2, 8, tp=4, pp=4)), H100_X8)
    assert out["errors"] == []
    assert (flag(out["args"], "--tensor-parallel-size"), flag(out["args"], "--pipeline-parallel-size")) == ("4", "4")


def test_environment_names_the_cluster_and_the_interface():
    env = compute(settings(multinode=multinode()), H100_X8)["env"]
    assert env["RAY_ADDRESS"] == "10.0.0.11:6379"
    assert env["VLLM_HOST_IP"] == "10.0.0.11"
    assert env["NCCL_SOCKET_IFNAME"] == env["GLOO_SOCKET_IFNAME"] == "ib0"
    # Ray assigns the GPUs of every node; a CUDA_VISIBLE_DEVICES on the head would fight it.
    assert "CUDA_VISIBLE_DEVICES" not in env


def test_cpu_variant_renders_pp_over_nodes():
    out = compute(settings(variant="cpu", multinode=multinode(2, 0, variant="cpu")), {"gpu_count": 0})
    assert out["errors"] == []
    args = out["args"]
    assert flag(args, "--tensor-parallel-size") == "1" and flag(args, "--pipeline-parallel-size") == "2"
    assert flag(args, "--distributed-executor-backend") == "ray"


def test_every_rendered_flag_is_known_to_vllm_0_32():
    known = parse_help_flags(HELP_0_32.read_text())
    out = compute(settings(variant="cpu", multinode=multinode(2, 0, variant="cpu")), {"known_flags": known})
    assert out["errors"] == [], out["errors"]


def test_single_host_is_unchanged_without_multinode():
    single = compute(settings(), H100_X8)
    assert "--distributed-executor-backend" not in single["args"]
    assert "RAY_ADDRESS" not in single["env"]
    assert set(single["layout"]) == {
        "tensor_parallel_size",
        "pipeline_parallel_size",
        "gpus_used",
        "served_model_name",
        "model_kind",
    }


@pytest.mark.parametrize(
    ("over", "message"),
    [
        (
            {"tensor_parallel_size": 4},
            "vllm_tensor_parallel_size=4 is invalid: in the multi-node deployment 'llama70b' the sizes come from the "
            "whole group: leave it 'auto' and set ray_cluster_tensor_parallel_size instead",
        ),
        (
            {"pipeline_parallel_size": 2},
            "vllm_pipeline_parallel_size=2 is invalid: in the multi-node deployment 'llama70b' the sizes come from "
            "the whole group: leave it 1 and set ray_cluster_pipeline_parallel_size instead",
        ),
        (
            {"extra_args": ["--distributed-executor-backend=mp"]},
            "vllm_extra_args[0] is invalid: --distributed-executor-backend is set by the role in a multi-node "
            "deployment",
        ),
    ],
)
def test_settings_that_fight_the_layout_are_refused(over, message):
    out = compute(settings(multinode=multinode(), **over), H100_X8)
    assert any(message in e for e in out["errors"]), out["errors"]


def test_incomplete_multinode_is_refused():
    out = compute(settings(multinode={"nodes": 2}), H100_X8)
    assert "multinode is missing tensor_parallel_size, pipeline_parallel_size, ray_address" in out["errors"][0]


def test_heads_still_checked_across_nodes():
    out = compute(settings(multinode=multinode(2, 8, tp=8, pp=2)), {**H100_X8, "num_attention_heads": 12})
    assert any("must divide the model's 12 attention heads" in e for e in out["errors"])
