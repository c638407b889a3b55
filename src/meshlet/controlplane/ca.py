"""The mesh certificate authority, persisted in the state directory.

``ca.key`` (mode 0600) and ``ca.crt`` are created on first start and reused afterwards, so
certificates issued before a restart stay valid and the CA pin in node tokens stays true. The
CA signs workload and node certificates (24 h by default; agents renew at half-life) and the
control plane's own HTTPS serving certificate, re-issued at every start for the current
listen/advertise names.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from meshlet import pki
from meshlet.controlplane.errors import StateDirError
from meshlet.controlplane.files import read_file, write_file
from meshlet.cpclient import ca_pin
from meshlet.pki import authority, credentials

__all__ = ["DEFAULT_CERT_VALIDITY", "CertificateAuthority"]

DEFAULT_CERT_VALIDITY = timedelta(hours=24)
_SERVING_VALIDITY = timedelta(days=365)


class CertificateAuthority:
    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        cert: x509.Certificate,
        *,
        cert_validity: timedelta = DEFAULT_CERT_VALIDITY,
    ) -> None:
        self._key = key
        self.cert = cert
        self.cert_validity = cert_validity
        self.cert_pem = credentials.cert_to_pem(cert)
        #: ``sha256:<hex>`` of the CA certificate's DER, as node tokens carry it.
        self.pin = ca_pin(self.cert_pem)

    @classmethod
    def load_or_create(
        cls,
        state_dir: Path,
        trust_domain: str,
        *,
        cert_validity: timedelta = DEFAULT_CERT_VALIDITY,
    ) -> CertificateAuthority:
        """Load ``ca.key``/``ca.crt`` from ``state_dir``, creating them on first start."""
        key_path, cert_path = state_dir / "ca.key", state_dir / "ca.crt"
        if key_path.exists() != cert_path.exists():
            raise StateDirError(
                f"found only one of {key_path} and {cert_path}: restore the missing one, or "
                "remove both to create a new CA (every issued certificate and token pin "
                "becomes invalid)"
            )
        if key_path.exists():
            try:
                key = credentials.load_key(read_file(key_path))
                cert = credentials.load_cert(read_file(cert_path))
            except pki.PkiError as exc:
                raise StateDirError(f"the CA in {state_dir} is unusable: {exc}") from None
        else:
            key, cert = authority.create_ca(trust_domain)
            write_file(key_path, credentials.key_to_pem(key), mode=0o600)
            write_file(cert_path, credentials.cert_to_pem(cert), mode=0o644)
        return cls(key, cert, cert_validity=cert_validity)

    def sign(self, csr_pem: bytes, identity: str) -> bytes:
        """Sign a CSR for exactly ``identity``; :class:`~meshlet.pki.PkiError` otherwise."""
        return authority.sign_csr(
            self._key, self.cert, csr_pem, identity=identity, valid_for=self.cert_validity
        )

    def write_serving_cert(self, state_dir: Path, hosts: list[str]) -> tuple[Path, Path]:
        """Issue the HTTPS certificate for ``hosts``; returns ``(cert file, key file)``."""
        key, cert = authority.issue_serving_cert(
            self._key, self.cert, hosts, valid_for=_SERVING_VALIDITY
        )
        cert_path, key_path = state_dir / "serving.crt", state_dir / "serving.key"
        write_file(key_path, credentials.key_to_pem(key), mode=0o600)
        write_file(cert_path, credentials.cert_to_pem(cert) + self.cert_pem, mode=0o644)
        return cert_path, key_path
