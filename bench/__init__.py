"""meshlet's benchmark suite: the data path against a direct connection and an HAProxy pair.

``make bench`` (or ``bench/install-peers && python -m bench``) starts, on 127.0.0.1, one nginx
backend and every path to it (direct; HAProxy A → mTLS → HAProxy B; meshlet agent A → tunnel →
agent B, entered by a TCP listener or by the client handshake), runs keep-alive, new-connection
and bulk loads over them in interleaved runs, and reports medians, ratios and the issue-3
targets: printed, as JSON in ``bench/results/`` and in ``docs/performance.md``.

Modules: :mod:`bench.peers` (nginx, HAProxy), :mod:`bench.meshpaths` (meshlet via LocalMesh),
:mod:`bench.wrk` and :mod:`bench.loadgen` (the load generators), :mod:`bench.procs` (processes,
CPU and RSS from /proc), :mod:`bench.suite` (what is measured, in which order),
:mod:`bench.report` (tables, targets, docs), :mod:`bench.machine`, :mod:`bench.cli`.
"""
