"""meshlet.pki: identities, CA, CSRs, leaf and serving certificates, TLS contexts (no sockets)."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from meshlet import pki
from meshlet.pki import authority, credentials
from meshlet.testing.certs import CertificateFactory

TD = "meshlet.local"
ALICE = pki.meshlet_identity(TD, "demo", "alice")


@pytest.fixture(scope="module")
def ca() -> tuple[object, x509.Certificate]:
    return authority.create_ca(TD)


def test_identities_follow_the_spiffe_layout() -> None:
    assert pki.meshlet_identity("td", "ns", "m") == "spiffe://td/ns/ns/meshlet/m"
    assert pki.node_identity("td", "node-a") == "spiffe://td/node/node-a"


def test_key_pem_round_trip_keeps_the_key() -> None:
    key = credentials.generate_key()
    assert key.curve.name == "secp256r1"
    again = credentials.load_key(credentials.key_to_pem(key))
    assert again.private_numbers() == key.private_numbers()


@pytest.mark.parametrize("pem", [b"", b"garbage", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END"])
def test_load_key_rejects_garbage_with_pki_error(pem: bytes) -> None:
    with pytest.raises(pki.PkiError):
        credentials.load_key(pem)


def test_load_cert_rejects_garbage_with_pki_error() -> None:
    with pytest.raises(pki.PkiError):
        credentials.load_cert(b"not a certificate")


def test_ca_is_a_self_signed_ca_valid_for_the_requested_time(
    ca: tuple[object, x509.Certificate],
) -> None:
    _, cert = ca
    assert credentials.load_cert(credentials.cert_to_pem(cert)) == cert
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(cert)
    assert credentials.cert_not_after(cert) > datetime.now(UTC) + timedelta(days=3000)
    _, short = authority.create_ca(TD, valid_for=timedelta(days=1))
    assert credentials.cert_not_after(short) < datetime.now(UTC) + timedelta(days=2)


def test_csr_carries_the_identity() -> None:
    csr = credentials.create_csr(credentials.generate_key(), ALICE)
    assert authority.csr_identity(csr) == ALICE


def test_csr_identity_rejects_bad_pem() -> None:
    with pytest.raises(pki.PkiError, match="not a PEM"):
        authority.csr_identity(
            b"-----BEGIN CERTIFICATE REQUEST-----\nxx\n-----END CERTIFICATE REQUEST-----\n"
        )


def test_csr_identity_rejects_a_csr_without_uri_san() -> None:
    from cryptography.hazmat.primitives import serialization

    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(credentials.generate_key(), hashes.SHA256())
    ).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(pki.PkiError, match="subjectAltName"):
        authority.csr_identity(csr)


def test_csr_identity_rejects_two_uri_sans() -> None:
    from cryptography.hazmat.primitives import serialization

    san = x509.SubjectAlternativeName(
        [x509.UniformResourceIdentifier(ALICE), x509.UniformResourceIdentifier(ALICE + "2")]
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(san, critical=True)
        .sign(credentials.generate_key(), hashes.SHA256())
    ).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(pki.PkiError, match="exactly one URI SAN"):
        authority.csr_identity(csr)


def test_csr_identity_rejects_a_tampered_signature() -> None:
    from cryptography.hazmat.primitives import serialization

    csr = x509.load_pem_x509_csr(credentials.create_csr(credentials.generate_key(), ALICE))
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0xFF  # inside the signature
    import base64

    pem = (
        b"-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(bytes(der))
        + b"-----END CERTIFICATE REQUEST-----\n"
    )
    with pytest.raises(pki.PkiError):
        authority.csr_identity(pem)


def test_sign_csr_issues_a_client_and_server_leaf_for_the_identity(
    ca: tuple[object, x509.Certificate],
) -> None:
    ca_key, ca_cert = ca
    csr = credentials.create_csr(credentials.generate_key(), ALICE)
    leaf = credentials.load_cert(
        authority.sign_csr(ca_key, ca_cert, csr, identity=ALICE, valid_for=timedelta(hours=1))  # type: ignore[arg-type]
    )
    leaf.verify_directly_issued_by(ca_cert)
    assert credentials.cert_identity(leaf) == ALICE
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    assert credentials.cert_not_after(leaf) <= datetime.now(UTC) + timedelta(hours=1)


def test_sign_csr_refuses_a_csr_for_another_identity(ca: tuple[object, x509.Certificate]) -> None:
    ca_key, ca_cert = ca
    csr = credentials.create_csr(credentials.generate_key(), ALICE)
    with pytest.raises(pki.PkiError, match="asks for identity"):
        authority.sign_csr(
            ca_key,  # type: ignore[arg-type]
            ca_cert,
            csr,
            identity=pki.meshlet_identity(TD, "demo", "mallory"),
            valid_for=timedelta(hours=1),
        )


def test_serving_cert_names_ip_addresses_and_dns_names(ca: tuple[object, x509.Certificate]) -> None:
    ca_key, ca_cert = ca
    _, cert = authority.issue_serving_cert(
        ca_key,
        ca_cert,
        ["127.0.0.1", "localhost", "::1"],
        valid_for=timedelta(days=1),  # type: ignore[arg-type]
    )
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert credentials.cert_identity(cert) is None
    cert.verify_directly_issued_by(ca_cert)


def test_serving_cert_needs_a_host(ca: tuple[object, x509.Certificate]) -> None:
    with pytest.raises(pki.PkiError):
        authority.issue_serving_cert(ca[0], ca[1], [], valid_for=timedelta(days=1))  # type: ignore[arg-type]


def test_contexts_are_mutual_tls13_without_hostname_checks(tmp_path: Path) -> None:
    factory = CertificateFactory()
    paths = factory.issue(ALICE, tmp_path)
    for ctx in (pki.mtls_server_context(*paths), pki.mtls_client_context(*paths)):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
        assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3
        assert ctx.verify_mode == ssl.CERT_REQUIRED
        assert not ctx.check_hostname


def test_context_with_missing_files_raises_pki_error(tmp_path: Path) -> None:
    with pytest.raises(pki.PkiError, match="cannot load"):
        pki.mtls_client_context(tmp_path / "a", tmp_path / "b", tmp_path / "c")


def test_certificate_factory_writes_files_for_an_identity(tmp_path: Path) -> None:
    factory = CertificateFactory("example.org")
    paths = factory.issue(factory.meshlet_identity("ns", "m"), tmp_path)
    leaf = credentials.load_cert(paths.cert.read_bytes())
    assert credentials.cert_identity(leaf) == "spiffe://example.org/ns/ns/meshlet/m"
    credentials.load_key(paths.key.read_bytes())
    assert paths.ca.read_bytes() == factory.ca_pem
    assert paths.key.stat().st_mode & 0o077 == 0


def _handshake(
    client: ssl.SSLContext, server: ssl.SSLContext
) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """A TLS handshake between two contexts over memory buffers (no sockets)."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    ends = (client.wrap_bio(c_in, c_out), server.wrap_bio(s_in, s_out, server_side=True))
    finished: set[int] = set()
    while len(finished) < 2:
        for index, end in enumerate(ends):
            try:
                end.do_handshake()
                finished.add(index)
            except ssl.SSLWantReadError:
                pass
        moved = c_out.pending + s_out.pending
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        assert moved or len(finished) == 2, "the handshake stalled"
    return ends


def test_peer_identity_is_the_verified_spiffe_id_of_either_side(tmp_path: Path) -> None:
    factory = CertificateFactory()
    node = factory.node_identity("node-b")
    client = factory.client_context(ALICE, tmp_path / "alice")
    server = factory.server_context(node, tmp_path / "node")
    client_end, server_end = _handshake(client, server)
    assert pki.peer_identity(server_end) == ALICE
    assert pki.peer_identity(client_end) == node


def test_peer_identity_is_none_for_a_certificate_without_spiffe_id(tmp_path: Path) -> None:
    factory = CertificateFactory()
    client = factory.client_context(ALICE, tmp_path)
    key, cert = authority.issue_serving_cert(
        factory.ca_key, factory.ca_cert, ["127.0.0.1"], valid_for=timedelta(hours=1)
    )
    (tmp_path / "serving.key").write_bytes(credentials.key_to_pem(key))
    (tmp_path / "serving.crt").write_bytes(credentials.cert_to_pem(cert))
    server = pki.mtls_server_context(
        tmp_path / "serving.crt", tmp_path / "serving.key", tmp_path / "ca.crt"
    )
    client_end, _ = _handshake(client, server)
    assert pki.peer_identity(client_end) is None
