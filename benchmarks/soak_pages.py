"""Driving the soak page (``soak_page.js``) from Python: routes, exchanges, closes, and what they report.

A socket is mocked (``/mock/<id>``: Python echoes) or passed through (``/pass/<id>``: the real
echo server answers); the page checks every echo and :class:`Delivery` sums what it found.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from soak_server import Ports

from cdp_wsroute import BrowserContext, Page, WebSocketRoute

__all__ = ["Closing", "Delivery", "Exchange", "add_routes", "close_sockets", "exchange", "mixed_kinds"]

JSONDict = dict[str, Any]
PAGE_IDLE_MS = 30_000  # the page gives up on its sockets after this long without progress


def echo_mock(route: WebSocketRoute) -> None:
    """Mocked: Python echoes every message; nothing leaves the machine."""
    route.on_message(lambda message: route.send(message))


def pass_through(route: WebSocketRoute) -> None:
    """Passed through: the real server answers; frames are forwarded both ways untouched."""
    route.connect_to_server()


HANDLERS = {"mock": echo_mock, "pass": pass_through}


async def add_routes(target: Page | BrowserContext, ports: Ports, kinds: Sequence[str]) -> None:
    """Route the sockets of each of ``kinds`` ("mock", "pass") on a page or a whole context."""
    for kind in kinds:
        await target.route_web_socket(ports.ws_glob(kind), HANDLERS[kind])


def mixed_kinds(count: int) -> list[str]:
    """Alternately mocked and passed through: half each."""
    return ["mock" if i % 2 == 0 else "pass" for i in range(count)]


@dataclass
class Delivery:
    """Sockets and messages checked by the page, summed over exchanges and kinds."""

    sockets: int = 0
    opened: int = 0
    failed: int = 0  # closed or errored before every echo came back
    expected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0  # arrived after a later message of the same socket
    corrupted: int = 0  # another socket's, of the wrong type, or unreadable
    errors: int = 0  # error events
    stalled: int = 0  # exchanges that gave up waiting

    def add(self, report: JSONDict) -> None:
        self.stalled += bool(report["stalled"])
        for counts in report["kinds"].values():
            for name, count in counts.items():
                setattr(self, name, getattr(self, name) + count)

    def merge(self, other: Delivery) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def problems(self) -> list[str]:
        bad = ("failed", "lost", "duplicated", "reordered", "corrupted", "errors", "stalled")
        found = [f"{getattr(self, name)} {name}" for name in bad if getattr(self, name)]
        if self.opened != self.sockets:
            found.append(f"{self.sockets - self.opened} of {self.sockets} sockets never opened")
        return found


@dataclass(frozen=True)
class Exchange:
    delivery: Delivery
    open_s: float | None  # until the last socket opened
    total_s: float  # until the last echo came back (or the page gave up)


@dataclass(frozen=True)
class Closing:
    closing: int
    closed: int
    clean: int  # closed with wasClean and code 1000
    late: int  # messages that came after every echo was back: duplicates or strays
    stalled: bool

    def problems(self) -> list[str]:
        found = []
        if self.stalled or self.clean != self.closing:
            found.append(f"{self.clean} of {self.closing} sockets closed cleanly")
        if self.late:
            found.append(f"{self.late} messages came after every echo was back")
        return found


async def exchange(page: Page, ports: Ports, kinds: Sequence[str], messages: int) -> Exchange:
    """Open one socket per entry of ``kinds`` at once; each sends ``messages`` and gets them back.

    Unbounded here: the page gives up after PAGE_IDLE_MS without progress; callers add a deadline.
    """
    config = {"base": ports.ws_base, "kinds": list(kinds), "messages": messages, "idleMs": PAGE_IDLE_MS}
    report: JSONDict = await page.evaluate("config => window.soak.exchange(config)", config)
    delivery = Delivery()
    delivery.add(report)
    open_ms = report["open_ms"]
    return Exchange(delivery, None if open_ms is None else open_ms / 1000, report["total_ms"] / 1000)


async def close_sockets(page: Page, count: int | None = None) -> Closing:
    """Close ``count`` of the page's open sockets (all by default) and wait for their close events."""
    report: JSONDict = await page.evaluate(
        "config => window.soak.close(config)", {"count": count, "idleMs": PAGE_IDLE_MS}
    )
    return Closing(report["closing"], report["closed"], report["clean"], report["late"], bool(report["stalled"]))
