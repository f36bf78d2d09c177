"""The benchmark engine and module against REAL local sockets: a small HTTP server in the test, on 127.0.0.1.

The server (named FakeOpenAIServer because it stands in for vLLM, which CI does not run) speaks HTTP/1.1
with chunked SSE streams like vLLM's and misbehaves on demand: HTTP 500, streams dropped mid-response,
stalls, malformed events, error events. Nothing here needs vLLM; every test is bounded by short timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ansible.module_utils import vllm_bench_engine
from ansible.module_utils.vllm_bench_engine import failure_summary, make_target, request_bytes, run_load
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[2]
TOKEN = b'data: {"id":"c","object":"text_completion","model":"tiny","choices":[{"index":0,"text":"ab"}]}\n\n'


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def usage(prompt_tokens: int, tokens: int) -> bytes:
    body = {"choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": tokens}}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class FakeOpenAIServer:
    """An HTTP/1.1 keep-alive server on 127.0.0.1 in a background thread; behaviour(n) picks what request n gets."""

    def __init__(
        self, behaviour: Callable[[int], str] = lambda n: "ok", tokens: int = 4, tls: ssl.SSLContext | None = None
    ) -> None:
        self.behaviour = behaviour
        self.tls = tls
        self.tokens = tokens
        self.requests = 0
        self.connections = 0
        self.paths: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.base_events.Server | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> FakeOpenAIServer:
        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self.handle, "127.0.0.1", 0, ssl=self.tls), self.loop
        )
        self.server = future.result(5)
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = next((int(x.split(":")[1]) for x in lines if x.lower().startswith("content-length")), 0)
                body = json.loads(await reader.readexactly(length)) if length else {}
                self.paths.append(path)
                if not await self.respond(method, path, body, writer):
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()

    async def respond(self, method: str, path: str, body: dict, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; return False to close the connection."""
        if method == "GET":
            payload = {"version": "0.0-fake"} if path == "/version" else {"data": [{"id": "fake-model"}]}
            writer.write(json_response(200, payload))
            return True
        if path == "/tokenize":
            tokens = list(range(len(body["prompt"].split()) * 2))
            writer.write(json_response(200, {"tokens": tokens, "count": len(tokens)}))
            return True
        if path == "/detokenize":
            writer.write(json_response(200, {"prompt": " ".join(f"t{t}" for t in body["tokens"])}))
            return True
        number = self.requests
        self.requests += 1
        kind = self.behaviour(number)
        if kind == "http500":
            writer.write(json_response(500, {"error": "boom"}))
            return True
        if kind == "refuse_after_head":
            writer.close()
            return False
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        if kind == "badjson":
            writer.write(chunk(TOKEN) + chunk(b"data: {not json\n\n"))
            await writer.drain()
            await asyncio.sleep(30)  # the client must give up on its own, not wait for us
            return False
        if kind == "error_event":
            writer.write(chunk(TOKEN) + chunk(b'data: {"error": {"message": "engine died", "code": 500}}\n\n'))
            await asyncio.sleep(30)
            return False
        for index in range(self.tokens):
            if kind == "drop" and index == 2:
                await writer.drain()
                writer.transport.abort()
                return False
            if kind == "stall" and index == 1:
                await writer.drain()
                await asyncio.sleep(30)
                return False
            # split one event across two writes to exercise reassembly, and add a keep-alive comment
            event = chunk(b": ping\n\n" + TOKEN) if index == 1 else chunk(TOKEN)
            writer.write(event[:10])
            await writer.drain()
            writer.write(event[10:])
            await writer.drain()
            await asyncio.sleep(0.002)
        writer.write(chunk(usage(3, self.tokens)) + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()
        return kind != "close_after"  # close_after: a keep-alive response, then the server drops the connection


def json_response(status: int, payload: dict) -> bytes:
    body = json.dumps(payload).encode()
    reason = {200: "OK", 500: "Internal Server Error"}[status]
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


def free_port() -> int:
    """Return a port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def fake_server(
    behaviour: Callable[[int], str] = lambda n: "ok", tokens: int = 4, tls: ssl.SSLContext | None = None
) -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(behaviour, tokens, tls) as server:
        yield server


def load(
    url: str,
    count: int,
    concurrency: int = 4,
    timeout: float = 2.0,
    total_timeout: float = 4.0,
    warmup: int = 0,
    rate: float = float("inf"),
    prompt: str = "p",
    validate_certs: bool = True,
):
    target = make_target(url, "k", validate_certs)
    payload = {"model": "m", "prompt": prompt, "max_tokens": 4, "stream": True}
    requests = [request_bytes(target, "/v1/completions", payload)] * count
    return run_load(target, requests, requests[:warmup], concurrency, rate, timeout, total_timeout)


def self_signed_context(tmp_path: Path) -> ssl.SSLContext:
    """Return a server TLS context with a fresh self-signed certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


def test_successful_stream_reuses_keep_alive_connections():
    with fake_server(tokens=5) as server:
        outcome = load(server.url, 12, concurrency=3, warmup=2)
    assert [r.ok for r in outcome.results] == [True] * 12
    assert all(r.output_tokens == 5 and r.prompt_tokens == 3 and len(r.itl) == 4 for r in outcome.results)
    assert all(0 < r.ttft <= r.latency for r in outcome.results)
    assert server.connections == 3  # one per slot, warm-up included
    assert server.requests == 14


def test_http_500_counted_with_status_and_body():
    with fake_server(lambda n: "http500" if n % 2 else "ok") as server:
        outcome = load(server.url, 6, concurrency=1)
    counts, samples = failure_summary(outcome.results)
    assert counts == {"http_500": 3}
    assert samples[0]["detail"].startswith("HTTP 500 Internal Server Error") and "boom" in samples[0]["detail"]
    assert sum(r.ok for r in outcome.results) == 3
    assert server.connections == 1  # a 500 with a body does not cost the connection


def test_stream_dropped_mid_response_is_broken_stream():
    with fake_server(lambda n: "drop" if n == 0 else "ok") as server:
        outcome = load(server.url, 3, concurrency=1)
    counts, samples = failure_summary(outcome.results)
    assert counts == {"broken_stream": 1}
    assert "mid-response" in samples[0]["detail"]
    assert [r.ok for r in outcome.results] == [False, True, True]  # a new connection carried the rest


def test_stall_is_bounded_by_timeout():
    with fake_server(lambda n: "stall" if n < 2 else "ok") as server:
        started = time.perf_counter()
        outcome = load(server.url, 4, concurrency=2, timeout=0.5)
        elapsed = time.perf_counter() - started
    counts, samples = failure_summary(outcome.results)
    assert counts == {"timeout": 2}
    assert "timeout=0.5s" in samples[0]["detail"]
    assert elapsed < 2.0


def test_malformed_event_is_bad_json_and_error_event_is_stream_error():
    with fake_server(lambda n: {0: "badjson", 1: "error_event"}.get(n, "ok")) as server:
        outcome = load(server.url, 3, concurrency=1, timeout=1.0)
    counts, samples = failure_summary(outcome.results)
    assert counts == {"bad_json": 1, "stream_error": 1}
    assert "engine died" in samples[1]["detail"]
    assert outcome.results[2].ok


def test_connection_closed_without_response_is_broken_stream():
    with fake_server(lambda n: "refuse_after_head") as server:
        outcome = load(server.url, 2, concurrency=1)
    counts, _ = failure_summary(outcome.results)
    assert counts == {"broken_stream": 2}


def test_connection_refused_fails_fast():
    started = time.perf_counter()
    outcome = load(f"http://127.0.0.1:{free_port()}", 5, concurrency=2)
    counts, samples = failure_summary(outcome.results)
    assert counts == {"connection_refused": 5}
    assert len(samples) == 3
    assert time.perf_counter() - started < 1.0


def test_total_timeout_ends_the_run_and_counts_every_request():
    with fake_server(lambda n: "stall") as server:
        started = time.perf_counter()
        outcome = load(server.url, 6, concurrency=2, timeout=30, total_timeout=0.5)
        elapsed = time.perf_counter() - started
    counts, _ = failure_summary(outcome.results)
    assert outcome.total_timeout_hit
    assert counts == {"total_timeout": 2, "not_sent": 4}
    assert elapsed < 1.5


def test_server_closing_keep_alive_connections_costs_no_request():
    # The server drops every connection after its response, without saying Connection: close. The next request
    # on that slot either sees the close while idle or sends into the dead connection and gets nothing back;
    # either way it goes out again on a new connection and succeeds.
    with fake_server(lambda n: "close_after") as server:
        outcome = load(server.url, 6, concurrency=1)
    assert [r.ok for r in outcome.results] == [True] * 6
    assert server.connections == 6 and server.requests == 6


def test_request_larger_than_the_socket_buffer_is_sent_whole():
    prompt = "x" * (8 << 20)  # 8 MiB: one send() cannot take it on a non-blocking socket
    with fake_server(tokens=3) as server:
        outcome = load(server.url, 2, concurrency=2, timeout=20, total_timeout=30, prompt=prompt)
    assert [r.ok for r in outcome.results] == [True, True]
    assert server.requests == 2


def test_finite_request_rate_spreads_the_arrivals():
    # 10 Poisson arrivals at 20 req/s, rescaled so that the last one falls at 10 / 20 = 0.5 s after the start.
    with fake_server(tokens=2) as server:
        outcome = load(server.url, 10, concurrency=10, rate=20.0)
    assert all(r.ok for r in outcome.results)
    assert outcome.duration_s >= 0.5


def test_next_address_is_tried_when_the_first_refuses(monkeypatch):
    with fake_server() as server:
        refused = ("127.0.0.1", free_port())
        good = ("127.0.0.1", server.port)
        addresses = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", a) for a in (refused, good)]
        monkeypatch.setattr(vllm_bench_engine, "resolve", lambda target, deadline: addresses)
        outcome = load(server.url, 3, concurrency=1)
    assert [r.ok for r in outcome.results] == [True] * 3
    assert server.connections == 1


def test_unresolvable_host_fails_every_request_with_the_reason():
    outcome = load("http://no-such-host.invalid:8000", 3, concurrency=2)
    counts, samples = failure_summary(outcome.results)
    assert counts == {"connection_error": 3}
    assert "cannot resolve no-such-host.invalid" in samples[0]["detail"]


def test_tls_stream_with_and_without_certificate_checks(tmp_path):
    with fake_server(tokens=5, tls=self_signed_context(tmp_path)) as server:
        unchecked = load(server.url, 4, concurrency=2, validate_certs=False)
        checked = load(server.url, 2, concurrency=1, validate_certs=True)
    assert all(r.ok and r.output_tokens == 5 and len(r.itl) == 4 for r in unchecked.results)
    counts, samples = failure_summary(checked.results)
    assert counts == {"tls_error": 2}
    assert "CERTIFICATE_VERIFY_FAILED" in samples[0]["detail"]


def test_tls_handshake_that_never_completes_is_bounded_by_timeout():
    # A listening socket that nobody accepts from: TCP connects (the kernel's backlog), TLS never answers.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        started = time.perf_counter()
        outcome = load(f"https://127.0.0.1:{listener.getsockname()[1]}", 2, concurrency=2, timeout=0.5)
        elapsed = time.perf_counter() - started
    counts, samples = failure_summary(outcome.results)
    assert counts == {"timeout": 2}
    assert "connect did not complete within timeout=0.5s" in samples[0]["detail"]
    assert elapsed < 2.0


# --- the whole module entry point, as a subprocess ---------------------------------------------

RUNNER = (
    "import runpy, sys, ansible.module_utils;"
    f"ansible.module_utils.__path__.append({str(REPO / 'module_utils')!r});"
    f"runpy.run_path({str(REPO / 'library' / 'vllm_benchmark.py')!r}, run_name='__main__')"
)


def run_module(tmp_path: Path, **args: object) -> tuple[int, dict]:
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = {k: v for k, v in os.environ.items() if k != "VLLM_API_KEY"}
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(args_file)], capture_output=True, text=True, timeout=20, env=env
    )
    return proc.returncode, json.loads(proc.stdout)


