"""The two rich consoles of the CLI: results on stdout, errors and progress on stderr.

Keeping errors on stderr means ``meshlet get ml -o yaml > out.yaml`` never writes an error
into the file. Rich disables colour by itself when the stream is not a terminal.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

__all__ = ["err", "out", "print_error"]

out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def print_error(message: str) -> None:
    """One red ``error:`` line (the message is printed literally, never as markup)."""
    err.print(f"[bold red]error:[/] [red]{escape(message)}[/]")
