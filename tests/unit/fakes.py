"""Stand-ins the unit tests share: no sockets behind them."""

from __future__ import annotations

import asyncio
from typing import Any


class MemoryTransport(asyncio.Transport):
    """A transport that keeps its protocol and what is done to it: the bytes written (all of
    them in ``written``, each write in ``writes``), EOF, and whether it was closed. ``extra`` is
    what ``get_extra_info`` answers."""

    def __init__(
        self, protocol: asyncio.BaseProtocol | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(extra)
        self.protocol = protocol
        self.written = bytearray()
        self.writes: list[bytes] = []
        self.eof = False
        self.closing = False

    def write(self, data: Any) -> None:
        self.written += data
        self.writes.append(bytes(data))

    def write_eof(self) -> None:
        self.eof = True

    def can_write_eof(self) -> bool:
        return True

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True


class OptionsSocket:
    """Stands for the socket behind a transport: its family, and the options set on it."""

    def __init__(self, family: int) -> None:
        self.family = family
        self.options: list[tuple[int, int, int]] = []

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.options.append((level, option, value))
