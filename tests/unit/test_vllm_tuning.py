"""Tuning and validation: the logic behind every rendered vllm.service."""

from __future__ import annotations

import re

import pytest
import yaml
from ansible.module_utils.vllm_tuning import (
    compute,
    is_loopback,
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
    "vllm_extra_env": "extra_env",
    "vllm_host": "host",
    "vllm_max_num_seqs": "max_num_seqs",
    "vllm_api_key": "api_key",
    "vllm_user": "user",
    "vllm_group": "group",
    "vllm_home": "home",
    "vllm_install_dir": "install_dir",
    "vllm_model_dir": "model_dir",
}
# Rows whose variable stands for a host fact (set for an offline render, read from the host on a converge).
VARIABLE_TO_FACT = {
    "vllm_gpu_count": "gpu_count",
    "vllm_gpu_memory_mib": "gpu_memory_total_mib",
    "vllm_gpu_memory_free_mib": "gpu_memory_free_mib",
}


@pytest.mark.parametrize(("variable", "value", "host", "message"), readme_refusals())
def test_readme_table_of_refused_inputs(variable, value, host, message):
    """Each row of README.md's table is refused with the message it shows."""
    parsed = yaml.safe_load(value)
    over = {} if variable in VARIABLE_TO_FACT else {VARIABLE_TO_SETTING[variable]: parsed}
    if variable == "vllm_model":
        over["model_exists"] = False if str(parsed).startswith("/") else None
    facts = dict(H100_X8)
    if variable in VARIABLE_TO_FACT:
        facts[VARIABLE_TO_FACT[variable]] = parsed
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


def errors_of(facts: dict | None = None, **over) -> list[str]:
    return compute(settings(**over), H100_X8 if facts is None else facts)["errors"]


class TestNumbersThatWouldBreakLater:
    """Issue 11, part 5: values that passed validation and crashed later or reached the unit as something else."""

    @pytest.mark.parametrize("value", ["2.0", "2e0", "inf", "nan", 2.0, " 2", "2\n", True, "1" + "0" * 30])
    def test_tensor_parallel_size_must_be_a_plain_whole_number(self, value):
        errors = errors_of(tensor_parallel_size=value)
        assert any(e.startswith("vllm_tensor_parallel_size=") and "whole number" in e for e in errors), errors

    @pytest.mark.parametrize("value", ["2.0", "inf", "nan", 1.0])
    def test_pipeline_parallel_size_too(self, value):
        assert any(e.startswith("vllm_pipeline_parallel_size=") for e in errors_of(pipeline_parallel_size=value))

    @pytest.mark.parametrize("value", ["nan", "inf", float("nan"), float("inf"), 1e300, "1e300", "4e0", 65537])
    def test_swap_space_must_be_finite_and_bounded(self, value):
        errors = errors_of(swap_space_gb=value)
        assert any(e.startswith("vllm_swap_space_gb=") and "at most 65536" in e for e in errors), errors

    @pytest.mark.parametrize("value", ["inf", 1e300, "1e300", 4.0, 65537])
    def test_cpu_kv_cache_size_too(self, value):
        assert any(e.startswith("vllm_cpu_kvcache_space_gb=") for e in errors_of(cpu_kvcache_space_gb=value))

    @pytest.mark.parametrize("key", ["max_model_len", "max_num_seqs"])
    @pytest.mark.parametrize("value", [1e30, "1e30", 2**31, "4096.0", "inf"])
    def test_token_counts_must_be_whole_and_below_2_to_the_31(self, key, value):
        assert any(e.startswith(f"vllm_{key}=") and "at most 2147483647" in e for e in errors_of(**{key: value}))

    @pytest.mark.parametrize("value", ["8000.0", "8e3", "nan", 8000.0])
    def test_port(self, value):
        assert any(e.startswith("vllm_port=") for e in errors_of(port=value))

    @pytest.mark.parametrize("value", ["nan", "inf", float("inf"), "9e-1"])
    def test_gpu_memory_utilization(self, value):
        assert any(e.startswith("vllm_gpu_memory_utilization=") for e in errors_of(gpu_memory_utilization=value))

    def test_plain_numbers_still_pass_and_render_as_numbers(self):
        out = compute(
            settings(tensor_parallel_size="2", swap_space_gb="1.5", max_model_len="4096", port="8001"), H100_X8
        )
        assert out["errors"] == []
        assert flag(out["args"], "--tensor-parallel-size") == "2" and flag(out["args"], "--port") == "8001"
        assert flag(out["args"], "--kv-offloading-size") == "3" and flag(out["args"], "--max-model-len") == "4096"

    def test_a_negative_gpu_count_is_blamed_on_itself(self):
        errors = errors_of(dict(H100_X8, gpu_count=-1), tensor_parallel_size=8)
        assert any(
            e.startswith("vllm_gpu_count=-1 is invalid: must be a whole number of GPUs, 0 or more") for e in errors
        )
        assert not any("vllm_tensor_parallel_size" in e for e in errors), errors

    @pytest.mark.parametrize("total", [0, -1])
    def test_gpu_memory_zero_is_refused_not_skipped(self, total):
        errors = errors_of(dict(H100_X8, gpu_memory_total_mib=total))
        assert any(
            e.startswith(f"vllm_gpu_memory_mib={total} is invalid: must be a whole number of MiB, at least 1")
            for e in errors
        )

    def test_free_memory_beyond_the_total_is_refused(self):
        errors = errors_of(dict(H100_X8, gpu_memory_free_mib=90000))
        assert any(
            e.startswith("vllm_gpu_memory_free_mib=90000 is invalid") and "at most the total 81559" in e for e in errors
        )


