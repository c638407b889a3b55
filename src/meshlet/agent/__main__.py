"""``python -m meshlet.agent``: see :mod:`meshlet.agent.run`."""

from __future__ import annotations

import sys

from meshlet.agent.run import main

sys.exit(main())
