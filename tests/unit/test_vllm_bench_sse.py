"""SSE parsing and per-request timing of streamed responses."""

import time

import pytest
from ansible.module_utils.vllm_bench_sse import (
    StreamError,
    StreamTimer,
    event_data,
    is_plain_token_event,
    parse_data,
    plain_token_chunks,
    split_events,
)

TOKEN = b'data: {"choices":[{"index":0,"text":"ab"}]}\n\n'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}\n\n'
DONE = b"data: [DONE]\n\n"


def test_split_events_keeps_incomplete_rest():
    events, rest = split_events(b"data: 1\n\ndata: 2\n\ndata: 3")
    assert events == [b"data: 1", b"data: 2"] and rest == b"data: 3"


def test_split_events_accepts_crlf_line_endings():
    events, rest = split_events(b"data: 1\r\n\r\ndata: 2\r\n")
    assert events == [b"data: 1"] and rest == b"data: 2\n"


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (b"data: {}", b"{}"),
        (b"data:{}", b"{}"),
        (b": ping", None),
        (b"event: x\nid: 3", None),
        (b"data: a\ndata: b", b"a\nb"),
        (b": comment\ndata: [DONE]", b"[DONE]"),
    ],
)
def test_event_data(event, expected):
    assert event_data(event) == expected


def test_parse_data_classifies():
    assert parse_data(b"[DONE]") is None
    assert parse_data(b'{"choices":[]}') == {"choices": []}
    with pytest.raises(StreamError) as bad:
        parse_data(b'{"choices": [')
    assert bad.value.kind == "bad_json"
    with pytest.raises(StreamError) as err:
        parse_data(b'{"error":{"message":"boom","code":500}}')
    assert err.value.kind == "stream_error" and "boom" in err.value.detail


def test_timer_measures_ttft_itl_latency_and_usage():
    timer = StreamTimer(start=10.0)
    timer.feed(b": keep-alive\n\n" + TOKEN, now=10.5)
    timer.feed(TOKEN + TOKEN, now=10.7)  # two tokens in one read
    timer.feed(USAGE, now=11.0)  # usage-only final event: not a token
    timer.feed(DONE, now=11.1)
    assert timer.ttft == pytest.approx(0.5)
    assert timer.itl == pytest.approx([0.2, 0.0])
    assert timer.latency == pytest.approx(0.7)  # ends at the last token event, not at usage or [DONE]
    assert timer.chunks == 3 and timer.output_tokens == 3 and timer.prompt_tokens == 7 and timer.done


def test_timer_multi_token_chunk_counts_once_and_usage_gives_tokens():
    timer = StreamTimer(start=0.0)
    timer.feed(b'data: {"choices":[{"text":"several tokens"}]}\n\n', now=1.0)
    timer.feed(b'data: {"choices":[],"usage":{"completion_tokens":5,"prompt_tokens":2}}\n\ndata: [DONE]\n\n', now=2)
    assert timer.chunks == 1 and timer.output_tokens == 5


def test_timer_event_split_across_reads():
    timer = StreamTimer(start=0.0)
    for index, piece in enumerate([TOKEN[:7], TOKEN[7:30], TOKEN[30:-1], TOKEN[-1:] + DONE[:3], DONE[3:]]):
        timer.feed(piece, now=float(index))
    assert timer.chunks == 1 and timer.ttft == 3.0 and timer.done and timer.pending == b""