class TestLoopback:
    @pytest.mark.parametrize("host", ["127.0.0.1", "127.5.6.7", "::1", "localhost", "::ffff:127.0.0.1"])
    def test_loopback(self, host):
        assert is_loopback(host)

    @pytest.mark.parametrize(
        "host",
        ["127.0.0.1.evil.example", "localhost.evil.example", "127.1", "0.0.0.0", "::", "10.0.0.1", "127.0.0.1\n"],
    )
    def test_not_loopback(self, host):
        assert not is_loopback(host)

    def test_a_name_that_starts_like_loopback_needs_the_api_key(self):
        errors = errors_of(host="127.0.0.1.evil.example")
        assert any(
            "vllm_api_key is empty but vllm_host='127.0.0.1.evil.example' exposes the server" in e for e in errors
        )

    @pytest.mark.parametrize("host", ["", "127.0.0.1 --x", "a..b", "-h", "host_name", "a\nb"])
    def test_a_host_that_is_neither_an_address_nor_a_name_is_refused(self, host):
        assert any(e.startswith("vllm_host=") and "IP address or a host name" in e for e in errors_of(host=host))


class TestServiceAccount:
    def test_root_draws_a_warning(self):
        out = compute(settings(user="root"), H100_X8)
        assert out["errors"] == []
        assert any(w.startswith("vllm_user='root': vllm.service runs as root") for w in out["warnings"])

    def test_the_dedicated_user_draws_none(self):
        assert compute(settings(), H100_X8)["warnings"] == []

    @pytest.mark.parametrize(
        ("key", "value"),
        [("user", "vllm\nExecStartPre=+/bin/sh"), ("group", "a b"), ("home", "/var/lib/my vllm"), ("home", "relative"),
         ("install_dir", "/opt/my vllm"), ("install_dir", "/opt/vllm/"), ("model_dir", "/opt/%h")],
    )  # fmt: skip
    def test_values_the_unit_cannot_escape_are_refused_naming_the_variable(self, key, value):
        assert any(e.startswith(f"vllm_{key}={value!r} is invalid") for e in errors_of(**{key: value}))

    def test_a_model_directory_whose_name_cannot_be_served_needs_a_served_name(self):
        errors = errors_of(model="/srv/models/tiny\nExecStartPre=+sh", model_exists=True)
        assert any("vllm_served_model_name is empty, so clients would ask for the directory name" in e for e in errors)
        local = {"model": "/srv/models/tiny\nExecStartPre=+sh", "model_exists": True, "served_model_name": "t"}
        out = compute(settings(model_path="/opt/vllm/models/tiny\nExecStartPre=+sh", **local), H100_X8)
        assert out["errors"] == [] and '"/opt/vllm/models/tiny\\x0aExecStartPre=+sh"' in out["exec_args"]
        assert "# vLLM 0.32.0 (cuda) serving /srv/models/tiny\\x0aExecStartPre=+sh as t." in (
            "# " + out["unit"]["header"][0]
        )

    def test_the_unit_values_come_quoted(self):
        unit = compute(settings(), H100_X8)["unit"]
        assert unit["command"] == [
            "/opt/vllm/venvs/vllm-cuda-0.32.0/bin/python",
            "-m",
            "vllm.entrypoints.openai.api_server",
        ]
        assert unit["user"] == "vllm" and unit["environment"] == ["HOME=/var/lib/vllm"]
        assert unit["description"] == "vLLM OpenAI-compatible server (meta-llama/Llama-3.1-8B-Instruct)"


