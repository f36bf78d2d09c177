#!/usr/bin/python
"""Ansible module vllm_server_info: is a vLLM server up and ready, and what does it report."""

DOCUMENTATION = r"""
---
module: vllm_server_info
short_description: Report the state of a vLLM OpenAI-compatible server
description:
  - Reads C(GET /health), C(/version), C(/v1/models) and C(/metrics) of a vLLM server and reports whether it is
    reachable and ready, its version, its models, its live cache configuration and server-side latency figures.
  - Optionally reports the systemd unit running it (C(systemctl show)) and the end of its journal.
  - Never fails because the server is down or still starting; RV(reachable) and RV(ready) say so. That makes it a
    readiness probe for an C(until:) loop. It fails only on bad options, or when O(fail_on_unreachable=true) and
    nothing answers.
  - Read-only; C(changed) is always false. Supports check mode.
version_added: "1.0.0"
author:
  - vllm-fleet maintainers
options:
  url:
    description:
      - Base URL of the server, C(http://) or C(https://), without a path.
    type: str
    default: http://127.0.0.1:8000
  api_key:
    description:
      - "API key of the server (its C(--api-key)), sent as C(Authorization: Bearer ...) to C(/v1/*) only."
    type: str
  timeout:
    description:
      - Seconds to wait for each HTTP request.
    type: float
    default: 10
  unit:
    description:
      - Name of the systemd unit running the server, such as V(vllm.service). When set, RV(unit) reports its state.
    type: str
  journal_lines:
    description:
      - When above 0 and O(unit) is set, read the unit's journal and return at most this many of its lines in
        RV(journal), and the decisive cause of a failure in RV(failure).
      - The lines are the journal's last ones that say something (the interpreter's shutdown noise left out); when
        the decisive line is older, the lines leading up to it come first. Each line is cut at 400 characters.
    type: int
    default: 0
  journal_since:
    description:
      - Read the journal from this time on, as C(journalctl --since) takes it; use V(@EPOCH) (seconds since 1970
        on the host's clock), for example the time just before a restart, so an older failure is not reported.
      - When not set, the unit's last 5000 lines are read.
    type: str
  journal_timeout:
    description:
      - Seconds C(systemctl show) and C(journalctl) may take, each; the whole call is killed after that.
    type: float
    default: 30
  secrets:
    description:
      - Values to take out of RV(journal) and RV(failure) (replaced by V(<redacted>)), besides O(api_key); for
        example the Hugging Face token. Bearer tokens, C(--api-key) values and C(hf_...) tokens are always taken out.
    type: list
    elements: str
    default: []
  fail_on_unreachable:
    description:
      - Fail when nothing answers at O(url). Leave V(false) for readiness probes.
    type: bool
    default: false
notes:
  - Uses only the Python standard library (urllib) on the host.
  - C(/health), C(/version) and C(/metrics) are open on vLLM; C(/v1/*) needs the API key when the server has one.
seealso:
  - module: vllm_gpu_facts
"""

EXAMPLES = r"""
- name: Wait until vLLM is ready to serve
  vllm_server_info:
    url: "http://127.0.0.1:{{ vllm_service_port }}"
    api_key: "{{ vllm_service_api_key }}"
    timeout: 5
  register: _vllm_server
  until: _vllm_server.ready
  retries: 60
  delay: 5
  no_log: true

- name: Report the server, its unit and the end of its journal
  vllm_server_info:
    url: http://127.0.0.1:8000
    unit: vllm.service
    journal_lines: 50
  register: _vllm_server

- name: The running server uses the KV cache budget the role set
  ansible.builtin.assert:
    that:
      - _vllm_server.cache_config.gpu_memory_utilization == vllm_service_gpu_memory_utilization | string
"""

