"""Incremental HTTP/1.1 response parsing and request bytes."""

import pytest
from ansible.module_utils.vllm_bench_http import (
    ProtocolError,
    ResponseParser,
    host_header,
    post_request_bytes,
    split_url,
)

CHUNKED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
)


def feed_bytewise(parser, data):
    return b"".join(parser.feed(data[i : i + 1]) for i in range(len(data)))


def test_chunked_whole_and_bytewise():
    whole = ResponseParser()
    assert whole.feed(CHUNKED) == b"hello world" and whole.complete and whole.keep_alive
    bytewise = ResponseParser()
    assert feed_bytewise(bytewise, CHUNKED) == b"hello world" and bytewise.complete
    assert bytewise.status == 200 and bytewise.headers["content-type"] == "text/event-stream"


def test_content_length_and_error_status():
    parser = ResponseParser()
    body = parser.feed(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nbo")
    body += parser.feed(b"om")
    assert body == b"boom" and parser.complete and parser.status == 500 and parser.reason == "Internal Server Error"


def test_until_close_body_and_connection_close():
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\ndata") == b"data"
    assert not parser.complete
    parser.close()
    assert parser.complete and not parser.keep_alive


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_protocol_errors(raw):
    with pytest.raises(ProtocolError):
        ResponseParser().feed(raw)


def test_chunk_boundary_flag():
    parser = ResponseParser()
    parser.feed(CHUNKED[: CHUNKED.index(b"5\r\n")])
    assert parser.at_chunk_boundary
    parser.feed(b"5\r\nhe")
    assert not parser.at_chunk_boundary


def test_split_url_and_host_header():
    assert split_url("http://127.0.0.1:8011/") == ("http", "127.0.0.1", 8011, "")
    assert split_url("https://llm.example.com/prefix") == ("https", "llm.example.com", 443, "/prefix")
    with pytest.raises(ValueError, match="http://HOST:PORT"):
        split_url("127.0.0.1:8000")
    assert host_header("::1", 8000, "http") == "[::1]:8000"
    assert host_header("a", 443, "https") == "a"


def test_post_request_bytes():
    raw = post_request_bytes("/v1/completions", "h:1", b"{}", {"Authorization": "Bearer k"})
    head, body = raw.split(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/completions HTTP/1.1\r\nHost: h:1\r\n")
    assert b"Content-Length: 2" in head and b"Authorization: Bearer k" in head and body == b"{}"


# --- hostile input (issue 11): refused early, bounded -------------------------------------------


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"SSH-2.0-Open", "not an HTTP response"),  # no blank line yet: refused at its first bytes
        (b"\x16\x03\x01", "not an HTTP response"),
        (b"HTTP/1.1 20 OK\r\n\r\n", "bad status code"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "bad status code"),
        (b"HTTP/1.1 +20 OK\r\n\r\n", "bad status code"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", "chunk-size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n", "chunk-size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n", "chunk-size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 2000, "chunk-size line too long"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + b"x: y\r\n" * 20000, "trailers"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + b"x" * 70000, "trailers"),
        (b"HTTP/1.1 200 OK\r\n" + b"x-pad: aaaa\r\n" * 10000, "64 KiB"),
    ],
)
def test_hostile_responses_raise_protocol_error(raw, says):
    with pytest.raises(ProtocolError, match=says):
        ResponseParser().feed(raw)


def test_the_first_bytes_of_a_valid_status_line_are_not_refused():
    parser = ResponseParser()
    for piece in (b"H", b"TT", b"P/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"):
        parser.feed(piece)
    assert parser.complete and parser.status == 200


def test_bytes_after_a_complete_answer_are_kept_as_surplus_and_end_keep_alive():
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    assert parser.complete and parser.status == 103 and not parser.keep_alive
    assert parser.surplus == b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


def test_chunk_extensions_and_whitespace_before_them_are_accepted():
    parser = ResponseParser()
    body = parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 ;a=b\r\nhello\r\n0\r\nx: y\r\n\r\n")
    assert body == b"hello" and parser.complete
