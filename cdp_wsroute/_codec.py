"""The tunnel's wire format between the page shim and Python. Pure: no I/O, no trio.

The page sends batches through a CDP binding (see ``injected_js/websocket_shim.js``
for the format); everything in them is untrusted. :func:`decode_batch` checks the
batch's token, the type and size of every field, and returns the messages that
are well formed together with a reason for each one that is not, so one bad
message never costs the others. Python -> page batches are lists built by the
``*_message`` helpers: JSON-able, except that binary payloads stay base64 bytes
until the batch is written (:func:`batch_expression`, :func:`plain_batch`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "FRAME_COST",
    "MAX_MESSAGE_BYTES",
    "WINDOW",
    "Binary",
    "Close",
    "Create",
    "Lost",
    "PageMessage",
    "Part",
    "Text",
    "decode_batch",
]

# Largest frame the tunnel carries either way. Chromium itself has no limit; this
# one only stops a hostile page from making Python allocate without bound.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
MAX_PAYLOAD_CHARS = 4 * MAX_MESSAGE_BYTES // 3 + 1024 * 1024
MAX_URL_CHARS = 2 * 1024 * 1024
MAX_PROTOCOLS = 256
MAX_SOCKET_ID = 2**53 - 1
# Flow control page -> Python (see the shim): a routed socket may have WINDOW bytes of
# frames unacknowledged, each frame costing its size plus FRAME_COST. An acknowledgement
# can wait behind all that is queued for the page (the tunnel's PAGE_HIGH_WATER, 4 MiB):
# a smaller window stalls a page that sends while it receives (1 MiB frames echoed: a
# fifth slower with a 1 MiB window, benchmarks/README.md).
WINDOW = 4 * 1024 * 1024
FRAME_COST = 64
# The largest page -> Python batch the shim builds, and the size of the parts a larger
# frame goes in (characters; a multiple of 4, so base64 parts decode alone). Chromium's
# cost per character of a binding call grows with its size: 256 Ki characters per call
# moved a 16 MiB frame in a third of the time one call took (benchmarks/README.md).
PART_CHARS = 256 * 1024
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True, slots=True)
class Create:
    """``new WebSocket(url, protocols)`` in the page."""

    socket_id: int
    url: str
    protocols: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Text:
    socket_id: int
    data: str


@dataclass(frozen=True, slots=True)
class Binary:
    socket_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Part:
    """A leading part of a large frame: the socket's next Text or Binary is its last part."""

    socket_id: int
    data: str | bytes


@dataclass(frozen=True, slots=True)
class Close:
    """``ws.close(code, reason)`` in the page; ``connecting`` if it was not open yet."""

    socket_id: int
    code: int | None
    reason: str
    connecting: bool


@dataclass(frozen=True, slots=True)
class Lost:
    """The page dropped the socket (it went into the back/forward cache)."""

    socket_id: int


PageMessage = Create | Text | Binary | Part | Close | Lost


def is_valid_close_code(code: int) -> bool:
    """Codes a page may pass to ``WebSocket.close()``."""
    return code == 1000 or 3000 <= code <= 4999


def is_protocol_token(text: str) -> bool:
    return bool(text) and all(c in _TOKEN_CHARS for c in text)


_HOST = re.compile(r"^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.?|\[[0-9A-Fa-f:.]+\])$")


