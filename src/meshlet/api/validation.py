"""Validate a decoded object (a dict from YAML/JSON) into its model, with readable errors.

pydantic reports an error location as a tuple of aliases, list indexes and dict keys. A tuple
cannot tell a field name from a map key, so :func:`_path` walks the model's types alongside
the location: inside a model an element is a field (``.name``), inside a list an index
(``[0]``), inside a dict a key (``[meshless/meshlet]``). The result is the Kubernetes field
path users see in ``kubectl`` errors, e.g. ``spec.server.services[0].idleTimeout``.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from meshlet.api.errors import FieldError, UnknownKind, ValidationFailure
from meshlet.api.meta import Resource
from meshlet.api.registry import kind_for

__all__ = ["field_errors", "validate_object"]

_TYPE_MESSAGES = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "dict_type": "must be a mapping (key: value)",
    "model_type": "must be a mapping (key: value)",
    "model_attributes_type": "must be a mapping (key: value)",
    "list_type": "must be a list",
    "datetime_type": "must be a date-time such as 2024-01-01T00:00:00Z",
    "datetime_parsing": "must be a date-time such as 2024-01-01T00:00:00Z",
    "datetime_from_date_parsing": "must be a date-time such as 2024-01-01T00:00:00Z",
}
_BOUND_MESSAGES = {
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "too_short": "must have at least {min_length} item(s)",
    "string_too_short": "must have at least {min_length} character(s)",
}


def _unwrap(tp: Any) -> Any:
    """Strip ``Annotated`` and ``| None`` so the walk sees the structural type."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _field_by_alias(model: type[BaseModel], alias: str) -> Any:
    for name, info in model.model_fields.items():
        if alias in (info.alias, name):
            return info.annotation
    return None


def _path(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[str, type[BaseModel] | None]:
    """The Kubernetes path of ``loc``, and the model the last element belongs to (if any)."""
    path = ""
    current: Any = model
    parent: type[BaseModel] | None = model
    is_key = False
    for element in loc:
        current = _unwrap(current)
        origin = get_origin(current)
        if element == "[key]":
            # pydantic's marker for "the key itself is invalid", after the key.
            is_key = True
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            parent = current
            path = f"{path}.{element}" if path else str(element)
            current = _field_by_alias(current, str(element))
        elif origin is dict:
            path += f"[{element}]"
            parent = None
            current = get_args(current)[1]
        elif origin in (list, tuple):
            path += f"[{element}]"
            parent = None
            current = get_args(current)[0]
        else:
            # Beyond what the walk understands (e.g. a union member's tag): keep it readable.
            path += f"[{element}]" if isinstance(element, int) else ""
            parent = None
            current = None
    if is_key:
        path += " (key)"
    return path, parent


def _message(error: ErrorDetails, parent: type[BaseModel] | None) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        if parent is not None:
            known = ", ".join(
                sorted(info.alias or name for name, info in parent.model_fields.items())
            )
            return f"unknown field (known fields here: {known})"
        return "unknown field"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", error["msg"]))
    if kind == "literal_error":
        return f"must be {ctx.get('expected')} (got {value!r})"
    if kind in _TYPE_MESSAGES:
        shown = f" (got {value!r})" if isinstance(value, str | int | float | bool) else ""
        return _TYPE_MESSAGES[kind] + shown
    if kind in _BOUND_MESSAGES:
        return _BOUND_MESSAGES[kind].format(**ctx) + f" (got {value!r})"
    return error["msg"]


def field_errors(model: type[BaseModel], exc: ValidationError) -> list[FieldError]:
    """Convert pydantic's errors for ``model`` into Kubernetes-style field errors."""
    result: list[FieldError] = []
    for error in exc.errors(include_url=False):
        path, parent = _path(model, tuple(error["loc"]))
        result.append(FieldError(path, _message(error, parent)))
    return result


def validate_object(obj: object) -> Resource:
    """Validate one decoded object into the model of its kind.

    Only the user spelling (camelCase) of fields is accepted. Raises
    :class:`ValidationFailure` listing every problem with its field path.
    """
    if not isinstance(obj, dict):
        raise ValidationFailure(
            [FieldError("", f"expected an object with apiVersion, kind, metadata; got {obj!r}")]
        )
    api_version = obj.get("apiVersion")
    kind = obj.get("kind")
    missing = [
        FieldError(field, "required field is missing")
        for field, value in (("apiVersion", api_version), ("kind", kind))
        if value is None
    ]
    if missing:
        raise ValidationFailure(missing)
    if not isinstance(api_version, str) or not isinstance(kind, str):
        raise ValidationFailure([FieldError("kind", "apiVersion and kind must be strings")])
    try:
        info = kind_for(api_version, kind)
    except UnknownKind as exc:
        raise ValidationFailure([FieldError("kind", str(exc))]) from None
    try:
        return info.model.model_validate(obj, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise ValidationFailure(field_errors(info.model, exc), kind=kind) from None
