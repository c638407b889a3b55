"""The SQLite resource store (SQLAlchemy 2 Core, async, aiosqlite, WAL journal).

Tables: ``resources`` (one row per object, the JSON body), ``events`` (the recent change
history, keyed by resourceVersion, for watches that resume), ``counters`` (the store-wide
resourceVersion and how far the history was compacted) and ``tokens`` (hashes only).

Concurrency: one process owns the file. Writes are serialized by an ``asyncio.Lock``: each write
reads, checks versions, writes and commits in one transaction, then (still holding the lock)
hands its events to live watchers, so watchers see events in resourceVersion order and a watch
that takes its snapshot under the same lock misses nothing and sees nothing twice. Reads run
concurrently with writes (WAL).

History: the last ``history`` events are kept; a watch resuming from an older version gets
:class:`~meshlet.store.errors.Expired` and re-lists, as a Kubernetes client would after 410.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import copy
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from meshlet.store.errors import AlreadyExists, Conflict, Expired, NotFound, StoreUnavailable
from meshlet.store.resource_store import (
    EventType,
    ResourceKey,
    ResourceStore,
    TokenRecord,
    WatchEvent,
    key_of,
)

__all__ = ["SqliteStore"]

Object = dict[str, Any]
_T = TypeVar("_T")

_meta = sa.MetaData()
_resources = sa.Table(
    "resources",
    _meta,
    sa.Column("kind", sa.String, primary_key=True),
    sa.Column("namespace", sa.String, primary_key=True),
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("resource_version", sa.Integer, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
)
_events = sa.Table(
    "events",
    _meta,
    sa.Column("resource_version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("type", sa.String, nullable=False),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("namespace", sa.String, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
)
_counters = sa.Table(
    "counters",
    _meta,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
)
_tokens = sa.Table(
    "tokens",
    _meta,
    sa.Column("token_hash", sa.String, primary_key=True),
    sa.Column("role", sa.String, nullable=False),
    sa.Column("node", sa.String, nullable=True),
    sa.Column("created_at", sa.String, nullable=False),
)

_RV = "resource_version"
_COMPACTED = "compacted_through"
#: Events a live watcher may have queued before it is ended with ``Expired``.
_WATCH_BACKLOG = 10_000


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dumps(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _object_rv(obj: Mapping[str, Any]) -> int | None:
    """The resourceVersion a caller put in an object, or ``None``; ``Conflict`` if not ours."""
    raw = (obj.get("metadata") or {}).get("resourceVersion")
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise Conflict(
            f"{key_of(obj)}: metadata.resourceVersion {raw!r} was not issued by this store; "
            "read the object again and retry"
        ) from None


class _Subscriber:
    """One live watch: a bounded queue of events filtered by kind and namespace."""

    def __init__(self, kind: str | None, namespace: str | None) -> None:
        self.kind = kind
        self.namespace = namespace
        self.queue: collections.deque[WatchEvent] = collections.deque()
        self.wakeup = asyncio.Event()
        self.closed = False
        self.overflowed = False

    def wants(self, event: WatchEvent) -> bool:
        key = event.key
        return (self.kind is None or key.kind == self.kind) and (
            self.namespace is None or key.namespace == self.namespace
        )

    def offer(self, event: WatchEvent) -> None:
        if self.closed or not self.wants(event):
            return
        if len(self.queue) >= _WATCH_BACKLOG:
            self.overflowed = True
            self.closed = True
        else:
            self.queue.append(event)
        self.wakeup.set()

    def close(self) -> None:
        self.closed = True
        self.wakeup.set()

    async def next(self) -> WatchEvent | None:
        while not self.queue:
            if self.overflowed:
                raise Expired("the watch fell too far behind the store; list and watch again")
            if self.closed:
                return None
            self.wakeup.clear()
            await self.wakeup.wait()
        return self.queue.popleft()


class SqliteStore(ResourceStore):
    """A :class:`ResourceStore` in one SQLite file. Create with :meth:`open`."""

    def __init__(self, engine: AsyncEngine, path: Path, *, history: int) -> None:
        self._engine = engine
        self.path = path
        self._history = history
        self._write_lock = asyncio.Lock()
        self._subscribers: set[_Subscriber] = set()

    @classmethod
    async def open(cls, path: str | Path, *, history: int = 10_000) -> SqliteStore:
        """Open (creating if needed) the store file at ``path``."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create the directory of {path}: {exc}") from None
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

        store = cls(engine, path, history=history)
        with store._db_errors():
            async with engine.begin() as conn:
                await conn.run_sync(_meta.create_all)
        return store

    @contextlib.contextmanager
    def _db_errors(self) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"SQLite store {self.path}: {exc}") from exc

    async def close(self) -> None:
        for subscriber in list(self._subscribers):
            subscriber.close()
        await self._engine.dispose()

    # Reads ---------------------------------------------------------------------------------

    async def resource_version(self) -> int:
        with self._db_errors():
            async with self._engine.connect() as conn:
                return await self._counter(conn, _RV)

    async def get(self, kind: str, namespace: str, name: str) -> Object:
        with self._db_errors():
            async with self._engine.connect() as conn:
                found = await self._get(conn, ResourceKey(kind, namespace, name))
        if found is None:
            raise NotFound(f"{ResourceKey(kind, namespace, name)} not found")
        return found

    async def list(self, kind: str, namespace: str | None = None) -> builtins.list[Object]:
        with self._db_errors():
            async with self._engine.connect() as conn:
                return await self._list(conn, kind, namespace)

    async def _list(
        self, conn: AsyncConnection, kind: str | None, namespace: str | None
    ) -> builtins.list[Object]:
        query = sa.select(_resources.c.body).order_by(
            _resources.c.kind, _resources.c.namespace, _resources.c.name
        )
        if kind is not None:
            query = query.where(_resources.c.kind == kind)
        if namespace is not None:
            query = query.where(_resources.c.namespace == namespace)
        result = await conn.execute(query)
        return [json.loads(row.body) for row in result]

    async def _get(self, conn: AsyncConnection, key: ResourceKey) -> Object | None:
        result = await conn.execute(
            sa.select(_resources.c.body).where(
                _resources.c.kind == key.kind,
                _resources.c.namespace == key.namespace,
                _resources.c.name == key.name,
            )
        )
        row = result.first()
        return None if row is None else dict(json.loads(row.body))

    async def _counter(self, conn: AsyncConnection, name: str) -> int:
        result = await conn.execute(sa.select(_counters.c.value).where(_counters.c.name == name))
        value = result.scalar()
        return int(value) if value is not None else 0

    # Writes --------------------------------------------------------------------------------

    async def create(self, obj: Mapping[str, Any]) -> Object:
        async def write(tx: _Tx) -> Object:
            return await tx.create(obj)

        return await self._write(write)

    async def replace(self, obj: Mapping[str, Any]) -> Object:
        async def write(tx: _Tx) -> Object:
            key = key_of(obj)
            current = await self._get(tx.conn, key)
            if current is None:
                raise NotFound(f"{key} not found")
            return await tx.replace(current, obj)

        return await self._write(write)

    async def delete(
        self, kind: str, namespace: str, name: str, *, resource_version: int | None = None
    ) -> Object:
        async def write(tx: _Tx) -> Object:
            key = ResourceKey(kind, namespace, name)
            current = await self._get(tx.conn, key)
            if current is None:
                raise NotFound(f"{key} not found")
            stored_rv = int(current["metadata"]["resourceVersion"])
            if resource_version is not None and resource_version != stored_rv:
                raise Conflict(
                    f"{key} was modified (resourceVersion {stored_rv}, request had "
                    f"{resource_version}); read it again and retry"
                )
            return await tx.delete(current)

        return await self._write(write)

    async def apply_many(
        self, objects: Sequence[Mapping[str, Any]], *, delete: Sequence[ResourceKey] = ()
    ) -> builtins.list[Object]:
        async def write(tx: _Tx) -> builtins.list[Object]:
            stored: builtins.list[Object] = []
            for obj in objects:
                current = await self._get(tx.conn, key_of(obj))
                if current is None:
                    stored.append(await tx.create(obj))
                else:
                    stored.append(await tx.replace(current, obj))
            for key in delete:
                current = await self._get(tx.conn, key)
                if current is not None:
                    await tx.delete(current)
            return stored

        return await self._write(write)

    async def _write(self, body: Callable[[_Tx], Awaitable[_T]]) -> _T:
        async with self._write_lock:
            with self._db_errors():
                async with self._engine.begin() as conn:
                    tx = _Tx(conn, await self._counter(conn, _RV))
                    result = await body(tx)
                    if tx.events:
                        await self._commit_counters(conn, tx.rv)
            for event in tx.events:
                for subscriber in list(self._subscribers):
                    subscriber.offer(event)
            return result

    async def _commit_counters(self, conn: AsyncConnection, rv: int) -> None:
        await _upsert_counter(conn, _RV, rv)
        horizon = rv - self._history
        if horizon > 0:
            await conn.execute(sa.delete(_events).where(_events.c.resource_version <= horizon))
            await _upsert_counter(conn, _COMPACTED, horizon)

    # Watch ---------------------------------------------------------------------------------

    async def watch(
        self, kind: str | None = None, namespace: str | None = None, *, since: int | None = None
    ) -> AsyncIterator[WatchEvent]:
        subscriber = _Subscriber(kind, namespace)
        async with self._write_lock:
            with self._db_errors():
                async with self._engine.connect() as conn:
                    if since is None:
                        initial = [
                            WatchEvent("ADDED", obj, int(obj["metadata"]["resourceVersion"]))
                            for obj in await self._list(conn, kind, namespace)
                        ]
                    else:
                        initial = await self._history_since(conn, kind, namespace, since)
            self._subscribers.add(subscriber)
        try:
            for event in initial:
                yield event
            while (event := await subscriber.next()) is not None:  # type: ignore[assignment]
                yield event
        finally:
            self._subscribers.discard(subscriber)

    async def _history_since(
        self, conn: AsyncConnection, kind: str | None, namespace: str | None, since: int
    ) -> builtins.list[WatchEvent]:
        compacted = await self._counter(conn, _COMPACTED)
        if since < compacted:
            raise Expired(
                f"resourceVersion {since} is older than the kept history (from {compacted}); "
                "list and watch again"
            )
        query = (
            sa.select(_events)
            .where(_events.c.resource_version > since)
            .order_by(_events.c.resource_version)
        )
        if kind is not None:
            query = query.where(_events.c.kind == kind)
        if namespace is not None:
            query = query.where(_events.c.namespace == namespace)
        result = await conn.execute(query)
        return [
            WatchEvent(row.type, json.loads(row.body), int(row.resource_version)) for row in result
        ]

    # Tokens --------------------------------------------------------------------------------

    async def add_token(self, record: TokenRecord) -> None:
        async with self._write_lock:
            with self._db_errors():
                async with self._engine.begin() as conn:
                    await conn.execute(
                        sa.insert(_tokens).values(
                            token_hash=record.token_hash,
                            role=record.role,
                            node=record.node,
                            created_at=_now(),
                        )
                    )

    async def find_token(self, token_hash: str) -> TokenRecord | None:
        with self._db_errors():
            async with self._engine.connect() as conn:
                result = await conn.execute(
                    sa.select(_tokens).where(_tokens.c.token_hash == token_hash)
                )
                row = result.first()
        if row is None:
            return None
        return TokenRecord(token_hash=row.token_hash, role=row.role, node=row.node)

    async def delete_tokens(self, *, role: str, node: str | None = None) -> int:
        query = sa.delete(_tokens).where(_tokens.c.role == role)
        if node is not None:
            query = query.where(_tokens.c.node == node)
        async with self._write_lock:
            with self._db_errors():
                async with self._engine.begin() as conn:
                    result = await conn.execute(query)
        return int(result.rowcount)


