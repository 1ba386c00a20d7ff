"""Free loopback ports for the local servers the tests and benchmarks start (never used by the product)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nobody listens on now: a server told to use a busy one may silently move or fail late."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