RETURN = r"""
reachable:
  description: Whether anything answered HTTP at O(url).
  returned: always
  type: bool
health_status:
  description: HTTP status of C(GET /health); null when unreachable.
  returned: always
  type: int
  sample: 200
ready:
  description: C(/health) answered 200 and C(/v1/models) listed at least one model.
  returned: always
  type: bool
version:
  description: The server's vLLM version from C(/version); null when unknown.
  returned: always
  type: str
  sample: 0.32.0
models:
  description: Models served, from C(/v1/models).
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Served model name.
      type: str
    root:
      description: Model path or hub id it was loaded from.
      type: str
    max_model_len:
      description: Context length.
      type: int
cache_config:
  description:
    - Labels of the C(vllm:cache_config_info) metric, the live cache configuration, values as strings exactly as
      exposed (for example C(gpu_memory_utilization), C(block_size), C(kv_cache_memory_bytes), C(num_gpu_blocks)).
    - Null until the engine has finished starting.
  returned: always
  type: dict
server_metrics:
  description:
    - Server-side figures from C(/metrics), summed over engines and models.
    - Null when C(/metrics) did not answer.
  returned: always
  type: dict
  contains:
    ttft_seconds:
      description: Time-to-first-token histogram C({sum, count, mean_ms}); null when absent.
      type: dict
    e2e_latency_seconds:
      description: End-to-end request latency histogram C({sum, count, mean_ms}); null when absent.
      type: dict
    num_requests_running:
      description: Requests being processed now.
      type: int
    num_requests_waiting:
      description: Requests queued now.
      type: int
unit:
  description: State of O(unit) from C(systemctl show).
  returned: when O(unit) is set
  type: dict
  contains:
    load_state:
      description: LoadState, V(not-found) when no such unit exists.
      type: str
    active_state:
      description: ActiveState, such as V(active) or V(failed).
      type: str
    sub_state:
      description: SubState, such as V(running).
      type: str
    n_restarts:
      description: NRestarts, how many times systemd restarted it.
      type: int
    main_pid:
      description: MainPID, 0 when not running.
      type: int
    exec_main_status:
      description: ExecMainStatus, exit status of the last main process.
      type: int
    active_enter_timestamp_monotonic:
      description: ActiveEnterTimestampMonotonic, microseconds.
      type: int
journal:
  description:
    - At most O(journal_lines) lines of the unit's journal (see O(journal_lines)), secrets taken out; empty when
      O(journal_lines=0).
  returned: always
  type: list
  elements: str
failure:
  description:
    - The decisive cause of a failure found in the journal read for RV(journal), or null when none is found (or
      the journal was not read).
    - Looked for in this order, the first found wins, a worker that died from a signal (named, for example
      V(SIGILL) for an illegal instruction), an out-of-memory kill, the root Python exception (not its
      consequences such as C(EngineDeadError)), how systemd saw the main process end.
  returned: always
  type: dict
  contains:
    reason:
      description: One line saying what happened, for a person, with a hint at the likely cause where one is known.
      type: str
      sample: "vLLM worker VllmWorker-0 died from SIGILL (illegal instruction: ...)"
    kind:
      description: V(signal), V(oom), V(exception) or V(exit).
      type: str
    line:
      description: The journal line it was read from.
      type: str
error:
  description: Why the server is not reachable (or why its answers could not be read); null when all is well.
  returned: always
  type: str
"""

import json
import re
import subprocess
import urllib.error
import urllib.request

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.vllm_journal import evidence, failure_reason, scrub, scrub_all
from ansible.module_utils.vllm_metrics import cache_config_labels, samples_from_text, server_metrics

JOURNAL_READ_LINES = 5000
SINCE_RE = re.compile(r"\A(?:@\d{1,12}(?:\.\d{1,9})?|\d{4}-\d\d-\d\d(?:[ T]\d\d:\d\d(?::\d\d)?)?)\Z")
UNIT_RE = re.compile(r"\A[A-Za-z0-9:_.@\-]{1,200}\.(?:service|socket|target|timer)\Z")

UNIT_PROPERTIES = (
    "LoadState",
    "ActiveState",
    "SubState",
    "NRestarts",
    "MainPID",
    "ExecMainStatus",
    "ActiveEnterTimestampMonotonic",
)


class Answer:
    """An HTTP answer (status and body) or why there was none."""

    def __init__(self, status: int | None, body: str | None, error: str | None) -> None:
        self.status = status
        self.body = body
        self.error = error


