# Copyright: contributors to vllm-fleet
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Load generator of the benchmark: asyncio, raw HTTP/1.1 keep-alive connections, one per concurrency slot.

Standard library only: this file runs on target hosts.

Why raw protocols rather than an HTTP library: the client must never be what
limits the numbers, and on a small host it shares the CPU with the server.
Each connection is an `asyncio.Protocol`; bytes are parsed in
`data_received` and timestamped there with `time.perf_counter()`, so there is
no coroutine switch per streamed token. Request bodies are serialised before
the clock starts.

As in `vllm bench serve` (vLLM 0.32.0 `vllm/benchmarks/serve.py`, read for
its definitions): a request's clock starts before its connection is opened
(so a new connection's set-up counts in its TTFT), `max_concurrency` bounds
requests in flight, arrivals at a finite `request_rate` follow a Poisson
process whose cumulative delays are rescaled so the last one falls at
num_prompts / request_rate, and warm-up requests are not measured.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import random
import ssl
import time
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
    """Return the Target of a server URL; raise ValueError on a URL that is not http(s)."""
    scheme, host, port, base_path = split_url(url)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    context = None
    if scheme == "https":
        context = ssl.create_default_context()
        if not validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    return Target(scheme, host, port, base_path, headers, context)


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


class _Connection(asyncio.Protocol):
    """One keep-alive connection that carries one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.usable = True
        self._waiter: asyncio.Future | None = None
        self._parser: ResponseParser | None = None
        self._timer: StreamTimer | None = None
        self._error_body = bytearray()
        self._received = 0
        self._streaming = False  # True while the fast path may take the next read (see data_received)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # asyncio reads with recv(256 KiB) by default: a buffer that large is mmap'ed and freed for every
        # streamed event. SSE events are small; 16 KiB reads cut the client's system CPU per event by half.
        if hasattr(transport, "max_size"):
            transport.max_size = READ_SIZE

    def begin(self, waiter: asyncio.Future, timer: StreamTimer, data: bytes) -> None:
        """Send one request; the waiter gets None on success or (reason, detail) on failure."""
        self._waiter = waiter
        self._parser = ResponseParser()
        self._timer = timer
        self._error_body = bytearray()
        self._received = 0
        self._streaming = False
        self.transport.write(data)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        # Fast path, nearly every read of a vLLM stream: whole chunks of plain token events. _streaming says
        # that the response is a 200 being streamed, the parser sits at a chunk boundary and no partial
        # event is pending, so these bytes need neither the HTTP parser nor the SSE parser.
        if self._streaming:
            count = plain_token_chunks(data)
            if count == 1:
                self._timer.token(now)  # type: ignore[union-attr]
                return
            if count:
                self._timer.tokens(now, count)  # type: ignore[union-attr]
                return
        self._streaming = False
        parser = self._parser
        if parser is None or self._waiter is None or self._waiter.done():
            self.abort()  # bytes nobody asked for: the connection is out of step
            return
        self._received += len(data)
        timer = self._timer
        try:
            body = parser.feed(data)
            if parser.status == 200:
                if body:
                    timer.feed(body, now)  # type: ignore[union-attr]
            elif len(self._error_body) < MAX_ERROR_BODY_BYTES:
                self._error_body += body[:MAX_ERROR_BODY_BYTES]
        except ProtocolError as exc:
            self.fail("bad_http", str(exc))
            return
        except StreamError as exc:
            self.fail(exc.kind, exc.detail)
            return
        if parser.complete:
            self._settle()
        else:
            self._streaming = parser.status == 200 and parser.at_chunk_boundary and not timer.pending  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        parser = self._parser
        parser.close()  # type: ignore[union-attr]
        if parser.complete or (parser.status == 200 and self._timer.done):  # type: ignore[union-attr]
            self._settle()
        elif self._received == 0:
            self.fail("broken_stream", f"connection closed before any response byte ({exc or 'EOF'})")
        else:
            self.fail("broken_stream", f"connection closed mid-response after {self._received} bytes ({exc or 'EOF'})")

    def _settle(self) -> None:
        parser = self._parser
        if not parser.keep_alive:  # type: ignore[union-attr]
            self.usable = False
        if parser.status != 200:  # type: ignore[union-attr]
            text = bytes(self._error_body).decode("utf-8", "replace").strip()
            self._resolve((f"http_{parser.status}", f"HTTP {parser.status} {parser.reason}: {text[:300]}"))
        elif not self._timer.chunks:  # type: ignore[union-attr]
            self._resolve(("no_tokens", "response ended without any token event"))
        else:
            self._resolve(None)

    def fail(self, reason: str, detail: str) -> None:
        """End the current request as failed and drop the connection (its state is unknown)."""
        self._resolve((reason, detail))
        self.abort()

    def abort(self) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.abort()

    def _resolve(self, outcome: tuple[str, str] | None) -> None:
        self._streaming = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(outcome)


async def _open(target: Target, timeout: float) -> _Connection:
    loop = asyncio.get_running_loop()
    _, protocol = await asyncio.wait_for(
        loop.create_connection(_Connection, target.host, target.port, ssl=target.ssl_context), timeout
    )
    return protocol


def _connect_failure(exc: BaseException) -> tuple[str, str]:
    """Return (reason, detail) of an exception raised while connecting or sending."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection_refused", f"connection refused: {exc}"
    if isinstance(exc, TimeoutError):
        return "timeout", "connect timed out"
    if isinstance(exc, ssl.SSLError):
        return "tls_error", str(exc)
    return "connection_error", f"{type(exc).__name__}: {exc}"


class _Slot:
    """A concurrency slot: the connection it reuses between requests."""

    __slots__ = ("conn",)

    def __init__(self) -> None:
        self.conn: _Connection | None = None

    def close(self) -> None:
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.close()
        self.conn = None


async def send_one(slot: _Slot, target: Target, data: bytes, timeout: float) -> RequestResult:
    """Send one streaming request on the slot's connection (opening one if needed) and return its result.

    A reused keep-alive connection that the server had already closed (no byte of the response came back)
    is replaced once; that is not a failure of the request.
    """
    start = time.perf_counter()
    reused = slot.conn is not None and slot.conn.usable
    result = await _attempt(slot, target, data, timeout, start)
    if reused and result.reason == "broken_stream" and result.detail.startswith("connection closed before"):
        result = await _attempt(slot, target, data, timeout, time.perf_counter())
    return result


async def _attempt(slot: _Slot, target: Target, data: bytes, timeout: float, start: float) -> RequestResult:
    loop = asyncio.get_running_loop()
    timer = StreamTimer(start)
    try:
        if slot.conn is None or not slot.conn.usable or slot.conn.transport.is_closing():  # type: ignore[union-attr]
            slot.close()
            slot.conn = await _open(target, timeout)
    except (TimeoutError, OSError) as exc:
        reason, detail = _connect_failure(exc)
        return RequestResult(False, reason=reason, detail=detail)
    conn = slot.conn
    waiter = loop.create_future()
    remaining = max(timeout - (time.perf_counter() - start), 0.001)
    handle = loop.call_later(remaining, conn.fail, "timeout", f"no complete response within timeout={timeout:g}s")
    try:
        conn.begin(waiter, timer, data)
        outcome = await waiter
    except asyncio.CancelledError:
        slot.close()
        raise
    finally:
        handle.cancel()
    if not conn.usable:
        slot.close()
    if outcome is not None:
        return RequestResult(False, reason=outcome[0], detail=outcome[1])
    return RequestResult(
        True,
        ttft=timer.ttft,
        latency=timer.latency,
        itl=timer.itl,
        output_tokens=timer.output_tokens if timer.output_tokens is not None else timer.chunks,
        prompt_tokens=timer.prompt_tokens,
    )


async def _run_phase(
    slots: list[_Slot],
    target: Target,
    requests: list[bytes],
    offsets: list[float],
    timeout: float,
    results: list[RequestResult | None],
) -> None:
    """Send every request (at its offset from now) through the slots; results land in results by index."""
    queue: asyncio.Queue = asyncio.Queue()
    start = time.perf_counter()

    async def worker(slot: _Slot) -> None:
        while True:
            index = await queue.get()
            if index is None:
                return
            results[index] = None  # marks "in flight" for the total_timeout accounting
            results[index] = await send_one(slot, target, requests[index], timeout)

    async def dispatch() -> None:
        for index, offset in enumerate(offsets):
            delay = start + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait(index)
        for _ in slots:
            queue.put_nowait(None)

    workers = [asyncio.create_task(worker(slot)) for slot in slots]
    if offsets and offsets[-1] == 0.0:
        await dispatch()
        await asyncio.gather(*workers)
    else:
        await asyncio.gather(dispatch(), *workers)


async def run_load(
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
    concurrency = min(max_concurrency or len(requests) or 1, len(requests) or 1, MAX_CONNECTIONS)
    slots = [_Slot() for _ in range(concurrency)]
    warmup_failed = 0
    unset = RequestResult(False, reason="not_sent", detail="not sent before total_timeout ended the run")
    try:
        if warmup:
            warm_results: list[RequestResult | None] = [unset] * len(warmup)
            warm_slots = slots[: min(len(slots), len(warmup))]
            phase = _run_phase(warm_slots, target, warmup, [0.0] * len(warmup), timeout, warm_results)
            if not await _within(phase, deadline):
                results = [RequestResult(False, reason="not_sent", detail="total_timeout ended the run during warm-up")]
                return LoadOutcome(results * len(requests), 0.0, time.process_time() - cpu_start, True, len(warmup))
            warmup_failed = sum(1 for r in warm_results if r is None or not r.ok)
        results: list[RequestResult | None] = [unset] * len(requests)
        offsets = arrival_offsets(len(requests), request_rate, random.Random(seed))
        start = time.perf_counter()
        finished = await _within(_run_phase(slots, target, requests, offsets, timeout, results), deadline)
        duration = time.perf_counter() - start
    finally:
        for slot in slots:
            slot.close()
    in_flight = RequestResult(
        False, reason="total_timeout", detail=f"still running when total_timeout={total_timeout:g}s ended the run"
    )
    final = [r if r is not None else in_flight for r in results]
    return LoadOutcome(final, duration, time.process_time() - cpu_start, not finished, warmup_failed)


async def _within(coro: Any, deadline: float) -> bool:
    """Run coro until done or until the deadline (perf_counter); return whether it finished."""
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.wait_for(asyncio.shield(task), max(deadline - time.perf_counter(), 0.0))
    except TimeoutError:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False
    return True


def run_load_sync(*args: Any, **kwargs: Any) -> LoadOutcome:
    """Run run_load in a fresh event loop."""
    return asyncio.run(run_load(*args, **kwargs))


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


class JsonClient:
    """Blocking JSON calls to the server (version, models, tokenizer) over one keep-alive connection."""

    def __init__(self, target: Target, timeout: float) -> None:
        self._target = target
        if target.scheme == "https":
            self._conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                target.host, target.port, timeout=timeout, context=target.ssl_context
            )
        else:
            self._conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)

    def call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> tuple[int, Any]:
        """Return (status, decoded JSON or text) of one call; raise OSError when the server cannot be reached."""
        body = json.dumps(payload).encode() if payload is not None else None
        headers = {"Content-Type": "application/json", **self._target.headers}
        try:
            self._conn.request(method, self._target.base_path + path, body=body, headers=headers)
            response = self._conn.getresponse()
            raw = response.read()
        except OSError:
            self._conn.close()
            raise
        except http.client.HTTPException as exc:
            self._conn.close()
            raise ConnectionError(f"bad HTTP response from {path}: {exc!r}") from exc
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode("utf-8", "replace")

    def close(self) -> None:
        self._conn.close()
