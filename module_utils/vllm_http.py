# Copyright: contributors to vllm-fleet
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one HTTP client of the modules' probes: blocking HTTP/1.1 with a deadline for the whole exchange.

Standard library only, Python 3.10+: this file runs on managed hosts.

Every probe a module makes (vllm_server_info's GETs and its one-token
completion, vllm_benchmark's /version, /v1/models, /tokenize, /detokenize)
goes through `HttpClient`. The load itself goes through the epoll engine
(vllm_bench_engine), which needs many connections at once; both parse
responses with the same `ResponseParser` (vllm_bench_http).

What it guarantees, whatever the peer does:

- **A deadline for the whole exchange.** Name resolution, connect, TLS
  handshake, sending, the head and the body share one deadline (the request's
  timeout, or an overall deadline when that comes first). Before every socket
  operation the socket's timeout is set to the time left, so a peer that
  drips one byte a second cannot stretch the exchange: a per-read timeout
  would never trip. Names that are not IP literals are resolved in a helper
  thread the caller waits for only until the deadline (getaddrinfo itself
  cannot be given a timeout).
- **A bounded answer.** The head is at most 64 KiB (the parser), the body at
  most `max_body` bytes (8 MiB by default); more is an error, not a bigger
  buffer.
- **No redirects.** A 3xx is returned as the answer, like any other status,
  with its Location in `Response.location`. Nothing is ever sent to a
  second URL, so credentials never reach another origin.
- **Typed failures.** Anything that is not a usable answer raises
  `HttpError` (an OSError) whose `kind` is one of timeout,
  connection_refused, connection_error, tls_error, bad_http, too_large, and
  whose message names the method, the URL (without credentials) and the
  problem.

Also here: JSON decoding that cannot raise anything but ValueError (deep
nesting raises RecursionError in json.loads), the checks of a vLLM server's
/v1/models and /version answers that both modules read, and the scrubbing of
known secrets from anything a module writes or returns.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ansible.module_utils.vllm_bench_http import ProtocolError, ResponseParser, host_header, split_url
from ansible.module_utils.vllm_journal import REDACTED, scrub

DEFAULT_MAX_BODY = 8 << 20
READ_SIZE = 65536
MIN_SECRET_CHARS = 4  # shorter "secrets" are not scrubbed: replacing every "ab" would garble the output
USER_AGENT = "vllm-fleet"
MAX_VERSION_CHARS = 100


class HttpError(OSError):
    """No usable HTTP answer. `kind`: timeout, connection_refused, connection_error, tls_error, bad_http, too_large."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __str__(self) -> str:
        return self.message


class _StaleConnection(Exception):
    """A reused keep-alive connection that the server had closed: nothing of the answer came back."""


class Response:
    """An HTTP answer: status, reason, headers (names in lower case), body (de-chunked bytes)."""

    __slots__ = ("body", "headers", "reason", "status")

    def __init__(self, status: int, reason: str, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    @property
    def location(self) -> str | None:
        """The Location of a redirect (never followed), else None."""
        return self.headers.get("location") if 300 <= self.status < 400 else None

    def text(self, limit: int = 300, secrets: list[str] | None = None) -> str:
        """At most limit characters of the body, decoded leniently, whitespace collapsed (for messages).

        With secrets, they are taken out of the whole body before it is cut, so no part of one survives the cut.
        """
        text = self.body.decode("utf-8", "replace") if secrets else self.body[: limit * 4].decode("utf-8", "replace")
        if secrets:
            text = redact(text, secrets)
        return " ".join(text.split())[:limit]

    def json(self) -> Any:
        """The body as JSON; raise ValueError (never another type) when it is not."""
        return json_value(self.body)

    def status_text(self) -> str:
        """The status for a message, with where a redirect points (it is not followed)."""
        if self.location is not None:
            return f"{self.status} (a redirect to {public_url(self.location)[:200]!r}, not followed)"
        return f"{self.status}"


def json_value(data: bytes | str) -> Any:
    """Decode JSON; raise ValueError with a short reason for anything that is not JSON, too deep included."""
    try:
        return json.loads(data)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply to read") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise ValueError(f"not JSON ({str(exc)[:100]})") from exc


def tls_context(validate_certs: bool = True) -> ssl.SSLContext:
    """The TLS context of every client here: the system's trust store, or no checks at all."""
    context = ssl.create_default_context()
    if not validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def check_header_value(name: str, value: str) -> None:
    """Raise ValueError when a header value would break the request (a line break, a non-Latin-1 character).

    The message names the header, not its value (it may be a key).
    """
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"the {name} header value holds a line break or NUL; refusing to send it")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ValueError(f"the {name} header value holds characters HTTP headers cannot carry") from exc


