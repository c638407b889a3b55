"""Where the SDK looks for the agent's sockets (pure: no sockets, no real environment)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshlet.sdk.paths import (
    client_socket_file,
    client_socket_path,
    resolve_meshlet_dir,
    server_socket_path,
)


def test_explicit_dir_wins_over_environment() -> None:
    assert resolve_meshlet_dir("/w", {"MESHLET_DIR": "/env"}) == Path("/w")


def test_environment_is_used_when_no_dir_is_given() -> None:
    assert resolve_meshlet_dir(None, {"MESHLET_DIR": "/env"}) == Path("/env")


@pytest.mark.parametrize("environ", [{}, {"MESHLET_DIR": ""}])
def test_default_dir_is_slash_meshlet_when_unset_or_empty(environ: dict[str, str]) -> None:
    assert resolve_meshlet_dir(None, environ) == Path("/meshlet")


def test_client_socket_is_client_meshless_under_the_workload_dir() -> None:
    assert client_socket_path(None, {"MESHLET_DIR": "/run/demo/c"}) == Path(
        "/run/demo/c/client/meshless"
    )
    assert client_socket_path(None, {}) == Path("/meshlet/client/meshless")


@pytest.mark.parametrize(
    ("meshlet_dir", "environ"),
    [
        ("/w", {"MESHLET_DIR": "/env"}),
        (Path("/w/"), {}),
        (None, {"MESHLET_DIR": "/env"}),
        (None, {}),
    ],
)
def test_client_socket_file_is_the_client_socket_path_as_text(
    meshlet_dir: str | Path | None, environ: dict[str, str]
) -> None:
    text = client_socket_file(meshlet_dir, environ)
    assert isinstance(text, str)
    assert Path(text) == client_socket_path(meshlet_dir, environ)


def test_server_socket_is_server_slash_service() -> None:
    assert server_socket_path("echo", "/w") == Path("/w/server/echo")
    assert server_socket_path("web-1", None, {}) == Path("/meshlet/server/web-1")


def test_server_socket_rejects_a_full_service_id_and_names_the_service_part() -> None:
    with pytest.raises(ValueError, match="'echo'"):
        server_socket_path("echo.echo.demo", "/w")


@pytest.mark.parametrize("bad", ["", "../etc", "a/b", "Echo", "-x", "x" * 64, "a.b"])
def test_server_socket_rejects_names_that_are_not_dns_labels(bad: str) -> None:
    with pytest.raises(ValueError, match="DNS-1123"):
        server_socket_path(bad, "/w")
