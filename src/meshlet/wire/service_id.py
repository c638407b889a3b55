"""Service IDs: ``<service>.<meshlet>.<namespace>``, each part a DNS-1123 label."""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["MAX_SERVICE_ID_BYTES", "InvalidServiceId", "ServiceId", "parse_service_id"]

MAX_SERVICE_ID_BYTES = 255
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class InvalidServiceId(ValueError):
    """The text is not ``<service>.<meshlet>.<namespace>`` of DNS-1123 labels."""


class ServiceId(NamedTuple):
    service: str
    meshlet: str
    namespace: str

    def __str__(self) -> str:
        return f"{self.service}.{self.meshlet}.{self.namespace}"


#: Service IDs already found valid. Every new connection checks one several times (the SDK's
#: request, the agent's handshake, the tunnel OPEN at both ends), nearly always one seen
#: before; a lookup here costs ~0.1 us against ~2.5 us to check. Bounded: IDs that keep
#: changing only make it start over.
_VALID: dict[str, ServiceId] = {}
_VALID_MAX = 1024


def parse_service_id(text: str) -> ServiceId:
    known = _VALID.get(text)
    if known is not None:
        return known
    if len(text.encode()) > MAX_SERVICE_ID_BYTES:
        raise InvalidServiceId(
            f"service ID is {len(text.encode())} bytes; at most {MAX_SERVICE_ID_BYTES} allowed"
        )
    parts = text.split(".")
    if len(parts) != 3:
        raise InvalidServiceId(
            f"service ID {text!r} must have three dot-separated parts: "
            "<service>.<meshlet>.<namespace>"
        )
    for what, part in zip(("service", "meshlet", "namespace"), parts, strict=True):
        if not _LABEL.fullmatch(part):
            raise InvalidServiceId(
                f"{what} {part!r} in service ID {text!r} is not a DNS-1123 label "
                "(lowercase letters, digits and '-', 1-63 characters, starting and ending "
                "with a letter or digit)"
            )
    service_id = ServiceId(*parts)
    if len(_VALID) >= _VALID_MAX:
        _VALID.clear()
    _VALID[text] = service_id
    return service_id