def http_get(url: str, timeout: float, headers: dict[str, str]) -> Answer:
    """GET a URL; an HTTP error status is an answer, a connection failure is not."""
    request = urllib.request.Request(url, headers=headers, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(response.status, response.read().decode("utf-8", "replace"), None)
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read().decode("utf-8", "replace"), None)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Answer(None, None, f"GET {url}: {reason}")


def json_or_none(answer: Answer) -> dict | None:
    """The JSON object of a 200 answer, or None."""
    if answer.status != 200 or answer.body is None:
        return None
    try:
        data = json.loads(answer.body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def models_from(data: dict | None) -> list[dict]:
    """[{id, root, max_model_len}] from a /v1/models answer."""
    entries = (data or {}).get("data") or []
    return [
        {"id": entry.get("id"), "root": entry.get("root"), "max_model_len": entry.get("max_model_len")}
        for entry in entries
        if isinstance(entry, dict)
    ]


def models_error(answer: Answer) -> str | None:
    """Why /v1/models gave no models, when it answered but not with 200."""
    if answer.status == 401:
        return "GET /v1/models answered 401: the server has an API key; set api_key to it"
    if answer.status is not None and answer.status != 200:
        return f"GET /v1/models answered {answer.status}"
    return None


def metrics_facts(answer: Answer) -> tuple[dict | None, dict | None, str | None]:
    """(cache_config, server_metrics, error) from a /metrics answer."""
    if answer.status != 200 or answer.body is None:
        return None, None, None
    try:
        samples = samples_from_text(answer.body)
    except ValueError as exc:
        return None, None, f"could not read /metrics: {exc}"
    return cache_config_labels(samples), server_metrics(samples), None


def int_or_none(value: str | None) -> int | None:
    """An integer property value, or None when empty or not a number."""
    return int(value) if value and value.lstrip("-").isdigit() else None


def unit_state(text: str) -> dict:
    """The unit dict from `systemctl show --property=...` output (KEY=VALUE lines)."""
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {
        "load_state": props.get("LoadState") or None,
        "active_state": props.get("ActiveState") or None,
        "sub_state": props.get("SubState") or None,
        "n_restarts": int_or_none(props.get("NRestarts")),
        "main_pid": int_or_none(props.get("MainPID")),
        "exec_main_status": int_or_none(props.get("ExecMainStatus")),
        "active_enter_timestamp_monotonic": int_or_none(props.get("ActiveEnterTimestampMonotonic")),
    }


def run_bounded(argv: list[str], timeout: float) -> tuple[int, str, str]:
    """(rc, stdout, stderr) of a command killed after timeout seconds (rc 124, like timeout(1))."""
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return 124, "", f"{argv[0]} did not finish within {timeout:g} s"
    except OSError as exc:
        return 127, "", f"cannot run {argv[0]}: {exc}"
    return done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")


def unit_report(module: AnsibleModule, unit: str, timeout: float) -> dict | None:
    """State of a systemd unit, or None (with a warning) when systemctl is missing or fails."""
    systemctl = module.get_bin_path("systemctl")
    if systemctl is None:
        module.warn(f"unit={unit!r} was given but systemctl is not on this host; no unit state reported")
        return None
    rc, out, err = run_bounded([systemctl, "show", unit, f"--property={','.join(UNIT_PROPERTIES)}"], timeout)
    if rc != 0:
        module.warn(f"systemctl show {unit} failed rc={rc}: {(out + err).strip()[:500]}")
        return None
    return unit_state(out)


def journal_text(module: AnsibleModule, unit: str, since: str | None, timeout: float) -> list[str]:
    """The unit's journal lines (since a time, else its last JOURNAL_READ_LINES); [] with a warning on failure."""
    journalctl = module.get_bin_path("journalctl")
    if journalctl is None:
        module.warn("journal_lines was set but journalctl is not on this host")
        return []
    argv = [journalctl, "-u", unit, "--no-pager", "-o", "cat", "-n", str(JOURNAL_READ_LINES)]
    if since:
        argv += ["--since", since]
    rc, out, err = run_bounded(argv, timeout)
    if rc != 0:
        module.warn(f"journalctl -u {unit} failed rc={rc}: {(out + err).strip()[:500]}")
        return []
    return out.splitlines()


def journal_report(lines: list[str], max_lines: int, secrets: list[str]) -> tuple[list[str], dict | None]:
    """(bounded evidence, failure) from journal lines, secrets taken out of both."""
    failure = failure_reason(lines)
    tail = scrub_all(evidence(lines, max_lines, failure["index"] if failure else None), secrets)
    if failure is None:
        return tail, None
    return tail, {key: scrub(failure[key], secrets) for key in ("reason", "kind", "line")}


def checked_params(module: AnsibleModule) -> dict:
    """The options, after failing on values that cannot work."""
    params = module.params
    url = params["url"].rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url.split("/")) != 3:
        module.fail_json(
            msg=f"url={params['url']!r} must be http(s)://HOST[:PORT] without a path, e.g. http://127.0.0.1:8000"
        )
    if params["timeout"] <= 0:
        module.fail_json(msg=f"timeout={params['timeout']} must be a number of seconds above 0")
    if params["journal_lines"] < 0:
        module.fail_json(msg=f"journal_lines={params['journal_lines']} must be 0 (no journal) or a positive count")
    if params["journal_lines"] > 0 and not params["unit"]:
        module.fail_json(msg=f"journal_lines={params['journal_lines']} needs unit (the systemd unit to read)")
    if params["unit"] and not UNIT_RE.match(params["unit"]):
        module.fail_json(msg=f"unit={params['unit']!r} is not a systemd unit name such as vllm.service")
    if params["journal_since"] and not SINCE_RE.match(params["journal_since"]):
        module.fail_json(
            msg=f"journal_since={params['journal_since']!r} must be @EPOCH_SECONDS (e.g. @1764770000) or a date "
            "YYYY-MM-DD[ HH:MM[:SS]]"
        )
    if not params["journal_timeout"] > 0:
        module.fail_json(msg=f"journal_timeout={params['journal_timeout']} must be a number of seconds above 0")
    return {**params, "url": url}


