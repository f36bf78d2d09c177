"""Hostile HTTP peers on real local sockets, for the tests of issue 11 (deadlines, malformed answers, secrets).

`Peer(routes)` listens on 127.0.0.1 (a free port) and hands each request to `routes[path]` (or
`routes["*"]`), a function `(peer, conn, request) -> bool` that writes whatever it likes to the raw
socket: a well-formed answer, one byte every 50 ms forever, a banner that is not HTTP, a body that never
ends. It returns True to keep the connection for the next request. Every request is recorded with its
headers (`peer.requests`), so a test can see what a client sent, and to which peer. Each connection has
a thread of its own; leaving the `with` block stops them all.

Nothing here stands in for vLLM's behaviour: these peers are what a module must survive.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

DRIP_INTERVAL = 0.05  # one byte per 50 ms: never idle long enough for a per-read timeout, never done


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Peer:
    routes: dict[str, Callable[[Peer, socket.socket, Request], bool]]
    requests: list[Request] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self.stop = threading.Event()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.open: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Peer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        for conn in list(self.open):
            with contextlib.suppress(OSError):
                conn.close()
        self.thread.join(5)

    def paths(self) -> list[str]:
        return [request.path for request in self.requests]

    def _accept(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self.open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while not self.stop.is_set():
                request = read_request(conn)
                if request is None:
                    return
                self.requests.append(request)
                route = self.routes.get(request.path) or self.routes.get("*") or not_found
                if not route(self, conn, request):
                    return
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                conn.close()


def read_request(conn: socket.socket) -> Request | None:
    """One request from conn (None at EOF)."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return None
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        piece = conn.recv(65536)
        if not piece:
            return None
        rest += piece
    return Request(method, path, headers, rest[:length])


# --- what a route can do ---------------------------------------------------------------------------


def response_bytes(status: int, body: bytes, content_type: str = "application/json", headers: str = "") -> bytes:
    reason = {200: "OK", 302: "Found", 401: "Unauthorized", 404: "Not Found", 500: "Internal Server Error"}
    head = (
        f"HTTP/1.1 {status} {reason.get(status, 'Status')}\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\n{headers}\r\n"
    )
    return head.encode() + body


def answer(status: int, body: bytes | dict | list, content_type: str = "application/json", headers: str = ""):
    """A route that answers once, well formed (the body may say anything), and keeps the connection."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()

    def route(peer: Peer, conn: socket.socket, request: Request) -> bool:
        conn.sendall(response_bytes(status, raw, content_type, headers))
        return True

    return route


def drip(data: bytes, interval: float = DRIP_INTERVAL, then_serve: bool = False):
    """A route that sends data one byte per interval, then serves the next request (then_serve) or goes silent."""

    def route(peer: Peer, conn: socket.socket, request: Request) -> bool:
        for index in range(len(data)):
            if peer.stop.wait(interval):
                return False
            conn.sendall(data[index : index + 1])
        if then_serve:
            return True
        peer.stop.wait(60)
        return False

    return route


def endless_drip(prefix: bytes, filler: bytes = b"a", interval: float = DRIP_INTERVAL):
    """A route that sends prefix, then filler one byte per interval, forever."""

    def route(peer: Peer, conn: socket.socket, request: Request) -> bool:
        conn.sendall(prefix)
        while not peer.stop.wait(interval):
            conn.sendall(filler)
        return False

    return route


def raw(data: bytes, then_close: bool = False):
    """A route that writes data as is (an answer that is not HTTP, say), then stays silent or closes."""

    def route(peer: Peer, conn: socket.socket, request: Request) -> bool:
        conn.sendall(data)
        if not then_close:
            peer.stop.wait(60)
        return False

    return route


def flood(head: bytes, block: bytes, total: int):
    """A route that sends head, then total bytes of block repeated, as fast as the client reads."""

    def route(peer: Peer, conn: socket.socket, request: Request) -> bool:
        conn.sendall(head)
        sent = 0
        while sent < total and not peer.stop.is_set():
            conn.sendall(block)
            sent += len(block)
        return False

    return route


def echo_authorization(status: int = 401):
    """A route that answers with the request's Authorization header in its error body (servers do this)."""

    def route(peer: Peer, conn: socket.socket, request: Request) -> bool:
        body = {"error": {"message": f"bad credentials: {request.headers.get('authorization', '')}"}}
        conn.sendall(response_bytes(status, json.dumps(body).encode()))
        return True

    return route


def not_found(peer: Peer, conn: socket.socket, request: Request) -> bool:
    conn.sendall(response_bytes(404, b'{"detail":"Not Found"}'))
    return True


def chunked_stream(events: list[bytes], pause: float = 0.0):
    """A route that streams events (each one HTTP chunk) as a 200 SSE answer, then ends it."""

    def route(peer: Peer, conn: socket.socket, request: Request) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for event in events:
            conn.sendall(b"%x\r\n%s\r\n" % (len(event), event))
            if pause:
                time.sleep(pause)
        conn.sendall(b"0\r\n\r\n")
        return True

    return route


def deeply_nested(depth: int = 100_000) -> bytes:
    """JSON nested depth levels deep: json.loads raises RecursionError on it, not ValueError."""
    return b"[" * depth + b"]" * depth
