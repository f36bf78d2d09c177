"""Host-side code (library/, module_utils/) runs under the host's python3, the oldest of which preflight
accepts (roles/vllm_preflight/vars/main.yml). ruff and vermin (make lint) check against that floor; this
keeps the three in step and shows that vermin notices code that needs a newer Python.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
HOST_CODE = ["library", "module_utils"]


def floor() -> str:
    return str(yaml.safe_load((REPO / "roles/vllm_preflight/vars/main.yml").read_text())["__vllm_preflight_min_python"])


def vermin(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).with_name("vermin")), "--no-tips", "--violations", f"-t={floor()}-", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )


def test_the_floor_is_a_version():
    assert re.fullmatch(r"3\.\d+", floor())


def test_ruff_checks_host_code_against_the_floor():
    targets = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ruff"]["per-file-target-version"]
    wanted = "py" + floor().replace(".", "")
    for folder in HOST_CODE:
        assert targets.get(f"{folder}/**/*.py") == wanted, targets


def test_make_lint_runs_vermin_at_the_floor_on_host_code():
    dry = subprocess.run(
        ["make", "-n", "lint"], capture_output=True, text=True, cwd=REPO, timeout=60, check=False
    ).stdout
    (line,) = [line for line in dry.splitlines() if "/vermin " in line]
    assert f"-t={floor()}-" in line.split()
    assert line.split()[-2:] == HOST_CODE


def test_host_code_needs_no_newer_python():
    run = vermin(*HOST_CODE)
    assert run.returncode == 0, run.stdout + run.stderr


def test_vermin_refuses_code_that_needs_a_newer_python(tmp_path):
    # The mistake that shipped once: datetime.UTC is 3.11.
    (tmp_path / "newer.py").write_text("from datetime import UTC\nprint(UTC)\n")
    run = vermin(str(tmp_path / "newer.py"))
    assert run.returncode != 0
    assert "3.11" in run.stdout
