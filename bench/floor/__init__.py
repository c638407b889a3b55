"""The floor probe: what the least Python relay costs on this machine, next to meshlet.

A yardstick for issue 3's targets, never the product: two uvloop processes joined by one
mutual-TLS 1.3 connection carrying multiplexed streams, and nothing else a mesh agent does
(see README.md in this folder). ``python -m bench.floor`` starts nginx, the paths asked for
(direct, the HAProxy pair, meshlet, the probe and its variants, one plain Python hop) and runs
wrk over them in interleaved rounds; the figures go to ``bench/results/floor-<time>.json``.

Modules: :mod:`bench.floor.frames` (the tunnel's framing), :mod:`bench.floor.probe` (the probe's
processes), :mod:`bench.floor.hop` (the plain hop), :mod:`bench.floor.paths` (starting every
path), :mod:`bench.floor.checks` (functional checks without load), :mod:`bench.floor.cli`.
"""
