"""The last guard of each module: an error nobody foresaw ends the task with a message, never a traceback.

No input is known to raise past the checks any more, so a defect is injected: the module file is loaded
as a host loads it, one of its functions is replaced by one that raises (holding a secret in its text), and
main() runs in a separate python process with real options. The message must name the module and what it
was doing, carry no secret, and the process must print a JSON result.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_peers import Peer, answer
from moduletest import MODULE_UTILS, REPO, result_from_stdout

KEY = "sekret-key-0123456789"
INJECT = (
    "import importlib.util, sys, ansible.module_utils\n"
    "ansible.module_utils.__path__.append(sys.argv.pop(1))\n"
    "path, name = sys.argv.pop(1), sys.argv.pop(1)\n"
    "spec = importlib.util.spec_from_file_location('module_under_test', path)\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(module)\n"
    "def defect(*args, **kwargs):\n"
    f"    raise RuntimeError('injected defect near {KEY}')\n"
    "setattr(module, name, defect)\n"
    "sys.argv[0] = path\n"
    "module.main()\n"
)


def run_with_defect(tmp_path: Path, module: str, function: str, args: dict) -> tuple[int, dict, str]:
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    done = subprocess.run(
        [sys.executable, "-c", INJECT, str(MODULE_UTILS), str(REPO / "library" / module), function, str(args_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    return done.returncode, result_from_stdout(done.stdout, done.stderr), done.stderr


@pytest.fixture
def server():
    routes = {
        "/health": answer(200, b"", "text/plain"),
        "/version": answer(200, {"version": "0.32.0"}),
        "/v1/models": answer(200, {"data": [{"id": "m"}]}),
    }
    with Peer(routes) as peer:
        yield peer


def test_vllm_server_info_guard(tmp_path, server):
    rc, result, stderr = run_with_defect(
        tmp_path, "vllm_server_info.py", "server_report", {"url": server.url, "api_key": KEY, "timeout": 2}
    )
    assert rc == 1 and result["failed"]
    assert result["msg"].startswith(f"vllm_server_info: unexpected RuntimeError while probing {server.url}: ")
    assert KEY not in json.dumps(result) and "Traceback" not in stderr


def test_vllm_benchmark_guard(tmp_path, server):
    rc, result, stderr = run_with_defect(
        tmp_path, "vllm_benchmark.py", "server_facts", {"url": server.url, "api_key": KEY, "num_prompts": 1}
    )
    assert rc == 1 and result["failed"]
    assert result["msg"].startswith(
        f"vllm_benchmark: unexpected RuntimeError while reading the server's version and models at {server.url}: "
    )
    assert KEY not in json.dumps(result) and "Traceback" not in stderr


def test_vllm_ray_status_guard(tmp_path):
    ray = tmp_path / "ray"
    ray.write_text("#!/bin/sh\necho '======== Autoscaler status ========'\n")
    ray.chmod(ray.stat().st_mode | stat.S_IXUSR)
    rc, result, stderr = run_with_defect(
        tmp_path,
        "vllm_ray_status.py",
        "parse_ray_status",
        {"ray_bin": str(ray), "address": "10.0.0.11:6379", "expected": [{"name": "a", "address": "10.0.0.11"}]},
    )
    assert rc == 1 and result["failed"]
    assert result["msg"].startswith("vllm_ray_status: unexpected RuntimeError while reading the output of ray status")
    assert "Traceback" not in stderr
