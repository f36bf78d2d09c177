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
  - Optionally sends a one-token completion (O(probe_completion)) and reports how it went in RV(completion).
  - Never fails because the server is down, still starting or answering nonsense; RV(reachable), RV(ready) and
    RV(error) say so. That makes it a readiness probe for an C(until:) loop. It fails only on bad options, or when
    O(fail_on_unreachable=true) and nothing answers. Every answer is checked (a C(/v1/models) of another shape, a
    malformed C(/metrics), a service on the port that does not speak HTTP are reported in RV(error)); it never ends
    in a traceback.
  - Read-only; C(changed) is always false. Supports check mode.
version_added: "1.0.0"
author:
  - vllm-fleet maintainers
options:
  url:
    description:
      - Base URL of the server, C(http://) or C(https://), without a path.
      - Credentials in it (C(user:password@)) are not sent; the password is taken out of everything returned.
    type: str
    default: http://127.0.0.1:8000
  api_key:
    description:
      - "API key of the server (its C(--api-key)), sent as C(Authorization: Bearer ...) to C(/v1/*) only."
      - Redirects are never followed, so the key never goes to another server; a C(3xx) answer is reported as
        such in RV(error).
    type: str
  timeout:
    description:
      - Seconds each HTTP request may take in all (name resolution, connection, TLS, sending, the head and the
        whole body), however slowly the server sends; a deadline, not a per-read timeout.
      - One call makes at most four such requests (C(/health), C(/version), C(/v1/models), C(/metrics)), so it
        returns within 4 x O(timeout), plus O(probe_completion_timeout) with O(probe_completion), plus the unit and
        journal reads.
    type: float
    default: 10
  validate_certs:
    description:
      - Verify the server's TLS certificate for C(https) URLs.
    type: bool
    default: true
  probe_completion:
    description:
      - When set, the model name to send one C(POST /v1/completions) to (prompt V(ping), C(max_tokens=1)), with
        O(api_key); RV(completion) reports the answer. Sent only when the server is reachable.
      - A server that answers C(/health) may still fail at its first request (a worker that dies on it); this finds
        out.
    type: str
  probe_completion_timeout:
    description:
      - Seconds the completion of O(probe_completion) may take in all (the first request after a start can be slow).
    type: float
    default: 60
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
      - These, O(api_key) and the password of O(url) are also taken out of every other value returned (a server
        that echoes the key in an error, say), when they are at least 4 characters long.
    type: list
    elements: str
    default: []
  fail_on_unreachable:
    description:
      - Fail when nothing answers at O(url). Leave V(false) for readiness probes.
    type: bool
    default: false
  expect:
    description:
      - The configuration the server should report; RV(mismatches) lists every field it does not, each naming
        what the server reports, what was expected and the inventory variable. A field left out (or null) is not
        checked. The module does not fail on a mismatch; the caller decides (role C(vllm_verify) fails the host).
      - O(expect.tensor_parallel_size) and O(expect.pipeline_parallel_size) are read from the engine's start-up
        line in the journal of O(unit)'s running invocation (no endpoint of vLLM reports them; C(journalctl
        --grep), else the journal's last 5000 lines), so they need O(unit); when no such line is found, the field
        is not checked and a warning says so.
    type: dict
    suboptions:
      version:
        description: vLLM version, compared with C(/version).
        type: str
      served_model_name:
        description: A name C(/v1/models) must list.
        type: str
      gpu_memory_utilization:
        description: Compared with the C(gpu_memory_utilization) label of C(vllm:cache_config_info).
        type: float
      kv_cache_memory_bytes:
        description: Compared with the C(kv_cache_memory_bytes) label of C(vllm:cache_config_info) (the CPU build).
        type: int
      tensor_parallel_size:
        description: Compared with the running engine's start-up line.
        type: int
      pipeline_parallel_size:
        description: Compared with the running engine's start-up line.
        type: int
