# Copyright: contributors to vllm-fleet
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Server-sent events of an OpenAI-compatible streaming response, and per-request timing.

Standard library only: this file runs on target hosts.

An event ends with a blank line; `data:` lines carry JSON, `:` lines are
comments (keep-alive pings), `data: [DONE]` ends the stream. What counts as a
token event, and so when TTFT, ITL and E2E are taken, follows vLLM 0.32.0's
`vllm/benchmarks/lib/endpoint_request_func.py` (read, not copied): an event
whose `choices` list is non-empty is a token event, whatever its text; an
event without choices but with `usage` gives the output token count; the
latency ends at the last token event.

What the server says is checked before it counts: `choices` must be a list of
objects, `usage` an object whose token counts are non-negative integers, and
a stream with token events must report at least one output token (the engine
asks `StreamTimer.problem()` when the response ends). Anything else makes the
request a failure with a reason (`bad_json`, `bad_event`, `bad_usage`,
`event_too_large`), never an exception of another type and never a pass.

An event that arrives over many reads is kept in one growing bytearray and
searched for its end only in the bytes that came since the last search, so a
10 MB event costs about one pass over its bytes, not one per read.
"""

from __future__ import annotations

import json

DONE = b"[DONE]"
MAX_EVENT_BYTES = 16 << 20  # 16 MiB: far above any token or usage event; a guard against an endless one
MAX_TOKEN_COUNT = 1 << 31  # usage counts at or above this are not token counts
_EMPTY = b""


class StreamError(Exception):
    """The stream carried something that makes the request a failure; `kind` names the reason."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def split_events(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Return the complete events in buffer and the incomplete rest (to be prefixed to the next read)."""
    if b"\r" in buffer:
        buffer = buffer.replace(b"\r\n", b"\n")
    parts = buffer.split(b"\n\n")
    return parts[:-1], parts[-1]


def event_data(event: bytes) -> bytes | None:
    """Return the data payload of one event (data lines joined by newline), None for comments and empty events."""
    if event.startswith(b"data: ") and b"\n" not in event:
        return event[6:]
    lines = []
    for line in event.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if field == b"data":
            lines.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(lines) if lines else None


def is_plain_token_event(payload: bytes) -> bool:
    """Return True for a data payload shaped like a vLLM token event without usage, which needs no full parse.

    Shape: a JSON object that ends with its `choices` list (`...}]}`), holds the key `"choices":[{` (so the
    list is non-empty) and no `"usage"` anywhere. A key like `"choices":[{` cannot occur inside a JSON
    string (its quotes would be escaped). Anything else (usage, a different last key, a payload cut short,
    an error event without choices) goes through parse_data, which decides. This skips json.loads for nearly
    every event of a vLLM stream; as in vLLM's client, an event with a non-empty choices list is a token
    event whatever else it holds, so an `error` key beside choices does not matter here either.
    """
    return payload[:1] == b"{" and payload[-3:] == b"}]}" and b'"choices":[{' in payload and b'"usage"' not in payload


def plain_token_chunks(data: bytes) -> int:
    """Return how many token events data holds when it is exactly whole HTTP chunks of one plain event each, else 0.

    The common case of a vLLM stream: every token event is one chunk (`SIZE\r\ndata: {...}\n\n\r\n`), and
    a read returns one or a few of them. Each chunk must hold exactly one `data: ` event whose payload passes
    is_plain_token_event and whose size line matches its length. 0 means: use the general parsers (an
    incomplete or extended chunk, a comment, usage, `[DONE]`, the last chunk, CRLF line endings, ...).
    The caller may use this only at a chunk boundary with no partial event pending.
    """
    if data[-7:] != b"}]}\n\n\r\n" or b'"usage"' in data:
        return 0
    total = len(data)
    count = 0
    pos = 0
    while pos < total:
        line_end = data.find(b"\r\n", pos, pos + 10)
        if line_end <= pos:
            return 0
        try:
            size = int(data[pos:line_end], 16)
        except ValueError:
            return 0
        start = line_end + 2
        stop = start + size  # the event is data[start:stop], then CRLF
        if (
            size < 12
            or data[stop : stop + 2] != b"\r\n"
            or not data.startswith(b"data: {", start)
            or data.find(b"\n", start, stop) != stop - 2
            or not data.startswith(b"}]}\n\n", stop - 5)
            or data.find(b'"choices":[{', start, stop) < 0
        ):
            return 0
        count += 1
        pos = stop + 2
    return count


