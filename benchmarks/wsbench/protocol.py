"""What the peers of the bench page say: the same protocol for the real server and the mocks.

The page opens ``ws://127.0.0.1:PORT/<behaviour>``; the path picks the behaviour:

* ``/echo``: every message back as it came.
* ``/ack``: answer each message with the text ``"<seq> <size>"``.
* ``/download``: on the text ``"<count> <size>"``, send ``count`` binary messages of ``size``
  bytes, then the text ``"end"``.
* ``/sink?rate=BYTES_PER_S`` (real server only): read binary messages no faster than ``rate``;
  on the text ``"end"``, answer a JSON summary ``{"messages", "bytes", "reordered"}``.

Every message carries its sequence number: a text one starts with ``"<seq>:"``, a binary
one with a little-endian uint32. Pure functions, no I/O: the server (trio) and both
drivers' mocks (trio and asyncio) share them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

__all__ = [
    "BEHAVIOURS",
    "Ports",
    "ack",
    "behaviour_of",
    "binary_message",
    "download_messages",
    "download_request",
    "parse_download",
    "seq_of",
]

Message = str | bytes

BEHAVIOURS = ("echo", "ack", "download", "sink")


@dataclass(frozen=True)
class Ports:
    """Where the bench server listens (on 127.0.0.1)."""

    http: int
    ws: int

    @property
    def page_url(self) -> str:
        return f"http://127.0.0.1:{self.http}/bench.html"

    def ws_url(self, behaviour: str, query: dict[str, int | float | bool] | None = None) -> str:
        return f"ws://127.0.0.1:{self.ws}/{behaviour}" + (f"?{urlencode(query)}" if query else "")

    @property
    def ws_glob(self) -> str:
        """A route URL glob matching every socket to the server."""
        return f"ws://127.0.0.1:{self.ws}/**"


def behaviour_of(url: str) -> str:
    """The behaviour a socket URL asks for (its path without the slash)."""
    return urlsplit(url).path.strip("/")


def seq_of(message: Message) -> int:
    """The sequence number a message carries."""
    if isinstance(message, str):
        return int(message.partition(":")[0])
    return int.from_bytes(message[:4], "little")


def binary_message(seq: int, size: int) -> bytes:
    """A binary message of ``size`` bytes (at least 4) carrying ``seq``."""
    return seq.to_bytes(4, "little") + bytes(max(0, size - 4))


def ack(message: Message) -> str:
    """The ``/ack`` answer to one message."""
    return f"{seq_of(message)} {len(message)}"


def download_request(count: int, size: int) -> str:
    return f"{count} {size}"


def parse_download(message: Message) -> tuple[int, int] | None:
    """``(count, size)`` from a ``/download`` request, None for anything else."""
    if not isinstance(message, str):
        return None
    count, _, size = message.partition(" ")
    if not (count.isdigit() and size.isdigit()):
        return None
    return int(count), int(size)


def download_messages(count: int, size: int) -> Iterator[Message]:
    """What ``/download`` sends for one request, in order (one buffer reused: send copies)."""
    body = bytearray(max(4, size))
    for seq in range(count):
        body[:4] = seq.to_bytes(4, "little")
        yield bytes(body)
    yield "end"
