"""Errors of the resource store.

::

    StoreError                 the store cannot do what was asked
    ├── NotFound               no object with that kind, namespace and name
    ├── AlreadyExists          create of an object that exists
    ├── Conflict               metadata.resourceVersion does not match the stored one
    ├── Expired                a watch asked to resume from a resourceVersion no longer kept
    └── StoreUnavailable       the database cannot be opened, read or written

Each error names the object (``Kind ns/name``) so that the API can answer with a message a user
can act on; :class:`AlreadyExists` is a :class:`Conflict` because both answer HTTP 409.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "Conflict",
    "Expired",
    "NotFound",
    "StoreError",
    "StoreUnavailable",
]


class StoreError(Exception):
    """The store cannot do what was asked."""


class NotFound(StoreError):
    """No object with that kind, namespace and name."""


class Conflict(StoreError):
    """The write conflicts with the stored state (stale resourceVersion)."""


class AlreadyExists(Conflict):
    """A create names an object that already exists."""


class Expired(StoreError):
    """A watch asked to resume from a resourceVersion older than the kept event history."""


class StoreUnavailable(StoreError):
    """The database cannot be opened, read or written."""
