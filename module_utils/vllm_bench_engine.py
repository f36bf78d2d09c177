# Copyright: contributors to vllm-fleet
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Load generator of the benchmark: one thread, non-blocking sockets and the OS poller, raw HTTP/1.1.

Standard library only: this file runs on target hosts.

The client must never be what limits the numbers, and on a small host it
shares the CPU with the server, so the hot path is as short as it can be in
Python: one keep-alive connection per concurrency slot, one `epoll` (Linux;
`poll` elsewhere) for all of them, and per readable socket one `recv`, one
`time.perf_counter()` and, for the usual read of whole token-event chunks,
a structural check instead of the HTTP and SSE parsers. There is no event
loop library in between: measured on the project's two-core dev host against
the real CPU vLLM (200 requests x 128 streamed tokens, 32 in flight), the
same parsing code on `asyncio.Protocol`s used 1.15-1.35 CPU seconds per run
and on this loop 0.97-1.01 (docs/benchmarks.md). Request bodies are
serialised before the clock starts; host names are resolved once, before it.

As in `vllm bench serve` (vLLM 0.32.0 `vllm/benchmarks/serve.py`, read for
its definitions): a request's clock starts before its connection is opened
(so a new connection's set-up counts in its TTFT), `max_concurrency` bounds
requests in flight, arrivals at a finite `request_rate` follow a Poisson
process whose cumulative delays are rescaled so the last one falls at
num_prompts / request_rate, and warm-up requests are not measured.

Every request is bounded as a whole (`timeout`, connect and TLS included) and
the run by `total_timeout`; a response that cannot be right (not HTTP, bad
JSON, usage counts that cannot be, ...) is a failed request with a reason,
and anything unforeseen while reading one fails that request (`client_error`)
rather than the run. The blocking calls before the load (`JsonClient`) use
the modules' one HTTP client, vllm_http, under the same total_timeout.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import random
import select
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ansible.module_utils.vllm_bench_http import (
    MAX_ERROR_BODY_BYTES,
    ProtocolError,
    ResponseParser,
    host_header,
    post_request_bytes,
    split_url,
)
from ansible.module_utils.vllm_bench_sse import StreamError, StreamTimer, plain_token_chunks
from ansible.module_utils.vllm_http import (
    HttpClient,
    HttpError,
    Response,
    check_header_value,
    redact,
    resolve_address,
    tls_context,
)

MAX_CONNECTIONS = 1024
READ_SIZE = 16384
SAMPLES_PER_REASON = 3


@dataclass(slots=True)
class RequestResult:
    """Outcome of one request; times in seconds."""

    ok: bool
    ttft: float = 0.0
    latency: float = 0.0
    itl: list[float] = field(default_factory=list)
    output_tokens: int | None = None
    prompt_tokens: int | None = None
    reason: str = ""
    detail: str = ""


@dataclass(slots=True)
class Target:
    """Where and how to send requests."""

    scheme: str
    host: str
    port: int
    base_path: str
    headers: dict[str, str]
    ssl_context: ssl.SSLContext | None = None
    secrets: tuple[str, ...] = ()  # taken out of a server's error body before it is quoted (and cut)

    @property
    def host_header(self) -> str:
        return host_header(self.host, self.port, self.scheme)


@dataclass(slots=True)
class LoadOutcome:
    """What a load run returns: per-request results in prompt order and the measured wall time."""

    results: list[RequestResult]
    duration_s: float
    client_cpu_s: float
    total_timeout_hit: bool
    warmup_failed: int = 0


def make_target(url: str, api_key: str | None = None, validate_certs: bool = True) -> Target:
    """Return the Target of a server URL; raise ValueError on a URL that is not http(s) or a key HTTP cannot carry.

    Credentials in the URL (user:password@) are not sent: vLLM takes api_key.
    """
    scheme, host, port, base_path = split_url(url)
    check_header_value("request target", base_path)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    for name, value in headers.items():
        check_header_value(name, value)  # a key with a line break would inject headers into every request
    context = tls_context(validate_certs) if scheme == "https" else None
    return Target(scheme, host, port, base_path, headers, context, (api_key,) if api_key else ())


def request_bytes(target: Target, path: str, payload: dict[str, Any]) -> bytes:
    """Return the serialised POST request of payload to path under the target's base path."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return post_request_bytes(target.base_path + path, target.host_header, body, target.headers)


def arrival_offsets(count: int, request_rate: float, rng: random.Random) -> list[float]:
    """Return each request's send time in seconds from the start: Poisson arrivals, or all 0 for an infinite rate."""
    if math.isinf(request_rate) or count == 0:
        return [0.0] * count
    offsets = []
    total = 0.0
    for _ in range(count):
        total += rng.expovariate(request_rate)
        offsets.append(total)
    # Rescale so the run spans count / rate, as vLLM's get_request does to damp sampling noise.
    scale = (count / request_rate) / offsets[-1]
    return [offset * scale for offset in offsets]


_IN = select.POLLIN
_OUT = select.POLLOUT
_CONNECTING = 0  # TCP connect in progress: waiting for writable
_HANDSHAKE = 1  # TLS handshake in progress
_SENDING = 2  # request bytes not all written yet
_RECEIVING = 3  # request sent, response being read
_IDLE = 4  # open keep-alive connection between requests
_CONNECT_PENDING = (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN, errno.EALREADY)


class _Poller:
    """`select.epoll` where the OS has it (Linux), else `select.poll`; timeouts in seconds."""

    def __init__(self) -> None:
        epoll = getattr(select, "epoll", None)
        self._poller = epoll() if epoll is not None else select.poll()
        self._scale = 1.0 if epoll is not None else 1000.0
        self.register = self._poller.register
        self.modify = self._poller.modify
        self.unregister = self._poller.unregister

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        return self._poller.poll(timeout * self._scale)

    def close(self) -> None:
        close = getattr(self._poller, "close", None)
        if close is not None:
            close()


class _Slot:
    """A concurrency slot: the keep-alive connection it reuses and the request it carries (index, or None)."""

    __slots__ = (
        "addr",
        "data",
        "deadline",
        "error_body",
        "fd",
        "index",
        "mask",
        "out",
        "parser",
        "received",
        "reused",
        "sock",
        "state",
        "streaming",
        "timer",
    )

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.fd = -1
        self.mask = 0
        self.state = _IDLE
        self.addr = 0  # index into the resolved addresses, for the next connect
        self.index: int | None = None
        self.data = b""
        self.out: memoryview | None = None
        self.deadline = math.inf
        self.reused = False
        self.parser: ResponseParser | None = None
        self.timer: StreamTimer | None = None
        self.error_body = bytearray()
        self.received = 0
        self.streaming = False  # True while the fast path may take the next read (see _Engine.run_phase)


class _Engine:
    """The slots, their sockets and the poller; runs phases (warm-up, measured) of requests through them."""

    def __init__(self, target: Target, addresses: list[tuple[Any, ...]], concurrency: int, timeout: float) -> None:
        self.target = target
        self.tls = target.ssl_context is not None
        self.addresses = addresses
        self.timeout = timeout
        self.slots = [_Slot() for _ in range(concurrency)]
        self.poller = _Poller()
        self.by_fd: dict[int, _Slot] = {}
        self.results: list[RequestResult | None] = []
        self.idle: list[_Slot] = []
        self.active = 0
        self.next_expiry = math.inf

    # --- the loop -------------------------------------------------------------------------------

    def run_phase(
        self,
        slots: int,
        requests: list[bytes],
        offsets: list[float],
        results: list[RequestResult | None],
        deadline: float,
    ) -> bool:
        """Send every request at its offset from now through the first `slots` slots; False when deadline ended it.

        results[i] becomes request i's RequestResult; None while it is in flight.
        """
        self.results = results
        self.idle = list(reversed(self.slots[:slots]))
        self.active = 0
        self.next_expiry = math.inf
        queue: deque[int] = deque()
        count = len(requests)
        released = 0
        start = time.perf_counter()
        by_fd = self.by_fd
        poll = self.poller.poll
        perf_counter = time.perf_counter
        while True:
            now = perf_counter()
            while released < count and start + offsets[released] <= now:
                queue.append(released)
                released += 1
            while queue and self.idle:
                index = queue.popleft()
                self._begin(self.idle.pop(), index, requests[index], now)
            if released == count and not queue and not self.active:
                return True
            if now >= deadline:
                return False
            wait = min(deadline, self.next_expiry)
            if released < count:
                wait = min(wait, start + offsets[released])
            for fd, mask in poll(max(wait - now, 0.0)):
                slot = by_fd.get(fd)
                if slot is None:
                    continue
                if slot.streaming:
                    # Fast path, nearly every read of a vLLM stream: whole chunks of plain token events, while
                    # the response is a 200 being streamed, the parser sits at a chunk boundary and no partial
                    # event is pending. These bytes need neither the HTTP parser nor the SSE parser.
                    try:
                        data = slot.sock.recv(READ_SIZE)  # type: ignore[union-attr]
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as exc:
                        self._lost(slot, exc)
                        continue
                    now = perf_counter()
                    tokens = plain_token_chunks(data)
                    if tokens == 1:
                        slot.timer.token(now)  # type: ignore[union-attr]
                    elif tokens:
                        slot.timer.tokens(now, tokens)  # type: ignore[union-attr]
                    else:
                        self._data(slot, data, now)
                else:
                    self._event(slot, mask)
            if self.next_expiry <= perf_counter():
                self._expire()

    def close(self) -> None:
        """Close every connection and the poller."""
        for slot in self.slots:
            self._close(slot)
        self.poller.close()

    # --- requests -------------------------------------------------------------------------------

    def _begin(self, slot: _Slot, index: int, data: bytes, now: float) -> None:
        """Start request index on slot: its clock starts now, before any connect, as in vLLM's client."""
        self.results[index] = None  # in flight, for the total_timeout accounting
        self.active += 1
        slot.index = index
        slot.data = data
        slot.reused = slot.sock is not None  # cleared by the one retry a stale connection gets
        self._attempt(slot, now)

    def _attempt(self, slot: _Slot, now: float) -> None:
        slot.deadline = now + self.timeout
        self.next_expiry = min(self.next_expiry, slot.deadline)
        slot.parser = ResponseParser()
        slot.timer = StreamTimer(now)
        slot.error_body = bytearray()
        slot.received = 0
        slot.streaming = False
        slot.out = memoryview(slot.data)
        if slot.sock is None:
            self._connect(slot)
        else:
            slot.state = _SENDING
            self._send(slot)

    def _finish(self, slot: _Slot, result: RequestResult) -> None:
        self.results[slot.index] = result  # type: ignore[index]
        slot.index = None
        slot.parser = None
        slot.timer = None
        slot.streaming = False
        slot.out = None
        slot.deadline = math.inf
        if slot.sock is not None:
            slot.state = _IDLE
            self._watch(slot, _IN)  # an idle connection the server closes is noticed and dropped
        self.active -= 1
        self.idle.append(slot)

    def _fail(self, slot: _Slot, reason: str, detail: str) -> None:
        """End the current request as failed and drop the connection (its state is unknown).

        A reused keep-alive connection that the server had already closed (no byte of the response came
        back) is replaced once, with a fresh clock; that is not a failure of the request.
        """
        self._close(slot)
        if slot.reused and reason == "broken_stream" and slot.received == 0:
            slot.reused = False
            self._attempt(slot, time.perf_counter())
            return
        self._finish(slot, RequestResult(False, reason=reason, detail=detail))

    def _settle(self, slot: _Slot) -> None:
        """The response is complete: record the request's result."""
        parser = slot.parser
        timer = slot.timer
        if not parser.keep_alive or slot.out is not None:  # type: ignore[union-attr]
            self._close(slot)  # the server said so, or it answered before the whole request was sent
        if parser.status != 200:  # type: ignore[union-attr]
            text = redact(bytes(slot.error_body).decode("utf-8", "replace"), list(self.target.secrets)).strip()
            detail = f"HTTP {parser.status} {parser.reason}: {text[:300]}"  # type: ignore[union-attr]
            self._finish(slot, RequestResult(False, reason=f"http_{parser.status}", detail=detail))  # type: ignore[union-attr]
        elif not timer.chunks:  # type: ignore[union-attr]
            detail = "response ended without any token event"
            self._finish(slot, RequestResult(False, reason="no_tokens", detail=detail))
        elif (problem := timer.problem()) is not None:  # type: ignore[union-attr]
            self._finish(slot, RequestResult(False, reason="bad_usage", detail=problem))
        else:
            self._finish(
                slot,
                RequestResult(
                    True,
                    ttft=timer.ttft,  # type: ignore[union-attr]
                    latency=timer.latency,  # type: ignore[union-attr]
                    itl=timer.itl,  # type: ignore[union-attr]
                    output_tokens=timer.output_tokens if timer.output_tokens is not None else timer.chunks,  # type: ignore[union-attr]
                    prompt_tokens=timer.prompt_tokens,  # type: ignore[union-attr]
                ),
            )

    def _expire(self) -> None:
        """Fail every request past its timeout; set next_expiry to the earliest deadline left."""
        now = time.perf_counter()
        for slot in self.slots:
            if slot.index is not None and slot.deadline <= now:
                if slot.state in (_CONNECTING, _HANDSHAKE):
                    self._fail(slot, "timeout", f"connect did not complete within timeout={self.timeout:g}s")
                else:
                    self._fail(slot, "timeout", f"no complete response within timeout={self.timeout:g}s")
        self.next_expiry = min((s.deadline for s in self.slots if s.index is not None), default=math.inf)

    # --- sockets --------------------------------------------------------------------------------

    def _watch(self, slot: _Slot, mask: int) -> None:
        if slot.mask != mask:
            self.poller.modify(slot.fd, mask)
            slot.mask = mask

    def _close(self, slot: _Slot) -> None:
        slot.streaming = False
        sock = slot.sock
        if sock is None:
            return
        self.by_fd.pop(slot.fd, None)
        with contextlib.suppress(OSError, KeyError, ValueError):
            self.poller.unregister(slot.fd)
        sock.close()
        slot.sock = None
        slot.fd = -1
        slot.mask = 0

    def _connect(self, slot: _Slot) -> None:
        """Open a non-blocking connection to the slot's current address; the result comes as writability."""
        family, kind, proto, _, address = self.addresses[slot.addr]
        try:
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            self._finish(slot, RequestResult(False, reason="connection_error", detail=f"{type(exc).__name__}: {exc}"))
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        slot.sock = sock
        slot.fd = sock.fileno()
        slot.state = _CONNECTING
        self.by_fd[slot.fd] = slot
        self.poller.register(slot.fd, _OUT)
        slot.mask = _OUT
        code = sock.connect_ex(address)
        if code == 0:
            self._connected(slot)
        elif code not in _CONNECT_PENDING:
            self._connect_failed(slot, OSError(code, os.strerror(code)))

    def _connect_failed(self, slot: _Slot, exc: OSError) -> None:
        """Try the host's next address (as asyncio and aiohttp do); after the last one, the request fails."""
        self._close(slot)
        if slot.addr + 1 < len(self.addresses):
            slot.addr += 1
            self._connect(slot)
            return
        slot.addr = 0
        reason, detail = _connect_failure(exc)
        self._finish(slot, RequestResult(False, reason=reason, detail=detail))

    def _connected(self, slot: _Slot) -> None:
        code = slot.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # type: ignore[union-attr]
        if code:
            self._connect_failed(slot, OSError(code, os.strerror(code)))
            return
        try:
            slot.sock.getpeername()  # type: ignore[union-attr]
        except OSError as exc:
            if exc.errno == errno.ENOTCONN:
                return  # not connected yet: a stale event for an fd number reused in this poll batch
            self._connect_failed(slot, exc)
            return
        context = self.target.ssl_context
        if context is None:
            slot.state = _SENDING
            self._send(slot)
            return
        raw = slot.sock
        self.by_fd.pop(slot.fd)
        self.poller.unregister(slot.fd)
        try:
            slot.sock = context.wrap_socket(
                raw,  # type: ignore[arg-type]
                server_hostname=self.target.host,
                do_handshake_on_connect=False,
            )
        except (ssl.SSLError, OSError) as exc:
            raw.close()  # type: ignore[union-attr]
            slot.sock = None
            slot.fd = -1
            slot.mask = 0
            self._finish(slot, RequestResult(False, reason="tls_error", detail=str(exc)))
            return
        slot.fd = slot.sock.fileno()
        self.by_fd[slot.fd] = slot
        self.poller.register(slot.fd, _IN)
        slot.mask = _IN
        slot.state = _HANDSHAKE
        self._handshake(slot)

    def _handshake(self, slot: _Slot) -> None:
        try:
            slot.sock.do_handshake()  # type: ignore[union-attr]
        except ssl.SSLWantReadError:
            self._watch(slot, _IN)
            return
        except ssl.SSLWantWriteError:
            self._watch(slot, _OUT)
            return
        except (ssl.SSLError, ssl.CertificateError) as exc:
            self._close(slot)
            self._finish(slot, RequestResult(False, reason="tls_error", detail=str(exc)))
            return
        except OSError as exc:
            self._lost(slot, exc)
            return
        slot.state = _SENDING
        self._send(slot)

    def _send(self, slot: _Slot) -> None:
        out = slot.out
        try:
            sent = slot.sock.send(out)  # type: ignore[union-attr, arg-type]
        except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            sent = 0
        except OSError as exc:
            self._lost(slot, exc)
            return
        if sent < len(out):  # type: ignore[arg-type]
            slot.out = out[sent:]  # type: ignore[index]
            self._watch(slot, _IN | _OUT)
            return
        slot.out = None
        slot.state = _RECEIVING
        self._watch(slot, _IN)

    def _event(self, slot: _Slot, mask: int) -> None:
        """Handle what the poller reported for a slot not on the fast path."""
        state = slot.state
        if state == _CONNECTING:
            self._connected(slot)
            return
        if state == _HANDSHAKE:
            self._handshake(slot)
            return
        if mask & ~_OUT:  # readable, or an error or hang-up that recv will report
            self._read(slot)
        if slot.state == _SENDING and slot.sock is not None and mask & _OUT:
            self._send(slot)

    def _read(self, slot: _Slot) -> None:
        while slot.sock is not None:
            try:
                data = slot.sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except OSError as exc:
                self._lost(slot, exc)
                return
            self._data(slot, data, time.perf_counter())
            # TLS may hold decrypted bytes the poller cannot see; read them now.
            if not (self.tls and slot.sock is not None and slot.sock.pending()):  # type: ignore[attr-defined]
                return

    def _data(self, slot: _Slot, data: bytes, now: float) -> None:
        """Feed bytes that arrived at now through the HTTP and SSE parsers (b'' is the peer's end of stream)."""
        slot.streaming = False
        if not data:
            self._lost(slot, None)
            return
        parser = slot.parser
        if slot.index is None or parser is None:
            self._close(slot)  # bytes nobody asked for: the connection is out of step
            return
        slot.received += len(data)
        timer = slot.timer
        try:
            body = parser.feed(data)
            if parser.status == 200:
                if body:
                    timer.feed(body, now)  # type: ignore[union-attr]
            elif len(slot.error_body) < MAX_ERROR_BODY_BYTES:
                slot.error_body += body[:MAX_ERROR_BODY_BYTES]
        except ProtocolError as exc:
            self._fail(slot, "bad_http", str(exc))
            return
        except StreamError as exc:
            self._fail(slot, exc.kind, exc.detail)
            return
        except Exception as exc:  # unforeseen input fails this request, never the whole run
            self._fail(slot, "client_error", f"{type(exc).__name__} while reading the response: {str(exc)[:200]}")
            return
        if parser.complete:
            self._settle(slot)
        else:
            slot.streaming = (
                parser.status == 200
                and parser.at_chunk_boundary
                and not timer.pending  # type: ignore[union-attr]
                and not self.tls
            )

    def _lost(self, slot: _Slot, exc: Exception | None) -> None:
        """The connection ended (EOF or an error): settle or fail the request it carried."""
        if slot.index is None or slot.parser is None:
            self._close(slot)
            return
        parser = slot.parser
        parser.close()
        if parser.complete or (parser.status == 200 and slot.timer.done):  # type: ignore[union-attr]
            self._close(slot)
            self._settle(slot)
        elif slot.received == 0:
            self._fail(slot, "broken_stream", f"connection closed before any response byte ({exc or 'EOF'})")
        else:
            self._fail(
                slot, "broken_stream", f"connection closed mid-response after {slot.received} bytes ({exc or 'EOF'})"
            )


def _connect_failure(exc: BaseException) -> tuple[str, str]:
    """Return (reason, detail) of an exception raised while connecting."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection_refused", f"connection refused: {exc}"
    if isinstance(exc, TimeoutError):
        return "timeout", "connect timed out"
    return "connection_error", f"{type(exc).__name__}: {exc}"


def resolve(target: Target, deadline: float) -> list[tuple[Any, ...]]:
    """Return the TCP addresses of the target's host, looked up before deadline (raise HttpError otherwise)."""
    return resolve_address(target.host, target.port, deadline)


def run_load(
    target: Target,
    requests: list[bytes],
    warmup: list[bytes],
    max_concurrency: int | None,
    request_rate: float,
    timeout: float,
    total_timeout: float,
    seed: int = 0,
) -> LoadOutcome:
    """Run warm-up then measured requests, within total_timeout seconds overall; return the outcome."""
    cpu_start = time.process_time()
    deadline = time.perf_counter() + total_timeout
    try:
        addresses = resolve(target, min(deadline, time.perf_counter() + timeout))
    except HttpError as exc:
        failed = RequestResult(False, reason=exc.kind, detail=str(exc))
        return LoadOutcome([failed] * len(requests), 0.0, time.process_time() - cpu_start, False, len(warmup))
    concurrency = min(max_concurrency or len(requests) or 1, len(requests) or 1, MAX_CONNECTIONS)
    engine = _Engine(target, addresses, concurrency, timeout)
    warmup_failed = 0
    unset = RequestResult(False, reason="not_sent", detail="not sent before total_timeout ended the run")
    try:
        if warmup:
            warm_results: list[RequestResult | None] = [unset] * len(warmup)
            warm_slots = min(concurrency, len(warmup))
            if not engine.run_phase(warm_slots, warmup, [0.0] * len(warmup), warm_results, deadline):
                results = [RequestResult(False, reason="not_sent", detail="total_timeout ended the run during warm-up")]
                return LoadOutcome(results * len(requests), 0.0, time.process_time() - cpu_start, True, len(warmup))
            warmup_failed = sum(1 for r in warm_results if r is None or not r.ok)
        results: list[RequestResult | None] = [unset] * len(requests)
        offsets = arrival_offsets(len(requests), request_rate, random.Random(seed))
        start = time.perf_counter()
        finished = engine.run_phase(concurrency, requests, offsets, results, deadline)
        duration = time.perf_counter() - start
    finally:
        engine.close()
    in_flight = RequestResult(
        False, reason="total_timeout", detail=f"still running when total_timeout={total_timeout:g}s ended the run"
    )
    final = [r if r is not None else in_flight for r in results]
    return LoadOutcome(final, duration, time.process_time() - cpu_start, not finished, warmup_failed)


def failure_summary(results: list[RequestResult]) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Return failure counts by reason and up to SAMPLES_PER_REASON samples of each."""
    counts: dict[str, int] = {}
    samples: list[dict[str, Any]] = []
    for index, result in enumerate(results):
        if result.ok:
            continue
        counts[result.reason] = counts.get(result.reason, 0) + 1
        if counts[result.reason] <= SAMPLES_PER_REASON:
            samples.append({"request": index, "reason": result.reason, "detail": result.detail})
    return counts, samples


def token_limit(payload: dict[str, Any]) -> int | None:
    """Return the most output tokens a request's payload allows (max_tokens x n), None when it sets no limit."""
    limit = payload.get("max_tokens", payload.get("max_completion_tokens"))
    choices = payload.get("n", 1)
    if type(limit) is not int or type(choices) is not int or limit < 0 or choices < 1:
        return None
    return limit * choices


def reject_impossible_counts(results: list[RequestResult], limits: list[int | None]) -> None:
    """Turn into failures (bad_usage) the successes whose usage reports more output tokens than were allowed."""
    for result, limit in zip(results, limits, strict=True):
        if result.ok and limit is not None and result.output_tokens is not None and result.output_tokens > limit:
            result.ok = False
            result.reason = "bad_usage"
            result.detail = (
                f"usage.completion_tokens is {result.output_tokens}, more than the {limit} the request allows"
            )


class JsonClient:
    """Blocking JSON calls to the server (version, models, tokenizer) over one keep-alive connection.

    Each call is bounded as a whole by timeout and all of them by deadline (perf_counter time: the run's
    total_timeout), through vllm_http's client; redirects are answers, never followed.
    """

    def __init__(self, target: Target, timeout: float, deadline: float | None = None) -> None:
        self._client = HttpClient(
            target.scheme,
            target.host,
            target.port,
            timeout,
            base_path=target.base_path,
            ssl_context=target.ssl_context,
            headers=target.headers,
            deadline=deadline,
            deadline_name="total_timeout",
        )

    def call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> tuple[int, Any]:
        """Return (status, decoded JSON, or the text when the body is not JSON) of one call.

        Raise HttpError (an OSError) when no usable answer came, its message naming the call and the problem.
        """
        response = self.request(method, path, payload)
        try:
            return response.status, response.json()
        except ValueError:
            return response.status, response.text()

    def request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Response:
        """Return the answer of one call (any status); raise HttpError when none came."""
        body = json.dumps(payload).encode() if payload is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        return self._client.request(method, path, body, headers)

    def close(self) -> None:
        self._client.close()
