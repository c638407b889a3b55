"""Counting the probe's listeners (bench.floor.paths.listeners): with SO_REUSEPORT every worker's
socket is a line of /proc/net/tcp, and only all of them listening means every worker is up."""

from __future__ import annotations

from bench.floor.paths import listeners

# Two listeners on 127.0.0.1:8080 (0x1F90), one on 0.0.0.0:2024, and an established connection
# from port 8080; the trailing columns are cut short, the parser needs only the first four.
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 2
   2: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3
   3: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 4
"""


def test_counts_each_listening_socket_on_the_port() -> None:
    assert listeners(PROC_NET_TCP, 8080) == 2
    assert listeners(PROC_NET_TCP, 2024) == 1


def test_connections_from_the_port_and_other_ports_are_not_listeners() -> None:
    assert listeners(PROC_NET_TCP, 0xD431) == 0
    assert listeners(PROC_NET_TCP, 0x1F9) == 0  # a suffix of 1F90 without its colon


def test_an_empty_table_has_no_listeners() -> None:
    assert listeners(PROC_NET_TCP.splitlines()[0], 8080) == 0
