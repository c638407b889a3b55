"""meshlet: a service mesh in Python.

Node agents reached over Unix sockets (the Meshless handshake), multiplexed mTLS tunnels between
agents, Kubernetes-shaped resources served by a control plane.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
