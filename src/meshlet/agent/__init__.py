"""The node agent: listeners, routing, balancing, tunnels, forwarding, admin API."""
