"""Keys, certificates and TLS contexts of the mesh (SPIFFE identities, mutual TLS 1.3).

Identities are SPIFFE IDs carried as the single URI subject alternative name of a leaf
certificate: ``spiffe://<td>/ns/<ns>/meshlet/<name>`` for a meshlet and
``spiffe://<td>/node/<node>`` for a node agent. Peers are verified against the mesh CA and then
by that URI, never by host name, so the TLS contexts here disable ``check_hostname``.

The control plane is the CA (:func:`create_ca`). An agent makes a key and a CSR for an identity
(:func:`create_csr`); the CA reads the identity back (:func:`csr_identity`), decides whether the
node may have it, and signs (:func:`sign_csr`), refusing a CSR that names another identity.

Certificate renewal without dropping connections: a TLS context keeps the chain it was given
for *new* handshakes only, so a caller renews by calling ``ctx.load_cert_chain(new_cert,
new_key)`` on the **same** :class:`ssl.SSLContext` object it handed to servers and dialers.
Established connections keep the certificate they were opened with; listeners need no restart.
"""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "PkiError",
    "cert_identity",
    "cert_not_after",
    "cert_to_pem",
    "create_ca",
    "create_csr",
    "csr_identity",
    "generate_key",
    "issue_serving_cert",
    "key_to_pem",
    "load_cert",
    "load_key",
    "meshlet_identity",
    "mtls_client_context",
    "mtls_server_context",
    "node_identity",
    "peer_identity",
    "sign_csr",
]

# Certificates are back-dated a little so that a peer whose clock is slightly behind accepts them.
_CLOCK_SKEW = timedelta(minutes=5)


class PkiError(Exception):
    """A key, CSR or certificate is malformed, or a signing request is refused."""


def meshlet_identity(trust_domain: str, namespace: str, meshlet: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/meshlet/{meshlet}"


def node_identity(trust_domain: str, node: str) -> str:
    return f"spiffe://{trust_domain}/node/{node}"


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


def create_ca(
    trust_domain: str, *, valid_for: timedelta = timedelta(days=3650)
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed root CA for ``trust_domain``; it signs leaves only (path length 0)."""
    key = generate_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshlet"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"meshlet CA {trust_domain}"),
        ]
    )
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


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


def csr_identity(csr_pem: bytes) -> str:
    """The identity a PEM CSR asks for, after checking its signature.

    Raises :class:`PkiError` when the PEM is malformed, the signature does not verify, or the
    CSR does not carry exactly one URI SAN.
    """
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise PkiError(f"not a PEM certificate signing request: {exc}") from None
    try:
        signed = csr.is_signature_valid
    except (InvalidSignature, ValueError, TypeError):
        signed = False
    if not signed:
        raise PkiError("the CSR's signature does not verify with its own public key")
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise PkiError("the CSR has no subjectAltName; it must carry one spiffe:// URI") from None
    except ValueError as exc:
        raise PkiError(f"the CSR's extensions are malformed: {exc}") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise PkiError(f"the CSR must carry exactly one URI SAN (the identity), found {len(uris)}")
    return uris[0]


def sign_csr(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    csr_pem: bytes,
    *,
    identity: str,
    valid_for: timedelta,
) -> bytes:
    """Sign a CSR for ``identity`` and return the leaf certificate as PEM.

    Refuses (:class:`PkiError`) unless the CSR asks for exactly ``identity``. The leaf is not a
    CA, may sign (digitalSignature) and serves both as TLS client and server.
    """
    asked = csr_identity(csr_pem)
    if asked != identity:
        raise PkiError(f"the CSR asks for identity {asked!r}, but {identity!r} may be signed")
    csr = x509.load_pem_x509_csr(csr_pem)
    now = datetime.now(UTC)
    cert = (
        _leaf_builder(ca_cert, csr.public_key(), x509.Name([]), now, valid_for)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert_to_pem(cert)


def issue_serving_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    hosts: list[str],
    *,
    valid_for: timedelta,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A key and an HTTPS server certificate for ``hosts`` (IP addresses or DNS names)."""
    if not hosts:
        raise PkiError("a serving certificate needs at least one host name or address")
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = generate_key()
    now = datetime.now(UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64])])
    cert = (
        _leaf_builder(ca_cert, key.public_key(), subject, now, valid_for)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


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


def peer_identity(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> str | None:
    """The verified SPIFFE ID of the peer of an established TLS connection, if any."""
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    try:
        return cert_identity(x509.load_der_x509_certificate(der))
    except ValueError:
        return None


def cert_not_after(cert: x509.Certificate) -> datetime:
    """The end of a certificate's validity, timezone-aware (UTC)."""
    return cert.not_valid_after_utc


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


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_builder(
    ca_cert: x509.Certificate,
    public_key: object,
    subject: x509.Name,
    now: datetime,
    valid_for: timedelta,
) -> x509.CertificateBuilder:
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise PkiError(f"expected an elliptic-curve public key, got {type(public_key).__name__}")
    issuer_key = ca_cert.public_key()
    if not isinstance(issuer_key, ec.EllipticCurvePublicKey):
        raise PkiError("the CA certificate must hold an elliptic-curve key")
    not_after = min(now + valid_for, ca_cert.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key),
            critical=False,
        )
    )
