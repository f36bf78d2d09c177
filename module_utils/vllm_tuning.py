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
- vLLM's argument parser (FlexibleArgumentParser in vllm/utils/argparse_utils.py,
  0.32.0) reads `--flag_name` as `--flag-name` and `--flag=value` as
  `--flag value`, and, being an argparse parser with allow_abbrev left on, takes
  any unambiguous prefix (`--api-k`, `-t`) for the whole flag.

Multi-node mode (docs/multinode.md): when `multinode` is given (the layout
module_utils/vllm_layout.py computed for the host's deployment), the sizes
come from it, the server runs with `--distributed-executor-backend ray` and
joins the Ray cluster through RAY_ADDRESS; without it nothing changes.

Every value the templates place in vllm.service and vllm.env is returned here
already written by module_utils/vllm_systemd.py's `quote()` (in `unit`,
`exec_args` and `env_lines`), or refused first with one line naming the
variable; a secret's value never appears in a message.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from typing import Any

from ansible.module_utils.vllm_systemd import (
    UnitValueError,
    env_file_line,
    exec_line,
    needs_no_quoting_in_env_file,
    quote,
)

SWAP_SPACE_REMOVED_IN = (0, 18, 0)
VARIANTS = ("cuda", "cpu")
# Every pattern is used with fullmatch (or \A...\Z): `$` would also accept a trailing newline.
VERSION_RE = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)(?:[.+-]?(?:post|rc|dev|a|b)[0-9]*)?(?:\+[A-Za-z0-9_.]+)?")
REPO_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
SERVED_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:-]*")
# RFC 1123 host names: labels of letters, digits and inner dashes, up to 253 characters, a final dot allowed.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\.?")
WHOLE_RE = re.compile(r"-?[0-9]+")
DECIMAL_RE = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
FLAG_RE = re.compile(r"(?:\A|[\s\[,|])(--[a-z0-9][a-z0-9-]*|-[a-z]{1,3})(?=[\s,\]=|]|\Z)")
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
# Flags whose value is a secret: refused wherever they appear, and their value is never shown.
SECRET_FLAGS = {
    "--api-key": "the API key goes in vllm_api_key, never on the command line",
    "--hf-token": "the Hugging Face token goes in vllm_hf_token (the download uses it), never on the command line",
}
MULTINODE_FLAGS = ("--distributed-executor-backend",)
MULTINODE_KEYS = ("tensor_parallel_size", "pipeline_parallel_size", "nodes", "ray_address", "node_ip", "ifname")
# Environment variables the role sets from its own variables.
MANAGED_ENV = {"VLLM_API_KEY": "the API key goes in vllm_api_key"}
# Upper bounds that no real setting reaches: they keep a typo (1e300, a pasted byte count) from a render.
MAX_PARALLEL = 65536
MAX_TOKENS = 2**31 - 1
MAX_GIB = 65536
# The service account and paths as the role's defaults set them (roles/vllm/defaults/main.yml).
ACCOUNT_DEFAULTS = {
    "user": "vllm",
    "group": "vllm",
    "home": "/var/lib/vllm",
    "install_dir": "/opt/vllm",
    "model_dir": "/opt/vllm/models",
    "env_file": "/etc/vllm/vllm.env",
}
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"