async def _upsert_counter(conn: AsyncConnection, name: str, value: int) -> None:
    updated = await conn.execute(
        sa.update(_counters).where(_counters.c.name == name).values(value=value)
    )
    if updated.rowcount == 0:
        await conn.execute(sa.insert(_counters).values(name=name, value=value))


class _Tx:
    """The writes of one transaction: assigns resourceVersions and records the events."""

    def __init__(self, conn: AsyncConnection, rv: int) -> None:
        self.conn = conn
        self.rv = rv
        self.events: list[WatchEvent] = []

    async def _record(self, type_: EventType, key: ResourceKey, obj: Object) -> None:
        await self.conn.execute(
            sa.insert(_events).values(
                resource_version=self.rv,
                type=type_,
                kind=key.kind,
                namespace=key.namespace,
                body=_dumps(obj),
            )
        )
        self.events.append(WatchEvent(type_, obj, self.rv))

    async def create(self, obj: Mapping[str, Any]) -> Object:
        key = key_of(obj)
        existing = await self.conn.execute(
            sa.select(_resources.c.resource_version).where(
                _resources.c.kind == key.kind,
                _resources.c.namespace == key.namespace,
                _resources.c.name == key.name,
            )
        )
        if existing.first() is not None:
            raise AlreadyExists(f"{key} already exists")
        self.rv += 1
        stored = copy.deepcopy(dict(obj))
        metadata = stored.setdefault("metadata", {})
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = _now()
        metadata["resourceVersion"] = str(self.rv)
        await self.conn.execute(
            sa.insert(_resources).values(
                kind=key.kind,
                namespace=key.namespace,
                name=key.name,
                resource_version=self.rv,
                body=_dumps(stored),
            )
        )
        await self._record("ADDED", key, stored)
        return stored

    async def replace(self, current: Object, obj: Mapping[str, Any]) -> Object:
        key = key_of(obj)
        stored_rv = int(current["metadata"]["resourceVersion"])
        asked_rv = _object_rv(obj)
        if asked_rv is not None and asked_rv != stored_rv:
            raise Conflict(
                f"{key} was modified (resourceVersion {stored_rv}, request had {asked_rv}); "
                "read it again and retry"
            )
        candidate = copy.deepcopy(dict(obj))
        metadata = candidate.setdefault("metadata", {})
        metadata["uid"] = current["metadata"].get("uid")
        metadata["creationTimestamp"] = current["metadata"].get("creationTimestamp")
        metadata["resourceVersion"] = str(stored_rv)
        if "status" not in candidate and "status" in current:
            candidate["status"] = current["status"]
        if candidate == current:
            return current
        self.rv += 1
        metadata["resourceVersion"] = str(self.rv)
        await self.conn.execute(
            sa.update(_resources)
            .where(
                _resources.c.kind == key.kind,
                _resources.c.namespace == key.namespace,
                _resources.c.name == key.name,
            )
            .values(resource_version=self.rv, body=_dumps(candidate))
        )
        await self._record("MODIFIED", key, candidate)
        return candidate

    async def delete(self, current: Object) -> Object:
        key = key_of(current)
        self.rv += 1
        gone = copy.deepcopy(current)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        await self.conn.execute(
            sa.delete(_resources).where(
                _resources.c.kind == key.kind,
                _resources.c.namespace == key.namespace,
                _resources.c.name == key.name,
            )
        )
        await self._record("DELETED", key, gone)
        return gone
