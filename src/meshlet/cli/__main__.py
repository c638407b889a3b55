"""``python -m meshlet.cli``: the same as the ``meshlet`` command (``meshlet up`` spawns it)."""

from meshlet.cli.main import main

main()
