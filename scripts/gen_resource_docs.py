"""Write docs/resources.md, the resource reference, from the models in meshlet.api.

Usage: ``python scripts/gen_resource_docs.py [--check]``. With ``--check`` nothing is written;
the exit status is 1 when the committed page differs from what the models generate.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from meshlet.api.schema import render_reference

TARGET = Path(__file__).resolve().parent.parent / "docs" / "resources.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the page is out of date")
    args = parser.parse_args(argv)
    text = render_reference()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET} is out of date: run python scripts/gen_resource_docs.py")
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
