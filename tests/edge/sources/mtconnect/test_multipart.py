"""The multipart/x-mixed-replace reader: the same parts whatever the split of the byte stream, parts framed
by Content-Length or by the next boundary, and bounded buffers against a hostile stream."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.sources.mtconnect.multipart import MAX_HEADERS, MultipartReader, boundary_from_content_type
from edge.sources.mtconnect.protocol import ProtocolError, Streams, parse_streams

DATA = Path(__file__).parent / "data"
BOUNDARY = b"a8e12eced4fb871ac096a99bf9728425"
DOCS = [(DATA / name).read_bytes() for name in ("streams-1.3.xml", "streams-1.7.xml", "streams-2.5.xml")]
HEARTBEAT = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
             b'<MTConnectStreams xmlns="urn:mtconnect.org:MTConnectStreams:1.7">'
             b'<Header instanceId="7" nextSequence="2050" firstSequence="1026" lastSequence="2049"/><Streams/>'
             b"</MTConnectStreams>\n")


def _with_length(parts: list[bytes], boundary: bytes = BOUNDARY) -> bytes:
    """As the reference agent writes a /sample stream: every part with Content-type and Content-length."""
    out = b""
    for body in parts:
        out += b"--" + boundary + b"\r\nContent-type: text/xml\r\nContent-length: " + str(len(body)).encode()
        out += b"\r\n\r\n" + body + b"\r\n"
    return out


def _delimited(parts: list[bytes], boundary: bytes = BOUNDARY, nl: bytes = b"\r\n") -> bytes:
    """Parts framed only by the boundary (no Content-Length), with a preamble and a close delimiter."""
    out = b"This is a multi-part message in MIME format." + nl
    for body in parts:
        out += b"--" + boundary + b" \t" + nl + b"Content-Type: text/xml" + nl + nl + body + nl
    return out + b"--" + boundary + b"--" + nl + b"epilogue, ignored"


PARTS = [DOCS[0], HEARTBEAT, DOCS[1], b"", DOCS[2], HEARTBEAT]
RECORDED = {
    "content-length": _with_length(PARTS),
    "delimited-crlf": _delimited(PARTS),
    "delimited-lf": _delimited(PARTS, nl=b"\n"),
}


def _feed_split(stream: bytes, cuts: list[int], **kw: int) -> list[bytes]:
    reader = MultipartReader(BOUNDARY, **kw)
    out: list[bytes] = []
    last = 0
    for cut in sorted(set(cuts)) + [len(stream)]:
        out += reader.feed(stream[last:cut])
        last = cut
    return out


@pytest.mark.parametrize("kind", sorted(RECORDED))
def test_a_whole_stream_gives_every_part_in_order(kind: str) -> None:
    parts = _feed_split(RECORDED[kind], [])
    assert parts == PARTS
    first = parse_streams(parts[0])
    assert isinstance(first, Streams) and first.header.last_sequence == 1289


@pytest.mark.parametrize("kind", sorted(RECORDED))
def test_one_byte_at_a_time_gives_the_same_parts(kind: str) -> None:
    stream = RECORDED[kind]
    assert _feed_split(stream, list(range(len(stream)))) == PARTS


@settings(max_examples=300, deadline=None)
@given(data=st.data(), kind=st.sampled_from(sorted(RECORDED)))
def test_any_split_of_the_stream_gives_the_same_parts(data: st.DataObject, kind: str) -> None:
    stream = RECORDED[kind]
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=60))
    assert _feed_split(stream, cuts) == PARTS


# 60 kB of a /sample stream as the simulator's agent sent it (MTConnect 1.7, from=200&count=40&interval=0&
# heartbeat=50, the replay paused for the first parts, so heartbeats come between data), cut mid-part.
RECORDED_AGENT = (DATA / "sample-stream-1.7.bin").read_bytes()
AGENT_BOUNDARY = b"b35502217a190614cae566b13ea15d68"


def test_the_recorded_agent_stream_gives_parts_in_sequence_order() -> None:
    parts = MultipartReader(AGENT_BOUNDARY).feed(RECORDED_AGENT)
    docs = [parse_streams(p) for p in parts]
    assert len(docs) >= 10 and all(isinstance(d, Streams) for d in docs)
    sequences = [o.sequence for d in docs if isinstance(d, Streams) for o in d.observations]
    assert sequences == list(range(200, 200 + len(sequences)))
    assert any(isinstance(d, Streams) and not d.observations for d in docs)  # heartbeats


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_split_of_the_recorded_agent_stream_gives_the_same_parts(data: st.DataObject) -> None:
    whole = MultipartReader(AGENT_BOUNDARY).feed(RECORDED_AGENT)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(RECORDED_AGENT)), max_size=80))
    reader = MultipartReader(AGENT_BOUNDARY)
    got: list[bytes] = []
    last = 0
    for cut in sorted(set(cuts)) + [len(RECORDED_AGENT)]:
        got += reader.feed(RECORDED_AGENT[last:cut])
        last = cut
    assert got == whole


@settings(max_examples=100, deadline=None)
@given(bodies=st.lists(st.binary(max_size=300), min_size=1, max_size=8), data=st.data())
def test_any_bodies_framed_by_content_length_survive_any_split(bodies: list[bytes], data: st.DataObject) -> None:
    # A Content-Length body may hold anything, even the boundary itself.
    bodies = [b + b"\r\n--" + BOUNDARY if i % 3 == 2 else b for i, b in enumerate(bodies)]
    stream = _with_length(bodies)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=30))
    assert _feed_split(stream, cuts) == bodies


def test_a_longer_token_starting_with_the_boundary_is_body_text() -> None:
    body = b"line one\r\n--" + BOUNDARY + b"XYZ is not a boundary\r\nline three"
    stream = _delimited([body, HEARTBEAT])
    assert _feed_split(stream, []) == [body, HEARTBEAT]
    assert _feed_split(stream, list(range(0, len(stream), 3))) == [body, HEARTBEAT]


def test_after_the_close_delimiter_nothing_more_is_read() -> None:
    reader = MultipartReader(BOUNDARY)
    assert reader.feed(_delimited([HEARTBEAT])) == [HEARTBEAT]
    assert reader.finished
    assert reader.feed(_with_length([HEARTBEAT])) == []


# --- bounds against a hostile stream ---


def test_a_part_announcing_more_than_the_limit_is_refused_before_it_is_read() -> None:
    reader = MultipartReader(BOUNDARY, max_part=1000)
    with pytest.raises(ProtocolError, match="part of 1,001 bytes exceeds the limit of 1,000"):
        reader.feed(b"--" + BOUNDARY + b"\r\nContent-length: 1001\r\n\r\n")


def test_an_endless_delimited_part_is_refused_at_the_limit() -> None:
    reader = MultipartReader(BOUNDARY, max_part=10_000)
    reader.feed(b"--" + BOUNDARY + b"\r\nContent-type: text/xml\r\n\r\n")
    with pytest.raises(ProtocolError, match="exceeds the limit of 10,000 bytes"):
        for _ in range(100):
            reader.feed(b"<x>" * 100)


def test_endless_headers_are_refused() -> None:
    reader = MultipartReader(BOUNDARY)
    reader.feed(b"--" + BOUNDARY + b"\r\n")
    with pytest.raises(ProtocolError, match="headers of a multipart part exceed"):
        for _ in range(MAX_HEADERS // 10 + 2):
            reader.feed(b"X-Pad: 123\r")


def test_a_stream_that_never_sends_a_boundary_is_refused() -> None:
    reader = MultipartReader(BOUNDARY, max_part=4096)
    with pytest.raises(ProtocolError, match="no multipart boundary within 4,096 bytes"):
        for _ in range(200):
            reader.feed(b"<html>not a multipart stream</html>\n")


@pytest.mark.parametrize("value", [b"-1", b"12abc", b"99999999999999999999", b""])
def test_a_bad_content_length_is_refused(value: bytes) -> None:
    reader = MultipartReader(BOUNDARY)
    with pytest.raises(ProtocolError, match="bad Content-Length"):
        reader.feed(b"--" + BOUNDARY + b"\r\nContent-Length: " + value + b"\r\n\r\n")


# --- the boundary from the Content-Type header ---


@pytest.mark.parametrize(
    ("value", "boundary"),
    [
        ("multipart/x-mixed-replace;boundary=a8e12eced4fb871ac096a99bf9728425", BOUNDARY),
        ('multipart/x-mixed-replace; charset=UTF-8; boundary="simple boundary"', b"simple boundary"),
        ("Multipart/X-Mixed-Replace; BOUNDARY=x", b"x"),
    ],
)
def test_the_boundary_is_read_from_the_content_type(value: str, boundary: bytes) -> None:
    assert boundary_from_content_type(value) == boundary


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("text/xml; charset=UTF-8", "did not answer with a multipart stream"),
        ("multipart/x-mixed-replace", "no usable boundary"),
        ("multipart/x-mixed-replace; boundary=", "no usable boundary"),
        ("multipart/x-mixed-replace; boundary=" + "b" * 71, "no usable boundary"),
        ("multipart/x-mixed-replace; boundary=caf\u00e9", "no usable boundary"),
        ("multipart/x-mixed-replace; boundary=a\r\nX-Injected: 1", "no usable boundary"),
    ],
)
def test_a_content_type_without_a_usable_boundary_is_refused(value: str, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        boundary_from_content_type(value)