def test_module_entry_point_runs_benchmark_and_writes_result(tmp_path):
    result_path = tmp_path / "out" / "result.json"
    with fake_server(tokens=6) as server:
        rc, result = run_module(
            tmp_path,
            url=server.url,
            api_key="s3cret",
            num_prompts=8,
            max_concurrency=4,
            input_len=5,
            output_len=6,
            warmup_requests=1,
            result_path=str(result_path),
            thresholds={"failed": "==0", "completed": ">=8"},
        )
    assert rc == 0, result
    assert result["changed"] is True
    assert result["model"] == "fake-model" and result["server_version"] == "0.0-fake"
    assert result["prompt_source"] == "tokenizer"
    assert result["metrics"]["completed"] == 8 and result["metrics"]["total_output_tokens"] == 48
    assert result["summary_lines"][0] == "Throughput run: 8 requests, 4 at a time, 5 in / 6 out tokens (random)"
    assert result["summary_lines"][1].startswith("Throughput: ") and result["summary_lines"][1].endswith(" requests/s")
    assert result["summary_lines"][2].endswith(" tokens/s")
    assert saved_rounds_of(result_path) == 1
    assert result["threshold_failures"] == []
    saved = json.loads(result_path.read_text())
    assert saved["parameters"]["num_prompts"] == 8 and "api_key" not in saved["parameters"]
    assert saved["module_version"] and saved["host"] and saved["server_version"] == "0.0-fake"
    assert "s3cret" not in result_path.read_text()


