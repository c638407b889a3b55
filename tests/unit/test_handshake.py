"""The Meshless client handshake codec (meshlet.wire.handshake), byte for byte."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshlet.wire.handshake import (
    PROTOCOL_VERSION,
    HandshakeError,
    ReplyCode,
    ReplyParser,
    RequestParser,
    encode_reply,
    encode_request,
)
from meshlet.wire.service_id import ServiceId


def test_reply_codes_are_the_seed_table() -> None:
    assert {c.name: int(c) for c in ReplyCode} == {
        "OK": 0,
        "GENERAL_FAILURE": 1,
        "VERSION_NOT_SUPPORTED": 2,
        "BAD_REQUEST": 3,
        "SERVICE_NOT_FOUND": 4,
        "ACCESS_DENIED": 5,
        "NO_ENDPOINT": 6,
        "CONNECTION_LIMIT": 7,
        "CONNECT_FAILED": 8,
        "TIMEOUT": 9,
        "NOT_READY": 10,
    }
    assert all(code.meaning for code in ReplyCode)


def test_request_bytes_are_version_length_id() -> None:
    assert encode_request("echo.echo.demo") == b"\x01\x0eecho.echo.demo"


@pytest.mark.parametrize("bad", ["", "echo", "a.b", "a.b.c.d", "Echo.b.c", "a..c", "-a.b.c"])
def test_encode_request_refuses_bad_service_ids(bad: str) -> None:
    with pytest.raises(HandshakeError) as info:
        encode_request(bad)
    assert info.value.code is ReplyCode.BAD_REQUEST


def test_encode_request_accepts_the_longest_possible_id() -> None:
    service_id = "a" * 63 + "." + "b" * 63 + "." + "c" * 63
    raw = encode_request(service_id)
    assert raw[1] == len(service_id) == 191


@pytest.mark.parametrize("code", list(ReplyCode))
def test_reply_bytes_are_version_code(code: ReplyCode) -> None:
    assert encode_reply(code) == bytes((PROTOCOL_VERSION, int(code)))


def test_parser_returns_the_id_when_complete() -> None:
    parser = RequestParser()
    assert parser.feed(b"\x01\x05a.b.c") == ServiceId("a", "b", "c")
    assert parser.rest == b""


def test_parser_waits_byte_by_byte() -> None:
    parser = RequestParser()
    raw = encode_request("svc.mesh.ns")
    for i in range(len(raw) - 1):
        assert parser.feed(raw[i : i + 1]) is None
    assert parser.feed(raw[-1:]) == ServiceId("svc", "mesh", "ns")


def test_parser_needs_bytes() -> None:
    assert RequestParser().feed(b"") is None


def test_parser_keeps_pipelined_bytes() -> None:
    parser = RequestParser()
    assert parser.feed(b"\x01\x05a.b.cGET / HTTP/1.1\r\n") == ServiceId("a", "b", "c")
    assert parser.rest == b"GET / HTTP/1.1\r\n"


@pytest.mark.parametrize("version", [0, 2, 5, 255])
def test_wrong_version_is_rejected_from_the_first_byte(version: int) -> None:
    with pytest.raises(HandshakeError) as info:
        RequestParser().feed(bytes((version,)))
    assert info.value.code is ReplyCode.VERSION_NOT_SUPPORTED


def test_zero_length_is_a_bad_request_without_waiting() -> None:
    with pytest.raises(HandshakeError) as info:
        RequestParser().feed(b"\x01\x00")
    assert info.value.code is ReplyCode.BAD_REQUEST


@pytest.mark.parametrize(
    "raw",
    [
        b"\x01\x03a.b",  # two parts
        b"\x01\x07a.b.c.d",  # four parts
        b"\x01\x05A.b.c",  # uppercase
        b"\x01\x05a.b.\xff",  # not ASCII
        b"\x01\x05a.b.\x00",  # control byte
        b"\x01\x05a..bc",  # empty label
        b"\x01\x06-a.b.c",  # leading hyphen
    ],
)
def test_malformed_service_ids_are_bad_requests(raw: bytes) -> None:
    with pytest.raises(HandshakeError) as info:
        RequestParser().feed(raw)
    assert info.value.code is ReplyCode.BAD_REQUEST


def test_reply_parser_reads_code_and_keeps_server_bytes() -> None:
    parser = ReplyParser()
    assert parser.feed(b"\x01") is None
    assert parser.feed(b"\x00hello") is ReplyCode.OK
    assert parser.rest == b"hello"


@pytest.mark.parametrize("code", list(ReplyCode))
def test_reply_parser_knows_every_code(code: ReplyCode) -> None:
    assert ReplyParser().feed(encode_reply(code)) is code


@pytest.mark.parametrize("raw", [b"\x02\x00", b"\x00\x00", b"\x01\x0b", b"\x01\xff"])
def test_reply_parser_rejects_unknown_version_or_code(raw: bytes) -> None:
    with pytest.raises(HandshakeError) as info:
        ReplyParser().feed(raw)
    assert info.value.code is ReplyCode.GENERAL_FAILURE


def test_handshake_error_message_names_the_code() -> None:
    error = HandshakeError(ReplyCode.ACCESS_DENIED, "nope")
    assert "ACCESS_DENIED (5)" in str(error) and error.detail == "nope"


@given(st.binary(max_size=300), st.data())
def test_no_byte_sequence_crashes_the_request_parser(raw: bytes, data: st.DataObject) -> None:
    """Only HandshakeError may escape, however the bytes are split."""
    parser = RequestParser()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=4)))
    with contextlib.suppress(HandshakeError):
        start = 0
        for cut in [*cuts, len(raw)]:
            result = parser.feed(raw[start:cut])
            start = cut
            if result is not None:
                assert raw[2 : 2 + raw[1]] == str(result).encode()
                break


@given(st.binary(max_size=10))
def test_no_byte_sequence_crashes_the_reply_parser(raw: bytes) -> None:
    with contextlib.suppress(HandshakeError):
        ReplyParser().feed(raw)


labels = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)


@given(labels, labels, labels, st.binary(max_size=20))
def test_request_round_trips(service: str, meshlet: str, ns: str, tail: bytes) -> None:
    parser = RequestParser()
    assert parser.feed(encode_request(f"{service}.{meshlet}.{ns}") + tail) == ServiceId(
        service, meshlet, ns
    )
    assert parser.rest == tail
