"""The credentials worker and the agent's side of it: keys and CSRs made, certificates read,
in a child process, so that the agent never loads ``cryptography`` (no sockets: pipes only)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cryptography import x509

from meshlet.pki import PkiError, isolated
from meshlet.pki.authority import csr_identity
from meshlet.pki.credentials import cert_identity, cert_not_after, load_cert, load_key
from meshlet.pki.protocol import CertificateInfo, Inspect, KeyAndCsr, NewKey
from meshlet.pki.worker import answer
from meshlet.testing.certs import CertificateFactory

ALICE = "spiffe://meshlet.local/ns/demo/meshlet/alice"


@pytest.fixture(scope="module")
def alice_cert(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    paths = CertificateFactory().issue(ALICE, tmp_path_factory.mktemp("alice"))
    return paths.cert.read_bytes()


def _assert_key_and_csr_for(fresh: KeyAndCsr, identity: str) -> None:
    key = load_key(fresh.key)
    assert csr_identity(fresh.csr) == identity  # also checks the CSR's signature
    csr = x509.load_pem_x509_csr(fresh.csr)
    assert csr.public_key() == key.public_key()


def _assert_describes(info: CertificateInfo, pem: bytes) -> None:
    cert = load_cert(pem)
    assert info == CertificateInfo(
        cert_identity(cert), cert.not_valid_before_utc, cert_not_after(cert)
    )


def test_the_worker_makes_a_key_and_a_csr_signed_by_it_for_the_identity() -> None:
    fresh = answer(NewKey(ALICE))
    assert isinstance(fresh, KeyAndCsr)
    _assert_key_and_csr_for(fresh, ALICE)


def test_the_worker_reads_identity_and_validity_of_a_certificate(alice_cert: bytes) -> None:
    info = answer(Inspect(alice_cert))
    assert isinstance(info, CertificateInfo)
    assert info.identity == ALICE
    _assert_describes(info, alice_cert)


def test_the_worker_refuses_garbage_as_pki_error() -> None:
    with pytest.raises(PkiError, match="not a PEM certificate"):
        answer(Inspect(b"garbage"))


async def test_a_child_process_makes_the_key_and_csr() -> None:
    _assert_key_and_csr_for(await isolated.new_key_and_csr(ALICE), ALICE)


async def test_a_child_process_reads_the_certificate(alice_cert: bytes) -> None:
    _assert_describes(await isolated.inspect_certificate(alice_cert), alice_cert)


async def test_what_the_child_refuses_arrives_as_pki_error_with_its_message() -> None:
    with pytest.raises(PkiError, match="not a PEM certificate"):
        await isolated.inspect_certificate(b"-----BEGIN CERTIFICATE-----\nxx\n")


async def test_a_child_that_dies_is_reported_with_its_last_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(isolated, "_WORKER", "meshlet.pki.no_such_worker")
    with pytest.raises(PkiError, match=r"failed \(exit status 1\): .*No module named"):
        await isolated.new_key_and_csr(ALICE)


def test_the_agent_process_does_not_load_cryptography() -> None:
    # What the agent's process imports; the import-linter contract checks the same statically.
    probe = (
        "import sys, meshlet.agent.run\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'cryptography')\n"
        "print(loaded)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert run.stdout.strip() == "[]"
