"""Drift checks: role defaults against their argument specs, module docs that render."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "meta" / "argument_specs.yml").exists())
MODULES = sorted(p.stem for p in (REPO / "library").glob("*.py"))


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


@pytest.mark.parametrize("role", ROLES)
def test_defaults_match_argument_spec(role):
    """Every default is documented in the spec, and every spec option has a default."""
    defaults = set(load(REPO / "roles" / role / "defaults" / "main.yml"))
    spec = set(load(REPO / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"])
    assert defaults - spec == set(), f"{role}: defaults missing from meta/argument_specs.yml"
    assert spec - defaults == set(), f"{role}: argument spec options without a default"


@pytest.mark.parametrize("role", ROLES)
def test_public_variables_carry_the_prefix(role):
    prefix = "vllm_" if role == "vllm" else f"{role}_"
    for name in load(REPO / "roles" / role / "defaults" / "main.yml"):
        assert name.startswith(prefix), f"{role}: {name} lacks the prefix {prefix}"


@pytest.mark.parametrize("role", ROLES)
def test_spec_options_are_described_and_typed(role):
    for entry, spec in load(REPO / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"].items():
        for name, option in spec.get("options", {}).items():
            assert option.get("type"), f"{role}/{entry}: {name} has no type"
            assert option.get("description"), f"{role}/{entry}: {name} has no description"


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders(module):
    ansible_doc = Path(sys.executable).with_name("ansible-doc")
    out = subprocess.run(
        [str(ansible_doc), "-M", str(REPO / "library"), module],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "EXAMPLES" in out.stdout and "RETURN VALUES" in out.stdout
