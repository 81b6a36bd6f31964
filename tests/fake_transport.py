"""An in-memory :class:`~cdp_wsroute._transport.Transport` for testing the CDP connection without a browser.

The test plays the browser: it reads what the client sent (``sent``, ``batches``,
``await next_command()``), and pushes responses and events (``respond``,
``respond_error``, ``event``, ``push``) that the connection's reader then receives
in order. ``lose_connection()`` simulates the browser going away: messages pushed
before it are still received, then ``receive`` and ``send`` raise TransportClosed.

Nothing here sleeps: a test that needs the reader to have processed everything
pushed so far uses ``trio.testing.wait_all_tasks_blocked()``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import trio

from cdp_wsroute._transport import TransportClosed

__all__ = ["JSON", "FakeTransport"]

JSON = dict[str, Any]


class _Lost:
    """Queued after the last message the browser sent before the connection broke."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class FakeTransport:
    """A Transport whose other end is the test.

    Attributes:
        batches: every ``send`` call's list of messages, as sent (JSON text).
        sent: every message sent, parsed, in order.
        aclose_calls: how many times ``aclose`` was called.
        send_gate: when not None, ``send`` records its batch and then waits for this
            event before returning (to hold the writer busy).
    """

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.sent: list[JSON] = []
        self.aclose_calls = 0
        self.send_gate: trio.Event | None = None
        self._cursor = 0  # index in ``sent`` of the next command next_command() returns
        self._sent_changed = trio.Event()
        self._to_client_send, self._to_client_receive = trio.open_memory_channel[str | bytes | _Lost](math.inf)
        self._lost_reason: str | None = None
        self._sends_broken: str | None = None
        self._closed = False

    # ------------------------------------------------------------------ the Transport protocol

    async def send(self, messages: list[str | bytes]) -> None:
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise TransportClosed("fake transport: closed")
        if self._sends_broken is not None:
            raise TransportClosed(self._sends_broken)
        batch = [m if isinstance(m, str) else m.decode() for m in messages]
        self.batches.append(batch)
        self.sent.extend(json.loads(message) for message in batch)
        self._sent_changed.set()
        self._sent_changed = trio.Event()
        if self.send_gate is not None:
            await self.send_gate.wait()

    def send_now(self, message: str | bytes) -> bool:
        return False  # like a WebSocket: everything goes through send(), batches stay observable

    @property
    def has_backlog(self) -> bool:
        return False

    async def receive(self) -> str | bytes:
        if self._lost_reason is not None and self._to_client_receive.statistics().current_buffer_used == 0:
            await trio.lowlevel.checkpoint()
            raise TransportClosed(self._lost_reason)
        try:
            item = await self._to_client_receive.receive()
        except (trio.ClosedResourceError, trio.EndOfChannel) as exc:
            raise TransportClosed("fake transport: closed") from exc
        if isinstance(item, _Lost):
            raise TransportClosed(item.reason)
        return item

    async def aclose(self) -> None:
        self.aclose_calls += 1
        self._closed = True
        self._to_client_send.close()
        self._to_client_receive.close()
        await trio.lowlevel.checkpoint()

    # ------------------------------------------------------------------ the browser's side

    @property
    def closed(self) -> bool:
        """Whether ``aclose`` has been called."""
        return self._closed

    @property
    def unread(self) -> int:
        """How many pushed messages the client has not received yet."""
        return self._to_client_receive.statistics().current_buffer_used

    def push(self, message: JSON | str | bytes) -> None:
        """Queue a message for the client; a dict is serialised as JSON. Dropped once closed or lost."""
        if self._closed or self._lost_reason is not None:
            return
        data = json.dumps(message) if isinstance(message, dict) else message
        self._to_client_send.send_nowait(data)

    def respond(self, command: JSON, result: JSON | None = None) -> None:
        """Answer a command the client sent with ``result``."""
        response: JSON = {"id": command["id"], "result": {} if result is None else result}
        if "sessionId" in command:
            response["sessionId"] = command["sessionId"]
        self.push(response)

    def respond_error(self, command: JSON, code: int, message: str, data: str | None = None) -> None:
        """Answer a command the client sent with a JSON-RPC error."""
        error: JSON = {"code": code, "message": message}
        if data is not None:
            error["data"] = data
        response: JSON = {"id": command["id"], "error": error}
        if "sessionId" in command:
            response["sessionId"] = command["sessionId"]
        self.push(response)

    def event(self, method: str, params: JSON | None = None, session_id: str | None = None) -> None:
        """Send an event, on the browser session (None) or a flat session."""
        message: JSON = {"method": method, "params": {} if params is None else params}
        if session_id is not None:
            message["sessionId"] = session_id
        self.push(message)

    def attach(
        self, session_id: str, target_id: str = "T", target_type: str = "page", parent: str | None = None
    ) -> None:
        """Send ``Target.attachedToTarget`` for a new flat session, on ``parent`` (None: the browser)."""
        self.event(
            "Target.attachedToTarget",
            {
                "sessionId": session_id,
                "targetInfo": {
                    "targetId": target_id,
                    "type": target_type,
                    "title": "",
                    "url": "about:blank",
                    "attached": True,
                    "canAccessOpener": False,
                },
                "waitingForDebugger": False,
            },
            parent,
        )

    def detach(self, session_id: str, target_id: str = "T", parent: str | None = None) -> None:
        """Send ``Target.detachedFromTarget`` for a flat session, on ``parent`` (None: the browser)."""
        self.event("Target.detachedFromTarget", {"sessionId": session_id, "targetId": target_id}, parent)

    def lose_connection(self, reason: str = "fake transport: the browser went away") -> None:
        """The browser is gone: what was pushed is still received, then receive and send raise TransportClosed."""
        if self._lost_reason is None and not self._closed:
            self._to_client_send.send_nowait(_Lost(reason))
        self._lost_reason = reason
        self._sends_broken = reason

    def break_sends(self, reason: str = "fake transport: the pipe to the browser broke") -> None:
        """Make every later ``send`` raise TransportClosed; receiving is unaffected."""
        self._sends_broken = reason

    async def next_command(self) -> JSON:
        """Wait for the next message the client sends (that this method has not returned yet)."""
        while self._cursor >= len(self.sent):
            await self._sent_changed.wait()
        command = self.sent[self._cursor]
        self._cursor += 1
        return command

    async def next_commands(self, count: int) -> list[JSON]:
        """Wait for the next ``count`` messages the client sends."""
        return [await self.next_command() for _ in range(count)]
