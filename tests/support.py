"""Small helpers shared by the test modules."""

from __future__ import annotations

import socket
from collections.abc import Callable

import trio

STEP = 10.0  # seconds: the longest any single expected step may take on a loaded 2-core machine


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = STEP) -> None:
    """Poll ``predicate`` until true, for state with no event to wait on (bounded, never a bare sleep)."""
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.01)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
