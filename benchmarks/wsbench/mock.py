"""The route handlers, written once for both drivers.

cdp_wsroute's and Playwright's ``WebSocketRoute`` share the calls used here
(``url``, ``send``, ``on_message``, ``connect_to_server``), all synchronous, so
the same handlers serve trio and asyncio.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from wsbench.protocol import Message, ack, behaviour_of, download_messages, parse_download

__all__ = ["RouteLike", "mock", "pass_through"]


class RouteLike(Protocol):
    @property
    def url(self) -> str: ...

    def send(self, message: Message) -> None: ...

    def on_message(self, handler: Callable[[Message], Any]) -> None: ...


def mock(route: RouteLike) -> None:
    """Mocked: answer in Python what the real server would (see :mod:`wsbench.protocol`)."""
    behaviour = behaviour_of(route.url)
    if behaviour == "echo":
        route.on_message(lambda message: route.send(message))
    elif behaviour == "ack":
        route.on_message(lambda message: route.send(ack(message)))
    elif behaviour == "download":

        def download(message: Message) -> None:
            request = parse_download(message)
            if request is not None:
                for reply in download_messages(*request):
                    route.send(reply)

        route.on_message(download)
    else:
        raise ValueError(f"no mock for {route.url!r}")


class Connectable(Protocol):
    def connect_to_server(self) -> object: ...


def pass_through(route: Connectable) -> None:
    """Pass-through: open the real connection; frames are forwarded both ways untouched."""
    route.connect_to_server()
