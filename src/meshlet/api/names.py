"""Name rules: :mod:`meshlet.syntax.names`, under the name the resource models use."""

from meshlet.syntax.names import (
    MAX_SERVICE_ID_BYTES,
    check_dns1123_label,
    check_dns1123_subdomain,
    check_label_key,
    check_label_value,
    check_service_id_length,
    service_id,
)

__all__ = [
    "MAX_SERVICE_ID_BYTES",
    "check_dns1123_label",
    "check_dns1123_subdomain",
    "check_label_key",
    "check_label_value",
    "check_service_id_length",
    "service_id",
]
