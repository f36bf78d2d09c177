"""Tuning and validation: the logic behind every rendered vllm.service."""

from __future__ import annotations

import re

import pytest
import yaml
from ansible.module_utils.vllm_tuning import (
    compute,
    model_kind,
    parse_help_flags,
    parse_version,
    systemd_quote,
    unknown_flags,
)
from tuning_settings import H100_X8, HELP_0_32, REPO, settings


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


class TestParallelism:
    def test_auto_takes_every_gpu(self):
        out = compute(settings(), H100_X8)
        assert out["errors"] == []
        assert flag(out["args"], "--tensor-parallel-size") == "8"
        assert flag(out["args"], "--pipeline-parallel-size") == "1"
        assert out["layout"]["gpus_used"] == 8

    def test_auto_divides_by_pipeline_stages(self):
        out = compute(settings(pipeline_parallel_size=2), H100_X8)
        assert flag(out["args"], "--tensor-parallel-size") == "4"
        assert out["layout"]["gpus_used"] == 8

    def test_auto_reduces_to_a_divisor_of_attention_heads(self):
        # 8 GPUs, a model with 12 heads: 8 does not divide 12, 4 does.
        out = compute(settings(), dict(H100_X8, num_attention_heads=12))
        assert flag(out["args"], "--tensor-parallel-size") == "4"
        assert "reduced to 4" in out["notes"]["--tensor-parallel-size"]
        assert out["env"]["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"

    def test_explicit_size_that_uses_fewer_gpus_pins_devices(self):
        out = compute(settings(tensor_parallel_size=2), H100_X8)
        assert flag(out["args"], "--tensor-parallel-size") == "2"
        assert out["env"]["CUDA_VISIBLE_DEVICES"] == "0,1"

    def test_all_gpus_used_sets_no_device_list(self):
        assert "CUDA_VISIBLE_DEVICES" not in compute(settings(), H100_X8)["env"]

    def test_cpu_variant_renders_no_parallel_flags_and_its_kv_space(self):
        out = compute(settings(variant="cpu", cpu_kvcache_space_gb=2), {"gpu_count": 0})
        assert out["errors"] == []
        assert "--tensor-parallel-size" not in out["args"]
        assert out["env"]["VLLM_CPU_KVCACHE_SPACE"] == "2"
        assert flag(out["args"], "--gpu-memory-utilization") == "0.9"


class TestSwapByVersion:
    def test_old_version_gets_swap_space_per_gpu(self):
        out = compute(settings(version="0.17.1", swap_space_gb=4), H100_X8)
        assert flag(out["args"], "--swap-space") == "4"
        assert "--kv-offloading-size" not in out["args"]

    def test_new_version_gets_offloading_total_across_tp_ranks(self):
        out = compute(settings(version="0.18.0", swap_space_gb=4), H100_X8)
        assert flag(out["args"], "--kv-offloading-size") == "32"
        assert "--swap-space" not in out["args"]
        assert "total across TP ranks" in out["notes"]["--kv-offloading-size"]

    def test_zero_swap_renders_neither(self):
        out = compute(settings(), H100_X8)
        assert "--swap-space" not in out["args"] and "--kv-offloading-size" not in out["args"]

    def test_cpu_variant_ignores_swap_with_a_warning(self):
        out = compute(settings(variant="cpu", swap_space_gb=4), {"gpu_count": 0})
        assert "--kv-offloading-size" not in out["args"]
        assert out["warnings"] and "ignored" in out["warnings"][0]


class TestFlagsAgainstInstalledVersion:
    def test_help_of_0_32_lists_the_flags_we_render(self):
        known = parse_help_flags(HELP_0_32.read_text())
        for name in ("--kv-offloading-size", "--gpu-memory-utilization", "--tensor-parallel-size", "-tp", "--port"):
            assert name in known
        assert "--swap-space" not in known  # removed in 0.18 (upstream PR #36216)

    def test_swap_space_refused_by_0_32(self):
        known = parse_help_flags(HELP_0_32.read_text())
        # vllm_version says 0.17.1 (so --swap-space is rendered) but the host runs 0.32.0.
        out = compute(settings(version="0.17.1", swap_space_gb=4), dict(H100_X8, known_flags=known))
        assert out["errors"] and "does not accept --swap-space" in out["errors"][0]

    def test_unknown_extra_flag_refused(self):
        known = parse_help_flags(HELP_0_32.read_text())
        out = compute(settings(extra_args=["--enable-turbo-mode"]), dict(H100_X8, known_flags=known))
        assert "--enable-turbo-mode" in out["errors"][0]

    def test_negative_numbers_are_values_not_flags(self):
        assert unknown_flags(["--seed", "-1"], ["--seed"]) == []

    def test_valid_render_passes_the_check(self):
        known = parse_help_flags(HELP_0_32.read_text())
        out = compute(settings(swap_space_gb=2, enforce_eager=True), dict(H100_X8, known_flags=known))
        assert out["errors"] == []


class TestApiKey:
    def test_wildcard_bind_with_a_key_is_accepted(self):
        assert compute(settings(host="0.0.0.0", api_key_set=True), H100_X8)["errors"] == []

    def test_loopback_needs_no_key(self):
        assert compute(settings(host="127.0.0.1"), H100_X8)["errors"] == []

    def test_opt_out_serves_without_a_key(self):
        assert compute(settings(host="0.0.0.0", require_api_key=False), H100_X8)["errors"] == []


class TestRendering:
    def test_systemd_quoting(self):
        assert systemd_quote("--port") == "--port"
        assert systemd_quote("a b") == '"a b"'
        assert systemd_quote('say "hi"') == '"say \\"hi\\""'
        assert systemd_quote("100%") == "100%%"
        assert systemd_quote("$HOME") == '"$$HOME"'

    def test_served_name_defaults(self):
        local = compute(settings(model="/srv/models/tiny-llama/", model_exists=True), H100_X8)
        assert local["layout"]["served_model_name"] == "tiny-llama"
        hub = compute(settings(), H100_X8)
        assert hub["layout"]["served_model_name"] == "meta-llama/Llama-3.1-8B-Instruct"

    def test_extra_args_and_env_are_appended(self):
        out = compute(settings(extra_args=["--enable-chunked-prefill"], extra_env={"NCCL_DEBUG": "WARN"}), H100_X8)
        assert out["args"][-1] == "--enable-chunked-prefill"
        assert out["env"]["NCCL_DEBUG"] == "WARN"

    def test_versions_and_models(self):
        assert parse_version("0.32.0") == (0, 32, 0)
        assert parse_version("0.10.1.post1") == (0, 10, 1)
        assert parse_version("latest") is None
        assert model_kind("/abs/path") == "local"
        assert model_kind("org/name") == "hub"
        assert model_kind("just-a-name") == ""


def readme_refusals() -> list[tuple[str, str, str, str]]:
    """Rows of the README's table of refused inputs: variable, value, host facts, message."""
    text = (REPO / "README.md").read_text()
    block = text.split("<!-- refused-inputs:start -->")[1].split("<!-- refused-inputs:end -->")[0]
    rows = []
    for line in block.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append(tuple(re.sub(r"^`(.*)`$", r"\1", c) for c in cells))
    return rows


VARIABLE_TO_SETTING = {
    "vllm_variant": "variant",
    "vllm_version": "version",
    "vllm_model": "model",
    "vllm_gpu_memory_utilization": "gpu_memory_utilization",
    "vllm_tensor_parallel_size": "tensor_parallel_size",
    "vllm_pipeline_parallel_size": "pipeline_parallel_size",
    "vllm_swap_space_gb": "swap_space_gb",
    "vllm_cpu_kvcache_space_gb": "cpu_kvcache_space_gb",
    "vllm_port": "port",
    "vllm_max_model_len": "max_model_len",
    "vllm_served_model_name": "served_model_name",
    "vllm_extra_args": "extra_args",
    "vllm_host": "host",
}


@pytest.mark.parametrize(("variable", "value", "host", "message"), readme_refusals())
def test_readme_table_of_refused_inputs(variable, value, host, message):
    """Each row of README.md's table is refused with the message it shows."""
    parsed = yaml.safe_load(value)
    over = {VARIABLE_TO_SETTING[variable]: parsed}
    if variable == "vllm_model":
        over["model_exists"] = False if str(parsed).startswith("/") else None
    facts = dict(H100_X8)
    if host and host != "-":
        facts.update(yaml.safe_load("{" + host + "}"))
    out = compute(settings(**over), facts)
    joined = "\n".join(out["errors"])
    assert out["errors"], f"{variable}={value!r} was accepted"
    assert variable in joined
    assert message in joined


def test_readme_table_is_not_empty():
    assert len(readme_refusals()) >= 10


class TestCpuPipeline:
    """vllm-cpu 0.32.0 dies at the first request with PP > 1 and --enforce-eager (docs/multinode.md)."""

    def test_eager_with_pipeline_stages_is_refused(self):
        out = compute(settings(variant="cpu", pipeline_parallel_size=2, enforce_eager=True), {})
        assert len(out["errors"]) == 1
        assert "vllm_enforce_eager=True is invalid: with pipeline parallel 2 on the cpu variant" in out["errors"][0]

    def test_multinode_pipeline_counts_too(self):
        multinode = {
            "group": "tiny_pp", "nodes": 2, "tensor_parallel_size": 1, "pipeline_parallel_size": 2,
            "ray_address": "10.0.0.1:6379", "node_ip": "10.0.0.1", "ifname": "eth0",
        }  # fmt: skip
        out = compute(settings(variant="cpu", enforce_eager=True, multinode=multinode), {})
        assert out["errors"] and "pipeline parallel 2" in out["errors"][0]
        assert not compute(settings(variant="cpu", enforce_eager=False, multinode=multinode), {})["errors"]

    @pytest.mark.parametrize(
        "over",
        [
            {"variant": "cpu", "pipeline_parallel_size": 1, "enforce_eager": True},
            {"variant": "cpu", "pipeline_parallel_size": 2, "enforce_eager": False},
            {"variant": "cuda", "pipeline_parallel_size": 2, "enforce_eager": True},
        ],
    )
    def test_other_combinations_pass(self, over):
        assert compute(settings(**over), H100_X8)["errors"] == []