notes:
  - Uses only the Python standard library on the host (the project's HTTP client, module_utils/vllm_http.py, the
    same parser as vllm_benchmark's).
  - C(/health), C(/version) and C(/metrics) are open on vLLM; C(/v1/*) needs the API key when the server has one.
  - Bodies are read up to 8 MiB; a larger one is reported in RV(error).
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

- name: Complete one token, as a first request
  vllm_server_info:
    url: http://127.0.0.1:8000
    api_key: "{{ vllm_service_api_key }}"
    probe_completion: tiny
  register: _vllm_server
  failed_when: _vllm_server.completion.error is not none
  no_log: true

- name: Compare what the server reports with what the roles set
  vllm_server_info:
    url: http://127.0.0.1:8000
    api_key: "{{ vllm_api_key }}"
    unit: vllm.service
    expect:
      version: 0.32.0
      served_model_name: tiny
      gpu_memory_utilization: 0.9
      tensor_parallel_size: 1
      pipeline_parallel_size: 2
  register: _vllm_server

- name: Fail on any field the server does not report as set
  ansible.builtin.assert:
    that: _vllm_server.mismatches | length == 0
    fail_msg: "{{ _vllm_server.mismatches | join('; ') }}"
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
    exec_start_argv:
      description: The unit's ExecStart= command line split on spaces (the flags in force); empty when unknown.
      type: list
      elements: str
    invocation_id:
      description: InvocationID, the running invocation's id (its journal lines carry it); null when not running.
      type: str
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
completion:
  description:
    - The one-token completion of O(probe_completion); null when O(probe_completion) is not set.
  returned: always
  type: dict
  contains:
    status:
      description: HTTP status of C(POST /v1/completions); null when no answer came (or the server is unreachable).
      type: int
      sample: 200
    completion_tokens:
      description: C(usage.completion_tokens) of the answer, an integer of at least 0; null when it has none.
      type: int
      sample: 1
    error:
      description:
        - Null when the completion answered 200 with exactly one completion token; else why not (the status and the
          start of the body, secrets taken out, or what was wrong with the answer).
      type: str
layout:
  description:
    - C(tensor_parallel_size) and C(pipeline_parallel_size) from the running engine's start-up line in the journal;
      null when O(expect) asks for neither, or when the line is not among the lines read.
  returned: always
  type: dict
  sample: {"tensor_parallel_size": 1, "pipeline_parallel_size": 2}
mismatches:
  description:
    - One line per field of O(expect) the server does not report as set, or the one line that it is not ready;
      empty without O(expect).
  returned: always
  type: list
  elements: str
  sample: ["kv_cache_memory_bytes: the server reports 1073741824, expected 2147483648 (vllm_cpu_kvcache_space_gb)"]
error:
  description:
    - Why the server is not reachable or not ready, or what was wrong with its answers (each problem naming the
      request, joined by V(; )); null when all is well.
  returned: always
  type: str
"""

import json
import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.vllm_bench_http import split_url
from ansible.module_utils.vllm_expect import ENGINE_LINE, engine_layout, mismatches, needs_journal
from ansible.module_utils.vllm_http import (
    HttpClient,
    HttpError,
    Response,
    check_header_value,
    public_url,
    redact,
    served_models,
    server_version,
    url_secrets,
)
from ansible.module_utils.vllm_journal import evidence, failure_reason, scrub, scrub_all
from ansible.module_utils.vllm_metrics import cache_config_labels, samples_from_text, server_metrics
from ansible.module_utils.vllm_process import run_text

JOURNAL_READ_LINES = 5000
SINCE_RE = re.compile(r"\A(?:@\d{1,12}(?:\.\d{1,9})?|\d{4}-\d\d-\d\d(?:[ T]\d\d:\d\d(?::\d\d)?)?)\Z")
INVOCATION_RE = re.compile(r"\A[0-9a-f]{32}\Z")
UNIT_RE = re.compile(r"\A[A-Za-z0-9:_.@\-]{1,200}\.(?:service|socket|target|timer)\Z")

UNIT_PROPERTIES = (
    "LoadState",
    "ActiveState",
    "SubState",
    "NRestarts",
    "MainPID",
    "ExecMainStatus",
    "ActiveEnterTimestampMonotonic",
    "ExecStart",
    "InvocationID",
)
ARGV_RE = re.compile(r"argv\[\]=(.*?) ; ")


def answer_or_problem(
    client: HttpClient, problems: list[str], method: str, path: str, **kwargs: object
) -> Response | None:
    """The answer of one request (any status), or None with why in problems."""
    try:
        return client.request(method, path, **kwargs)  # type: ignore[arg-type]
    except HttpError as exc:
        problems.append(str(exc))
        return None


def version_from(answer: Response | None, problems: list[str]) -> str | None:
    """The version of a /version answer; None (with a problem when it answered 200 with something else)."""
    if answer is None or answer.status != 200:
        return None
    try:
        return server_version(answer.json())
    except ValueError as exc:
        problems.append(f"GET /version: {exc}")
        return None


def models_from(answer: Response | None, problems: list[str]) -> list[dict]:
    """[{id, root, max_model_len}] of a /v1/models answer; [] with the problem when it has none usable."""
    if answer is None:
        return []
    if answer.status == 401:
        problems.append("GET /v1/models answered 401: the server has an API key; set api_key to it")
        return []
    if answer.status != 200:
        problems.append(f"GET /v1/models answered {answer.status_text()}")
        return []
    try:
        return served_models(answer.json())
    except ValueError as exc:
        problems.append(f"GET /v1/models is not a model list: {exc}")
        return []


def metrics_facts(answer: Response | None, problems: list[str]) -> tuple[dict | None, dict | None]:
    """(cache_config, server_metrics) from a /metrics answer; (None, None) with the problem when unreadable."""
    if answer is None or answer.status != 200:
        return None, None
    try:
        samples = samples_from_text(answer.body.decode("utf-8"))
        return cache_config_labels(samples), server_metrics(samples)
    except UnicodeDecodeError:
        problems.append("GET /metrics: the answer is not UTF-8 text")
    except ValueError as exc:
        problems.append(f"GET /metrics: {exc}")
    return None, None


def completion_report(answer: Response | None, problem: str | None, secrets: list[str] | None = None) -> dict:
    """RV(completion) from the answer to a one-token completion (None, with the problem, when none came).

    secrets are taken out of the body before it is quoted (and cut).
    """
    if answer is None:
        return {"status": None, "completion_tokens": None, "error": problem}
    report: dict = {"status": answer.status, "completion_tokens": None, "error": None}
    if answer.status != 200:
        report["error"] = f"POST /v1/completions answered {answer.status_text()}: {answer.text(300, secrets)}"
        return report
    try:
        data = answer.json()
    except ValueError as exc:
        report["error"] = f"POST /v1/completions answered 200 with a body that is {exc}: {answer.text(100, secrets)}"
        return report
    usage = data.get("usage") if isinstance(data, dict) else None
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if type(tokens) is int and tokens >= 0:
        report["completion_tokens"] = tokens
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
        report["error"] = f"POST /v1/completions answered 200 without choices: {answer.text(200, secrets)}"
    elif report["completion_tokens"] is None:
        report["error"] = (
            f"POST /v1/completions answered 200 without usage.completion_tokens: {answer.text(200, secrets)}"
        )
    elif report["completion_tokens"] != 1:
        report["error"] = (
            f"POST /v1/completions answered 200 with usage.completion_tokens={tokens}, where max_tokens=1 gives 1"
        )
    return report


INT_RE = re.compile(r"\A-?[0-9]{1,20}\Z")


def int_or_none(value: str | None) -> int | None:
    """An integer property value, or None when empty or not a number."""
    return int(value) if value and INT_RE.match(value) else None


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
        "exec_start_argv": exec_start_argv(props.get("ExecStart", "")),
        "invocation_id": props.get("InvocationID") if INVOCATION_RE.match(props.get("InvocationID", "")) else None,
    }


def exec_start_argv(value: str) -> list[str]:
    """ExecStart='s command line as systemctl show prints it ({ path=... ; argv[]=WORDS ; ... }), split on spaces."""
    match = ARGV_RE.search(value)
    return match.group(1).split() if match else []


def unit_report(module: AnsibleModule, unit: str, timeout: float) -> dict | None:
    """State of a systemd unit, or None (with a warning) when systemctl is missing or fails."""
    systemctl = module.get_bin_path("systemctl")
    if systemctl is None:
        module.warn(f"unit={unit!r} was given but systemctl is not on this host; no unit state reported")
        return None
    rc, out, err = run_text([systemctl, "show", unit, f"--property={','.join(UNIT_PROPERTIES)}"], timeout)
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
    rc, out, err = run_text(argv, timeout)
    if rc != 0:
        module.warn(f"journalctl -u {unit} failed rc={rc}: {(out + err).strip()[:500]}")
        return []
    return out.splitlines()


def engine_start_lines(module: AnsibleModule, unit: str, invocation: str | None, timeout: float) -> list[str]:
    """The engine's start-up lines of the unit's running invocation (RV(unit.invocation_id); journalctl --grep),
    however long it has run; the last JOURNAL_READ_LINES lines when the invocation is unknown or journalctl cannot
    grep."""
    journalctl = module.get_bin_path("journalctl")
    if invocation and journalctl:
        argv = [journalctl, f"_SYSTEMD_INVOCATION_ID={invocation}", "--no-pager", "-o", "cat", "--grep", ENGINE_LINE]
        rc, out, _ = run_text(argv, timeout)
        if rc == 0 and out.strip():
            return out.splitlines()
    return journal_text(module, unit, None, timeout)


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
            msg=f"url={public_url(params['url'])!r} must be http(s)://HOST[:PORT] without a path, "
            "e.g. http://127.0.0.1:8000"
        )
    try:
        split_url(url)
    except ValueError as exc:
        module.fail_json(msg=f"url={public_url(params['url'])!r} is not usable: {public_url(str(exc))}")
    if not params["timeout"] > 0:
        module.fail_json(msg=f"timeout={params['timeout']} must be a number of seconds above 0")
    if not params["probe_completion_timeout"] > 0:
        module.fail_json(
            msg=f"probe_completion_timeout={params['probe_completion_timeout']} must be a number of seconds above 0"
        )
    if params["api_key"]:
        try:
            check_header_value("Authorization", f"Bearer {params['api_key']}")
        except ValueError as exc:
            module.fail_json(msg=f"api_key cannot be sent: {exc}")
    if params["probe_completion"] is not None and not params["probe_completion"].strip():
        module.fail_json(msg="probe_completion must be the name of a served model, not empty")
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
    if needs_journal(params["expect"]) and not params["unit"]:
        module.fail_json(
            msg="expect.tensor_parallel_size and expect.pipeline_parallel_size need unit (the systemd unit whose "
            "journal holds the engine's start-up line), e.g. unit: vllm.service"
        )
    if not params["journal_timeout"] > 0:
        module.fail_json(msg=f"journal_timeout={params['journal_timeout']} must be a number of seconds above 0")
    return {**params, "url": url}


def server_report(client: HttpClient, api_key: str | None) -> dict:
    """Everything the server itself says: /health, then /version, /v1/models and /metrics when it answers."""
    report: dict = {
        "reachable": False,
        "health_status": None,
        "ready": False,
        "version": None,
        "models": [],
        "cache_config": None,
        "server_metrics": None,
        "error": None,
    }
    problems: list[str] = []
    health = answer_or_problem(client, problems, "GET", "/health")
    if health is None:
        report["error"] = "; ".join(problems)
        return report
    report["reachable"] = True
    report["health_status"] = health.status
    if health.status != 200:
        problems.append(f"GET /health answered {health.status_text()}")
    report["version"] = version_from(answer_or_problem(client, problems, "GET", "/version"), problems)
    auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    report["models"] = models_from(answer_or_problem(client, problems, "GET", "/v1/models", headers=auth), problems)
    report["cache_config"], report["server_metrics"] = metrics_facts(
        answer_or_problem(client, problems, "GET", "/metrics"), problems
    )
    report["ready"] = health.status == 200 and len(report["models"]) > 0
    report["error"] = "; ".join(problems) or None
    return report


def completion_probe(client: HttpClient, model: str, api_key: str | None, timeout: float, secrets: list[str]) -> dict:
    """RV(completion): one POST /v1/completions of one token to model."""
    body = json.dumps({"model": model, "prompt": "ping", "max_tokens": 1}).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
    problems: list[str] = []
    answer = answer_or_problem(
        client, problems, "POST", "/v1/completions", body=body, headers=headers, timeout=timeout, max_body=1 << 20
    )
    return completion_report(answer, problems[0] if problems else None, secrets)


class Step:
    """What the module is doing now, for the message of an error nobody foresaw."""

    def __init__(self, doing: str) -> None:
        self.doing = doing


def known_secrets(params: dict) -> list[str]:
    """Everything to take out of what the module returns: the secrets option, the API key, the URL's password."""
    api_key = [params["api_key"]] if params.get("api_key") else []
    return [*(params.get("secrets") or []), *api_key, *url_secrets(params.get("url") or "")]


def run(module: AnsibleModule, step: Step) -> None:
    """Probe the server (and its unit and journal) as the options say, and exit the module."""
    module.no_log_values.update(url_secrets(module.params["url"] or ""))  # Ansible masks it too, wherever it is
    params = checked_params(module)
    secrets = known_secrets(params)
    url = public_url(params["url"])
    step.doing = f"probing {url}"
    client = HttpClient.for_url(params["url"], params["timeout"], params["validate_certs"])
    try:
        report = server_report(client, params["api_key"])
        report["completion"] = None
        if params["probe_completion"]:
            step.doing = f"sending a one-token completion to {url}"
            if report["reachable"]:
                report["completion"] = completion_probe(
                    client, params["probe_completion"], params["api_key"], params["probe_completion_timeout"], secrets
                )
            else:
                report["completion"] = completion_report(None, f"not sent: {report['error']}")
    finally:
        client.close()
    if params["unit"]:
        step.doing = f"reading the state of {params['unit']}"
        report["unit"] = unit_report(module, params["unit"], params["journal_timeout"])
    report["journal"], report["failure"] = [], None
    if params["journal_lines"]:
        step.doing = f"reading the journal of {params['unit']}"
        lines = journal_text(module, params["unit"], params["journal_since"], params["journal_timeout"])
        secrets = [*params["secrets"], *([params["api_key"]] if params["api_key"] else [])]
        report["journal"], report["failure"] = journal_report(lines, params["journal_lines"], secrets)
    report["layout"], report["mismatches"] = None, []
    if params["expect"]:
        step.doing = "comparing what the server reports with expect"
        if needs_journal(params["expect"]):
            invocation = (report.get("unit") or {}).get("invocation_id")
            lines = engine_start_lines(module, params["unit"], invocation, params["journal_timeout"])
            report["layout"] = engine_layout(lines)
        report["mismatches"], notes = mismatches(params["expect"], report, report["layout"])
        for note in notes:
            module.warn(note)
    report = redact(report, known_secrets(params))
    if params["fail_on_unreachable"] and not report["reachable"]:
        module.fail_json(msg=f"vLLM server at {url} is not reachable: {report['error']}", **report)
    module.exit_json(changed=False, **report)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "default": "http://127.0.0.1:8000"},
            "api_key": {"type": "str", "no_log": True},
            "timeout": {"type": "float", "default": 10},
            "validate_certs": {"type": "bool", "default": True},
            "probe_completion": {"type": "str"},
            "probe_completion_timeout": {"type": "float", "default": 60},
            "unit": {"type": "str"},
            "journal_lines": {"type": "int", "default": 0},
            "journal_since": {"type": "str"},
            "journal_timeout": {"type": "float", "default": 30},
            "secrets": {"type": "list", "elements": "str", "default": [], "no_log": True},
            "fail_on_unreachable": {"type": "bool", "default": False},
            "expect": {
                "type": "dict",
                "options": {
                    "version": {"type": "str"},
                    "served_model_name": {"type": "str"},
                    "gpu_memory_utilization": {"type": "float"},
                    "kv_cache_memory_bytes": {"type": "int"},
                    "tensor_parallel_size": {"type": "int"},
                    "pipeline_parallel_size": {"type": "int"},
                },
            },
        },
        supports_check_mode=True,
    )
    step = Step("checking the options")
    try:
        run(module, step)
    except Exception as exc:  # the last guard: a message naming what failed, never a traceback
        module.fail_json(
            msg=redact(
                f"vllm_server_info: unexpected {type(exc).__name__} while {step.doing}: {str(exc)[:500]} "
                "(a defect of the module: please report it with this message)",
                known_secrets(module.params),
            )
        )


if __name__ == "__main__":
    main()
