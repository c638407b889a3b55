"""Persistence of desired state: the :class:`ResourceStore` interface and its SQLite backend."""

from __future__ import annotations

from meshlet.store.errors import (
    AlreadyExists,
    Conflict,
    Expired,
    NotFound,
    StoreError,
    StoreUnavailable,
)
from meshlet.store.resource_store import (
    EventType,
    ResourceKey,
    ResourceStore,
    TokenRecord,
    WatchEvent,
    key_of,
)
from meshlet.store.sqlite import SqliteStore

__all__ = [
    "AlreadyExists",
    "Conflict",
    "EventType",
    "Expired",
    "NotFound",
    "ResourceKey",
    "ResourceStore",
    "SqliteStore",
    "StoreError",
    "StoreUnavailable",
    "TokenRecord",
    "WatchEvent",
    "key_of",
]
