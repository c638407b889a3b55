"""Syntax rules for names, label keys and label values (Kubernetes' rules).

- DNS-1123 label: 1-63 characters, lowercase letters, digits and ``-``, starting and ending
  with a letter or digit. Namespaces, Meshlet names and service names are labels, because they
  are the three parts of a service ID ``<service>.<meshlet>.<namespace>``.
- DNS-1123 subdomain: 1-253 characters, labels joined by ``.``. Names of Workloads, Nodes and
  MeshServices (a MeshService is named by its service ID, which has dots).
- Label key: ``[prefix/]name``; the prefix a subdomain, the name 1-63 characters of letters,
  digits, ``-``, ``_``, ``.``, starting and ending with a letter or digit
  (``meshless/meshlet``, ``version``).
- Label value: empty, or 1-63 characters with the same rule as a key's name.

A service ID built from three labels is at most 3 * 63 + 2 = 191 bytes, so it always fits the
255-byte limit of the client handshake; :func:`check_service_id_length` states that limit for
the places that build IDs.

Each ``check_*`` function returns its argument unchanged or raises :class:`InvalidName` with a
message that says what is wrong and what is allowed.
"""

from __future__ import annotations

import re

from meshlet.syntax.errors import InvalidName

__all__ = [
    "MAX_SERVICE_ID_BYTES",
    "check_dns1123_label",
    "check_dns1123_subdomain",
    "check_label_key",
    "check_label_value",
    "check_service_id_length",
    "service_id",
]

MAX_SERVICE_ID_BYTES = 255
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")

_LABEL_RULE = "lowercase letters, digits and '-', starting and ending with a letter or digit"


def check_dns1123_label(value: str) -> str:
    """A DNS-1123 label such as ``my-name``."""
    if len(value) > 63:
        raise InvalidName(f"{value!r} is {len(value)} characters; a DNS-1123 label has at most 63")
    if not _LABEL.fullmatch(value):
        raise InvalidName(
            f"{value!r} is not a valid DNS-1123 label: use {_LABEL_RULE} (e.g. 'my-name')"
        )
    return value


def check_dns1123_subdomain(value: str) -> str:
    """A DNS-1123 subdomain such as ``node-a`` or ``echo.echo.demo``."""
    if len(value) > 253:
        raise InvalidName(
            f"{value!r} is {len(value)} characters; a DNS-1123 subdomain has at most 253"
        )
    if not _SUBDOMAIN.fullmatch(value):
        raise InvalidName(
            f"{value!r} is not a valid DNS-1123 subdomain: use {_LABEL_RULE}, "
            "in parts separated by '.' (e.g. 'node-a' or 'echo.backend.demo')"
        )
    return value


def check_label_key(value: str) -> str:
    """A label key: ``name`` or ``prefix/name`` (``version``, ``meshless/meshlet``)."""
    prefix, slash, name = value.rpartition("/")
    if slash:
        try:
            check_dns1123_subdomain(prefix)
        except InvalidName as exc:
            raise InvalidName(f"label key {value!r}: prefix {exc}") from None
    if not name or len(name) > 63 or not _QUALIFIED.fullmatch(name):
        raise InvalidName(
            f"label key {value!r} is invalid: the name part must be 1-63 letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit, optionally after a "
            "DNS subdomain prefix and '/' (e.g. 'version' or 'meshless/meshlet')"
        )
    return value


def check_label_value(value: str) -> str:
    """A label value: empty, or up to 63 letters, digits, ``-``, ``_``, ``.``."""
    if value and (len(value) > 63 or not _QUALIFIED.fullmatch(value)):
        raise InvalidName(
            f"label value {value!r} is invalid: use at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit (e.g. 'v1')"
        )
    return value


def check_service_id_length(value: str) -> str:
    """A service ID must fit the one-byte length of the client handshake."""
    size = len(value.encode())
    if size > MAX_SERVICE_ID_BYTES:
        raise InvalidName(
            f"service ID {value!r} is {size} bytes; at most {MAX_SERVICE_ID_BYTES} are allowed"
        )
    return value


def service_id(service: str, meshlet: str, namespace: str) -> str:
    """``<service>.<meshlet>.<namespace>``: how clients name a service (and its MeshService)."""
    return check_service_id_length(f"{service}.{meshlet}.{namespace}")