def saved_rounds_of(path) -> int:
    saved = json.loads(path.read_text())
    assert saved["rounds_format"] == 2 and saved["workload"]["requests"] == 8
    return len(saved["rounds"])


def test_module_fails_listing_every_unmet_threshold_and_regression(tmp_path):
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"metrics": {"request_throughput": 1e6, "median_ttft_ms": 0.001}}))
    with fake_server(lambda n: "http500" if n == 0 else "ok") as server:
        rc, result = run_module(
            tmp_path,
            url=server.url,
            model="m",
            num_prompts=4,
            max_concurrency=2,
            dataset="sonnet",
            input_len=20,
            output_len=4,
            thresholds={"failed": "==0", "request_throughput": ">=1000000"},
            baseline=str(baseline),
            max_regression_pct=5,
        )
    assert rc == 1 and result["failed"]
    assert len(result["threshold_failures"]) == 2
    assert "failed: measured 1.00, required ==0" in result["msg"]
    assert "request_throughput: measured" in result["msg"] and "regressed" in result["msg"]
    assert result["baseline_comparison"]["request_throughput"]["regressed"] is True
    assert result["failures"] == {"http_500": 1} and result["prompt_source"] == "sonnet"


def test_module_fails_clearly_when_server_is_down(tmp_path):
    rc, result = run_module(tmp_path, url=f"http://127.0.0.1:{free_port()}", model="m", timeout=1)
    assert rc == 1
    assert "cannot use the vLLM server" in result["msg"] and "Connection refused" in result["msg"]


def test_module_rejects_bad_thresholds_before_sending_anything(tmp_path):
    rc, result = run_module(
        tmp_path, url=f"http://127.0.0.1:{free_port()}", thresholds={"p99_ttft": "<=5", "failed": "0"}
    )
    assert rc == 1
    assert "unknown metric 'p99_ttft'" in result["msg"] and "thresholds.failed" in result["msg"]


def test_module_check_mode_sends_nothing(tmp_path):
    with fake_server() as server:
        rc, result = run_module(tmp_path, url=server.url, num_prompts=3, _ansible_check_mode=True)
    assert rc == 0 and result["changed"] is False and result["plan"]["requests"] == 3
    assert server.paths == []
