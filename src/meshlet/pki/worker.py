"""``python -m meshlet.pki.worker``: answers one credentials request of :mod:`meshlet.pki.protocol`.

Run by the node agent (:mod:`meshlet.pki.isolated`) so that ``cryptography`` is loaded only in
this short-lived process. Reads the request from stdin until EOF, writes the answer to stdout
and exits 0; a request it refuses or that fails is answered with ``error``. Anything else (a bug)
ends it with a traceback on stderr and a non-zero status, which the agent reports.
"""

from __future__ import annotations

import sys

from meshlet.pki import PkiError
from meshlet.pki.credentials import (
    cert_identity,
    cert_not_after,
    create_csr,
    generate_key,
    key_to_pem,
    load_cert,
)
from meshlet.pki.protocol import (
    CertificateInfo,
    Inspect,
    KeyAndCsr,
    Request,
    decode_request,
    encode_answer,
)

__all__ = ["answer", "main"]


def answer(request: Request) -> KeyAndCsr | CertificateInfo:
    if isinstance(request, Inspect):
        cert = load_cert(request.certificate)
        return CertificateInfo(cert_identity(cert), cert.not_valid_before_utc, cert_not_after(cert))
    key = generate_key()
    return KeyAndCsr(key_to_pem(key), create_csr(key, request.identity))


def main() -> int:
    result: KeyAndCsr | CertificateInfo | PkiError
    try:
        result = answer(decode_request(sys.stdin.buffer.read()))
    except PkiError as exc:
        result = exc
    sys.stdout.buffer.write(encode_answer(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
