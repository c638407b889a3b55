"""End to end: tokens, certificate signing scope and all-or-nothing apply, as a user meets them."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshlet import pki
from meshlet.cpclient import Forbidden
from meshlet.pki import credentials
from meshlet.testing.mesh import ControlPlaneProcess, LocalMesh

from .mesh_fixtures import NS, meshlet

pytestmark = pytest.mark.integration

MESHLETS = f"/apis/ext.burningxflame.github.com/v1/namespaces/{NS}/meshlets"


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    with LocalMesh(tmp_path_factory.mktemp("cp")) as mesh:
        yield mesh.start_control_plane()


def http(cp: ControlPlaneProcess, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    context = ssl.create_default_context(cafile=str(cp.ca_file))
    return httpx.Client(base_url=cp.url, verify=context, headers=headers, timeout=10)


@pytest.mark.parametrize("token", [None, "mlt_not-a-real-token", ""])
def test_requests_without_a_valid_token_get_401(cp: ControlPlaneProcess, token: str | None) -> None:
    with http(cp, token) as client:
        assert client.get(MESHLETS).status_code == 401
        assert client.get("/node/v1/nodes/node-a/config").status_code == 401


def test_a_node_token_cannot_write_resources(cp: ControlPlaneProcess) -> None:
    with http(cp, cp.node_token("node-a")) as client:
        response = client.post(MESHLETS, json=meshlet("sneaky", client=["echo.echo.demo"]))
        assert response.status_code == 403
    with http(cp, cp.admin_token) as admin:
        assert admin.get(f"{MESHLETS}/sneaky").status_code == 404


def test_a_node_token_cannot_act_for_another_node(cp: ControlPlaneProcess) -> None:
    with http(cp, cp.node_token("node-a")) as client:
        assert (
            client.put(
                "/node/v1/nodes/node-b", json={"address": "127.0.0.9", "port": 1}
            ).status_code
            == 403
        )
        stray = {
            "apiVersion": "meshlet.dev/v1alpha1",
            "kind": "Workload",
            "metadata": {"namespace": NS, "name": "w"},
            "spec": {"node": "node-b"},
        }
        workloads = {"workloads": [stray]}
        assert client.put("/node/v1/nodes/node-b/workloads", json=workloads).status_code == 403


def test_csr_is_signed_only_for_meshlets_hosted_on_the_requesting_node(
    cp: ControlPlaneProcess,
) -> None:
    token_b = cp.node_token("node-b")
    vault = {
        "apiVersion": "meshlet.dev/v1alpha1",
        "kind": "Workload",
        "metadata": {"namespace": NS, "name": "vault-1", "labels": {"meshless/meshlet": "vault"}},
        "spec": {"node": "node-b"},
    }
    cp.call(lambda c: c.register_workloads("node-b", [vault]), token=token_b)
    identity = pki.meshlet_identity("meshlet.local", NS, "vault")
    csr = credentials.create_csr(credentials.generate_key(), identity)

    certificate, _ = cp.call(lambda c: c.sign_csr("node-b", csr, identity), token=token_b)
    assert credentials.cert_identity(credentials.load_cert(certificate)) == identity

    with pytest.raises(Forbidden):
        cp.call(lambda c: c.sign_csr("node-a", csr, identity), token=cp.node_token("node-a"))


def run_cli(
    cp: ControlPlaneProcess, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MESHLET_CP": cp.url,
        "MESHLET_TOKEN": cp.admin_token,
        "MESHLET_CA_FILE": str(cp.ca_file),
    }
    return subprocess.run(
        [sys.executable, "-m", "meshlet.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_apply_of_an_invalid_manifest_stores_nothing_and_names_the_field(
    cp: ControlPlaneProcess, tmp_path: Path
) -> None:
    manifest = tmp_path / "two.yaml"
    manifest.write_text(
        """\
apiVersion: ext.burningxflame.github.com/v1
kind: Meshlet
metadata: {namespace: demo, name: fine}
spec:
  server:
    services: [{name: web}]
---
apiVersion: ext.burningxflame.github.com/v1
kind: Meshlet
metadata: {namespace: demo, name: broken}
spec:
  server:
    services: [{name: web, idleTimeout: 1d}]
"""
    )
    result = run_cli(cp, "apply", "-f", str(manifest))
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "two.yaml" in message
    assert "spec.server.services[0].idleTimeout" in message
    listing = run_cli(cp, "get", "meshlets", "-n", NS, "-o", "json")
    assert listing.returncode == 0, listing.stderr
    assert "fine" not in listing.stdout


def test_api_apply_is_all_or_nothing(cp: ControlPlaneProcess) -> None:
    items: list[dict[str, Any]] = [
        meshlet("also-fine", services=[{"name": "web"}]),
        meshlet("bad", services=[{"name": "web", "maxConn": 0}]),
    ]
    with http(cp, cp.admin_token) as client:
        response = client.post("/api/v1/apply", json={"items": items})
        assert response.status_code == 422
        assert "maxConn" in response.text
        assert client.get(f"{MESHLETS}/also-fine").status_code == 404


def test_a_valid_apply_then_get_and_delete_through_the_cli(cp: ControlPlaneProcess) -> None:
    manifest = (
        "apiVersion: ext.burningxflame.github.com/v1\nkind: Meshlet\n"
        "metadata: {namespace: demo, name: web}\n"
        "spec:\n  server:\n    services: [{name: http, maxConn: 10, idleTimeout: 1m30s}]\n"
    )
    applied = run_cli(cp, "apply", "-f", "-", stdin=manifest)
    assert applied.returncode == 0, applied.stderr
    shown = run_cli(cp, "get", "meshlet", "web", "-n", NS, "-o", "yaml")
    assert "idleTimeout: 1m30s" in shown.stdout
    services = run_cli(cp, "get", "meshservices", "-n", NS)
    assert "http.web.demo" in services.stdout
    deleted = run_cli(cp, "delete", "meshlet", "web", "-n", NS)
    assert deleted.returncode == 0, deleted.stderr
    assert run_cli(cp, "get", "meshlet", "web", "-n", NS).returncode != 0