def server_report(url: str, timeout: float, api_key: str | None) -> dict:
    """Everything the server itself says."""
    health = http_get(f"{url}/health", timeout, {})
    report: dict = {
        "reachable": health.status is not None,
        "health_status": health.status,
        "ready": False,
        "version": None,
        "models": [],
        "cache_config": None,
        "server_metrics": None,
        "error": health.error,
    }
    if not report["reachable"]:
        return report
    version = json_or_none(http_get(f"{url}/version", timeout, {}))
    report["version"] = (version or {}).get("version")
    auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    models_answer = http_get(f"{url}/v1/models", timeout, auth)
    report["models"] = models_from(json_or_none(models_answer))
    report["cache_config"], report["server_metrics"], metrics_error = metrics_facts(
        http_get(f"{url}/metrics", timeout, {})
    )
    report["ready"] = health.status == 200 and len(report["models"]) > 0
    report["error"] = models_error(models_answer) or models_answer.error or metrics_error
    return report


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "default": "http://127.0.0.1:8000"},
            "api_key": {"type": "str", "no_log": True},
            "timeout": {"type": "float", "default": 10},
            "unit": {"type": "str"},
            "journal_lines": {"type": "int", "default": 0},
            "journal_since": {"type": "str"},
            "journal_timeout": {"type": "float", "default": 30},
            "secrets": {"type": "list", "elements": "str", "default": [], "no_log": True},
            "fail_on_unreachable": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    params = checked_params(module)
    report = server_report(params["url"], params["timeout"], params["api_key"])
    if params["unit"]:
        report["unit"] = unit_report(module, params["unit"], params["journal_timeout"])
    report["journal"], report["failure"] = [], None
    if params["journal_lines"]:
        lines = journal_text(module, params["unit"], params["journal_since"], params["journal_timeout"])
        secrets = [*params["secrets"], *([params["api_key"]] if params["api_key"] else [])]
        report["journal"], report["failure"] = journal_report(lines, params["journal_lines"], secrets)
    if params["fail_on_unreachable"] and not report["reachable"]:
        module.fail_json(msg=f"vLLM server at {params['url']} is not reachable: {report['error']}", **report)
    module.exit_json(changed=False, **report)


if __name__ == "__main__":
    main()
