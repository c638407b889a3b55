"""Errors raised by :mod:`meshlet.api`.

Exception tree::

    ApiError                      base of everything below
     ├── InvalidDuration          (also ValueError) text is not a Go duration we accept
     ├── InvalidName              (also ValueError) not a DNS-1123 label/subdomain, label key/value
     ├── UnknownKind              (also LookupError) no registered kind by that name/apiVersion
     ├── ValidationFailure        (also ValueError) an object is invalid; ``.errors`` lists
     │                            every :class:`FieldError` (path + message)
     └── ManifestError            (also ValueError) a manifest file is unreadable or holds
                                  invalid objects; ``.problems`` lists every problem found

``ApiError``, ``InvalidDuration`` and ``InvalidName`` are defined in :mod:`meshlet.syntax.errors`
(below the resource models, so the node agent can use them without loading the models) and
re-exported here. ``InvalidDuration`` and ``InvalidName`` subclass ``ValueError`` so that pydantic
turns them into field errors when they are raised inside a model validator.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshlet.syntax.errors import ApiError, InvalidDuration, InvalidName

__all__ = [
    "ApiError",
    "FieldError",
    "InvalidDuration",
    "InvalidName",
    "ManifestError",
    "ManifestProblem",
    "UnknownKind",
    "ValidationFailure",
]


class UnknownKind(ApiError, LookupError):
    """No registered kind matches the apiVersion/kind, plural or short name given."""


@dataclass(frozen=True)
class FieldError:
    """One problem in one field.

    ``path`` uses Kubernetes notation: dotted field names (as the user spells them), list
    indexes and map keys in brackets, e.g. ``spec.server.services[0].idleTimeout`` or
    ``metadata.labels[meshless/meshlet]``. An empty path means the object as a whole.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def to_dict(self) -> dict[str, str]:
        """The shape of a cause in a Kubernetes ``Status``: ``{"field": ..., "message": ...}``."""
        return {"field": self.path, "message": self.message}


class ValidationFailure(ApiError, ValueError):
    """An object failed validation; ``errors`` holds every problem, not just the first."""

    def __init__(self, errors: list[FieldError], *, kind: str | None = None) -> None:
        self.errors = list(errors)
        self.kind = kind
        what = f"invalid {kind}" if kind else "invalid object"
        super().__init__(f"{what}: " + "; ".join(str(e) for e in self.errors))


@dataclass(frozen=True)
class ManifestProblem:
    """One problem in a manifest file.

    ``location`` says where: ``document 2 (Meshlet demo/echo)`` or ``line 7, column 3``.
    ``document`` is the 1-based position of the object in the file (``None`` for syntax
    errors), ``field`` the path inside the object (``None`` when the problem is not a field's).
    """

    source: str
    location: str
    message: str
    field: str | None = None
    document: int | None = None

    def __str__(self) -> str:
        field = f"{self.field}: " if self.field else ""
        return f"{self.source}: {self.location}: {field}{self.message}"


class ManifestError(ApiError, ValueError):
    """A manifest could not be read or holds invalid objects; one line per problem."""

    def __init__(self, problems: list[ManifestProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
