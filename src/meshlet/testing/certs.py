"""A throwaway mesh CA for tests: certificate, key and CA files for any identity."""

from __future__ import annotations

import re
import ssl
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

from meshlet import pki
from meshlet.pki import authority, credentials

__all__ = ["CertPaths", "CertificateFactory"]


class CertPaths(NamedTuple):
    cert: Path
    key: Path
    ca: Path


class CertificateFactory:
    """Creates a CA for ``trust_domain`` and issues leaf certificates signed by it.

    ``issue(identity, directory)`` writes ``<stem>.crt``, ``<stem>.key`` and ``ca.crt`` into
    ``directory`` and returns their paths; ``server_context``/``client_context`` build the
    mutual-TLS contexts the agent uses from those files.
    """

    def __init__(self, trust_domain: str = "meshlet.local") -> None:
        self.trust_domain = trust_domain
        self.ca_key, self.ca_cert = authority.create_ca(trust_domain)
        self.ca_pem = credentials.cert_to_pem(self.ca_cert)

    def meshlet_identity(self, namespace: str, meshlet: str) -> str:
        return pki.meshlet_identity(self.trust_domain, namespace, meshlet)

    def node_identity(self, node: str) -> str:
        return pki.node_identity(self.trust_domain, node)

    def issue(
        self,
        identity: str,
        directory: str | Path,
        *,
        valid_for: timedelta = timedelta(hours=24),
    ) -> CertPaths:
        """Sign a new key for ``identity`` and write the three PEM files into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", identity.removeprefix("spiffe://"))
        key = credentials.generate_key()
        cert_pem = authority.sign_csr(
            self.ca_key,
            self.ca_cert,
            credentials.create_csr(key, identity),
            identity=identity,
            valid_for=valid_for,
        )
        paths = CertPaths(
            directory / f"{stem}.crt", directory / f"{stem}.key", directory / "ca.crt"
        )
        paths.cert.write_bytes(cert_pem)
        paths.key.write_bytes(credentials.key_to_pem(key))
        paths.key.chmod(0o600)
        paths.ca.write_bytes(self.ca_pem)
        return paths

    def server_context(self, identity: str, directory: str | Path) -> ssl.SSLContext:
        paths = self.issue(identity, directory)
        return pki.mtls_server_context(*paths)

    def client_context(self, identity: str, directory: str | Path) -> ssl.SSLContext:
        paths = self.issue(identity, directory)
        return pki.mtls_client_context(*paths)
