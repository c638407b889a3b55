"""Reply codes map to typed SDK errors that carry the code and say what it means."""

from __future__ import annotations

import pytest

from meshlet.sdk import connect, errors, open_connection
from meshlet.sdk.errors import HandshakeRejected, MeshletError, rejection_for
from meshlet.wire.handshake import ReplyCode

EXPECTED = {
    ReplyCode.GENERAL_FAILURE: errors.GeneralFailure,
    ReplyCode.VERSION_NOT_SUPPORTED: errors.VersionNotSupported,
    ReplyCode.BAD_REQUEST: errors.BadRequest,
    ReplyCode.SERVICE_NOT_FOUND: errors.ServiceNotFound,
    ReplyCode.ACCESS_DENIED: errors.AccessDenied,
    ReplyCode.NO_ENDPOINT: errors.NoEndpoint,
    ReplyCode.CONNECTION_LIMIT: errors.ConnectionLimit,
    ReplyCode.CONNECT_FAILED: errors.ConnectFailed,
    ReplyCode.TIMEOUT: errors.TunnelTimeout,
    ReplyCode.NOT_READY: errors.NotReady,
}


def test_every_non_ok_code_has_its_own_rejection_class() -> None:
    assert set(EXPECTED) == set(ReplyCode) - {ReplyCode.OK}
    for code, cls in EXPECTED.items():
        assert rejection_for(code) is cls


def test_ok_is_not_a_rejection() -> None:
    with pytest.raises(ValueError):
        rejection_for(ReplyCode.OK)


@pytest.mark.parametrize("code", list(EXPECTED))
def test_rejection_carries_code_name_and_meaning(code: ReplyCode) -> None:
    exc = rejection_for(code)(code, "echo.echo.demo")
    assert isinstance(exc, HandshakeRejected)
    assert isinstance(exc, MeshletError)
    assert exc.code is code
    assert exc.code_name == code.name
    assert exc.service_id == "echo.echo.demo"
    message = str(exc)
    assert code.name in message
    assert code.meaning in message
    assert "echo.echo.demo" in message


def test_rejection_detail_is_appended_to_the_message() -> None:
    exc = errors.BadRequest(ReplyCode.BAD_REQUEST, "Bad", "service 'Bad' is not a label")
    assert "service 'Bad' is not a label" in str(exc)
    assert exc.detail == "service 'Bad' is not a label"


def test_agent_unavailable_names_the_path_and_hints_at_meshlet_dir() -> None:
    exc = errors.AgentUnavailable("/meshlet/client/meshless", "No such file or directory")
    assert "/meshlet/client/meshless" in str(exc)
    assert "MESHLET_DIR" in str(exc)
    assert exc.path == "/meshlet/client/meshless"


def test_timeouts_and_address_in_use_are_meshlet_errors_naming_what_failed() -> None:
    assert "2.5s" in str(errors.ConnectTimeout("/p", 2.5))
    assert "echo.echo.demo" in str(errors.HandshakeTimeout("echo.echo.demo", 1.0))
    in_use = errors.AddressInUse("/w/server/echo")
    assert isinstance(in_use, errors.ServerError)
    assert isinstance(in_use, MeshletError)
    assert "/w/server/echo" in str(in_use)


def test_connect_rejects_an_invalid_service_id_before_connecting() -> None:
    # The directory does not exist: reaching it would raise AgentUnavailable instead.
    with pytest.raises(errors.BadRequest, match="three dot-separated parts") as info:
        connect("not-an-id", meshlet_dir="/nonexistent")
    assert info.value.code is ReplyCode.BAD_REQUEST


async def test_open_connection_rejects_an_invalid_service_id_before_connecting() -> None:
    with pytest.raises(errors.BadRequest, match="DNS-1123"):
        await open_connection("Echo.echo.demo", meshlet_dir="/nonexistent")
