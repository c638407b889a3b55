"""The backend (nginx) and the HAProxy pair, configured into a scratch directory.

The backend serves ``/small`` (a fixed 100-byte body, from memory) and ``/big`` (a 64 MiB file of
random bytes generated at start, whose SHA-256 the bulk load checks). One worker, keep-alive
without a request limit, no access log: the backend should never be what a path waits on.

The HAProxy pair is the setup a user would build without a mesh: HAProxy A takes plain TCP and
opens TLS 1.3 to HAProxy B with a client certificate; B verifies it against the same CA and
forwards plain TCP to the backend. One thread each; session resumption stays on (HAProxy's
default on both sides). The certificates come from the same kind of CA meshlet uses (P-256,
SPIFFE identities), made with ``cryptography`` through :class:`CertificateFactory`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from bench.errors import PeerMissing
from bench.procs import Daemon, wait_for_port
from meshlet.testing.certs import CertificateFactory
from meshlet.testing.mesh import free_port

HOST = "127.0.0.1"
SMALL_BODY = b"meshlet-bench:" + b"0123456789abcdef" * 5 + b"-01234"
BIG_SIZE = 64 * 1024 * 1024
assert len(SMALL_BODY) == 100


def find_program(name: str) -> str:
    """Path of a peer program; Debian puts haproxy and nginx in /usr/sbin, often not on PATH."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if found is None:
        raise PeerMissing(f"{name} is not installed: run bench/install-peers (or make bench)")
    return found


@dataclass
class Backend:
    port: int
    big_sha256: str
    daemon: Daemon


def start_backend(directory: Path) -> Backend:
    """nginx with one worker on 127.0.0.1, serving /small and /big from ``directory``."""
    root = directory / "www"
    root.mkdir(parents=True)
    digest = hashlib.sha256()
    with (root / "big").open("wb") as out:
        for _ in range(BIG_SIZE // (1 << 20)):
            chunk = os.urandom(1 << 20)
            digest.update(chunk)
            out.write(chunk)
    (root / "small").write_bytes(SMALL_BODY)
    port = free_port(HOST)
    temp = directory / "nginx-temp"
    temp.mkdir()
    config = directory / "nginx.conf"
    config.write_text(
        f"""
user root;
worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/nginx-error.log warn;
worker_rlimit_nofile 16384;
events {{ worker_connections 8192; multi_accept on; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    open_file_cache max=16 inactive=600s;
    default_type application/octet-stream;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    server {{
        listen {HOST}:{port} backlog=4096;
        root {root};
        location = /small {{ }}
        location = /big {{ }}
    }}
}}
"""
    )
    argv = [find_program("nginx"), "-p", str(directory), "-c", str(config)]
    daemon = Daemon("nginx", argv, directory / "nginx.log").start()
    wait_for_port(HOST, port, 10.0, daemon)
    return Backend(port, digest.hexdigest(), daemon)


@dataclass
class HaproxyPair:
    port: int  # where clients connect (HAProxy A)
    a: Daemon
    b: Daemon

    @property
    def pids(self) -> list[int]:
        return [self.a.pid, self.b.pid]

    def stop(self) -> None:
        self.a.stop()
        self.b.stop()


def _combined_pem(cert: Path, key: Path, out: Path) -> Path:
    out.write_bytes(cert.read_bytes() + key.read_bytes())
    out.chmod(0o600)
    return out


def start_haproxy_pair(directory: Path, backend_port: int) -> HaproxyPair:
    """HAProxy A (TCP in, mTLS out) → HAProxy B (mTLS in, TCP out) → the backend."""
    directory.mkdir(parents=True)
    factory = CertificateFactory()
    client = factory.issue(factory.meshlet_identity("bench", "client"), directory / "a")
    server = factory.issue(factory.node_identity("bench-b"), directory / "b")
    client_pem = _combined_pem(client.cert, client.key, directory / "a.pem")
    server_pem = _combined_pem(server.cert, server.key, directory / "b.pem")
    port_a, port_b = free_port(HOST), free_port(HOST)
    tls13, verify = "ssl-min-ver TLSv1.3", "verify required"
    common = """
global
    nbthread 1
    maxconn 4000
defaults
    mode tcp
    timeout connect 10s
    timeout client 300s
    timeout server 300s
"""
    (directory / "a.cfg").write_text(
        common
        + f"""
frontend plain_in
    bind {HOST}:{port_a} backlog 4096
    default_backend tls_out
backend tls_out
    server b {HOST}:{port_b} ssl {tls13} verify required ca-file {client.ca} crt {client_pem}
"""
    )
    (directory / "b.cfg").write_text(
        common
        + f"""
frontend tls_in
    bind {HOST}:{port_b} backlog 4096 ssl {tls13} crt {server_pem} ca-file {server.ca} {verify}
    default_backend plain_out
backend plain_out
    server web {HOST}:{backend_port}
"""
    )
    haproxy = find_program("haproxy")
    b = Daemon("haproxy-b", [haproxy, "-db", "-f", str(directory / "b.cfg")], directory / "b.log")
    b.start()
    wait_for_port(HOST, port_b, 10.0, b)
    a = Daemon("haproxy-a", [haproxy, "-db", "-f", str(directory / "a.cfg")], directory / "a.log")
    a.start()
    wait_for_port(HOST, port_a, 10.0, a)
    return HaproxyPair(port_a, a, b)