def check_websocket_url(url: str) -> None:
    """Raise ValueError unless ``url`` is what a browser's URL parser makes of a WebSocket URL.

    The shim only sends serialised URLs; anything else (non-ASCII, control
    characters, spaces, a fragment, no or a malformed host, a bad port) is a
    forgery, and must never reach a route or a connection.
    """
    if not url.isascii():
        raise ValueError("url with characters a URL serialiser percent-encodes (non-ASCII)")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url) or "#" in url:
        raise ValueError("url with whitespace, control characters or a fragment")
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError("not a ws:// or wss:// url")
    netloc = parts.netloc.rpartition("@")[2]
    host = netloc[: netloc.find("]") + 1] if netloc.startswith("[") else netloc.partition(":")[0]
    if not parts.hostname or not _HOST.match(host):
        raise ValueError("url without a valid host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("url with an invalid port") from None
    if port == 0:
        raise ValueError("url with port 0")


def _socket_id(value: Any) -> int:
    if type(value) is not int or not 0 < value <= MAX_SOCKET_ID:
        raise ValueError(f"bad socket id {value!r:.40}")
    return value


def _text(text: str) -> str:
    if len(text) > MAX_MESSAGE_BYTES:
        raise ValueError("text message too large")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text message is not valid Unicode (lone surrogate)") from None
    return text


def _binary(text: str) -> bytes:
    if len(text) > MAX_PAYLOAD_CHARS:
        raise ValueError("binary message too large")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base64: {exc}") from None


def _decode_one(item: Any) -> PageMessage:
    if type(item) is not list or not item or type(item[0]) is not str:
        raise ValueError(f"not a message: {item!r:.60}")
    op = item[0]
    if op == "t":
        if len(item) != 3 or type(item[2]) is not str:
            raise ValueError("bad text message")
        return Text(_socket_id(item[1]), _text(item[2]))
    if op == "b":
        if len(item) != 3 or type(item[2]) is not str:
            raise ValueError("bad binary message")
        return Binary(_socket_id(item[1]), _binary(item[2]))
    if op == "m":
        if len(item) != 4 or item[2] not in ("t", "b") or type(item[3]) is not str:
            raise ValueError("bad part message")
        return Part(_socket_id(item[1]), _text(item[3]) if item[2] == "t" else _binary(item[3]))
    if op == "c":
        if len(item) != 4 or type(item[2]) is not str or type(item[3]) is not list:
            raise ValueError("bad create message")
        url = item[2]
        if not url or len(url) > MAX_URL_CHARS:
            raise ValueError("bad url")
        check_websocket_url(url)
        protocols = item[3]
        if len(protocols) > MAX_PROTOCOLS or not all(type(p) is str and is_protocol_token(p) for p in protocols):
            raise ValueError("bad protocols")
        if len(set(protocols)) != len(protocols):
            raise ValueError("duplicate protocols")
        return Create(_socket_id(item[1]), url, tuple(protocols))
    if op in ("x", "k"):
        if len(item) != 4 or type(item[3]) is not str:
            raise ValueError("bad close message")
        code = item[2]
        if code is not None and (type(code) is not int or not is_valid_close_code(code)):
            raise ValueError(f"bad close code {code!r:.20}")
        try:
            reason_bytes = item[3].encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("close reason is not valid Unicode (lone surrogate)") from None
        if len(reason_bytes) > 123:
            raise ValueError("close reason longer than 123 bytes")
        return Close(_socket_id(item[1]), code, item[3], op == "k")
    if op == "l":
        if len(item) != 2:
            raise ValueError("bad lost message")
        return Lost(_socket_id(item[1]))
    raise ValueError(f"unknown message kind {op!r:.20}")


def decode_batch(payload: object, token: str) -> tuple[list[PageMessage], list[str]]:
    """Decode one binding payload into messages, and reasons for what was rejected.

    A payload that is not a string, too large, not JSON, or without the right
    token is rejected whole (one reason, no messages).
    """
    if type(payload) is not str:
        return [], ["payload is not a string"]
    if len(payload) > MAX_PAYLOAD_CHARS:
        return [], [f"payload of {len(payload)} characters is too large"]
    try:
        batch = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        return [], [f"payload is not JSON: {exc}"]
    if type(batch) is not list or not batch or type(batch[0]) is not str:
        return [], ["payload is not a token-led list"]
    if not hmac.compare_digest(batch[0].encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass")):
        return [], ["payload has the wrong token"]
    messages: list[PageMessage] = []
    errors: list[str] = []
    for item in batch[1:]:
        try:
            messages.append(_decode_one(item))
        except ValueError as exc:
            errors.append(str(exc))
    return messages, errors


def batch_expression(dispatch: str, token: str, batch: list[list[Any]]) -> list[bytes]:
    """``dispatch(token, batch)`` as JavaScript source in a JSON string literal (quotes included), in pieces.

    Joined, the UTF-8 of ``json.dumps(f"{dispatch}({json.dumps(token)},{json.dumps(plain_batch(batch))})")``,
    built without scanning or copying base64 payloads, the bulk of a big batch: they
    hold nothing either encoding escapes. ``dispatch`` and ``token`` must be plain ASCII names.

    Raises:
        UnicodeEncodeError: a text holds a lone surrogate (the route API refuses those first).
    """
    parts = [f'"{dispatch}(\\"{token}\\",['.encode()]
    plain: list[list[Any]] = []  # a run of messages without base64: encoded together

    def flush_plain() -> None:
        # A JavaScript literal (JSON) of the run, less its brackets, then that text in a JSON string.
        literal = json.dumps(plain, ensure_ascii=False, separators=(",", ":"))[1:-1]
        parts.append(json.dumps(literal, ensure_ascii=False)[1:-1].encode())
        plain.clear()

    for i, item in enumerate(batch):
        if type(item[-1]) is not bytes:
            if i and not plain:
                parts.append(b",")
            plain.append(item)
            continue
        if plain:
            flush_plain()
        if i:
            parts.append(b",")
        if item[0] == "b":
            parts.append(f'[\\"b\\",{item[1]},\\"'.encode())
        else:  # a part: ["m", id, "b", base64]
            parts.append(f'[\\"m\\",{item[1]},\\"b\\",\\"'.encode())
        parts.append(item[-1])
        parts.append(b'\\"]')
    if plain:
        flush_plain()
    parts.append(b'])"')
    return parts


def plain_batch(batch: list[list[Any]]) -> list[list[Any]]:
    """The batch with its base64 payloads as ``str``, for a JSON encoder."""
    if not any(type(item[-1]) is bytes for item in batch):
        return batch
    return [[*item[:-1], item[-1].decode("ascii")] if type(item[-1]) is bytes else item for item in batch]


def open_message(socket_id: int, protocol: str, extensions: str) -> list[Any]:
    return ["o", socket_id, protocol, extensions]


def data_message(socket_id: int, data: str | bytes | memoryview) -> list[Any]:
    """A message for the page; a binary one holds its base64 as ASCII bytes (see plain_batch)."""
    if isinstance(data, str):
        return ["t", socket_id, data]
    return ["b", socket_id, base64.b64encode(data)]


def part_message(socket_id: int, data: str | bytes | memoryview) -> list[Any]:
    """A leading part of a large message: the shim joins the parts up to the final data_message."""
    if isinstance(data, str):
        return ["m", socket_id, "t", data]
    return ["m", socket_id, "b", base64.b64encode(data)]


def error_message(socket_id: int) -> list[Any]:
    return ["e", socket_id]


def close_message(socket_id: int, code: int | None, reason: str | None, was_clean: bool) -> list[Any]:
    return ["c", socket_id, 1005 if code is None else code, reason or "", was_clean]


def ack_message(socket_id: int, frames: int) -> list[Any]:
    """Python took in the socket's next ``frames`` frames: the shim may send that much more."""
    return ["a", socket_id, frames]


def passthrough_message(socket_id: int) -> list[Any]:
    return ["p", socket_id]


def filters_message(filters: list[tuple[str, str]], ask: bool) -> list[Any]:
    return ["r", [list(f) for f in filters], ask]
