"""meshlet.pki.protocol: what the agent and its credentials worker say over the pipe (pure)."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshlet.pki import PkiError
from meshlet.pki.protocol import (
    PROTOCOL_VERSION,
    CertificateInfo,
    Inspect,
    KeyAndCsr,
    NewKey,
    decode_certificate_info,
    decode_key_and_csr,
    decode_request,
    encode_answer,
    encode_request,
)

ALICE = "spiffe://meshlet.local/ns/demo/meshlet/alice"
KEY = b"-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n"
CSR = b"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
CERT = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize("request_", [NewKey(ALICE), Inspect(CERT)])
def test_requests_survive_the_pipe(request_: NewKey | Inspect) -> None:
    assert decode_request(encode_request(request_)) == request_


def test_a_key_and_csr_survive_the_pipe() -> None:
    answer = KeyAndCsr(KEY, CSR)
    assert decode_key_and_csr(encode_answer(answer)) == answer


@pytest.mark.parametrize("identity", [ALICE, None])
def test_certificate_info_survives_the_pipe_with_its_time_zone(identity: str | None) -> None:
    info = CertificateInfo(identity, NOW, NOW + timedelta(hours=24))
    again = decode_certificate_info(encode_answer(info))
    assert again == info
    assert again.not_after.utcoffset() == timedelta(0)


def test_the_private_key_is_not_in_the_repr_that_logs_would_show() -> None:
    assert "PRIVATE" not in repr(KeyAndCsr(KEY, CSR))


def test_the_worker_error_reaches_the_agent_as_pki_error_with_its_message() -> None:
    wire = encode_answer(PkiError("not a PEM certificate: MalformedFraming"))
    with pytest.raises(PkiError, match="MalformedFraming"):
        decode_certificate_info(wire)
    with pytest.raises(PkiError, match="MalformedFraming"):
        decode_key_and_csr(wire)


def test_a_request_from_another_protocol_version_is_refused_with_advice() -> None:
    body = json.loads(encode_request(NewKey(ALICE)))
    body["version"] = PROTOCOL_VERSION + 1
    with pytest.raises(PkiError, match="restart the agent"):
        decode_request(json.dumps(body).encode())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"op": "new-key", "identity": "alice"}, "spiffe://"),
        ({"op": "new-key"}, "spiffe://"),
        ({"op": "inspect", "certificate": 5}, "'certificate' must be a string"),
        ({"op": "sign"}, "unknown op 'sign'"),
    ],
)
def test_malformed_requests_are_refused(body: dict[str, object], message: str) -> None:
    with pytest.raises(PkiError, match=message):
        decode_request(json.dumps({"version": PROTOCOL_VERSION, **body}).encode())


def test_a_certificate_that_is_not_ascii_is_refused_before_the_worker_runs() -> None:
    with pytest.raises(PkiError, match="non-ASCII"):
        encode_request(Inspect(b"\xff\xfe"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"key": "oops", "csr": CSR.decode()}, "not a PEM private key"),
        ({"key": KEY.decode(), "csr": "oops"}, "not a PEM CSR"),
        ({"csr": CSR.decode()}, "'key' must be a string"),
    ],
)
def test_a_worker_answer_without_key_and_csr_is_refused(
    body: dict[str, object], message: str
) -> None:
    with pytest.raises(PkiError, match=message):
        decode_key_and_csr(json.dumps(body).encode())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"identity": 5, "notBefore": "2025-01-01T00:00:00+00:00"}, "identity is not a string"),
        ({"identity": None, "notBefore": "2025-01-01T00:00:00+00:00"}, "'notAfter'"),
        (
            {"identity": None, "notBefore": "2025-01-01T00:00:00", "notAfter": "2025-01-02T00:00"},
            "no time zone",
        ),
        (
            {"identity": None, "notBefore": "yesterday", "notAfter": "2025-01-02T00:00:00Z"},
            "not an ISO 8601 time",
        ),
        (
            {
                "identity": None,
                "notBefore": "2025-01-02T00:00:00+00:00",
                "notAfter": "2025-01-01T00:00:00+00:00",
            },
            "ends .* before it starts",
        ),
    ],
)
def test_a_worker_answer_with_unusable_validity_is_refused(
    body: dict[str, object], message: str
) -> None:
    with pytest.raises(PkiError, match=message):
        decode_certificate_info(json.dumps(body).encode())


@given(st.binary())
def test_any_bytes_from_the_pipe_give_an_answer_or_pki_error(data: bytes) -> None:
    _decode_everywhere(data)


@given(
    st.dictionaries(
        st.sampled_from(["version", "op", "identity", "certificate", "key", "csr", "error"]),
        st.none() | st.booleans() | st.integers() | st.text(max_size=40) | st.lists(st.text()),
    )
)
def test_any_json_object_from_the_pipe_gives_an_answer_or_pki_error(
    body: dict[str, object],
) -> None:
    data = json.dumps(body).encode()
    _decode_everywhere(data)


def _decode_everywhere(data: bytes) -> None:
    """Every decoder either decodes ``data`` or raises :class:`PkiError`, nothing else."""
    for decode in (decode_request, decode_key_and_csr, decode_certificate_info):
        with contextlib.suppress(PkiError):
            decode(data)
