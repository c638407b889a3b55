"""Token format, hashing, authorization rules and the client's pin handling (no sockets)."""

from __future__ import annotations

import hashlib
import ssl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshlet.controlplane.errors import PermissionDenied
from meshlet.controlplane.tokens import ADMIN, NODE, Principal, hash_token, new_token
from meshlet.cpclient import ca_pin, split_pinned_token
from meshlet.pki import authority, credentials


def test_tokens_are_mlt_prefixed_and_43_url_safe_characters() -> None:
    token = new_token()
    assert token.startswith("mlt_")
    body = token.removeprefix("mlt_")
    assert len(body) == 43
    assert set(body) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert new_token() != token


def test_only_a_sha256_of_the_token_is_kept() -> None:
    token = new_token()
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
    assert token not in hash_token(token)


def test_admin_may_act_for_any_node_and_use_the_resource_api() -> None:
    admin = Principal(ADMIN)
    admin.require_admin()
    admin.require_node("node-a")


def test_node_token_is_refused_on_resource_api_and_for_other_nodes() -> None:
    node = Principal(NODE, "node-a")
    node.require_node("node-a")
    with pytest.raises(PermissionDenied, match="admin token"):
        node.require_admin()
    with pytest.raises(PermissionDenied, match="may not act for node 'node-b'"):
        node.require_node("node-b")


def test_pin_is_sha256_of_the_ca_certificate_der() -> None:
    _key, cert = authority.create_ca("meshlet.local")
    pem = credentials.cert_to_pem(cert)
    der = ssl.PEM_cert_to_DER_cert(pem.decode())
    assert ca_pin(pem) == "sha256:" + hashlib.sha256(der).hexdigest()


def test_pinned_token_splits_into_token_and_pin() -> None:
    pin = "sha256:" + "ab" * 32
    assert split_pinned_token(f"mlt_x#{pin}\n") == ("mlt_x", pin)
    assert split_pinned_token("mlt_x") == ("mlt_x", None)
    with pytest.raises(ValueError, match="64 hex digits"):
        split_pinned_token("mlt_x#md5:abc")


@given(st.text())
def test_split_pinned_token_never_fails_other_than_value_error(text: str) -> None:
    try:
        secret, pin = split_pinned_token(text)
    except ValueError:
        return
    assert "#" not in secret
    assert pin is None or pin.startswith("sha256:")