def remaining(deadline: float) -> float:
    """Seconds left before deadline (perf_counter clock); 0 when it has passed."""
    return max(deadline - time.perf_counter(), 0.0)


def resolve_address(host: str, port: int, deadline: float) -> list[tuple[Any, ...]]:
    """getaddrinfo for TCP, bounded by deadline; raise HttpError (timeout or connection_error)."""
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        pass  # a name, not an IP literal: resolve it in a thread we wait for until the deadline only
    found: dict[str, Any] = {}

    def lookup() -> None:
        try:
            found["addresses"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            found["error"] = exc

    thread = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
    thread.start()
    thread.join(remaining(deadline))
    if thread.is_alive():
        raise HttpError("timeout", f"resolving {host} did not finish in time")
    if "error" in found:
        raise HttpError("connection_error", f"cannot resolve {host}: {found['error']}")
    if not found.get("addresses"):
        raise HttpError("connection_error", f"cannot resolve {host}: no address")
    return found["addresses"]


class HttpClient:
    """Blocking HTTP/1.1 requests to one origin over one keep-alive connection, each bounded as a whole.

    timeout: seconds one request may take in all (resolution, connect, TLS, send, head, body).
    deadline: an overall perf_counter() time no request may pass (deadline_name says whose, for messages).
    headers: sent with every request (an Authorization header, say); max_body: the largest body accepted.
    """

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        timeout: float,
        *,
        base_path: str = "",
        ssl_context: ssl.SSLContext | None = None,
        headers: dict[str, str] | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        deadline: float | None = None,
        deadline_name: str = "the overall deadline",
    ) -> None:
        if scheme == "https" and ssl_context is None:
            ssl_context = tls_context()
        self.scheme = scheme
        self.host = host
        self.port = port
        self.timeout = timeout
        self.base_path = base_path
        self.ssl_context = ssl_context if scheme == "https" else None
        self.headers = dict(headers or {})
        for name, value in self.headers.items():
            check_header_value(name, value)
        self.max_body = max_body
        self.deadline = deadline
        self.deadline_name = deadline_name
        self.origin = f"{scheme}://{host_header(host, port, scheme)}"
        self._sock: socket.socket | None = None

    @classmethod
    def for_url(cls, url: str, timeout: float, validate_certs: bool = True, **kwargs: Any) -> HttpClient:
        """A client for an http(s) URL (credentials in it are not sent); raise ValueError when it is not one."""
        scheme, host, port, base_path = split_url(url)
        context = tls_context(validate_certs) if scheme == "https" else None
        return cls(scheme, host, port, timeout, base_path=base_path, ssl_context=context, **kwargs)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        max_body: int | None = None,
    ) -> Response:
        """Send one request and return its answer (any status; 3xx is not followed); raise HttpError on none.

        A reused connection that turns out closed before any byte came back is replaced once.
        """
        started = time.perf_counter()
        limit = self.timeout if timeout is None else timeout
        deadline = started + limit
        reason = f"timeout={limit:g}s"
        if self.deadline is not None and self.deadline < deadline:
            deadline, reason = self.deadline, self.deadline_name
        where = f"{method} {self.origin}{self.base_path}{path}"
        raw = self._request_bytes(method, path, body, headers or {})
        try:
            try:
                return self._exchange(raw, deadline, max_body or self.max_body, reused=self._sock is not None)
            except _StaleConnection:
                self.close()
                return self._exchange(raw, deadline, max_body or self.max_body, reused=False)
        except HttpError as exc:
            self.close()
            if exc.kind == "timeout":
                raise HttpError(
                    "timeout",
                    f"{where}: no complete answer within {time.perf_counter() - started:.1f} s ({reason}; "
                    f"{exc.message})",
                ) from None
            raise HttpError(exc.kind, f"{where}: {exc.message}") from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    # --- one exchange ----------------------------------------------------------------------------

    def _request_bytes(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> bytes:
        target = self.base_path + path
        check_header_value("request target", target)
        lines = [
            f"{method} {target} HTTP/1.1",
            f"Host: {host_header(self.host, self.port, self.scheme)}",
            f"User-Agent: {USER_AGENT}",
            "Accept: application/json, text/plain, */*",
        ]
        for name, value in {**self.headers, **headers}.items():
            check_header_value(name, value)
            lines.append(f"{name}: {value}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")

    def _exchange(self, raw: bytes, deadline: float, max_body: int, reused: bool) -> Response:
        if self._sock is None:
            self._sock = self._connect(deadline)
        sock = self._sock
        try:
            self._send_all(sock, raw, deadline)
        except HttpError as exc:
            if reused and exc.kind == "connection_error":
                raise _StaleConnection from exc
            raise
        parser = ResponseParser()
        pieces: list[bytes] = []
        size = 0
        received = 0
        while True:
            try:
                data = self._recv(sock, deadline)
            except HttpError as exc:
                if reused and received == 0 and exc.kind == "connection_error":
                    raise _StaleConnection from exc
                raise
            if not data:
                parser.close()
                if parser.complete:
                    break
                if received == 0:
                    if reused:
                        raise _StaleConnection
                    raise HttpError("connection_error", "the server closed the connection without answering")
                raise HttpError("connection_error", f"the server closed the connection mid-answer ({received} bytes)")
            received += len(data)
            try:
                piece = parser.feed(data)
                while parser.complete and 100 <= parser.status < 200 and parser.status != 101:
                    surplus = parser.surplus  # an interim answer (100 Continue, 103 Early Hints): the real one follows
                    parser = ResponseParser()
                    piece = parser.feed(surplus) if surplus else b""
            except ProtocolError as exc:
                raise HttpError("bad_http", f"not a valid HTTP answer: {exc}") from None
            if piece:
                size += len(piece)
                if size > max_body:
                    raise HttpError("too_large", f"the answer's body is larger than {max_body} bytes")
                pieces.append(piece)
            if parser.complete:
                break
        if not parser.keep_alive:
            self.close()
        return Response(parser.status, parser.reason, parser.headers, b"".join(pieces))

    def _connect(self, deadline: float) -> socket.socket:
        addresses = resolve_address(self.host, self.port, deadline)
        last: OSError | None = None
        for family, kind, proto, _, address in addresses:
            left = remaining(deadline)
            if left <= 0:
                raise HttpError("timeout", "connect did not complete")
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(left)
                sock.connect(address)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except TimeoutError:
                sock.close()
                raise HttpError("timeout", "connect did not complete") from None
            except OSError as exc:
                sock.close()
                last = exc
                continue
            if self.ssl_context is None:
                return sock
            return self._handshake(sock, deadline)
        if isinstance(last, ConnectionRefusedError):
            raise HttpError("connection_refused", f"cannot connect to {self.host}:{self.port}: Connection refused")
        detail = (last.strerror or str(last)) if last is not None else "no address"
        raise HttpError("connection_error", f"cannot connect to {self.host}:{self.port}: {detail}")

    def _handshake(self, sock: socket.socket, deadline: float) -> socket.socket:
        try:
            tls = self.ssl_context.wrap_socket(  # type: ignore[union-attr]
                sock, server_hostname=self.host, do_handshake_on_connect=False
            )
        except (ssl.SSLError, OSError, ValueError) as exc:
            sock.close()
            raise HttpError("tls_error", f"TLS set-up failed: {exc}") from None
        try:
            tls.settimeout(remaining(deadline) or 1e-6)
            tls.do_handshake()  # CPython bounds the whole handshake by the socket timeout, not each read
        except TimeoutError:
            tls.close()
            raise HttpError("timeout", "the TLS handshake did not complete") from None
        except (ssl.SSLError, ssl.CertificateError) as exc:
            tls.close()
            raise HttpError("tls_error", f"TLS handshake failed: {exc}") from None
        except OSError as exc:
            tls.close()
            raise HttpError("connection_error", f"the connection failed during the TLS handshake: {exc}") from None
        return tls

    @staticmethod
    def _send_all(sock: socket.socket, raw: bytes, deadline: float) -> None:
        view = memoryview(raw)
        while view:
            left = remaining(deadline)
            if left <= 0:
                raise HttpError("timeout", "the request could not be sent")
            try:
                sock.settimeout(left)
                sent = sock.send(view)
            except TimeoutError:
                raise HttpError("timeout", "the request could not be sent") from None
            except OSError as exc:
                raise HttpError("connection_error", f"sending the request failed: {exc}") from None
            view = view[sent:]

    @staticmethod
    def _recv(sock: socket.socket, deadline: float) -> bytes:
        left = remaining(deadline)
        if left <= 0:
            raise HttpError("timeout", "the answer did not arrive whole")
        try:
            sock.settimeout(left)
            return sock.recv(READ_SIZE)
        except TimeoutError:
            raise HttpError("timeout", "the answer did not arrive whole") from None
        except OSError as exc:
            raise HttpError("connection_error", f"reading the answer failed: {exc}") from None


# --- what a vLLM server answers ----------------------------------------------------------------------


def served_models(data: Any) -> list[dict[str, Any]]:
    """[{id, root, max_model_len}] of a decoded /v1/models answer; raise ValueError for one of another shape.

    Shape (OpenAI's list): {"data": [{"id": "NAME", ...}, ...]}. Every entry must be an object with a non-empty
    string id; root must be a string or absent, max_model_len a positive integer or absent.
    """
    if not isinstance(data, dict):
        raise ValueError(f"the answer is a JSON {type(data).__name__}, not an object with a data list")
    entries = data.get("data")
    if not isinstance(entries, list):
        raise ValueError(f"its data is a {type(entries).__name__}, not a list of models")
    models = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
            raise ValueError(f"its data[{index}] is not a model object with a string id")
        root, length = entry.get("root"), entry.get("max_model_len")
        if root is not None and not isinstance(root, str):
            raise ValueError(f"its data[{index}].root is not a string")
        if length is not None and (type(length) is not int or length < 1):
            raise ValueError(f"its data[{index}].max_model_len is not a positive integer")
        models.append({"id": entry["id"], "root": root, "max_model_len": length})
    return models


def server_version(data: Any) -> str:
    """The version string of a decoded /version answer; raise ValueError for one of another shape."""
    version = data.get("version") if isinstance(data, dict) else None
    if not isinstance(version, str) or not version.strip() or len(version) > MAX_VERSION_CHARS:
        raise ValueError('the answer is not {"version": "X.Y.Z"}')
    return version


# --- on the way out: secrets -------------------------------------------------------------------------


def url_secrets(url: str) -> list[str]:
    """The password of a URL's user:password@ part, as a list (empty when there is none)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password] if password else []


def public_url(url: str) -> str:
    """url with the password of its user:password@ part replaced by <redacted> (credentials are never sent)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{netloc[2]}"))


def redact(value: Any, secrets: list[str]) -> Any:
    """value with every known secret (MIN_SECRET_CHARS or longer) and every credential-looking string taken out
    of each string in it, keys included (vllm_journal.scrub); dicts, lists and tuples are walked, the rest kept."""
    known = [secret for secret in secrets if secret and len(secret) >= MIN_SECRET_CHARS]
    return _redact(value, known)


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {_redact(key, secrets): _redact(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(item, secrets) for item in value]
    return value
