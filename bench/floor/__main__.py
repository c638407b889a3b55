"""Entry point: ``python -m bench.floor`` (see :mod:`bench.floor.cli`)."""

import sys

from bench.floor.cli import main

sys.exit(main())
