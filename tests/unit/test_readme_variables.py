"""The README's variable tables cannot drift from the roles' argument specs (issue 18).

Every variable a role's meta/argument_specs.yml declares has a row in a README table (its name in
the row's first cell), and every vllm_* / ray_cluster_* name in a first cell is a declared variable,
one of our modules, or a variable a playbook reads.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
# Documented in prose, in its own section ("Variables are checked"), not in a table.
IN_PROSE = {"vllm_fleet_own_variables"}


def declared() -> set[str]:
    names = set()
    for spec in sorted(REPO.glob("roles/*/meta/argument_specs.yml")):
        for entry in yaml.safe_load(spec.read_text())["argument_specs"].values():
            names |= set(entry.get("options") or {})
    return names


def first_cells() -> set[str]:
    names = set()
    for line in (REPO / "README.md").read_text().splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`((?:vllm|ray_cluster)_[a-z0-9_]+)`", line.split("|")[1]))
    return names


def test_every_declared_variable_has_a_readme_row():
    missing = sorted(declared() - first_cells() - IN_PROSE)
    assert not missing, f"variables with no row in a README table: {missing}"


def test_every_variable_in_a_readme_row_exists():
    modules = {p.stem for p in (REPO / "library").glob("*.py")}
    playbooks = "\n".join(p.read_text() for p in [*REPO.glob("playbooks/*.yml"), REPO / "site.yml"])
    unknown = sorted(name for name in first_cells() - declared() - modules if not re.search(rf"\b{name}\b", playbooks))
    assert not unknown, f"README rows name variables nothing declares or reads: {unknown}"


def test_the_prose_exemptions_are_documented():
    readme = (REPO / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in IN_PROSE)
