"""The mesh CA's operations: create a CA, check and sign CSRs, issue serving certificates.

The control plane is the CA (:func:`create_ca`). An agent sends a CSR for an identity; the CA
reads the identity back (:func:`csr_identity`), decides whether the node may have it, and signs
(:func:`sign_csr`), refusing a CSR that names another identity. Imports ``cryptography``.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshlet.pki import PkiError
from meshlet.pki.credentials import cert_to_pem, generate_key

__all__ = ["create_ca", "csr_identity", "issue_serving_cert", "sign_csr"]

# Certificates are back-dated a little so that a peer whose clock is slightly behind accepts them.
_CLOCK_SKEW = timedelta(minutes=5)


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