def parse_data(data: bytes) -> dict | None:
    """Return the JSON object of a data payload, None for `[DONE]`; raise StreamError for anything else."""
    if data == DONE:
        return None
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise StreamError("bad_json", f"event is not JSON: {data[:120]!r}") from exc
    except RecursionError as exc:
        raise StreamError("bad_json", f"event is JSON nested too deeply to read: {data[:40]!r}...") from exc
    if not isinstance(obj, dict):
        raise StreamError("bad_json", f"event is not a JSON object: {data[:120]!r}")
    if "error" in obj and not obj.get("choices"):
        error = obj["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        raise StreamError("stream_error", f"server sent an error event: {preview(message, 200)}")
    return obj


class StreamTimer:
    """Timing of one streamed response: feed body bytes with their arrival time.

    After the stream: `ttft`, `itl`, `last` (time of the last token event),
    `chunks` (token events), `output_tokens` / `prompt_tokens` (from usage,
    None when the server sent none) and `done` (whether `[DONE]` arrived).
    """

    __slots__ = (
        "_rest",
        "_scan",
        "chunks",
        "done",
        "itl",
        "last",
        "output_tokens",
        "prompt_tokens",
        "start",
        "ttft",
    )

    def __init__(self, start: float) -> None:
        self.start = start
        self.ttft = 0.0
        self.last = start
        self.itl: list[float] = []
        self.chunks = 0
        self.output_tokens: int | None = None
        self.prompt_tokens: int | None = None
        self.done = False
        self._rest: bytearray | bytes = _EMPTY  # bytes of an event not yet ended (a bytearray while any)
        self._scan = 0  # where in _rest the search for an event's end resumes

    def feed(self, body: bytes, now: float) -> None:
        """Consume body bytes that arrived at `now` (perf_counter seconds); raise StreamError on bad events."""
        rest = self._rest
        if rest:
            rest += body  # in place: the bytearray grows, nothing is copied but body
            scan = self._scan
            if rest.find(b"\n\n", scan) < 0 and rest.find(b"\n\r\n", scan) < 0:
                self._keep(rest)
                return
            body = bytes(rest)
        events, tail = split_events(body)
        if tail:
            self._keep(bytearray(tail))
        else:
            self._rest = _EMPTY
        for event in events:
            data = event_data(event)
            if data is None:
                continue
            if is_plain_token_event(data):
                self.token(now)
                continue
            obj = parse_data(data)
            if obj is None:
                self.done = True
                continue
            choices = obj.get("choices")
            if choices:
                if not isinstance(choices, list) or not all(isinstance(choice, dict) for choice in choices):
                    raise StreamError("bad_event", f"choices is not a list of objects: {data[:120]!r}")
                self.token(now)
            usage = obj.get("usage")
            if usage is not None:
                self._usage(usage)

    def _keep(self, rest: bytearray) -> None:
        """Hold the bytes of an unfinished event; the next search for its end starts where this one stopped."""
        if len(rest) > MAX_EVENT_BYTES:
            raise StreamError("event_too_large", f"an event grew past {MAX_EVENT_BYTES} bytes without ending")
        self._rest = rest
        # An event ends with \n\n or \n\r\n (CRLF lines): one that ends in the next read starts 2 bytes back at most.
        self._scan = max(len(rest) - 2, 0)

    def _usage(self, usage: object) -> None:
        """Take the token counts of a usage object; raise StreamError("bad_usage") for counts that cannot be."""
        if not isinstance(usage, dict):
            raise StreamError("bad_usage", f"usage is not an object: {preview(usage, 80)}")
        completion = _token_count(usage, "completion_tokens")
        prompt = _token_count(usage, "prompt_tokens")
        if completion is not None:
            self.output_tokens = completion
        if prompt is not None:
            self.prompt_tokens = prompt

    def problem(self) -> str | None:
        """Return why the finished stream cannot be counted as a success, or None (called once, at its end)."""
        if self.chunks and self.output_tokens is not None and self.output_tokens < 1:
            return f"usage.completion_tokens is {self.output_tokens} although {self.chunks} token events arrived"
        return None

    def token(self, now: float) -> None:
        """Record a token event that arrived at now."""
        if self.chunks:
            self.itl.append(now - self.last)
        else:
            self.ttft = now - self.start
        self.chunks += 1
        self.last = now

    def tokens(self, now: float, count: int) -> None:
        """Record count token events that arrived together at now (one read): the gaps after the first are 0."""
        if self.chunks:
            self.itl.append(now - self.last)
        else:
            self.ttft = now - self.start
        if count > 1:
            self.itl.extend([0.0] * (count - 1))
        self.chunks += count
        self.last = now

    @property
    def latency(self) -> float:
        """Return the E2E latency: send time to the last token event."""
        return self.last - self.start

    @property
    def pending(self) -> bytes | bytearray:
        """Return bytes of an event not yet terminated by a blank line."""
        return self._rest


def preview(value: object, limit: int) -> str:
    """Return a short text of a decoded JSON value for a message; never raises (a container nested too deeply to
    serialise is named by its kind)."""
    if isinstance(value, str):
        return value[:limit]
    try:
        return (json.dumps(value) if isinstance(value, dict | list) else repr(value))[:limit]
    except (RecursionError, ValueError):
        return f"a JSON {type(value).__name__} too deeply nested to show"


def _token_count(usage: dict, key: str) -> int | None:
    """Return usage[key] as a token count, None when absent or null; raise StreamError("bad_usage") otherwise."""
    value = usage.get(key)
    if value is None:
        return None
    if type(value) is not int or not 0 <= value < MAX_TOKEN_COUNT:
        raise StreamError("bad_usage", f"usage.{key} is {preview(value, 40)}, not a count of tokens (an integer >= 0)")
    return value
