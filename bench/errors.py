"""Errors of the benchmark suite.

::

    BenchError                  anything that stops the suite
    ├── PeerMissing             haproxy, nginx or wrk is not installed
    ├── PeerFailed              a peer or meshlet process did not start, or died
    └── MeasurementFailed       a load ran but its output is unusable (tool error, bad output)
"""

from __future__ import annotations


class BenchError(RuntimeError):
    """The suite cannot go on; the message says what to do."""


class PeerMissing(BenchError):
    """A peer program is not installed."""


class PeerFailed(BenchError):
    """A process the suite started did not come up or exited early."""


class MeasurementFailed(BenchError):
    """A load generator failed or printed something the suite cannot read."""
