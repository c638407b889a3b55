"""The protocol between the node agent and its credentials worker (:mod:`meshlet.pki.worker`).

The agent does not import ``cryptography`` (its OpenSSL costs the long-running process about
8 MB); a short-lived child process makes keys and CSRs and reads certificates for it. One child
answers one request: the request is one JSON object on the child's stdin, the answer one JSON
object on its stdout, then the child exits with status 0. A private key travels only in the
answer, over the pipe: never in argv or the environment, where other users could read it::

    {"version": 1, "op": "new-key", "identity": "spiffe://..."}
        -> {"key": "<PKCS#8 PEM>", "csr": "<CSR PEM>"}
    {"version": 1, "op": "inspect", "certificate": "<certificate PEM>"}
        -> {"identity": "spiffe://..." | null, "notBefore": "<ISO 8601>", "notAfter": "<ISO 8601>"}
    a request the worker refuses, or that fails
        -> {"error": "<message>"}

The child is the same installation as the agent but may be newer (an upgrade installed under a
running agent), hence the version. Everything here is pure: encoding, decoding, and the checks
of what crosses the pipe, which raise :class:`~meshlet.pki.PkiError` with the worker's message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from meshlet.pki import PkiError

__all__ = [
    "PROTOCOL_VERSION",
    "CertificateInfo",
    "Inspect",
    "KeyAndCsr",
    "NewKey",
    "Request",
    "decode_certificate_info",
    "decode_key_and_csr",
    "decode_request",
    "encode_answer",
    "encode_request",
]

PROTOCOL_VERSION = 1

_KEY_PEM = "-----BEGIN PRIVATE KEY-----"
_CSR_PEM = "-----BEGIN CERTIFICATE REQUEST-----"


@dataclass(frozen=True, slots=True)
class NewKey:
    """Make a P-256 key and a CSR asking for ``identity``."""

    identity: str


@dataclass(frozen=True, slots=True)
class Inspect:
    """Read the SPIFFE identity and the validity of a PEM certificate."""

    certificate: bytes


Request = NewKey | Inspect


@dataclass(frozen=True, slots=True)
class KeyAndCsr:
    """PEM private key (PKCS#8, unencrypted) and the PEM CSR signed with it."""

    key: bytes = field(repr=False)
    csr: bytes


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """What the agent needs of a certificate: whose it is and when it is valid (UTC)."""

    identity: str | None
    not_before: datetime
    not_after: datetime


def encode_request(request: Request) -> bytes:
    body: dict[str, object] = {"version": PROTOCOL_VERSION}
    if isinstance(request, NewKey):
        body.update(op="new-key", identity=request.identity)
    elif request.certificate.isascii():
        body.update(op="inspect", certificate=request.certificate.decode("ascii"))
    else:
        raise PkiError("not a PEM certificate: it holds non-ASCII bytes")
    return json.dumps(body).encode()


def decode_request(data: bytes) -> Request:
    """The worker's side: the request on its stdin, or :class:`PkiError` saying what is wrong."""
    body = _object(data, "the request")
    if body.get("version") != PROTOCOL_VERSION:
        raise PkiError(
            f"the request has protocol version {body.get('version')!r}, this worker speaks "
            f"{PROTOCOL_VERSION}: restart the agent after upgrading meshlet"
        )
    op = body.get("op")
    if op == "new-key":
        identity = body.get("identity")
        if not isinstance(identity, str) or not identity.startswith("spiffe://"):
            raise PkiError(f"new-key needs a spiffe:// identity, got {identity!r}")
        return NewKey(identity)
    if op == "inspect":
        return Inspect(_string(body, "certificate").encode("ascii"))
    raise PkiError(f"unknown op {op!r}; expected 'new-key' or 'inspect'")


def encode_answer(answer: KeyAndCsr | CertificateInfo | PkiError) -> bytes:
    """The worker's side: the answer for its stdout (a :class:`PkiError` becomes ``error``)."""
    body: dict[str, object]
    if isinstance(answer, PkiError):
        body = {"error": str(answer)}
    elif isinstance(answer, KeyAndCsr):
        body = {"key": answer.key.decode("ascii"), "csr": answer.csr.decode("ascii")}
    else:
        body = {
            "identity": answer.identity,
            "notBefore": answer.not_before.isoformat(),
            "notAfter": answer.not_after.isoformat(),
        }
    return json.dumps(body).encode()


def decode_key_and_csr(data: bytes) -> KeyAndCsr:
    """The agent's side: the answer to :class:`NewKey`, checked to hold a key and a CSR."""
    body = _answer(data)
    key, csr = _string(body, "key"), _string(body, "csr")
    if not key.startswith(_KEY_PEM):
        raise PkiError(f"the credentials worker's key is not a PEM private key ({_KEY_PEM})")
    if not csr.startswith(_CSR_PEM):
        raise PkiError(f"the credentials worker's csr is not a PEM CSR ({_CSR_PEM})")
    return KeyAndCsr(key.encode("ascii"), csr.encode("ascii"))


def decode_certificate_info(data: bytes) -> CertificateInfo:
    """The agent's side: the answer to :class:`Inspect`, checked for a sane validity period."""
    body = _answer(data)
    identity = body.get("identity")
    if identity is not None and not isinstance(identity, str):
        raise PkiError(f"the credentials worker's identity is not a string: {identity!r}")
    not_before, not_after = _time(body, "notBefore"), _time(body, "notAfter")
    if not_after < not_before:
        raise PkiError(
            f"the certificate's validity ends ({not_after.isoformat()}) before it starts "
            f"({not_before.isoformat()})"
        )
    return CertificateInfo(identity, not_before, not_after)


def _answer(data: bytes) -> dict[str, object]:
    body = _object(data, "the credentials worker's answer")
    error = body.get("error")
    if error is not None:
        raise PkiError(str(error))
    return body


def _object(data: bytes, what: str) -> dict[str, object]:
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PkiError(f"{what} is not JSON: {exc}") from None
    if not isinstance(body, dict):
        # Not echoed: an answer may carry a private key.
        raise PkiError(f"{what} is not a JSON object but {type(body).__name__}")
    return body


def _string(body: dict[str, object], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise PkiError(f"{name!r} must be a string, got {value!r}")
    if not value.isascii():
        raise PkiError(f"{name!r} must be ASCII (PEM)")
    return value


def _time(body: dict[str, object], name: str) -> datetime:
    value = _string(body, name)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise PkiError(f"{name!r} is not an ISO 8601 time: {value!r}") from None
    if moment.tzinfo is None:
        raise PkiError(f"{name!r} has no time zone: {value!r}")
    return moment