def test_timer_chat_role_chunk_is_the_first_token_event_as_in_vllm():
    timer = StreamTimer(start=0.0)
    timer.feed(b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n', now=0.2)
    timer.feed(b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n', now=0.3)
    assert timer.ttft == pytest.approx(0.2) and timer.itl == pytest.approx([0.1])


def test_timer_raises_on_bad_json():
    timer = StreamTimer(start=0.0)
    with pytest.raises(StreamError, match="not JSON"):
        timer.feed(b"data: {oops\n\n", now=1.0)


def chunk(body: bytes) -> bytes:
    """Frame body as one HTTP chunk, as vLLM's server sends each event."""
    return b"%x\r\n" % len(body) + body + b"\r\n"


def test_plain_token_chunks_counts_whole_chunks_of_one_token_event():
    assert plain_token_chunks(chunk(TOKEN)) == 1
    assert plain_token_chunks(chunk(TOKEN) * 3) == 3


@pytest.mark.parametrize(
    "data",
    [
        chunk(TOKEN)[:-1],  # incomplete chunk
        chunk(TOKEN) + chunk(TOKEN)[:-3],  # a whole chunk, then part of one
        chunk(TOKEN + TOKEN),  # two events in one chunk: general path
        chunk(USAGE),  # usage: parsed in full
        chunk(TOKEN) + chunk(USAGE),  # usage anywhere in the read
        chunk(DONE),
        b"zz\r\n" + TOKEN + b"\r\n",  # size line not hex
        b"%x\r\n" % (len(TOKEN) + 1) + TOKEN + b"\r\n",  # size line does not match the event
        chunk(b": keep-alive\n\n" + TOKEN),  # comment before the event
        chunk(b'data: {"error":{"message":"x"}}\n\n'),  # error event without choices
        chunk(b'data: {"choices":[],"x":1}]}\n\n'),  # no non-empty choices list
        chunk(TOKEN.replace(b"\n\n", b"\r\n\r\n")),  # CRLF line endings
        b"",
    ],
)
def test_plain_token_chunks_leaves_everything_else_to_the_parsers(data):
    assert plain_token_chunks(data) == 0


def test_timer_tokens_in_one_read_have_zero_gaps_after_the_first():
    timer = StreamTimer(start=1.0)
    timer.token(1.5)
    timer.tokens(2.0, 3)
    assert timer.chunks == 4
    assert timer.itl == pytest.approx([0.5, 0.0, 0.0])
    assert timer.ttft == pytest.approx(0.5)
    assert timer.latency == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("payload", "plain"),
    [
        (b'{"choices":[{"text":"a"}]}', True),
        (b'{"choices":[],"usage":{"completion_tokens":1}}', False),
        (b'{"choices":[{"text":"a"}],"usage":{"completion_tokens":1}}', False),
        (b'{"error":{"message":"x"}}', False),
        (b'{"choices":[{"text":"a"}', False),  # truncated: parsed fully, fails as bad_json
        (b'{"choices":[],"x":"\\"choices\\":[{"}', False),  # the key inside a string does not count
        (b'{"choices":[{"text":"a"}],"model":"m"}', False),  # another last key: parsed in full
    ],
)
def test_is_plain_token_event(payload, plain):
    assert is_plain_token_event(payload) is plain


# --- hostile input (issue 11): validated, typed failures, linear cost -----------------------------


def test_a_ten_megabyte_event_in_16_kib_reads_is_not_copied_per_read():
    line = b'data: {"choices":[{"index":0,"text":"' + b"x" * (10 << 20) + b'"}]}\n\n'
    timer = StreamTimer(start=0.0)
    cpu = time.thread_time()
    for offset in range(0, len(line), 16384):
        timer.feed(line[offset : offset + 16384], now=1.0)
    used = time.thread_time() - cpu
    assert timer.chunks == 1 and timer.pending == b""
    assert used < 0.5, used  # 3.5 s when every read copied the pending bytes


@pytest.mark.parametrize("split", [1, 2, 3])
def test_an_event_end_split_across_reads_is_found(split):
    # The blank line that ends an event (\n\n, or \r\n\r\n with CRLF lines) may straddle two reads.
    for ending in (b"\n\n", b"\r\n\r\n"):
        data = b'data: {"choices":[{"text":"' + b"y" * 40000 + b'"}]}' + ending
        timer = StreamTimer(start=0.0)
        cut = len(data) - split
        timer.feed(data[:20000], now=1.0)
        timer.feed(data[20000:cut], now=1.0)
        assert timer.chunks == 0
        timer.feed(data[cut:], now=2.0)
        assert timer.chunks == 1 and timer.ttft == 2.0 and timer.pending == b""


def test_an_event_past_the_cap_fails_as_event_too_large():
    timer = StreamTimer(start=0.0)
    piece = b"data: " + b"z" * (1 << 20)
    with pytest.raises(StreamError) as too_large:
        for _ in range(20):
            timer.feed(piece, now=1.0)
    assert too_large.value.kind == "event_too_large"


@pytest.mark.parametrize(
    ("usage", "says"),
    [
        ('"lots"', "usage is not an object: lots"),
        ("[1, 2]", "usage is not an object: [1, 2]"),
        ("7", "usage is not an object: 7"),
        ('{"completion_tokens": -50}', "completion_tokens is -50"),
        ('{"completion_tokens": "5"}', "completion_tokens is 5"),
        ('{"completion_tokens": true}', "completion_tokens is True"),
        ('{"completion_tokens": 2.0}', "completion_tokens is 2.0"),
        ('{"completion_tokens": 1e300}', "completion_tokens is 1e+300"),
        ('{"completion_tokens": 9999999999999}', "completion_tokens is 9999999999999"),
        ('{"completion_tokens": {"a": 1}}', 'completion_tokens is {"a": 1}'),
        ('{"completion_tokens": 3, "prompt_tokens": -1}', "prompt_tokens is -1"),
    ],
)
def test_usage_that_cannot_be_is_bad_usage(usage, says):
    timer = StreamTimer(start=0.0)
    timer.feed(TOKEN, now=1.0)
    with pytest.raises(StreamError) as bad:
        timer.feed(b'data: {"choices":[],"usage":' + usage.encode() + b"}\n\n", now=2.0)
    assert bad.value.kind == "bad_usage" and says in bad.value.detail


def test_zero_output_tokens_after_token_events_is_a_problem_at_the_end():
    timer = StreamTimer(start=0.0)
    timer.feed(TOKEN + b'data: {"choices":[],"usage":{"completion_tokens":0,"prompt_tokens":0}}\n\n', now=1.0)
    assert timer.problem() == "usage.completion_tokens is 0 although 1 token events arrived"
    fine = StreamTimer(start=0.0)
    fine.feed(TOKEN + USAGE, now=1.0)
    assert fine.problem() is None


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        (b'data: {"choices":"abc"}\n\n', "bad_event"),
        (b'data: {"choices":{"text":"x"}}\n\n', "bad_event"),
        (b'data: {"choices":[1]}\n\n', "bad_event"),
        (b"data: " + b"[" * 100000 + b"]" * 100000 + b"\n\n", "bad_json"),
        (b'data: {"error": ' + b"[" * 100000 + b"]" * 100000 + b"}\n\n", "bad_json"),
        (b'data: "just a string"\n\n', "bad_json"),
        (b"data: \xff\xfe\n\n", "bad_json"),
    ],
)
def test_events_of_the_wrong_shape_are_typed_failures(event, kind):
    with pytest.raises(StreamError) as bad:
        StreamTimer(start=0.0).feed(event, now=1.0)
    assert bad.value.kind == kind
