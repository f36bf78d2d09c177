"""Hostile input, rendered: every string variable that reaches vllm.service, vllm.env, a Ray unit or ray.env,
carrying a newline, quotes, %, $, a space, a backslash, control characters or Unicode line breaks.

Each case goes through the render path of one host (tests/render_harness.py: the roles' argument specs, the
module arguments as compute.yml and preflight.yml template them, the module, the templates, with Ansible's
own code at each step) and must end in one of:

- refused, with a message that names the variable, and never a secret's value;
- rendered, and then: the unit holds no raw control character; its directives, parsed as systemd parses a
  unit, are exactly those of the payload-free unit; `systemd-analyze verify` reports nothing; systemd's own
  parse of ExecStart= gives the payload back, byte for byte, in the argv the program receives; systemd's
  env-file parser gives the environment value back.

playbooks/render.yml itself then runs on a sample of the cases: the files it writes must be the harness's,
byte for byte, and its refusals the same, with no secret in the playbook's output.
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
from render_harness import Rendered, render_ray, render_vllm
from systemd_check import directive_keys, directives, env_file_values, exec_argvs, verify_units
from tuning_settings import REPO

PAYLOADS = {
    "newline": "x\nExecStartPre=+sh -c id",
    "quote": "x\"y'z",
    "percent": "x%n%%y",
    "dollar": "x$HOME${PATH}$$y",
    "space": "x y",
    "backslash": "x\\y\\",
    "control": "x\ty\rz\x1b",
    "unicode": "x\u2028y\u00e9",
}
SECRET = "s3cret-never-shown"
HOST_FACTS = {"vllm_model": "org/model", "vllm_gpu_count": 2, "vllm_gpu_memory_mib": 81559}
PYTHON = "/opt/vllm/venvs/vllm-cuda-0.32.0/bin/python"
RAY = "/opt/vllm/venvs/vllm-cuda-0.32.0/bin/ray"
# Every variable that reaches vllm.service or vllm.env as text (numbers included, since -e gives strings)
# and how a payload rides on it. Each of these must be refused, whatever the payload.
REFUSED = {
    "vllm_version": lambda p: "0.32.0" + p,
    "vllm_variant": lambda p: "cuda" + p,
    "vllm_model": lambda p: "org/model" + p,
    "vllm_served_model_name": lambda p: "tiny" + p,
    "vllm_user": lambda p: "vllm" + p,
    "vllm_group": lambda p: "vllm" + p,
    "vllm_home": lambda p: "/var/lib/vllm" + p,
    "vllm_install_dir": lambda p: "/opt/vllm" + p,
    "vllm_model_dir": lambda p: "/opt/vllm/models" + p,
    "vllm_host": lambda p: "127.0.0.1" + p,
    "vllm_port": lambda p: "8000" + p,
    "vllm_tensor_parallel_size": lambda p: "2" + p,
    "vllm_pipeline_parallel_size": lambda p: "1" + p,
    "vllm_gpu_memory_utilization": lambda p: "0.9" + p,
    "vllm_swap_space_gb": lambda p: "4" + p,
    "vllm_cpu_kvcache_space_gb": lambda p: "4" + p,
    "vllm_max_model_len": lambda p: "4096" + p,
    "vllm_max_num_seqs": lambda p: "16" + p,
    "vllm_service_restart_sec": lambda p: "10" + p,
    "vllm_service_stop_timeout": lambda p: "120" + p,
    "vllm_service_ready_timeout": lambda p: "900" + p,
}
# The API key is placed between double quotes unescaped, so only a key that needs no escaping there passes.
API_KEY_ACCEPTED = {"percent", "space"}
SECRET_SPELLINGS = [
    "--api-key=" + SECRET,
    "--api_key " + SECRET,
    "--api-k",
    "--API-KEY",
    "--chat-template x --api-key=" + SECRET,
    "--hf_token=" + SECRET,
]
# Ray: (variable, how the payload rides on it, payloads that must render; the rest must be refused).
RAY_CASES = {
    "ray_cluster_group": (lambda p: "llama" + p, set(PAYLOADS)),
    "ray_cluster_network": (lambda p: "ib0" + p, set(PAYLOADS)),
    "node name": (lambda p: "gpu-b" + p, set()),
    "node interface": (lambda p: p[:15], {"quote", "percent", "dollar", "backslash"}),
    "node address": (lambda p: "10.0.0.12" + p, set()),
    "ray_cluster_port": (lambda p: "6379" + p, set()),
    "ray_cluster_num_cpus": (lambda p: "4" + p, set()),
}


def ray_nodes(name: str = "gpu-b", address: str = "10.0.0.12", ifname: str = "ib0") -> list[dict]:
    return [
        {"name": "gpu-a", "address": "10.0.0.11", "ifname": "ib0", "gpu_count": 8, "lost": False},
        {"name": name, "address": address, "ifname": ifname, "gpu_count": 8, "lost": False},
    ]


def vllm_cases(models: Path) -> dict[str, dict]:
    """Case id -> {kind, vars, expect, variable, payload, secret}."""
    cases: dict[str, dict] = {
        "baseline": {"kind": "baseline", "vars": {}, "expect": "rendered"},
        "baseline_key": {"kind": "api_key", "vars": {"vllm_api_key": SECRET}, "expect": "rendered"},
    }
    for pname, payload in PAYLOADS.items():
        for variable, attach in REFUSED.items():
            cases[f"{variable}/{pname}"] = {
                "kind": "refused",
                "vars": {variable: attach(payload)},
                "variable": variable,
            }
        cases[f"vllm_extra_env key/{pname}"] = {
            "kind": "refused",
            "vars": {"vllm_extra_env": {"K" + payload: "1"}},
            "variable": "vllm_extra_env",
        }
        model = models / ("m" + payload)
        cases[f"vllm_model directory, its name served/{pname}"] = {
            "kind": "refused",
            "vars": {"vllm_model": str(model)},
            "variable": "vllm_model",
        }
        cases[f"vllm_model directory/{pname}"] = {
            "kind": "model",
            "vars": {"vllm_model": str(model), "vllm_served_model_name": "tiny"},
            "payload": "m" + payload,
        }
        cases[f"vllm_extra_args/{pname}"] = {
            "kind": "extra_args",
            "vars": {"vllm_extra_args": ["--foo=" + payload, "--bar", payload]},
            "payload": payload,
        }
        cases[f"vllm_extra_env value/{pname}"] = {
            "kind": "extra_env",
            "vars": {"vllm_extra_env": {"MY_VAR": payload}},
            "payload": payload,
        }
        cases[f"vllm_api_key/{pname}"] = {
            "kind": "api_key" if pname in API_KEY_ACCEPTED else "refused",
            "vars": {"vllm_api_key": "k" + payload},
            "variable": "vllm_api_key",
            "payload": "k" + payload,
            "secret": "k" + payload,
        }
    for index, spelling in enumerate(SECRET_SPELLINGS):
        cases[f"vllm_extra_args secret/{index}"] = {
            "kind": "refused",
            "vars": {"vllm_extra_args": [spelling, SECRET]},
            "variable": "vllm_extra_args",
            "secret": SECRET,
        }
    for case in cases.values():
        case.setdefault("expect", "refused" if case["kind"] == "refused" else "rendered")
    return cases


def ray_cases() -> dict[str, dict]:
    cases: dict[str, dict] = {"ray baseline": {"kind": "ray", "vars": {}, "nodes": ray_nodes(), "expect": "rendered"}}
    for pname, payload in PAYLOADS.items():
        for variable, (attach, renders) in RAY_CASES.items():
            value = attach(payload)
            host_vars, nodes = {}, ray_nodes()
            if variable == "node name":
                nodes = ray_nodes(name=value)
            elif variable == "node interface":
                nodes = ray_nodes(ifname=value)
            elif variable == "node address":
                nodes = ray_nodes(address=value)
            else:
                host_vars = {variable: value}
            cases[f"{variable}/{pname}"] = {
                "kind": "ray",
                "vars": host_vars,
                "nodes": nodes,
                "expect": "rendered" if pname in renders else "refused",
                "variable": variable.split()[0] if variable.startswith("ray_") else "gpu-b",
                "payload": value,
                "field": variable,
            }
    return cases


def run_case(case: dict) -> Rendered:
    if case["kind"] == "ray":
        host_vars = {"ray_cluster_group": "llama", "ray_cluster_network": "ib0", **HOST_FACTS, **case["vars"]}
        return render_ray(host_vars, case["nodes"], case["nodes"][1]["name"])
    return render_vllm({**HOST_FACTS, **case["vars"]})


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """Every case rendered, then every rendered unit verified and parsed by systemd in one call each."""
    models = tmp_path_factory.mktemp("models")
    for payload in PAYLOADS.values():
        (models / ("m" + payload)).mkdir()
    cases = {**vllm_cases(models), **ray_cases()}
    for case in cases.values():
        case["out"] = run_case(case)
    rendered = {name: case for name, case in cases.items() if case["out"].files}
    units = {}
    for index, (_, case) in enumerate(sorted(rendered.items())):
        kind = "ray" if case["kind"] == "ray" else "vllm"
        case["unit_name"] = f"c{index}-{kind}.service"
        units[case["unit_name"]] = case["out"].files[f"{kind}.service"]
    reports = verify_units(units, [PYTHON, RAY])
    argvs = exec_argvs(units)
    for case in rendered.values():
        case["verify"] = None if reports is None else reports[case["unit_name"]]
        case["argv"] = None if argvs is None else argvs[case["unit_name"]]
    return cases


VLLM_CASES = sorted(vllm_cases(Path("/models")))
RAY_CASE_IDS = sorted(ray_cases())


def check_refused(case: dict) -> None:
    out = case["out"]
    assert not out.files, "rendered although it must be refused"
    message = "\n".join(out.errors)
    assert out.errors, "refused with no message"
    assert case["variable"] in message, f"the refusal does not name {case['variable']}:\n{message}"
    if out.stage == "module":  # our modules' lines; an argument spec's message is Ansible's own
        for line in out.errors:
            assert "\n" not in line, f"a message line holds a raw newline: {line!r}"
    if case.get("secret"):
        secret = case["secret"]
        assert secret not in message and repr(secret)[1:-1] not in message, f"the secret is in:\n{message}"


def check_unit(case: dict, baseline: dict, unit: str) -> None:
    stray = [c for c in unit if not (c.isprintable() or c == "\n")]
    assert not stray, f"raw control characters in the unit: {stray!r}"
    assert directive_keys(unit) == directive_keys(baseline["out"].files[unit_file(case)]), "the directives changed"
    if case["verify"] is None:
        pytest.skip("systemd-analyze is not installed: the unit was not verified")
    assert case["verify"] == "", f"systemd-analyze verify:\n{case['verify']}"
    if case["argv"] is None:
        pytest.skip("`systemd --test` cannot run here: ExecStart='s argv was not read back through systemd")


def unit_file(case: dict) -> str:
    return "ray.service" if case["kind"] == "ray" else "vllm.service"


def check_env(case: dict, key: str | None, value: str | None) -> None:
    text = case["out"].files["ray.env" if case["kind"] == "ray" else "vllm.env"]
    values = env_file_values(text)
    if values is None:
        pytest.skip("systemd-environment-d-generator is not installed: the environment file was not read back")
    assert values.get("HF_HUB_OFFLINE") == "1" and values.get("DO_NOT_TRACK") == "1"
    if key is None:
        return
    if re.search(r"\$[A-Za-z_{]", value):
        # The generator expands $NAME (environment.d's rule, not EnvironmentFile='s): read the escaped line.
        escaped = "".join("\\" + c if c in '\\"`$' else c for c in value)
        assert f'{key}="{escaped}"' in text
    else:
        assert values.get(key) == value, f"{key} read back as {values.get(key)!r}"


@pytest.mark.parametrize("name", VLLM_CASES)
def test_vllm_unit_and_env(matrix, name):
    case, baseline = matrix[name], matrix["baseline"]
    if case["expect"] == "refused":
        check_refused(case)
        return
    out = case["out"]
    assert out.files, f"not rendered: {out.errors}"
    unit = out.files["vllm.service"]
    check_unit(case, baseline, unit)
    argv, expected = case["argv"], list(baseline["argv"])
    assert expected[:3] == [PYTHON, "-m", "vllm.entrypoints.openai.api_server"]
    if case["kind"] == "extra_args":
        expected += ["--foo=" + case["payload"], "--bar", case["payload"]]
    elif case["kind"] == "model":
        expected[expected.index("--model") + 1] = "/opt/vllm/models/" + case["payload"]
        expected[expected.index("--served-model-name") + 1] = "tiny"
        # The path is also in the header comment, kept on its one line.
        assert len([line for line in unit.splitlines() if line.startswith("# vLLM 0.32.0 (cuda) serving ")]) == 1
    assert argv == expected
    if case["kind"] == "extra_env":
        check_env(case, "MY_VAR", case["payload"])
    elif case["kind"] == "api_key":
        check_env(case, "VLLM_API_KEY", case.get("payload", SECRET))
    else:
        check_env(case, None, None)


@pytest.mark.parametrize("name", RAY_CASE_IDS)
def test_ray_unit_and_env(matrix, name):
    case, baseline = matrix[name], matrix["ray baseline"]
    if case["expect"] == "refused":
        check_refused(case)
        return
    out = case["out"]
    assert out.files, f"not rendered: {out.errors}"
    unit = out.files["ray.service"]
    check_unit(case, baseline, unit)
    assert case["argv"][:3] == [RAY, "start", "--block"]
    assert case["argv"][-1] == '--resources={"vllm_fleet_host:gpu-b": 1}'
    field, payload = case.get("field"), case.get("payload")
    if field == "ray_cluster_group":
        description = [v for _, key, v in directives(unit) if key == "Description"]
        assert len(description) == 1 and description[0].startswith("Ray worker for the vLLM deployment llamax")
    if field == "node interface":
        check_env(case, "NCCL_SOCKET_IFNAME", payload)
    else:
        check_env(case, "NCCL_SOCKET_IFNAME", "ib0")


def test_matrix_covers_every_payload_and_variable():
    """A variable added to REFUSED or RAY_CASES without its payloads would show here."""
    assert len(PAYLOADS) >= 8
    assert len(VLLM_CASES) == 2 + len(PAYLOADS) * (len(REFUSED) + 6) + len(SECRET_SPELLINGS)
    assert len(RAY_CASE_IDS) == 1 + len(PAYLOADS) * len(RAY_CASES)


# playbooks/render.yml, end to end, on a sample: the harness must give what Ansible writes. Two runs, since
# the playbook's first play checks every host's variables and stops the whole run at a problem.
RENDERED_SAMPLE = [
    "baseline",
    "baseline_key",
    "vllm_model directory/newline",
    "vllm_extra_args/newline",
    "vllm_extra_env value/newline",
    "vllm_extra_env value/dollar",
    "vllm_api_key/space",
]
REFUSED_SAMPLE = ["vllm_user/newline", "vllm_home/space", "vllm_api_key/newline", "vllm_extra_args secret/1"]


def run_render_playbook(matrix: dict, names: list[str], tmp: Path) -> tuple[dict[str, str], dict[str, dict], str]:
    """render.yml over one host per case: host -> case, host -> its failure (JSON), the whole output."""
    hosts = {f"h{i}": name for i, name in enumerate(names)}
    inventory = {
        "all": {
            "children": {
                "vllm_servers": {
                    "hosts": {h: dict(matrix[n]["vars"], ansible_connection="local") for h, n in hosts.items()},
                    "vars": HOST_FACTS,
                }
            }
        }
    }
    (tmp / "inventory.yml").write_text(yaml.safe_dump(inventory, allow_unicode=True), encoding="utf-8")
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-i",
            str(tmp / "inventory.yml"),
            str(REPO / "playbooks" / "render.yml"),
            "-e",
            json.dumps({"vllm_render_dir": str(tmp / "out")}),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
            "ANSIBLE_NOCOLOR": "1",
        },
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    failures = {}
    for line in output.splitlines():
        match = re.match(r"fatal: \[(h\d+)(?: -> [^]]+)?\]: FAILED! => (\{.*\})$", line)
        if match:
            failures[match.group(1)] = json.loads(match.group(2))
    return hosts, failures, output


def test_render_playbook_writes_what_the_harness_renders(matrix, tmp_path):
    hosts, failures, output = run_render_playbook(matrix, RENDERED_SAMPLE, tmp_path)
    assert not failures, output[-3000:]
    for host, name in hosts.items():
        case = matrix[name]
        written = (tmp_path / "out" / host / "vllm.service").read_text(encoding="utf-8")
        assert written == case["out"].files["vllm.service"], f"{name}: render.yml wrote another unit"
        env = render_vllm({**HOST_FACTS, **case["vars"]}, render_mode=True).files["vllm.env"]
        assert (tmp_path / "out" / host / "vllm.env").read_text(encoding="utf-8") == env, f"{name}: another env"
    assert SECRET not in output and "kx y" not in output, "an API key reached render.yml's output"


def test_render_playbook_refuses_what_the_harness_refuses(matrix, tmp_path):
    hosts, failures, output = run_render_playbook(matrix, REFUSED_SAMPLE, tmp_path)
    for host, name in hosts.items():
        case = matrix[name]
        assert host in failures, f"{name}: render.yml did not refuse it\n{output[-3000:]}"
        assert not (tmp_path / "out" / host).exists()
        message = failures[host].get("msg", "") + "\n".join(failures[host].get("errors", []))
        assert case["variable"] in message, f"{name}: {message}"
        if case.get("secret"):
            assert case["secret"] not in output, f"{name}: the secret reached render.yml's output"