def parse_version(text: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of a vLLM version string, or None if malformed."""
    match = VERSION_RE.fullmatch(str(text))
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def model_kind(model: str) -> str:
    """'local' for a path on the controller, 'hub' for a repo id, '' for neither."""
    model = str(model or "")
    if model.startswith(("/", "./", "../", "~")):
        return "local"
    if REPO_ID_RE.fullmatch(model):
        return "hub"
    return ""


def divisors(number: int) -> list[int]:
    return [d for d in range(1, number + 1) if number % d == 0]


def systemd_quote(arg: str) -> str:
    """One argv word, quoted for a systemd ExecStart= line (module_utils/vllm_systemd.py, context 'exec')."""
    return quote(str(arg), "exec")


def parse_help_flags(help_text: str) -> list[str]:
    """Every option flag named in `python -m vllm.entrypoints.openai.api_server --help=all`."""
    return sorted(set(FLAG_RE.findall(help_text)))


def whole_number(value: Any) -> int | None:
    """An int, or a string of ASCII digits (optionally negative); None for anything else.

    Never a bool, a float, '2.0', '2e0', 'inf', 'nan', ' 2' or '2\\n': each of those would either crash a
    later int() or reach the unit as something else than the user meant.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and WHOLE_RE.fullmatch(value):
        return int(value)
    return None


def decimal_number(value: Any) -> float | None:
    """A finite number: an int, a float, or a plain decimal string such as '0.9'; None for anything else."""
    if isinstance(value, bool):
        return None
    if not isinstance(value, int | float) and not (isinstance(value, str) and DECIMAL_RE.fullmatch(value)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _number(value: Any) -> float | None:
    return decimal_number(value)


def _integer(value: Any) -> int | None:
    return whole_number(value)


def _invalid(name: str, value: Any, valid: str) -> str:
    return f"{name}={value!r} is invalid: {valid}"


def _whole_in(name: str, value: Any, low: int, high: int, valid: str) -> tuple[int | None, list[str]]:
    number = whole_number(value)
    if number is None or not low <= number <= high:
        return None, [_invalid(name, value, valid)]
    return number, []


def attention_heads_errors(name: str, tp: int, heads: Any, most: int) -> list[str]:
    """The error when tensor parallel TP does not divide the model's attention heads (none when unknown)."""
    heads = whole_number(heads)
    if not heads or heads < 1 or heads % tp == 0:
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
    util = decimal_number(s.get("gpu_memory_utilization"))
    if util is None or not 0 < util <= 1:
        errors.append(
            _invalid(
                "vllm_gpu_memory_utilization",
                s.get("gpu_memory_utilization"),
                "must be a number greater than 0 and at most 1 (e.g. 0.9)",
            )
        )
    tp = s.get("tensor_parallel_size")
    if tp != "auto":
        errors += _whole_in(
            "vllm_tensor_parallel_size",
            tp,
            1,
            MAX_PARALLEL,
            "must be 'auto' or a whole number of at least 1, such as 2 (not 2.0)",
        )[1]
    errors += _whole_in(
        "vllm_pipeline_parallel_size",
        s.get("pipeline_parallel_size"),
        1,
        MAX_PARALLEL,
        "must be a whole number >= 1, such as 2 (not 2.0)",
    )[1]
    swap = decimal_number(s.get("swap_space_gb"))
    if swap is None or not 0 <= swap <= MAX_GIB:
        errors.append(
            _invalid(
                "vllm_swap_space_gb",
                s.get("swap_space_gb"),
                f"must be 0 (no swap) or a positive number of GiB, at most {MAX_GIB}",
            )
        )
    errors += _whole_in(
        "vllm_cpu_kvcache_space_gb",
        s.get("cpu_kvcache_space_gb"),
        1,
        MAX_GIB,
        f"must be a whole number of GiB, at least 1 and at most {MAX_GIB}",
    )[1]
    errors += _whole_in("vllm_port", s.get("port"), 1, 65535, "must be a whole number from 1 to 65535")[1]
    for key in ("max_model_len", "max_num_seqs", "max_num_batched_tokens"):
        errors += _whole_in(
            f"vllm_{key}",
            s.get(key),
            0,
            MAX_TOKENS,
            f"must be 0 (vLLM's default) or a positive whole number, at most {MAX_TOKENS}",
        )[1]
    errors.extend(validate_model(s.get("model"), s.get("model_exists")))
    errors.extend(validate_served_name(s))
    errors.extend(validate_host(s.get("host")))
    errors.extend(validate_extra_args(s.get("extra_args")))
    errors.extend(validate_extra_env(s.get("extra_env")))
    errors.extend(validate_service_account(s))
    errors.extend(validate_api_key(s))
    return errors


def validate_served_name(s: dict[str, Any]) -> list[str]:
    """The name clients ask for: the one set, or the one derived from vllm_model (it reaches the unit too)."""
    given = s.get("served_model_name") or ""
    valid = "must start with a letter or digit and hold no spaces or quotes"
    if given:
        if isinstance(given, str) and SERVED_NAME_RE.fullmatch(given):
            return []
        return [_invalid("vllm_served_model_name", given, valid)]
    if not model_kind(s.get("model")):
        return []  # validate_model names the problem
    name = served_name(s)
    if SERVED_NAME_RE.fullmatch(name):
        return []
    return [
        _invalid(
            "vllm_model",
            s.get("model"),
            f"vllm_served_model_name is empty, so clients would ask for the directory name {name!r}, which "
            f"{valid}: set vllm_served_model_name",
        )
    ]


def host_address(host: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(str(host))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def is_loopback(host: str) -> bool:
    """Whether HOST binds loopback only: 'localhost', or an IP address in 127.0.0.0/8 or ::1.

    Only an address parsed as one counts: '127.0.0.1.evil.example' is a host name, not loopback.
    """
    if host == "localhost":
        return True
    address = host_address(host)
    return bool(address and address.is_loopback)


def validate_host(host: Any) -> list[str]:
    if isinstance(host, str) and (host_address(host) or HOSTNAME_RE.fullmatch(host)):
        return []
    return [_invalid("vllm_host", host, "must be an IP address or a host name, e.g. 127.0.0.1, 0.0.0.0 or ::")]


def validate_api_key(s: dict[str, Any]) -> list[str]:
    """A server reachable from other hosts must require an API key, unless the user opts out.

    The key itself (s['api_key'], when given) must read back from the environment file as written; it is
    never shown.
    """
    errors = []
    key = s.get("api_key")
    if key and not needs_no_quoting_in_env_file(key):
        errors.append(
            "vllm_api_key is invalid (its value is not shown): it holds a control character, a quote, a "
            "backslash, $ or `; use printable characters without those, e.g. the output of openssl rand -hex 32"
        )
    host = str(s.get("host") or "")
    if is_loopback(host) or key or s.get("api_key_set") or not s.get("require_api_key", True):
        return errors
    errors.append(
        f"vllm_api_key is empty but vllm_host={host!r} exposes the server beyond this host: set vllm_api_key "
        "(from Ansible Vault), bind vllm_host to 127.0.0.1, or set vllm_require_api_key: false to serve "
        "without authentication on purpose"
    )
    return errors


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
    if kind == "local" and os.path.basename(str(model).rstrip("/")) in ("", ".", ".."):
        return [_invalid("vllm_model", model, "must end in the model directory's own name (not /, . or ..)")]
    try:
        quote(str(model), "exec")
    except UnitValueError as exc:
        return [_invalid("vllm_model", model, exc.valid)]
    if kind == "local" and exists is False:
        return [_invalid("vllm_model", model, "is a local path but no such directory exists on the controller")]
    return []


def flag_tokens(arg: Any) -> list[tuple[str, str]]:
    """The options one vllm_extra_args element names, as written and as vLLM's parser reads them, in order.

    An element is one argv word, but it may hold several whitespace-separated tokens ("--api-key s3cret"):
    each token that starts with '-' and is not a number counts, its name ending at '=' ('--port=9000'),
    with underscores read as dashes up to the first '.' ('--api_key', '--host.x').
    """
    tokens = []
    for token in str(arg).split():
        if not token.startswith("-") or decimal_number(token) is not None:
            continue
        written = token.split("=", 1)[0]
        name = written
        if name.startswith("--"):
            name = "--" + name[2:].split(".", 1)[0].replace("_", "-")
        tokens.append((written, name))
    return tokens


def flag_names(arg: Any) -> list[str]:
    """The option names of one vllm_extra_args element, as vLLM's parser reads them (see flag_tokens)."""
    return [name for _, name in flag_tokens(arg)]


def element_flag(arg: Any) -> str | None:
    """The option an argv element passes to vLLM (its first token's name), or None for a value."""
    text = str(arg)
    if not text.startswith("-") or decimal_number(text) is not None:
        return None
    names = flag_names(text)
    return names[0] if names else None


def managed_flag(name: str, flags: Any = MANAGED_FLAGS) -> str | None:
    """The flag of FLAGS that NAME selects, in any case: itself, or one it abbreviates (vLLM takes prefixes)."""
    name = name.lower()
    if name in flags:
        return name
    dashes = 2 if name.startswith("--") else 1
    if len(name) <= dashes:
        return None
    for flag in flags:
        if flag.startswith(name) and flag.startswith("--") == (dashes == 2):
            return flag
    return None


def validate_extra_args(extra: Any) -> list[str]:
    """Refuse extra flags that fight the role or carry a secret; never show an element's value.

    A secret flag is refused wherever it appears, also inside an element ('--x 1 --api-key s3cret'); a flag
    the role manages is refused where vLLM would read it, as an element's first token.
    """
    if not isinstance(extra, list):
        return [
            "vllm_extra_args is invalid: must be a list of strings, e.g. ['--enable-chunked-prefill'] "
            f"(got a {type(extra).__name__}, not shown)"
        ]
    errors = []
    for index, arg in enumerate(extra):
        if isinstance(arg, bool) or not isinstance(arg, str | int | float):
            errors.append(
                f"vllm_extra_args[{index}] is invalid: must be a string (got a {type(arg).__name__}, not shown)"
            )
            continue
        try:
            quote(str(arg), "exec")
        except UnitValueError as exc:
            errors.append(f"vllm_extra_args[{index}] is invalid (not shown): {exc.valid}")
            continue
        tokens = flag_tokens(arg)
        secrets = [(written, managed_flag(name, SECRET_FLAGS)) for written, name in tokens]
        secrets = [(written, flag) for written, flag in secrets if flag]
        for written, flag in secrets:
            spelled = "" if written == flag else f" (written {written})"
            errors.append(
                f"vllm_extra_args[{index}] is invalid: {flag}{spelled} is set by the role from its own variable "
                f"or not at all; {SECRET_FLAGS[flag]} (the element and the value after it are not shown)"
            )
        first = element_flag(arg)
        flag = managed_flag(first, MANAGED_FLAGS) if first else None
        if flag and not secrets:
            written = tokens[0][0]
            spelled = "" if written == flag else f" (written {written})"
            errors.append(
                f"vllm_extra_args[{index}] is invalid: {flag}{spelled} is set by the role from its own variable; "
                "remove it from vllm_extra_args (the API key goes in vllm_api_key, never on the command line)"
            )
    return errors


def validate_extra_env(extra: Any) -> list[str]:
    """Keys must be variable names; values must fit an environment file. Values are never shown."""
    if not isinstance(extra, dict):
        return [f"vllm_extra_env is invalid: must be a mapping of names to values (got a {type(extra).__name__})"]
    errors = []
    for key, value in extra.items():
        try:
            quote(key, "env_key")
        except UnitValueError as exc:
            errors.append(_invalid("vllm_extra_env key", key, exc.valid))
            continue
        if key in MANAGED_ENV:
            errors.append(
                f"vllm_extra_env[{key!r}] is invalid: the role sets it; {MANAGED_ENV[key]} (its value is not shown)"
            )
            continue
        if isinstance(value, dict | list) or value is None:
            errors.append(
                f"vllm_extra_env[{key!r}] is invalid: must be a string or a number, not {type(value).__name__}"
            )
            continue
        try:
            quote(str(value), "env_file")
        except UnitValueError as exc:
            errors.append(f"vllm_extra_env[{key!r}] is invalid (its value is not shown): {exc.valid}")
    return errors


def account(s: dict[str, Any], key: str) -> str:
    """The service account setting KEY (user, group, home, ...), or the role's default."""
    value = s.get(key)
    return ACCOUNT_DEFAULTS[key] if value is None else value


def venv_python(s: dict[str, Any]) -> str:
    """The venv's python, as roles/vllm/vars/main.yml derives it, unless the caller gave it."""
    if s.get("python"):
        return str(s["python"])
    return f"{account(s, 'install_dir')}/venvs/vllm-{s.get('variant')}-{s.get('version')}/bin/python"


def validate_service_account(s: dict[str, Any]) -> list[str]:
    """The user, group and paths the unit names: directives that escape nothing, so only safe values pass."""
    errors = []
    for key, context in (("user", "name"), ("group", "name"), ("home", "path"), ("install_dir", "path"),
                         ("model_dir", "path"), ("env_file", "path")):  # fmt: skip
        value = account(s, key)
        try:
            quote(value, context)
        except UnitValueError as exc:
            errors.append(_invalid(f"vllm_{key}", value, exc.valid))
    if errors:
        return errors
    try:
        quote(venv_python(s), "path")
    except UnitValueError as exc:
        if parse_version(s.get("version", "")) and s.get("variant") in VARIANTS:
            errors.append(_invalid("the venv's python (from vllm_install_dir)", venv_python(s), exc.valid))
    try:
        quote(str(s.get("model_path", "")), "exec")
    except UnitValueError as exc:
        errors.append(_invalid("the model's path on the host (from vllm_model_dir)", s.get("model_path"), exc.valid))
    return errors


def service_account_warnings(s: dict[str, Any]) -> list[str]:
    if account(s, "user") == "root":
        return [
            "vllm_user='root': vllm.service runs as root, which undoes most of its hardening (a compromised "
            "server owns the host); use a dedicated system user such as vllm"
        ]
    return []


def validate_multinode(s: dict[str, Any]) -> list[str]:
    """In a multi-node deployment the sizes and the executor are the layout's; refuse settings that fight it."""
    multinode = s.get("multinode")
    if not multinode:
        return []
    missing = [key for key in MULTINODE_KEYS if multinode.get(key) in (None, "")]
    if missing:
        return [f"multinode is missing {', '.join(missing)}: it must be the layout role ray_cluster computed"]
    errors = []
    for key in ("tensor_parallel_size", "pipeline_parallel_size", "nodes"):
        number = whole_number(multinode.get(key))
        if number is None or number < 1:
            errors.append(_invalid(f"multinode.{key}", multinode.get(key), "must be a whole number of at least 1"))
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
    if whole_number(s.get("pipeline_parallel_size")) != 1:
        errors.append(
            _invalid(
                "vllm_pipeline_parallel_size",
                s.get("pipeline_parallel_size"),
                f"in the multi-node deployment {group!r} the sizes come from the whole group: leave it 1 and "
                "set ray_cluster_pipeline_parallel_size instead",
            )
        )
    extra = s.get("extra_args") if isinstance(s.get("extra_args"), list) else []
    for index, arg in enumerate(extra):
        name = element_flag(arg)
        if name and managed_flag(name, MULTINODE_FLAGS):
            errors.append(
                f"vllm_extra_args[{index}] is invalid: {name} is set by the role in a multi-node deployment "
                "(--distributed-executor-backend ray)"
            )
    return errors


def validate_facts(facts: dict[str, Any]) -> list[str]:
    """The host's GPU facts (or the variables an offline render sets instead) must be counts that make sense."""
    errors = []
    gpus = facts.get("gpu_count")
    if gpus is not None and (whole_number(gpus) is None or whole_number(gpus) < 0):
        errors.append(
            _invalid(
                "vllm_gpu_count",
                gpus,
                "must be a whole number of GPUs, 0 or more (a converge reads it from nvidia-smi)",
            )
        )
    total = facts.get("gpu_memory_total_mib")
    total_number = whole_number(total)
    if total is not None and (total_number is None or total_number < 1):
        errors.append(
            _invalid(
                "vllm_gpu_memory_mib",
                total,
                "must be a whole number of MiB, at least 1 (the total memory of the smallest GPU; a converge reads "
                "it from nvidia-smi)",
            )
        )
        total_number = None
    free = facts.get("gpu_memory_free_mib")
    free_number = whole_number(free)
    if free is not None and (free_number is None or free_number < 0 or (total_number and free_number > total_number)):
        most = f" and at most the total {total_number}" if total_number else ""
        errors.append(
            _invalid(
                "vllm_gpu_memory_free_mib",
                free,
                f"must be a whole number of MiB, 0 or more{most} (the free memory of the fullest GPU; a converge "
                "reads it from nvidia-smi)",
            )
        )
    return errors


def tensor_parallel_size(s: dict[str, Any], facts: dict[str, Any]) -> tuple[int, str]:
    """The tensor parallel size to render and a note saying where it came from."""
    multinode = s.get("multinode")
    if multinode:
        return whole_number(multinode["tensor_parallel_size"]), (
            f"multi-node {multinode.get('group', '')}: {multinode.get('notes', {}).get('tensor_parallel_size', '')}; "
            f"pipeline parallel {multinode['pipeline_parallel_size']} over {multinode['nodes']} nodes"
        )
    tp = s.get("tensor_parallel_size")
    if tp != "auto":
        return whole_number(tp), "vllm_tensor_parallel_size"
    if s.get("variant") == "cpu":
        return 1, "auto: CPU variant serves on one process"
    pp = pipeline_parallel_size(s)
    gpus = whole_number(facts.get("gpu_count")) or 0
    per_stage = max(gpus // pp, 1)
    heads = whole_number(facts.get("num_attention_heads"))
    if heads and heads > 0:
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
    gpus = whole_number(facts.get("gpu_count")) or 0
    pp = pipeline_parallel_size(s)
    if s.get("multinode") and gpus:
        # The layout (module_utils/vllm_layout.py) checked TP x PP against the GPUs of every node.
        gpus *= whole_number(s["multinode"]["nodes"])
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
    """PP in force: the multi-node layout's, or vllm_pipeline_parallel_size (both validated before)."""
    if s.get("multinode"):
        return whole_number(s["multinode"]["pipeline_parallel_size"])
    return whole_number(s.get("pipeline_parallel_size", 1))


def validate_free_memory(s: dict[str, Any], facts: dict[str, Any]) -> list[str]:
    """Refused when the fullest GPU has less free memory than utilization x total (validate_facts ran first)."""
    total = whole_number(facts.get("gpu_memory_total_mib"))
    free = whole_number(facts.get("gpu_memory_free_mib"))
    util = decimal_number(s.get("gpu_memory_utilization"))
    if total is None or free is None or util is None:
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
    swap = decimal_number(s.get("swap_space_gb")) or 0
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
    args = ["--model", str(s["model_path"]), "--served-model-name", str(s["served_model_name"])]
    args += ["--host", str(s["host"]), "--port", str(whole_number(s["port"]))]
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
    args += ["--gpu-memory-utilization", f"{decimal_number(s['gpu_memory_utilization']):g}"]
    notes["--gpu-memory-utilization"] = "vllm_gpu_memory_utilization (rendered even where it equals a default)"
    extra, note = swap_args(s, tp)
    args += extra
    if extra:
        notes[extra[0]] = note
    for key, flag in (
        ("max_model_len", "--max-model-len"),
        ("max_num_seqs", "--max-num-seqs"),
        ("max_num_batched_tokens", "--max-num-batched-tokens"),
    ):
        value = whole_number(s.get(key, 0))
        if value and value > 0:
            args += [flag, str(value)]
    if s.get("enforce_eager"):
        args.append("--enforce-eager")
    args += [str(a) for a in s.get("extra_args") or []]
    return args, notes


def service_env(s: dict[str, Any], facts: dict[str, Any], tp: int) -> dict[str, str]:
    """Environment for the service that holds no secret (secrets are added by the role)."""
    env = {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    if s.get("variant") == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = str(whole_number(s["cpu_kvcache_space_gb"]))
    elif not s.get("multinode"):
        used = tp * pipeline_parallel_size(s)
        gpus = whole_number(facts.get("gpu_count")) or 0
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


def unit_values(s: dict[str, Any], notes: dict[str, str]) -> dict[str, Any]:
    """Every value vllm.service.j2 places, each already written by vllm_systemd.quote() for its directive."""
    served = s["served_model_name"]
    header = [
        f"vLLM {s['version']} ({s['variant']}) serving {s['model']} as {served}.",
        "Flags computed by the vllm_config module from the variables and the host's facts:",
    ] + [f"  {flag}: {note}" for flag, note in sorted(notes.items()) if note]
    home = account(s, "home")
    unit = {
        "header": [quote(line, "comment") for line in header],
        "description": quote(f"vLLM OpenAI-compatible server ({served})", "text"),
        "user": quote(account(s, "user"), "name"),
        "group": quote(account(s, "group"), "name"),
        "working_directory": quote(home, "path"),
        "read_write_paths": quote(home, "path"),
        "environment_file": quote(account(s, "env_file"), "path"),
        "environment": [quote(f"HOME={home}", "environment")],
        "command": exec_line([venv_python(s), "-m", API_SERVER_MODULE]),
    }
    if s.get("multinode"):
        unit["ray_group"] = quote(str(s["multinode"].get("group", "")), "comment")
    return unit


def unknown_flags(args: list[str], known: list[str]) -> list[str]:
    """Flags in args that the installed vLLM does not list in its --help=all (names only, never values)."""
    known_set = set(known)
    flags = [element_flag(arg) for arg in args]
    return [f for f in flags if f and f not in known_set]


def _is_number(text: str) -> bool:
    return decimal_number(text) is not None


def served_name(s: dict[str, Any]) -> str:
    if s.get("served_model_name"):
        return str(s["served_model_name"])
    model = str(s.get("model") or "")
    return os.path.basename(model.rstrip("/")) if model_kind(model) == "local" else model


def compute(s: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """Validate the settings against the facts and compute the service's flags.

    Returns a dict with `errors` (empty when valid) and, when valid, `args`,
    `env`, `layout`, `notes`, `warnings`, and what the templates place:
    `exec_args` (args quoted for ExecStart=), `env_lines` (KEY="VALUE" lines of
    vllm.env, sorted by key) and `unit` (the other values of vllm.service).
    """
    errors = validate_inputs(s) + validate_multinode(s) + validate_facts(facts)
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
    env = service_env(s, facts, tp)
    return {
        "errors": [],
        "args": args,
        "exec_args": [quote(a, "exec") for a in args],
        "env": env,
        "env_lines": [env_file_line(key, env[key]) for key in sorted(env)],
        "unit": unit_values(s, notes),
        "notes": notes,
        "warnings": [
            *([swap_note] if swap_note.startswith("vllm_swap_space_gb ignored") else []),
            *service_account_warnings(s),
        ],
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
        "nodes": whole_number(multinode["nodes"]),
        "group": str(multinode.get("group", "")),
        "distributed_executor_backend": "ray",
        "ray_address": str(multinode["ray_address"]),
    }
