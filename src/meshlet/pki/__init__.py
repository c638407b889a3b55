"""Identities and mutual-TLS contexts of the mesh (SPIFFE identities, mutual TLS 1.3).

Identities are SPIFFE IDs carried as the single URI subject alternative name of a leaf
certificate: ``spiffe://<td>/ns/<ns>/meshlet/<name>`` for a meshlet and
``spiffe://<td>/node/<node>`` for a node agent. Peers are verified against the mesh CA and then
by that URI, never by host name, so the TLS contexts here disable ``check_hostname``.

This package needs only the standard library's ``ssl``. What needs ``cryptography`` lives in
submodules that the node agent never imports, so that its long-running process does not carry
that library's memory:

- :mod:`meshlet.pki.credentials`: keys, CSRs, certificates (PEM; identity and validity);
- :mod:`meshlet.pki.authority`: the CA: create it, check and sign CSRs, serving certificates;
- :mod:`meshlet.pki.worker`: the child process the agent runs for credentials, speaking
  :mod:`meshlet.pki.protocol`, through :mod:`meshlet.pki.isolated` (which is cryptography-free).

Certificate renewal without dropping connections: a TLS context keeps the chain it was given
for *new* handshakes only, so a caller renews by calling ``ctx.load_cert_chain(new_cert,
new_key)`` on the **same** :class:`ssl.SSLContext` object it handed to servers and dialers.
Established connections keep the certificate they were opened with; listeners need no restart.
"""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = [
    "PkiError",
    "meshlet_identity",
    "mtls_client_context",
    "mtls_server_context",
    "node_identity",
    "peer_identity",
]


class PkiError(Exception):
    """A key, CSR or certificate is malformed, or a signing request is refused."""


def meshlet_identity(trust_domain: str, namespace: str, meshlet: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/meshlet/{meshlet}"


def node_identity(trust_domain: str, node: str) -> str:
    return f"spiffe://{trust_domain}/node/{node}"


def peer_identity(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> str | None:
    """The verified SPIFFE ID of the peer of an established TLS connection, if any.

    Read from the certificate ``ssl`` decoded when it verified the chain (the contexts of this
    module always verify), so no certificate parser is needed here.
    """
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    for entry in cert.get("subjectAltName", ()):
        # ("URI", "spiffe://..."), ("DNS", ...): typeshed types the decoded dict loosely
        if not isinstance(entry, tuple):
            continue
        kind, value = entry
        if kind == "URI" and isinstance(value, str) and value.startswith("spiffe://"):
            return value
    return None


def mtls_server_context(
    cert_file: str | Path, key_file: str | Path, ca_file: str | Path
) -> ssl.SSLContext:
    """A TLS 1.3 server context that requires a client certificate signed by the mesh CA.

    Renew by calling ``load_cert_chain`` on this same object (affects new handshakes only).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    return _mutual(ctx, cert_file, key_file, ca_file)


def mtls_client_context(
    cert_file: str | Path, key_file: str | Path, ca_file: str | Path
) -> ssl.SSLContext:
    """A TLS 1.3 client context presenting a certificate and verifying the peer by the mesh CA.

    The peer is checked by its SPIFFE ID (:func:`peer_identity`), not by host name. Renew by
    calling ``load_cert_chain`` on this same object (affects new handshakes only).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return _mutual(ctx, cert_file, key_file, ca_file)


def _mutual(
    ctx: ssl.SSLContext, cert_file: str | Path, key_file: str | Path, ca_file: str | Path
) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_cert_chain(str(cert_file), str(key_file))
        ctx.load_verify_locations(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise PkiError(
            f"cannot load certificate {cert_file}, key {key_file} or CA {ca_file}: {exc}"
        ) from None
    return ctx
