"""The ``ResourceStore`` interface: desired state as Kubernetes-shaped JSON objects.

Objects are plain dicts (``apiVersion``, ``kind``, ``metadata``, ``spec``, ``status``), already
validated by the caller; the store never interprets ``spec``. An object is keyed by
``(kind, namespace, name)``; cluster-scoped kinds use the namespace ``""``.

Versions: every write (create, replace, delete, each item of a batch) takes the next value of one
store-wide counter, the *resourceVersion*. It is written into ``metadata.resourceVersion`` as a
decimal string (the Kubernetes convention) and only ever grows, across restarts too. A replace
that carries ``metadata.resourceVersion`` succeeds only if it equals the stored one
(optimistic concurrency); without it the replace is unconditional.

The store owns ``metadata.uid``, ``metadata.creationTimestamp`` and
``metadata.resourceVersion``: whatever the caller passes there is overwritten (uid and creation
time are kept from the stored object on replace). A replace whose object has no ``status`` keeps
the stored ``status``, so re-applying a manifest does not erase what agents reported.

Watching: :meth:`ResourceStore.watch` yields :class:`WatchEvent` in resourceVersion order.
Without ``since`` it starts with an ``ADDED`` event for every existing object (a consistent
snapshot), then the changes after that snapshot; with ``since`` it replays the changes after that
version from the kept history (raising :class:`~meshlet.store.errors.Expired` when they are no
longer kept) and continues live. A watcher that falls too far behind is ended with ``Expired``
rather than buffering without bound; it re-lists and watches again.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

__all__ = [
    "EventType",
    "ResourceKey",
    "ResourceStore",
    "TokenRecord",
    "WatchEvent",
    "key_of",
]

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
Object = dict[str, Any]


class ResourceKey(NamedTuple):
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


def key_of(obj: Mapping[str, Any]) -> ResourceKey:
    """The key of an object; ``ValueError`` when it lacks a kind or a name."""
    metadata = obj.get("metadata")
    kind = obj.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ValueError("object has no kind")
    if not isinstance(metadata, Mapping) or not isinstance(metadata.get("name"), str):
        raise ValueError(f"{kind} object has no metadata.name")
    namespace = metadata.get("namespace") or ""
    if not isinstance(namespace, str):
        raise ValueError(f"{kind} object has a non-string metadata.namespace")
    return ResourceKey(kind, namespace, metadata["name"])


@dataclass(frozen=True)
class WatchEvent:
    type: EventType
    #: The object after the change (for ``DELETED``: as it was when deleted).
    object: Object
    resource_version: int

    @property
    def key(self) -> ResourceKey:
        return key_of(self.object)


@dataclass(frozen=True)
class TokenRecord:
    """What a token grants. Only the SHA-256 hash of the token itself is stored."""

    token_hash: str
    #: ``"admin"`` or ``"node"``.
    role: str
    #: The node a node token is bound to; ``None`` for admin tokens.
    node: str | None = None


class ResourceStore(abc.ABC):
    """Persistent desired state. All methods are coroutines safe to call concurrently."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the database; ends live watches."""

    @abc.abstractmethod
    async def resource_version(self) -> int:
        """The current store-wide resourceVersion (0 for an empty, never written store)."""

    @abc.abstractmethod
    async def get(self, kind: str, namespace: str, name: str) -> Object:
        """The stored object; :class:`NotFound` when there is none."""

    @abc.abstractmethod
    async def list(self, kind: str, namespace: str | None = None) -> list[Object]:
        """Objects of a kind, in one namespace or (``None``) all, ordered by namespace and name."""

    @abc.abstractmethod
    async def create(self, obj: Mapping[str, Any]) -> Object:
        """Store a new object and return it as stored; :class:`AlreadyExists` if it exists."""

    @abc.abstractmethod
    async def replace(self, obj: Mapping[str, Any]) -> Object:
        """Replace an existing object; :class:`NotFound`, :class:`Conflict` (stale version)."""

    @abc.abstractmethod
    async def delete(
        self, kind: str, namespace: str, name: str, *, resource_version: int | None = None
    ) -> Object:
        """Delete and return the object as it was; :class:`NotFound`, :class:`Conflict`."""

    @abc.abstractmethod
    async def apply_many(
        self, objects: Sequence[Mapping[str, Any]], *, delete: Sequence[ResourceKey] = ()
    ) -> builtins.list[Object]:
        """Create-or-replace every object and delete every key, all in ONE transaction.

        Either everything is written or nothing is (a :class:`Conflict` on any item aborts the
        batch). Unchanged objects (same spec, labels, annotations and status) are not
        rewritten and keep their resourceVersion. Keys in ``delete`` that do not exist are
        skipped. Returns the objects as stored, in the order given.
        """

    @abc.abstractmethod
    def watch(
        self, kind: str | None = None, namespace: str | None = None, *, since: int | None = None
    ) -> AsyncIterator[WatchEvent]:
        """Events of one kind (``None``: every kind) in one namespace (``None``: all).

        See the module docstring for the snapshot/resume semantics.
        """

    # Tokens -------------------------------------------------------------------------------

    @abc.abstractmethod
    async def add_token(self, record: TokenRecord) -> None:
        """Store a token hash and what it grants."""

    @abc.abstractmethod
    async def find_token(self, token_hash: str) -> TokenRecord | None:
        """The record of a token hash, or ``None`` when unknown."""

    @abc.abstractmethod
    async def delete_tokens(self, *, role: str, node: str | None = None) -> int:
        """Revoke the tokens of a role (and node); returns how many were removed."""