class TestSecretsNeverShown:
    """Issue 11, part 4 (the unit's half): managed flags in every spelling vLLM accepts, no secret in a message."""

    @pytest.mark.parametrize(
        "extra",
        [
            ["--api-key", "s3cret"],
            ["--api-key s3cret"],
            ["--api-key=s3cret"],
            ["--api_key=s3cret"],
            ["--api_key", "s3cret"],
            ["--API-KEY=s3cret"],
            ["--api-k", "s3cret"],
            ["--api", "s3cret"],
            ["--enable-chunked-prefill --api-key s3cret"],
            ["--hf-token=s3cret"],
            ["--hf_token", "s3cret"],
        ],
    )
    def test_secret_flags_are_refused_without_their_value(self, extra):
        errors = errors_of(extra_args=extra)
        assert errors and all("vllm_extra_args" in e for e in errors), errors
        assert "goes in vllm_" in " ".join(errors)
        assert not any("s3cret" in e for e in errors), errors

    @pytest.mark.parametrize(
        ("arg", "flag"),
        [("--port=9000", "--port"), ("--port 9000", "--port"), ("--por", "--port"), ("--Port", "--port"),
         ("-tp=2", "-tp"), ("-t", "-tp"), ("--tensor_parallel_size=2", "--tensor-parallel-size"),
         ("--served_model_name", "--served-model-name"), ("--host.x", "--host"),
         ("--gpu-memory", "--gpu-memory-utilization")],
    )  # fmt: skip
    def test_managed_flags_in_every_spelling(self, arg, flag):
        errors = errors_of(extra_args=[arg, "1"])
        assert any(f"vllm_extra_args[0] is invalid: {flag}" in e and "set by the role" in e for e in errors), errors

    @pytest.mark.parametrize(
        "extra", [["--model-impl", "auto"], ["--seed", "-1"], ["--enable-chunked-prefill"], ["--porting"]]
    )
    def test_other_flags_pass(self, extra):
        assert errors_of(extra_args=extra) == []

    def test_a_key_the_env_file_would_have_to_escape_is_refused_unseen(self):
        for key in ("a\nVLLM_X=1", 'a"b', "a\\b", "a$b", "a`b", "a\tb"):
            errors = errors_of(api_key=key)
            assert errors == [
                "vllm_api_key is invalid (its value is not shown): it holds a control character, a quote, a "
                "backslash, $ or `; use printable characters without those, e.g. the output of openssl rand -hex 32"
            ]

    def test_a_key_that_needs_no_escaping_passes_and_counts_as_set(self):
        assert errors_of(api_key="k3y with spaces%", host="0.0.0.0") == []

    def test_extra_env_may_not_carry_the_key_and_keys_must_be_names(self):
        errors = errors_of(extra_env={"VLLM_API_KEY": "s3cret", "A\nB": "1", "OK": {"x": 1}})
        assert any(e.startswith("vllm_extra_env['VLLM_API_KEY'] is invalid: the role sets it") for e in errors)
        assert any(e.startswith("vllm_extra_env key='A\\nB' is invalid") for e in errors)
        assert any(e.startswith("vllm_extra_env['OK'] is invalid: must be a string or a number") for e in errors)
        assert not any("s3cret" in e for e in errors)

    def test_extra_args_that_are_not_a_list_are_not_shown(self):
        errors = errors_of(extra_args="--api-key s3cret")
        assert errors == [
            "vllm_extra_args is invalid: must be a list of strings, e.g. ['--enable-chunked-prefill'] "
            "(got a str, not shown)"
        ]

    def test_unknown_flags_are_named_without_their_value(self):
        known = parse_help_flags(HELP_0_32.read_text())
        out = compute(settings(extra_args=["--my-token s3cret"]), dict(H100_X8, known_flags=known))
        assert out["errors"] and "does not accept --my-token;" in out["errors"][0]
        assert "s3cret" not in out["errors"][0]
