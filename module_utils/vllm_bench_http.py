# Copyright: contributors to vllm-fleet
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Minimal HTTP/1.1 pieces for the benchmark client: request bytes and an incremental response parser.

Standard library only: this file runs on target hosts. The parser is fed the
bytes of one response as they arrive from the socket and hands back the body
bytes (chunked transfer coding removed) so the SSE layer can timestamp events
at arrival. It handles `Transfer-Encoding: chunked`, `Content-Length` and
read-until-close bodies; that is all an OpenAI-compatible server sends.

It trusts nothing it is fed: a peer that is not an HTTP server is refused at
its first bytes, the status line, Content-Length and chunk sizes must be what
RFC 9112 allows (no sign, no `0x`, no `_`), and the head, a chunk-size line
and the trailers are each bounded, so no input makes it buffer without limit.
Body size is the caller's to bound (vllm_http caps it; the load engine keeps
only a bounded error body).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 65536
MAX_ERROR_BODY_BYTES = 4096
MAX_CHUNK_SIZE_LINE = 1024
_HTTP_PREFIX = b"HTTP/"
_STATUS_CODE = re.compile(r"\A[1-5]\d\d\Z")
_CONTENT_LENGTH = re.compile(r"\A\d{1,18}\Z")
_CHUNK_SIZE_HEX = re.compile(rb"\A[0-9A-Fa-f]{1,16}\Z")

_HEAD = 0
_CHUNK_SIZE = 1
_CHUNK_DATA = 2
_CHUNK_END = 3
_TRAILERS = 4
_LENGTH = 5
_UNTIL_CLOSE = 6
_DONE = 7


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid HTTP/1.1 response."""


def split_url(url: str) -> tuple[str, str, int, str]:
    """Return (scheme, host, port, base_path) of an http(s) URL; raise ValueError when it is not one."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url must look like http://HOST:PORT or https://HOST:PORT, got {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ValueError(f"url has an invalid port: {url!r}") from exc
    return parts.scheme, parts.hostname, port, parts.path.rstrip("/")


def host_header(host: str, port: int, scheme: str) -> str:
    """Return the Host header value for host and port (port left out when it is the scheme's default)."""
    name = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80
    return name if port == default else f"{name}:{port}"


def post_request_bytes(path: str, host: str, body: bytes, headers: dict[str, str]) -> bytes:
    """Return the full bytes of a keep-alive HTTP/1.1 POST request with a JSON body."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        "Accept: text/event-stream",
        f"Content-Length: {len(body)}",
    ]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class ResponseParser:
    """Incremental parser of ONE HTTP/1.1 response.

    `feed(data)` returns the body bytes contained in data (de-chunked).
    After the last byte of the message `complete` is True; `keep_alive`
    tells whether the connection may carry another request; `surplus` holds
    bytes fed after the end of the message (the next response after an
    interim 1xx one, or a peer out of step).
    """

    __slots__ = (
        "_buf",
        "_remaining",
        "_state",
        "complete",
        "headers",
        "keep_alive",
        "reason",
        "status",
        "surplus",
    )

    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = _HEAD
        self._remaining = 0
        self.status = 0
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.complete = False
        self.keep_alive = True
        self.surplus = b""

    @property
    def head_received(self) -> bool:
        """Return True once the status line and headers were parsed."""
        return self._state != _HEAD

    @property
    def at_chunk_boundary(self) -> bool:
        """Return True when the next byte starts a chunk-size line (and nothing is buffered)."""
        return self._state == _CHUNK_SIZE and not self._buf

    def feed(self, data: bytes) -> bytes:
        """Consume data and return the body bytes it carried."""
        if self._state == _UNTIL_CLOSE and not self._buf:
            return data
        buf = self._buf
        buf += data
        out: list[bytes] = []
        while buf:
            state = self._state
            if state == _CHUNK_DATA:
                take = min(len(buf), self._remaining)
                out.append(bytes(buf[:take]))
                del buf[:take]
                self._remaining -= take
                if not self._remaining:
                    self._state = _CHUNK_END
            elif state == _CHUNK_END:
                if len(buf) < 2:
                    break
                if buf[:2] != b"\r\n":
                    raise ProtocolError("chunk not followed by CRLF")
                del buf[:2]
                self._state = _CHUNK_SIZE
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_CHUNK_SIZE_LINE:
                        raise ProtocolError("chunk-size line too long")
                    break
                self._remaining = _chunk_size(bytes(buf[:end]))
                del buf[: end + 2]
                self._state = _CHUNK_DATA if self._remaining else _TRAILERS
            elif state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise ProtocolError("response header larger than 64 KiB")
                    start = bytes(buf[:5])
                    if _HTTP_PREFIX[: len(start)] != start:
                        raise ProtocolError(f"not an HTTP response: it starts with {start!r}")
                    break
                self._parse_head(bytes(buf[:end]))
                del buf[: end + 4]
            elif state == _LENGTH:
                take = min(len(buf), self._remaining)
                out.append(bytes(buf[:take]))
                del buf[:take]
                self._remaining -= take
                if not self._remaining:
                    self._finish()
            elif state == _TRAILERS:  # _remaining counts the trailer bytes, bounded like a head
                end = buf.find(b"\r\n")
                if self._remaining + (len(buf) if end < 0 else end) > MAX_HEAD_BYTES:
                    raise ProtocolError("trailers larger than 64 KiB")
                if end < 0:
                    break
                del buf[: end + 2]
                self._remaining += end + 2
                if end == 0:
                    self._finish()
            elif state == _UNTIL_CLOSE:
                out.append(bytes(buf))
                buf.clear()
            else:  # _DONE: bytes after the message; the connection cannot be trusted for another request
                self.keep_alive = False
                if len(self.surplus) < MAX_HEAD_BYTES:
                    self.surplus += bytes(buf[:MAX_HEAD_BYTES])
                buf.clear()
        return b"".join(out) if len(out) != 1 else out[0]

    def close(self) -> None:
        """Tell the parser the peer closed the connection; completes a read-until-close body."""
        if self._state == _UNTIL_CLOSE:
            self._finish()
        self.keep_alive = False

    def _finish(self) -> None:
        self._state = _DONE
        self.complete = True

    def _parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
            raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        if not _STATUS_CODE.match(status_line[1]):
            raise ProtocolError(f"bad status code in {lines[0][:80]!r}")
        self.status = int(status_line[1])
        self.reason = status_line[2] if len(status_line) > 2 else ""
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                self.headers[name.strip().lower()] = value.strip()
        connection = self.headers.get("connection", "").lower()
        self.keep_alive = connection != "close" and not (status_line[0] == "HTTP/1.0" and connection != "keep-alive")
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            self._state = _CHUNK_SIZE
        elif "content-length" in self.headers:
            if not _CONTENT_LENGTH.match(self.headers["content-length"]):
                raise ProtocolError(f"bad Content-Length {self.headers['content-length'][:40]!r}")
            self._remaining = int(self.headers["content-length"])
            if self._remaining:
                self._state = _LENGTH
            else:
                self._finish()
        elif self.status in (204, 304) or 100 <= self.status < 200:
            self._finish()
        else:
            self._state = _UNTIL_CLOSE
            self.keep_alive = False


def _chunk_size(line: bytes) -> int:
    """Return the size of a chunk from its size line (extensions ignored): hex digits only, as RFC 9112 has it."""
    digits = line.split(b";", 1)[0].strip(b" \t")
    if not _CHUNK_SIZE_HEX.match(digits):
        raise ProtocolError(f"bad chunk-size line {line[:40]!r}")
    return int(digits, 16)
