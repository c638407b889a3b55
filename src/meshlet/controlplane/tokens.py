"""API tokens: ``mlt_`` + 43 url-safe characters; the store keeps only their SHA-256.

Two roles: the *admin* token (the CLI; everything) and *node* tokens, each bound to one node
(its agent may use the node API for that node only). The admin token is created on first start
and written to ``<state-dir>/admin.token`` (mode 0600). If that file is lost, the next start
revokes the old admin token and writes a new one: whoever can start the control plane on its
state directory is the administrator anyway.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

from meshlet.controlplane.errors import PermissionDenied, Unauthenticated
from meshlet.controlplane.files import write_file
from meshlet.store import ResourceStore, TokenRecord

__all__ = [
    "ADMIN",
    "NODE",
    "TOKEN_PREFIX",
    "Principal",
    "TokenAuthority",
    "hash_token",
    "new_token",
]

TOKEN_PREFIX = "mlt_"
ADMIN = "admin"
NODE = "node"


def new_token() -> str:
    # 32 random bytes are 43 url-safe base64 characters.
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the admin, or the agent of one node."""

    role: str
    node: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    def require_admin(self) -> None:
        if not self.is_admin:
            raise PermissionDenied(
                f"a node token (node {self.node}) may only use the node API for its own node; "
                "the resource API needs the admin token"
            )

    def require_node(self, node: str) -> None:
        if not self.is_admin and self.node != node:
            raise PermissionDenied(
                f"this token belongs to node {self.node!r} and may not act for node {node!r}"
            )


class TokenAuthority:
    def __init__(self, store: ResourceStore) -> None:
        self._store = store

    async def ensure_admin_token(self, path: Path) -> bool:
        """Make sure ``path`` holds a valid admin token; returns True if one was created."""
        if path.exists():
            token = path.read_text().strip()
            record = await self._store.find_token(hash_token(token))
            if record is not None and record.role == ADMIN:
                return False
        await self._store.delete_tokens(role=ADMIN)
        token = new_token()
        await self._store.add_token(TokenRecord(hash_token(token), ADMIN))
        write_file(path, (token + "\n").encode(), mode=0o600)
        return True

    async def issue_node_token(self, node: str) -> str:
        token = new_token()
        await self._store.add_token(TokenRecord(hash_token(token), NODE, node))
        return token

    async def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization: Bearer <token>`` header; 401 otherwise."""
        if not authorization:
            raise Unauthenticated("missing 'Authorization: Bearer <token>' header")
        scheme, _, token = authorization.partition(" ")
        token = token.strip().partition("#")[0]  # tolerate a token pasted with its CA pin
        if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX):
            raise Unauthenticated("the Authorization header must be 'Bearer mlt_...'")
        record = await self._store.find_token(hash_token(token))
        if record is None:
            raise Unauthenticated("unknown token: it was never issued here or was revoked")
        return Principal(record.role, record.node)
