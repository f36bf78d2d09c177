"""vllm_http's client against hostile peers on real local sockets: deadlines, malformed answers, redirects, TLS.

Every case here would hang, raise an exception of another type, or send something it should not, with a
client that bounds each read instead of the exchange, trusts the peer's framing, or follows redirects.
"""

from __future__ import annotations

import socket
import time

import pytest
from ansible.module_utils import vllm_http
from ansible.module_utils.vllm_http import (
    HttpClient,
    HttpError,
    json_value,
    public_url,
    redact,
    resolve_address,
    served_models,
    server_version,
    url_secrets,
)
from hostile_peers import (
    Peer,
    answer,
    deeply_nested,
    drip,
    endless_drip,
    flood,
    raw,
    response_bytes,
)
from test_vllm_bench_sockets import self_signed_context

OK_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"


def client(url: str, timeout: float = 1.0, **kwargs: object) -> HttpClient:
    return HttpClient.for_url(url, timeout, **kwargs)


def elapsed_of(call) -> tuple[float, BaseException | None]:
    started = time.perf_counter()
    try:
        call()
    except Exception as exc:  # the test inspects it
        return time.perf_counter() - started, exc
    return time.perf_counter() - started, None


# --- a deadline for the whole exchange ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "route"),
    [
        ("head dripped forever", endless_drip(b"HTTP/1.1 200 OK\r\nx-slow: ")),
        ("status line dripped", drip(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}" * 10)),
        ("body dripped under a Content-Length", endless_drip(OK_HEAD + b"content-length: 100000\r\n\r\n")),
        ("chunked body dripped", endless_drip(OK_HEAD + b"transfer-encoding: chunked\r\n\r\n1000\r\n")),
        ("chunk-size lines dripped", endless_drip(OK_HEAD + b"transfer-encoding: chunked\r\n\r\n", b"1\r\na\r\n")),
        ("read-until-close body dripped", endless_drip(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n")),
        ("silent after accepting", raw(b"")),
    ],
)
def test_a_slow_drip_peer_is_cut_off_at_the_deadline(name, route):
    with Peer({"*": route}) as peer:
        elapsed, exc = elapsed_of(lambda: client(peer.url, timeout=1.0).request("GET", "/health"))
    assert isinstance(exc, HttpError) and exc.kind == "timeout", (name, exc)
    assert 0.9 < elapsed < 2.5, (name, elapsed)
    assert f"GET {peer.url}/health: no complete answer within" in str(exc) and "timeout=1s" in str(exc)


def test_the_overall_deadline_comes_first_when_it_is_earlier():
    with Peer({"*": endless_drip(b"HTTP/1.1 200 OK\r\n")}) as peer:
        http = client(peer.url, timeout=30, deadline=time.perf_counter() + 0.5, deadline_name="total_timeout")
        elapsed, exc = elapsed_of(lambda: http.request("GET", "/version"))
    assert isinstance(exc, HttpError) and exc.kind == "timeout"
    assert elapsed < 1.5 and "(total_timeout;" in str(exc)


def test_a_tls_handshake_that_never_completes_is_cut_off():
    # A listener that never accepts: TCP connects through the backlog, and TLS never answers.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"https://127.0.0.1:{listener.getsockname()[1]}"
        elapsed, exc = elapsed_of(lambda: client(url, timeout=0.7).request("GET", "/health"))
    assert isinstance(exc, HttpError) and exc.kind == "timeout" and elapsed < 2.0


def test_name_resolution_is_bounded_by_the_deadline(monkeypatch):
    # Stand-in for a DNS server that does not answer (none can be made to hang here): getaddrinfo sleeps.
    real = socket.getaddrinfo

    def slow_getaddrinfo(host, *args, **kwargs):
        if kwargs.get("flags") == socket.AI_NUMERICHOST:
            return real(host, *args, **kwargs)
        time.sleep(3)
        return real("127.0.0.1", *args)

    monkeypatch.setattr(vllm_http.socket, "getaddrinfo", slow_getaddrinfo)
    elapsed, exc = elapsed_of(lambda: resolve_address("slow.example", 80, time.perf_counter() + 0.3))
    assert isinstance(exc, HttpError) and exc.kind == "timeout" and elapsed < 1.0


# --- malformed answers: typed errors, fast, bounded -----------------------------------------------


@pytest.mark.parametrize(
    ("name", "route", "kind", "says"),
    [
        ("an SSH server", raw(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"), "bad_http", "not an HTTP response"),
        ("an SMTP banner", raw(b"220 mail.example ESMTP\r\n"), "bad_http", "not an HTTP response"),
        ("binary noise, then close", raw(b"\x16\x03\x01\x00\xa5\x01", then_close=True), "bad_http", "not an HTTP"),
        ("a bad status code", raw(b"HTTP/1.1 2000 OK\r\n\r\n"), "bad_http", "bad status code"),
        ("a negative Content-Length", raw(OK_HEAD + b"content-length: -5\r\n\r\nabc"), "bad_http", "Content-Length"),
        ("a Content-Length list", raw(OK_HEAD + b"content-length: 2, 2\r\n\r\n{}"), "bad_http", "Content-Length"),
        ("a 0x chunk size", raw(OK_HEAD + b"transfer-encoding: chunked\r\n\r\n0x2\r\n{}\r\n"), "bad_http", "chunk"),
        ("a signed chunk size", raw(OK_HEAD + b"transfer-encoding: chunked\r\n\r\n+2\r\n{}\r\n"), "bad_http", "chunk"),
        (
            "a head past 64 KiB",
            flood(b"HTTP/1.1 200 OK\r\n", b"x-pad: " + b"a" * 1000 + b"\r\n", 1 << 20),
            "bad_http",
            "64 KiB",
        ),
        (
            "endless trailers",
            flood(OK_HEAD + b"transfer-encoding: chunked\r\n\r\n0\r\n", b"x-t: y\r\n", 1 << 20),
            "bad_http",
            "trailers",
        ),
        (
            "a body past the cap",
            flood(OK_HEAD + b"content-length: 50000000\r\n\r\n", b"a" * 65536, 50_000_000),
            "too_large",
            "larger than",
        ),
        (
            "a chunked body past the cap",
            flood(OK_HEAD + b"transfer-encoding: chunked\r\n\r\n", b"10000\r\n" + b"a" * 65536 + b"\r\n", 50_000_000),
            "too_large",
            "larger than",
        ),
        (
            "closed mid-answer",
            raw(OK_HEAD + b"content-length: 10\r\n\r\n{}", then_close=True),
            "connection_error",
            "mid-answer",
        ),
        ("closed without answering", raw(b"", then_close=True), "connection_error", "without answering"),
    ],
)
def test_a_malformed_answer_is_a_typed_error_naming_the_request(name, route, kind, says):
    with Peer({"*": route}) as peer:
        elapsed, exc = elapsed_of(lambda: client(peer.url, timeout=5, max_body=1 << 20).request("GET", "/v1/models"))
    assert isinstance(exc, HttpError), (name, exc)
    assert exc.kind == kind and says in str(exc), (name, str(exc))
    assert str(exc).startswith(f"GET {peer.url}/v1/models: "), name
    assert elapsed < 3.0, (name, elapsed)  # found out from the bytes, not by waiting for the deadline


def test_interim_answers_are_skipped_and_keep_alive_is_reused():
    interim = b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n"
    body = b'{"version":"0.32.0"}'

    def route(peer, conn, request):
        conn.sendall(interim + response_bytes(200, body))
        return True

    with Peer({"*": route}) as peer:
        http = client(peer.url)
        first = http.request("GET", "/version")
        second = http.request("GET", "/version")
    assert first.status == second.status == 200 and first.json() == {"version": "0.32.0"}
    assert peer.connections == 1


def test_a_connection_the_server_dropped_between_requests_is_replaced_once():
    def route(peer, conn, request):
        conn.sendall(response_bytes(200, b"{}"))
        return False  # closes without saying Connection: close

    with Peer({"*": route}) as peer:
        http = client(peer.url)
        statuses = [http.request("GET", "/health").status for _ in range(3)]
    assert statuses == [200, 200, 200] and peer.connections == 3


# --- redirects are answers, never followed --------------------------------------------------------


def test_a_redirect_to_another_origin_is_returned_not_followed():
    with Peer({"*": answer(200, {"data": [{"id": "stolen"}]})}) as other:
        to_other = answer(302, b"", headers=f"location: {other.url}/v1/models\r\n")
        with Peer({"*": to_other}) as peer:
            response = client(peer.url, headers={"Authorization": "Bearer sekret-key"}).request("GET", "/v1/models")
    assert response.status == 302 and response.location == f"{other.url}/v1/models"
    assert "not followed" in response.status_text()
    assert other.requests == []  # the key went nowhere else
    assert peer.requests[0].headers["authorization"] == "Bearer sekret-key"


# --- TLS as the engine has it ---------------------------------------------------------------------


def test_tls_with_and_without_certificate_checks(tmp_path):
    import ssl
    import threading

    context = self_signed_context(tmp_path)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"https://127.0.0.1:{listener.getsockname()[1]}"

        def serve_once() -> None:
            conn, _ = listener.accept()
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(65536)
                    tls.sendall(response_bytes(200, b'{"ok":true}'))
            except (ssl.SSLError, OSError):
                pass

        for validate, expect in ((False, 200), (True, "tls_error")):
            thread = threading.Thread(target=serve_once, daemon=True)
            thread.start()
            try:
                result = client(url, timeout=3, validate_certs=validate).request("GET", "/health").status
            except HttpError as exc:
                result = exc.kind
            thread.join(3)
            assert result == expect


# --- what the modules read, and secrets on the way out --------------------------------------------


@pytest.mark.parametrize(
    "data",
    [deeply_nested(), b"[" * 5000, b'{"a": ' * 3000 + b"1" + b"}" * 3000, b"\xff\xfe", b"not json", b"1" * 5000],
)
def test_json_value_raises_only_value_error(data):
    with pytest.raises(ValueError):
        json_value(data)


@pytest.mark.parametrize(
    "data",
    [
        [],
        "models",
        {"data": 5},
        {"data": "abc"},
        {"data": {"id": "m"}},
        {"data": [5]},
        {"data": [{"id": 5}]},
        {"data": [{"id": ""}]},
        {"data": [{"id": "m", "root": ["x"]}]},
        {"data": [{"id": "m", "max_model_len": -1}]},
        {"data": [{"id": "m", "max_model_len": True}]},
        {"data": [{"id": "m", "max_model_len": "1024"}]},
    ],
)
def test_a_model_list_of_another_shape_is_refused(data):
    with pytest.raises(ValueError):
        served_models(data)


def test_a_model_list_of_the_right_shape():
    data = {"data": [{"id": "tiny", "root": "/m", "max_model_len": 1024, "object": "model"}, {"id": "b"}]}
    assert served_models(data) == [
        {"id": "tiny", "root": "/m", "max_model_len": 1024},
        {"id": "b", "root": None, "max_model_len": None},
    ]
    assert served_models({"data": []}) == []


@pytest.mark.parametrize("data", [None, [], {"version": 32}, {"version": ["0.32"]}, {"version": ""}, {"v": "1"}])
def test_a_version_of_another_shape_is_refused(data):
    with pytest.raises(ValueError):
        server_version(data)


def test_url_passwords_and_known_secrets_are_taken_out():
    url = "http://admin:hunter22@vllm.example:8000"
    assert url_secrets(url) == ["hunter22"] and url_secrets("http://vllm.example") == []
    assert public_url(url) == "http://admin:<redacted>@vllm.example:8000"
    assert public_url("http://vllm.example:8000") == "http://vllm.example:8000"
    value = {"msg": "key sekret-key in Bearer abcdefghijk", "n": [1, "x sekret-key"], "k": None, "t": ("sekret-key",)}
    assert redact(value, ["sekret-key", "ab"]) == {
        "msg": "key <redacted> in Bearer <redacted>",
        "n": [1, "x <redacted>"],
        "k": None,
        "t": ["<redacted>"],
    }


@pytest.mark.parametrize("key", ["a\r\nX-Injected: 1", "a\nb", "a\x00b", "ключ"])
def test_a_header_value_that_would_break_the_request_is_refused(key):
    with pytest.raises(ValueError) as refused:
        HttpClient("http", "127.0.0.1", 1, 1.0, headers={"Authorization": f"Bearer {key}"})
    assert key not in str(refused.value)
