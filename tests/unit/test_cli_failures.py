"""Expected failures become one actionable line; anything else is left to surface as a bug."""

from __future__ import annotations

import pytest

from meshlet.api.errors import UnknownKind
from meshlet.cli.errors import CLIError
from meshlet.cli.failures import describe_failure
from meshlet.cli.programs import parse_listen
from meshlet.cpclient import (
    Conflict,
    CPError,
    FieldCause,
    Forbidden,
    Invalid,
    NotFound,
    Unauthorized,
    Unavailable,
)


@pytest.mark.parametrize(
    ("error", "needles"),
    [
        (Unavailable("control plane https://x:1: ConnectError()"), ["cannot reach", "meshlet up"]),
        (Unauthorized("unknown token", status=401), ["401", "admin.token", "MESHLET_TOKEN"]),
        (Forbidden("node token", status=403), ["403", "admin token"]),
        (NotFound("no such thing", status=404), ["404", "no such thing"]),
        (Conflict("modified", status=409), ["409", "get it again"]),
        (CPError("teapot", status=418), ["(418)", "teapot"]),
        (UnknownKind("unknown resource type 'x'"), ["unknown resource type 'x'"]),
    ],
)
def test_expected_failures_are_one_line_with_a_next_step(
    error: Exception, needles: list[str]
) -> None:
    message = describe_failure(error)
    assert message is not None
    assert "\n" not in message
    for needle in needles:
        assert needle in message


def test_422_lists_every_field_path() -> None:
    error = Invalid(
        "invalid",
        causes=[
            FieldCause("items[0].spec.server.services[0].idleTimeout", "bad duration"),
            FieldCause("items[1].metadata.name", "not a label"),
        ],
    )
    message = describe_failure(error)
    assert message is not None
    assert "422" in message
    assert "items[0].spec.server.services[0].idleTimeout: bad duration" in message
    assert "items[1].metadata.name: not a label" in message


def test_unexpected_exceptions_are_not_described() -> None:
    assert describe_failure(ZeroDivisionError()) is None
    assert describe_failure(KeyError("x")) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:15443", ("127.0.0.1", 15443)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:8443", ("::1", 8443)),
        (":9000", ("127.0.0.1", 9000)),
    ],
)
def test_listen_addresses_parse(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["localhost", "127.0.0.1:http", "127.0.0.1:70000", ""])
def test_bad_listen_addresses_are_cli_errors(text: str) -> None:
    with pytest.raises(CLIError, match="HOST:PORT"):
        parse_listen(text)
