"""Errors raised by :mod:`meshlet.syntax`.

Exception tree::

    ApiError                      base of every error of meshlet.syntax and meshlet.api
     ├── InvalidDuration          (also ValueError) text is not a Go duration we accept
     └── InvalidName              (also ValueError) not a DNS-1123 label/subdomain, label key/value

:mod:`meshlet.api` re-exports all three and derives its own errors from ``ApiError``; they are
defined here, below the resource models, so that checking a name or a duration never imports
those models (the node agent checks its config file with them).

``InvalidDuration`` and ``InvalidName`` subclass ``ValueError`` so that pydantic turns them
into field errors when they are raised inside a model validator.
"""

from __future__ import annotations

__all__ = ["ApiError", "InvalidDuration", "InvalidName"]


class ApiError(Exception):
    """Base class of every error raised by :mod:`meshlet.api` (and :mod:`meshlet.syntax`)."""


class InvalidDuration(ApiError, ValueError):
    """The text is not a duration in Go ``time.ParseDuration`` syntax we accept."""


class InvalidName(ApiError, ValueError):
    """A name, label key or label value breaks its syntax rule."""
