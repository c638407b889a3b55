"""An identity's credentials: a P-256 key, a CSR for it, and the certificate that comes back.

PEM in and out, and the two facts a holder reads from its certificate: the SPIFFE identity
(:func:`cert_identity`) and the validity. This module imports ``cryptography`` (about 8 MB of
resident memory with its OpenSSL), so the node agent never imports it: it runs these functions
in a short-lived child process (:mod:`meshlet.pki.worker`, called through
:mod:`meshlet.pki.isolated`).
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meshlet.pki import PkiError

__all__ = [
    "cert_identity",
    "cert_not_after",
    "cert_to_pem",
    "create_csr",
    "generate_key",
    "key_to_pem",
    "load_cert",
    "load_key",
]


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A new P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_to_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise PkiError(f"not a PEM private key without password: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"expected an elliptic-curve private key, got {type(key).__name__}")
    return key


def cert_to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise PkiError(f"not a PEM certificate: {exc}") from None


def create_csr(key: ec.EllipticCurvePrivateKey, identity: str) -> bytes:
    """A PEM CSR asking for ``identity`` (a ``spiffe://`` URI) as the only URI SAN."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def cert_identity(cert: x509.Certificate) -> str | None:
    """The ``spiffe://`` URI SAN of a certificate, or ``None`` when it has none."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith("spiffe://"):
            return uri
    return None


def cert_not_after(cert: x509.Certificate) -> datetime:
    """The end of a certificate's validity, timezone-aware (UTC)."""
    return cert.not_valid_after_utc
