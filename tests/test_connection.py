"""Unit tests of the CDP connection over an in-memory transport, and of PipeTransport over real pipes.

No browser: the test plays the browser through :class:`FakeTransport`. Nothing
sleeps; tests synchronise with events and ``wait_all_tasks_blocked``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Generic, TypeVar

import cdp.network
import cdp.page
import cdp.target
import pytest
import trio
import trio.testing

from cdp_wsroute import (
    BrowserError,
    CDPSession,
    ConnectionClosedError,
    ProtocolError,
    RawEvent,
    TargetClosedError,
)
from cdp_wsroute._connection import CDPConnection, RawParams, open_connection
from cdp_wsroute._transport import PipeTransport, Transport, TransportClosed

from .fake_transport import JSON, FakeTransport

T = TypeVar("T", covariant=True)

# Every test runs its connection (or pipes) under this deadline, so that a bug making a test
# wait for something that never comes fails it with trio.TooSlowError instead of hitting the
# global hard timeout (which interrupts trio mid-flight). Note that pytest-trio 0.8 does not
# run autouse async fixtures, hence the deadline lives in the helpers.
DEADLINE = 10.0


# ---------------------------------------------------------------------------- helpers


class Call(Generic[T]):
    """An awaitable run as a background task, its result or exception kept for the test."""

    def __init__(self, nursery: trio.Nursery, fn: Callable[[], Awaitable[T]]) -> None:
        self.done = trio.Event()
        self._value: T | None = None
        self._error: Exception | None = None
        self._fn = fn
        nursery.start_soon(self._run)

    async def _run(self) -> None:
        try:
            self._value = await self._fn()
        except Exception as exc:
            self._error = exc
        finally:
            self.done.set()

    @property
    def value(self) -> T:
        assert self.done.is_set(), "the call has not finished"
        if self._error is not None:
            raise AssertionError(f"the call raised {self._error!r}") from self._error
        return self._value  # type: ignore[return-value]

    @property
    def error(self) -> Exception:
        assert self.done.is_set(), "the call has not finished"
        assert self._error is not None, f"the call returned {self._value!r} instead of raising"
        return self._error


@asynccontextmanager
async def connected() -> AsyncIterator[tuple[CDPConnection, FakeTransport]]:
    fake = FakeTransport()
    transport: Transport = fake  # FakeTransport must satisfy the Transport protocol
    with trio.fail_after(DEADLINE):
        async with open_connection(transport) as conn:
            yield conn, fake


async def attach(conn: CDPConnection, fake: FakeTransport, session_id: str, parent: str | None = None) -> CDPSession:
    fake.attach(session_id, target_id=f"target-{session_id}", parent=parent)
    await trio.testing.wait_all_tasks_blocked()
    session = conn.session(session_id)
    assert session is not None
    return session


class Collector:
    """Reads a listener's channel in a background task until it ends."""

    def __init__(self, nursery: trio.Nursery, session: CDPSession, *events: type | str) -> None:
        self.events: list[object] = []
        self.ended = trio.Event()
        self._session = session
        self._kinds = events
        nursery.start_soon(self._run)

    async def _run(self) -> None:
        async with self._session.listen(*self._kinds) as channel:
            async for event in channel:
                self.events.append(event)
        self.ended.set()

    def raw(self) -> list[tuple[str, JSON, str | None]]:
        out = []
        for event in self.events:
            assert isinstance(event, RawEvent), event
            out.append((event.method, event.params, event.session_id))
        return out


# ---------------------------------------------------------------------------- ids and responses


async def test_ids_are_unique_and_out_of_order_responses_are_matched() -> None:
    async with connected() as (conn, fake), trio.open_nursery() as nursery:
        calls = [Call(nursery, partial(conn.root.send, "Test.echo", {"n": n})) for n in range(20)]
        commands = await fake.next_commands(20)
        ids = [command["id"] for command in commands]
        assert all(type(i) is int for i in ids)
        assert len(set(ids)) == 20
        by_n = {command["params"]["n"]: command for command in commands}
        assert sorted(by_n) == list(range(20))

        # Answer the odd ones, in reverse order: exactly those finish, each with its own result.
        for n in reversed(range(1, 20, 2)):
            fake.respond(by_n[n], {"echo": n})
        await trio.testing.wait_all_tasks_blocked()
        for n, call in enumerate(calls):
            assert call.done.is_set() == (n % 2 == 1)
            if n % 2:
                assert call.value == {"echo": n}

        # Then the even ones, shuffled.
        evens = list(range(0, 20, 2))
        random.Random(1).shuffle(evens)
        for n in evens:
            fake.respond(by_n[n], {"echo": n})
        for call in calls:
            await call.done.wait()
        assert [call.value for call in calls] == [{"echo": n} for n in range(20)]


async def test_ids_are_unique_across_sessions_and_send_nowait() -> None:
    async with connected() as (conn, fake), trio.open_nursery() as nursery:
        child = await attach(conn, fake, "S1")
        Call(nursery, lambda: conn.root.send("A.a"))
        Call(nursery, lambda: child.send("B.b"))
        conn.send_nowait("C.c")
        conn.send_nowait("D.d", None, "S1")
        Call(nursery, lambda: child.send("E.e"))
        commands = await fake.next_commands(5)
        assert len({command["id"] for command in commands}) == 5
        assert sorted(command["method"] for command in commands) == ["A.a", "B.b", "C.c", "D.d", "E.e"]
        for command in commands:
            fake.respond(command)


async def test_many_concurrent_commands_answered_in_one_burst() -> None:
    async with connected() as (conn, fake), trio.open_nursery() as nursery:
        calls = [Call(nursery, partial(conn.root.send, "Test.echo", {"n": n})) for n in range(200)]
        commands = await fake.next_commands(200)
        random.Random(2).shuffle(commands)
        for command in commands:
            fake.respond(command, {"echo": command["params"]["n"]})
        for call in calls:
            await call.done.wait()
        assert [call.value for call in calls] == [{"echo": n} for n in range(200)]


async def test_response_for_unknown_id_is_ignored() -> None:
    async with connected() as (conn, fake), trio.open_nursery() as nursery:
        call = Call(nursery, lambda: conn.root.send("Test.wait"))
        command = await fake.next_command()
        fake.push({"id": command["id"] + 1000, "result": {"wrong": True}})
        fake.push({"id": command["id"] + 1001, "error": {"code": -32000, "message": "nobody asked"}})
        fake.push({"id": str(command["id"]), "result": {"wrong": "string id"}})
        fake.push({"id": None, "result": {"wrong": "null id"}})
        await trio.testing.wait_all_tasks_blocked()
        assert not call.done.is_set()
        assert not conn.closed

        fake.respond(command, {"right": True})
        await call.done.wait()
        assert call.value == {"right": True}


# ---------------------------------------------------------------------------- flat sessions


async def test_attached_session_exists_before_its_own_messages() -> None:
    async with connected() as (conn, fake):
        seen: list[object] = []

        def on_attached(params: JSON) -> None:
            child = conn.session(params["sessionId"])
            seen.append(("attached", params["sessionId"], child is not None))
            if child is not None:
                seen.append(("target", child.session_id, child.target_id, child.target_type))
                child.on("Runtime.executionContextCreated", lambda p: seen.append(("context", p["context"]["id"])))

        conn.root.on("Target.attachedToTarget", on_attached)
        # Both messages are queued before the reader runs: the child's event follows its attach immediately.
        fake.attach("S1", target_id="T1")
        fake.event("Runtime.executionContextCreated", {"context": {"id": 7}}, "S1")
        await trio.testing.wait_all_tasks_blocked()

        assert seen == [("attached", "S1", True), ("target", "S1", "T1", "page"), ("context", 7)]
        child = conn.session("S1")
        assert child is not None
        assert child in conn.sessions()
        assert not child.closed


async def test_nested_attach_is_dispatched_to_the_parent_session() -> None:
    async with connected() as (conn, fake):
        page = await attach(conn, fake, "PAGE")
        root_attached: list[str] = []
        page_attached: list[str] = []
        conn.root.on("Target.attachedToTarget", lambda p: root_attached.append(p["sessionId"]))
        page.on("Target.attachedToTarget", lambda p: page_attached.append(p["sessionId"]))

        worker = await attach(conn, fake, "WORKER", parent="PAGE")
        assert root_attached == []
        assert page_attached == ["WORKER"]
        assert worker.target_id == "target-WORKER"


async def test_commands_carry_their_session_id() -> None:
    async with connected() as (conn, fake), trio.open_nursery() as nursery:
        child = await attach(conn, fake, "S1")
        on_child = Call(nursery, lambda: child.send("Runtime.enable"))
        on_root = Call(nursery, lambda: conn.root.send("Target.getTargets", {"filter": []}))
        commands = {command["method"]: command for command in await fake.next_commands(2)}

        assert commands["Runtime.enable"]["sessionId"] == "S1"
        assert "params" not in commands["Runtime.enable"]
        assert "sessionId" not in commands["Target.getTargets"]
        assert commands["Target.getTargets"]["params"] == {"filter": []}

        fake.respond(commands["Runtime.enable"], {"from": "child"})
        fake.respond(commands["Target.getTargets"], {"from": "root"})
        await on_child.done.wait()
        await on_root.done.wait()
        assert on_child.value == {"from": "child"}
        assert on_root.value == {"from": "root"}


async def test_command_on_unknown_session_fails_without_sending() -> None:
    async with connected() as (conn, fake):
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(TargetClosedError) as info:
            await conn.send("Runtime.enable", None, "NO-SUCH-SESSION")
        assert not isinstance(info.value, ConnectionClosedError)
        await trio.testing.wait_all_tasks_blocked()
        assert fake.sent == []


async def test_events_are_delivered_to_their_own_session() -> None:
    async with connected() as (conn, fake), trio.open_nursery() as nursery:
        s1 = await attach(conn, fake, "S1")
        s2 = await attach(conn, fake, "S2")
        collectors = {
            name: Collector(nursery, session) for name, session in [("root", conn.root), ("S1", s1), ("S2", s2)]
        }
        callbacks: dict[str, list[JSON]] = {"root": [], "S1": [], "S2": []}
        conn.root.on("Test.happened", callbacks["root"].append)
        s1.on("Test.happened", callbacks["S1"].append)
        s2.on("Test.happened", callbacks["S2"].append)
        await trio.testing.wait_all_tasks_blocked()

        fake.event("Test.happened", {"to": "S2"}, "S2")
        fake.event("Test.happened", {"to": "root"})
        fake.event("Test.happened", {"to": "S1"}, "S1")
        fake.event("Test.other", {"to": "S1"}, "S1")
        await trio.testing.wait_all_tasks_blocked()

        assert callbacks == {"root": [{"to": "root"}], "S1": [{"to": "S1"}], "S2": [{"to": "S2"}]}
        assert collectors["root"].raw() == [("Test.happened", {"to": "root"}, None)]
        assert collectors["S1"].raw() == [
            ("Test.happened", {"to": "S1"}, "S1"),
            ("Test.other", {"to": "S1"}, "S1"),
        ]
        assert collectors["S2"].raw() == [("Test.happened", {"to": "S2"}, "S2")]
        nursery.cancel_scope.cancel()


async def test_removed_callback_is_not_called() -> None:
    async with connected() as (conn, fake):
        calls: list[JSON] = []
        remove = conn.root.on("Test.event", calls.append)
        fake.event("Test.event", {"n": 1})
        await trio.testing.wait_all_tasks_blocked()
        remove()
        remove()  # twice is harmless
        fake.event("Test.event", {"n": 2})
        await trio.testing.wait_all_tasks_blocked()
        assert calls == [{"n": 1}]


async def test_events_for_unknown_sessions_are_dropped() -> None:
    async with connected() as (conn, fake), trio.open_nursery() as nursery:
        root_events = Collector(nursery, conn.root)
        await trio.testing.wait_all_tasks_blocked()
        fake.event("Test.event", {"lost": True}, "GHOST")
        fake.event("Target.detachedFromTarget", {"sessionId": "GHOST"}, "GHOST")
        fake.detach("NEVER-ATTACHED")  # on the root: delivered to the root, detaches nothing
        fake.event("Test.event", {"kept": True})
        await trio.testing.wait_all_tasks_blocked()
        assert not conn.closed
        methods = [(e.method, e.params) if isinstance(e, RawEvent) else type(e) for e in root_events.events]
        assert methods == [cdp.target.DetachedFromTarget, ("Test.event", {"kept": True})]

        call = Call(nursery, lambda: conn.root.send("Still.works"))
        fake.respond(await fake.next_command(), {"ok": 1})
        await call.done.wait()
        assert call.value == {"ok": 1}
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------------------- errors


async def test_error_reply_raises_protocol_error() -> None:
    async with connected() as (conn, fake), trio.open_nursery() as nursery:
        child = await attach(conn, fake, "S1")
        missing = Call(nursery, lambda: conn.root.send("Foo.bar"))
        invalid = Call(nursery, lambda: child.send("Page.navigate", {"url": 5}))
        commands = {command["method"]: command for command in await fake.next_commands(2)}
        fake.respond_error(commands["Foo.bar"], -32601, "'Foo.bar' wasn't found")
        fake.respond_error(commands["Page.navigate"], -32602, "Invalid parameters", data="Failed to deserialize url")
        await missing.done.wait()
        await invalid.done.wait()

        error = missing.error
        assert isinstance(error, ProtocolError)
        assert isinstance(error, BrowserError)
        assert error.method == "Foo.bar"
        assert error.code == -32601
        assert error.protocol_message == "'Foo.bar' wasn't found"
        assert "Foo.bar" in str(error)
        assert "wasn't found" in str(error)

        error = invalid.error
        assert isinstance(error, ProtocolError)
        assert error.method == "Page.navigate"
        assert error.code == -32602
        assert "Invalid parameters" in error.protocol_message
        assert "Failed to deserialize url" in error.protocol_message

        # The connection is unharmed.
        after = Call(nursery, lambda: child.send("Page.enable"))
        fake.respond(await fake.next_command(), {"ok": True})
        await after.done.wait()
        assert after.value == {"ok": True}


async def test_error_reply_with_a_malformed_code_still_raises_protocol_error() -> None:
    async with connected() as (conn, fake), trio.open_nursery() as nursery:
        call = Call(nursery, lambda: conn.root.send("Foo.bar"))
        command = await fake.next_command()
        fake.push({"id": command["id"], "error": {"code": "not-a-number", "message": "odd"}})
        await call.done.wait()
        error = call.error
        assert isinstance(error, ProtocolError)
        assert error.method == "Foo.bar"
        assert "odd" in str(error)
        assert not conn.closed


# ---------------------------------------------------------------------------- detach


async def test_detach_fails_only_that_sessions_commands_and_ends_its_listeners() -> None:
    async with connected() as (conn, fake), trio.open_nursery() as nursery:
        s1 = await attach(conn, fake, "S1")
        s2 = await attach(conn, fake, "S2")
        l1 = Collector(nursery, s1)
        l2 = Collector(nursery, s2)
        detached = Collector(nursery, conn.root, cdp.target.DetachedFromTarget)
        c1a = Call(nursery, lambda: s1.send("Runtime.evaluate", {"expression": "1"}))
        c1b = Call(nursery, lambda: s1.send("Page.enable"))
        c2 = Call(nursery, lambda: s2.send("Runtime.evaluate", {"expression": "2"}))
        c0 = Call(nursery, lambda: conn.root.send("Target.getTargets"))
        commands = await fake.next_commands(4)

        fake.detach("S1", target_id="target-S1")
        await trio.testing.wait_all_tasks_blocked()

        for call in (c1a, c1b):
            assert call.done.is_set()
            assert isinstance(call.error, TargetClosedError)
            assert not isinstance(call.error, ConnectionClosedError)
        assert not c2.done.is_set()
        assert not c0.done.is_set()
        assert l1.ended.is_set()
        assert not l2.ended.is_set()
        assert s1.closed
        assert not s2.closed
        assert conn.session("S1") is None
        assert conn.session("S2") is s2
        assert s1 not in conn.sessions()
        assert detached.events == [
            cdp.target.DetachedFromTarget(cdp.target.SessionID("S1"), cdp.target.TargetID("target-S1"))
        ]

        # Later commands on the detached session fail at once, without being sent.
        sent_before = len(fake.sent)
        with pytest.raises(TargetClosedError) as info:
            await s1.send("Page.enable")
        assert not isinstance(info.value, ConnectionClosedError)
        # A new listener on it ends at once; its late events and answers are dropped.
        async with s1.listen() as channel:
            with pytest.raises(trio.EndOfChannel):
                await channel.receive()
        fake.event("Test.late", {}, "S1")
        for command in commands:
            fake.respond(command, {"id": command["id"]})
        fake.event("Test.alive", {"n": 1}, "S2")
        await c2.done.wait()
        await c0.done.wait()
        assert len(fake.sent) == sent_before
        assert c2.value["id"] == next(c["id"] for c in commands if c.get("sessionId") == "S2")
        assert c0.value["id"] == next(c["id"] for c in commands if "sessionId" not in c)
        await trio.testing.wait_all_tasks_blocked()
        assert l2.raw() == [("Test.alive", {"n": 1}, "S2")]
        assert l1.events == []
        nursery.cancel_scope.cancel()


async def test_session_detach_sends_detach_from_target() -> None:
    async with connected() as (conn, fake), trio.open_nursery() as nursery:
        s1 = await attach(conn, fake, "S1")
        call = Call(nursery, s1.detach)
        command = await fake.next_command()
        assert command["method"] == "Target.detachFromTarget"
        assert command["params"] == {"sessionId": "S1"}
        assert "sessionId" not in command
        fake.respond(command)
        fake.detach("S1")
        await call.done.wait()
        assert call.value is None
        await trio.testing.wait_all_tasks_blocked()
        assert s1.closed
        await s1.detach()  # a no-op once detached
        await conn.root.detach()  # and on the browser session
        await trio.testing.wait_all_tasks_blocked()
        assert len(fake.sent) == 1


# ---------------------------------------------------------------------------- connection loss


async def test_connection_loss_fails_everything_promptly() -> None:
    async with connected() as (conn, fake), trio.open_nursery() as nursery:
        child = await attach(conn, fake, "S1")
        root_listener = Collector(nursery, conn.root)
        child_listener = Collector(nursery, child, "Page.loadEventFired")
        calls: list[Call[object]] = [
            Call(nursery, lambda: conn.root.send("Target.getTargets")),
            Call(nursery, lambda: child.send("Runtime.evaluate", {"expression": "1"})),
            Call(nursery, lambda: child.execute(cdp.page.navigate("https://example.com/"))),
        ]
        await fake.next_commands(3)
        assert not conn.closed_event.is_set()

        fake.lose_connection("the browser crashed")
        await trio.testing.wait_all_tasks_blocked()

        for call in calls:
            assert call.done.is_set()
            assert type(call.error) is ConnectionClosedError
            assert "the browser crashed" in str(call.error)
        assert conn.closed_event.is_set()
        assert conn.closed
        assert root_listener.ended.is_set()
        assert child_listener.ended.is_set()
        assert child.closed
        assert conn.root.closed
        assert conn.session("S1") is None

        # Later sends fail immediately, and nothing more goes out.
        sent_before = len(fake.batches)
        with pytest.raises(ConnectionClosedError):
            await conn.root.send("Browser.getVersion")
        with pytest.raises(ConnectionClosedError):
            await child.send("Page.enable")
        with pytest.raises(ConnectionClosedError):
            await child.execute(cdp.page.enable())
        conn.send_nowait("Browser.close")
        async with conn.root.listen() as channel:
            with pytest.raises(trio.EndOfChannel):
                await channel.receive()
        await trio.testing.wait_all_tasks_blocked()
        assert len(fake.batches) == sent_before
    assert fake.closed


async def test_broken_send_closes_the_connection() -> None:
    async with connected() as (conn, fake), trio.open_nursery() as nursery:
        first = Call(nursery, lambda: conn.root.send("Already.sent"))
        await fake.next_command()
        fake.break_sends("write end broke")
        second = Call(nursery, lambda: conn.root.send("Never.sent"))
        await second.done.wait()
        await first.done.wait()
        assert type(second.error) is ConnectionClosedError
        assert type(first.error) is ConnectionClosedError
        assert conn.closed_event.is_set()


async def test_leaving_the_block_fails_pending_commands_and_closes_the_transport() -> None:
    fake = FakeTransport()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery, open_connection(fake) as conn:
            call = Call(nursery, lambda: conn.root.send("Never.answered"))
            await fake.next_command()
            # Leaving open_connection's block (first) must fail the caller, running in the outer
            # nursery: otherwise that nursery would wait for it forever.
        assert call.done.is_set()
        assert type(call.error) is ConnectionClosedError
        assert conn.closed_event.is_set()
        assert fake.closed
        with pytest.raises(ConnectionClosedError):
            await conn.root.send("After.exit")


async def test_aclose_fails_pending_commands() -> None:
    async with connected() as (conn, fake), trio.open_nursery() as nursery:
        call = Call(nursery, lambda: conn.root.send("Never.answered"))
        await fake.next_command()
        await conn.aclose()
        await call.done.wait()
        assert type(call.error) is ConnectionClosedError
        assert fake.closed
        assert conn.closed_event.is_set()
        await conn.aclose()  # idempotent


# ---------------------------------------------------------------------------- typed commands and events


async def test_execute_returns_pycdp_types() -> None:
    async with connected() as (conn, fake), trio.open_nursery() as nursery:
        child = await attach(conn, fake, "S1")
        navigate = Call(nursery, lambda: child.execute(cdp.page.navigate("https://example.com/")))
        command = await fake.next_command()
        assert {k: v for k, v in command.items() if k != "id"} == {
            "method": "Page.navigate",
            "params": {"url": "https://example.com/"},
            "sessionId": "S1",
        }
        fake.respond(command, {"frameId": "F1", "loaderId": "L1"})
        await navigate.done.wait()
        frame_id, loader_id, error_text = navigate.value
        assert isinstance(frame_id, cdp.page.FrameId)
        assert isinstance(loader_id, cdp.network.LoaderId)
        assert (frame_id, loader_id, error_text) == ("F1", "L1", None)

        targets = Call(nursery, lambda: conn.root.execute(cdp.target.get_targets()))
        command = await fake.next_command()
        assert command["method"] == "Target.getTargets"
        info = {"targetId": "T1", "type": "page", "title": "t", "url": "about:blank", "attached": True}
        fake.respond(command, {"targetInfos": [info]})
        await targets.done.wait()
        assert targets.value == [cdp.target.TargetInfo.from_json(info)]
        assert targets.value[0].target_id == cdp.target.TargetID("T1")

        failing = Call(nursery, lambda: child.execute(cdp.page.navigate("bogus")))
        fake.respond_error(await fake.next_command(), -32000, "Cannot navigate to invalid URL")
        await failing.done.wait()
        assert isinstance(failing.error, ProtocolError)
        assert failing.error.method == "Page.navigate"


async def test_typed_events_and_raw_fallback() -> None:
    async with connected() as (conn, fake), trio.open_nursery() as nursery:
        child = await attach(conn, fake, "S1")
        async with child.listen(
            cdp.page.LoadEventFired,
            cdp.page.FrameRequestedNavigation,
            "Network.requestWillBeSentExtraInfo",
            "Custom.brandNewEvent",
        ) as channel:
            fake.event("Page.loadEventFired", {"timestamp": 12.5}, "S1")
            fake.event("Page.domContentEventFired", {"timestamp": 12.0}, "S1")  # not listened to
            ok_nav = {"frameId": "F1", "reason": "scriptInitiated", "url": "https://a.test/"}
            fake.event("Page.frameRequestedNavigation", ok_nav, "S1")
            # Newer Chromium: a reason PyCDP 0.4.0's enum rejects, and a field it does not know.
            new_nav = {"frameId": "F1", "reason": "anchorClick", "url": "https://b.test/", "disposition": "currentTab"}
            fake.event("Page.frameRequestedNavigation", new_nav, "S1")
            # Newer Chromium renamed blockedCookies to associatedCookies: PyCDP 0.4.0 misses a field.
            extra = {"requestId": "R1", "associatedCookies": [], "headers": {"Accept": "*/*"}}
            fake.event("Network.requestWillBeSentExtraInfo", extra, "S1")
            fake.event("Custom.brandNewEvent", {"x": [1, 2]}, "S1")
            fake.event("Page.loadEventFired", {"timestamp": 13.5}, "S1")
            await trio.testing.wait_all_tasks_blocked()

            events = []
            while True:
                try:
                    events.append(channel.receive_nowait())
                except trio.WouldBlock:
                    break

        assert events == [
            cdp.page.LoadEventFired(timestamp=cdp.network.MonotonicTime(12.5)),
            cdp.page.FrameRequestedNavigation(
                frame_id=cdp.page.FrameId("F1"),
                reason=cdp.page.ClientNavigationReason.SCRIPT_INITIATED,
                url="https://a.test/",
            ),
            RawEvent("Page.frameRequestedNavigation", new_nav, "S1"),
            RawEvent("Network.requestWillBeSentExtraInfo", extra, "S1"),
            RawEvent("Custom.brandNewEvent", {"x": [1, 2]}, "S1"),
            cdp.page.LoadEventFired(timestamp=cdp.network.MonotonicTime(13.5)),
        ]
        assert isinstance(events[0], cdp.page.LoadEventFired)

        # The reader kept working after the events PyCDP could not parse.
        call = Call(nursery, lambda: child.send("Page.enable"))
        fake.respond(await fake.next_command(), {"ok": True})
        await call.done.wait()
        assert call.value == {"ok": True}


async def test_listen_rejects_a_class_that_is_not_an_event() -> None:
    async with connected() as (conn, _fake):
        with pytest.raises(TypeError):
            async with conn.root.listen(int):
                pass


# ---------------------------------------------------------------------------- backpressure


async def test_full_listener_makes_the_reader_wait_and_nothing_is_dropped() -> None:
    async with (
        connected() as (conn, fake),
        trio.open_nursery() as nursery,
        conn.root.listen("Test.tick", buffer_size=1) as channel,
    ):
        call = Call(nursery, lambda: conn.root.send("After.events"))
        command = await fake.next_command()
        for i in range(10):
            fake.event("Test.tick", {"i": i})
        fake.respond(command, {"ok": True})
        await trio.testing.wait_all_tasks_blocked()

        # One event in the channel, one in the reader's hands: the rest (and the response) wait unread.
        assert fake.unread >= 8
        assert not call.done.is_set()

        received = []
        for _ in range(10):
            event = await channel.receive()
            assert isinstance(event, RawEvent)
            received.append(event.params["i"])
        assert received == list(range(10))
        await call.done.wait()
        assert call.value == {"ok": True}
        assert fake.unread == 0


async def test_listener_that_leaves_is_removed() -> None:
    async with connected() as (conn, fake), trio.open_nursery() as nursery:
        async with conn.root.listen("Test.tick", buffer_size=1) as channel:
            for i in range(5):
                fake.event("Test.tick", {"i": i})
            await trio.testing.wait_all_tasks_blocked()
            assert fake.unread >= 3  # the reader waits for us
            first = await channel.receive()
            assert isinstance(first, RawEvent)
            assert first.params == {"i": 0}
        # Leaving the block releases the reader and unregisters the listener.
        await trio.testing.wait_all_tasks_blocked()
        assert fake.unread == 0

        call = Call(nursery, lambda: conn.root.send("After.leaving"))
        command = await fake.next_command()
        for i in range(100):
            fake.event("Test.tick", {"i": i})
        fake.respond(command, {"ok": True})
        await call.done.wait()
        assert call.value == {"ok": True}
        assert fake.unread == 0


async def test_listener_without_filter_gets_every_event_in_order() -> None:
    async with connected() as (conn, fake):
        async with conn.root.listen(buffer_size=2) as channel:
            for i in range(6):
                fake.event(f"Test.e{i % 3}", {"i": i})
            received = []
            for _ in range(6):
                event = await channel.receive()
                assert isinstance(event, RawEvent)
                received.append((event.method, event.params["i"]))
        assert received == [(f"Test.e{i % 3}", i) for i in range(6)]


# ---------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    "garbage",
    [
        "not json",
        b"\xff\xfe not utf-8",
        "",
        "{",
        '{"id": 1,',
        "[1, 2, 3]",
        "42",
        '"a string"',
        "null",
        '{"params": {"no": "method"}}',
        '{"method": 5, "params": {}}',
    ],
)
async def test_malformed_message_is_dropped(garbage: str | bytes) -> None:
    async with connected() as (conn, fake), trio.open_nursery() as nursery:
        events = Collector(nursery, conn.root)
        call = Call(nursery, lambda: conn.root.send("Test.cmd"))
        command = await fake.next_command()
        fake.push(garbage)
        fake.event("Test.after", {"ok": True})
        fake.respond(command, {"ok": True})
        await call.done.wait()
        assert call.value == {"ok": True}
        assert not conn.closed
        await trio.testing.wait_all_tasks_blocked()
        assert events.raw() == [("Test.after", {"ok": True}, None)]
        nursery.cancel_scope.cancel()


async def test_deeply_nested_message_is_dropped() -> None:
    """Too deep for json.loads: it raises RecursionError, not ValueError; still just a bad message."""
    async with connected() as (conn, fake), trio.open_nursery() as nursery:
        call = Call(nursery, lambda: conn.root.send("Test.cmd"))
        command = await fake.next_command()
        fake.push("[" * 100_000 + "]" * 100_000)
        fake.respond(command, {"ok": True})
        await call.done.wait()
        assert call.value == {"ok": True}
        assert not conn.closed


# ---------------------------------------------------------------------------- callbacks


class CallbackBoom(Exception):
    pass


async def test_callback_exception_propagates_out_of_open_connection() -> None:
    fake = FakeTransport()
    reached_end = False

    def explode(params: JSON) -> None:
        raise CallbackBoom(params["why"])

    with (
        pytest.RaisesGroup(
            pytest.RaisesExc(CallbackBoom, match="^kaboom$"), allow_unwrapped=True, flatten_subgroups=True
        ),
        trio.fail_after(DEADLINE),
    ):
        async with open_connection(fake) as conn:
            conn.root.on("Test.event", explode)
            fake.event("Test.event", {"why": "kaboom"})
            await conn.root.send("Never.answered")  # the crash must interrupt this wait
            reached_end = True
    assert not reached_end
    assert fake.closed


async def test_callback_exception_in_a_child_session_propagates() -> None:
    fake = FakeTransport()
    with (
        pytest.RaisesGroup(
            pytest.RaisesExc(CallbackBoom, match="^child$"), allow_unwrapped=True, flatten_subgroups=True
        ),
        trio.fail_after(DEADLINE),
    ):
        async with open_connection(fake) as conn:
            child = await attach(conn, fake, "S1")

            def explode(params: JSON) -> None:
                raise CallbackBoom("child")

            child.on("Test.event", explode)
            fake.event("Test.event", {}, "S1")
            await trio.sleep_forever()


# ---------------------------------------------------------------------------- the writer


async def test_raw_params_are_sent_as_they_are() -> None:
    async with connected() as (conn, fake):
        params = RawParams([b'{"expression":"f(\\"', "é".encode(), b'\\")",', b'"silent":true}'])
        conn.send_nowait("Runtime.evaluate", params, "S1")
        await trio.testing.wait_all_tasks_blocked()
        assert fake.sent[-1] == {
            "id": fake.sent[-1]["id"],
            "method": "Runtime.evaluate",
            "sessionId": "S1",
            "params": {"expression": 'f("é")', "silent": True},
        }


async def test_writer_batches_commands_queued_in_one_tick() -> None:
    async with connected() as (conn, fake), trio.open_nursery() as nursery:
        await trio.testing.wait_all_tasks_blocked()
        conn.send_nowait("A.a")
        conn.send_nowait("B.b", {"x": 1})
        conn.send_nowait("C.c")
        await trio.testing.wait_all_tasks_blocked()
        assert [[json.loads(m)["method"] for m in batch] for batch in fake.batches] == [["A.a", "B.b", "C.c"]]

        # Tasks started together queue their commands in the same tick, before the writer runs.
        calls = [Call(nursery, partial(conn.root.send, "Test.n", {"n": n})) for n in range(5)]
        await trio.testing.wait_all_tasks_blocked()
        assert len(fake.batches) == 2
        assert sorted(json.loads(m)["params"]["n"] for m in fake.batches[1]) == list(range(5))
        for command in fake.sent[3:]:
            fake.respond(command)
        for call in calls:
            await call.done.wait()


async def test_writer_sends_what_queued_while_it_was_busy_in_one_batch() -> None:
    async with connected() as (conn, fake):
        gate = trio.Event()
        fake.send_gate = gate
        conn.send_nowait("First.one")
        await trio.testing.wait_all_tasks_blocked()
        assert len(fake.batches) == 1  # the writer is now held inside send()
        conn.send_nowait("Second.one")
        conn.send_nowait("Third.one")
        await trio.testing.wait_all_tasks_blocked()
        assert len(fake.batches) == 1
        fake.send_gate = None
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert [[json.loads(m)["method"] for m in batch] for batch in fake.batches] == [
            ["First.one"],
            ["Second.one", "Third.one"],
        ]


# ---------------------------------------------------------------------------- cancellation


async def test_cancelled_caller_does_not_corrupt_the_connection() -> None:
    async with connected() as (conn, fake), trio.open_nursery() as nursery:
        scope = trio.CancelScope()
        finished = trio.Event()

        async def caller() -> None:
            with scope:
                await conn.root.send("Slow.command")
            finished.set()

        nursery.start_soon(caller)
        slow = await fake.next_command()
        scope.cancel()
        await finished.wait()
        assert scope.cancelled_caught
        assert not conn.closed
        assert slow["id"] not in conn._pending  # the cancelled caller left no bookkeeping behind

        nxt = Call(nursery, lambda: conn.root.send("Next.command"))
        command = await fake.next_command()
        assert command["id"] != slow["id"]
        # The late answer (and a late error) for the cancelled command arrive first; both are ignored.
        fake.respond(slow, {"late": True})
        fake.respond_error(slow, -32000, "late error")
        fake.respond(command, {"next": True})
        await nxt.done.wait()
        assert nxt.value == {"next": True}
        assert not conn.closed


# ---------------------------------------------------------------------------- PipeTransport


class PipeBrowser:
    """The browser's ends of the two pipes of a PipeTransport."""

    def __init__(self) -> None:
        to_client_r, to_client_w = os.pipe()
        from_client_r, from_client_w = os.pipe()
        self.transport = PipeTransport(to_client_r, from_client_w)
        self.writer = trio.lowlevel.FdStream(to_client_w)
        self.reader = trio.lowlevel.FdStream(from_client_r)
        self._buffer = b""

    async def aclose(self) -> None:
        await self.transport.aclose()
        await self.writer.aclose()
        await self.reader.aclose()

    async def read_messages(self, count: int) -> list[bytes]:
        messages: list[bytes] = []
        while len(messages) < count:
            while b"\0" not in self._buffer:
                chunk = await self.reader.receive_some(1 << 16)
                assert chunk, "the client closed the pipe"
                self._buffer += chunk
            message, self._buffer = self._buffer.split(b"\0", 1)
            messages.append(message)
        return messages


@asynccontextmanager
async def pipe_browser(deadline: float = DEADLINE) -> AsyncIterator[PipeBrowser]:
    browser = PipeBrowser()
    try:
        with trio.fail_after(deadline):
            yield browser
    finally:
        with trio.CancelScope(shield=True):
            await browser.aclose()


async def test_pipe_many_small_messages_in_one_write() -> None:
    # About 3 MiB in one write: more than a pipe buffer and more than one read, so the
    # transport also has to discard consumed messages from its buffer as it goes.
    messages = [
        json.dumps({"id": i, "result": {"v": "é☃" * (i % 7), "pad": "p" * (i % 1500)}}, ensure_ascii=False).encode()
        for i in range(5000)
    ]
    data = b"".join(m + b"\0" for m in messages)
    assert len(data) > 3 << 20
    async with pipe_browser() as browser, trio.open_nursery() as nursery:
        nursery.start_soon(browser.writer.send_all, data)
        received = [await browser.transport.receive() for _ in messages]
    assert received == messages


async def test_pipe_message_split_across_many_reads_is_reassembled() -> None:
    messages = [
        json.dumps({"method": "Test.big", "params": {"data": "x" * 5000 + "ü"}}, ensure_ascii=False).encode(),
        b'{"id":2,"result":{}}',
        b'{"id":3,"result":{"a":"\xc3\xa9"}}',
        json.dumps({"id": 4, "result": {"data": "y" * 20000}}).encode(),
        b"{}",
    ]
    stream = b"".join(m + b"\0" for m in messages)
    async with pipe_browser() as browser, trio.open_nursery() as nursery:
        got: list[bytes] = []

        async def receive_all() -> None:
            while len(got) < len(messages):
                got.append(await browser.transport.receive())

        nursery.start_soon(receive_all)
        sizes = [1, 2, 3, 7, 13, 64, 1000, 4099]  # message boundaries fall in the middle of pieces
        position = 0
        pieces = 0
        while position < len(stream):
            piece = stream[position : position + sizes[pieces % len(sizes)]]
            position += len(piece)
            pieces += 1
            await browser.writer.send_all(piece)
            await trio.testing.wait_all_tasks_blocked()  # the reader takes this piece on its own
            # Exactly the messages whose terminating NUL has arrived have been returned: none early, none late.
            assert len(got) == stream[:position].count(b"\0")
        assert pieces > 30
    assert got == messages


async def test_pipe_256_mib_message_is_received_intact() -> None:
    total = 256 << 20
    head = b'{"id":1,"result":{"data":"'
    tail = b'"}}'
    rng = random.Random(3)
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    block = bytes(rng.choice(alphabet) for _ in range(4096)) * 256  # 1 MiB of base64 text
    payload_size = total - len(head) - len(tail)
    expected = hashlib.sha256()
    after = b'{"id":2,"result":{}}'

    async with pipe_browser(deadline=60) as browser, trio.open_nursery() as nursery:

        async def write() -> None:
            def out(data: bytes) -> bytes:
                expected.update(data)
                return data

            await browser.writer.send_all(out(head))
            written = 0
            index = 0
            while written < payload_size:
                chunk = b"%08d" % index + block[8:]  # every chunk differs: misordered chunks change the hash
                chunk = chunk[: payload_size - written]
                await browser.writer.send_all(out(chunk))
                written += len(chunk)
                index += 1
            await browser.writer.send_all(out(tail) + b"\0" + after + b"\0")

        nursery.start_soon(write)
        message = await browser.transport.receive()
        assert len(message) == total
        assert message[: len(head)] == head
        assert message.endswith(tail)
        assert hashlib.sha256(message).hexdigest() == expected.hexdigest()
        del message
        assert await browser.transport.receive() == after


async def test_pipe_eof_raises_transport_closed() -> None:
    async with pipe_browser() as browser:
        await browser.writer.send_all(b'{"a":1}\0{"b":2}\0{"partial":')
        await browser.writer.aclose()
        assert await browser.transport.receive() == b'{"a":1}'
        assert await browser.transport.receive() == b'{"b":2}'
        with pytest.raises(TransportClosed):
            await browser.transport.receive()
        with pytest.raises(TransportClosed):
            await browser.transport.receive()


async def test_pipe_send_writes_one_nul_terminated_batch() -> None:
    async with pipe_browser() as browser:
        await browser.transport.send(['{"id":1,"method":"A.a"}', '{"id":2,"method":"B.b","params":{"s":"é"}}'])
        assert await browser.read_messages(2) == [
            b'{"id":1,"method":"A.a"}',
            '{"id":2,"method":"B.b","params":{"s":"é"}}'.encode(),
        ]


async def test_pipe_send_takes_text_and_utf8_in_order() -> None:
    async with pipe_browser() as browser:
        big = b'{"id":2,"params":{"s":"' + b"z" * (3 << 20) + b'"}}'  # more than the pipe holds
        messages: list[str | bytes] = ['{"id":1,"s":"é"}', big, '{"id":3}', '{"id":4}']
        async with trio.open_nursery() as nursery:
            nursery.start_soon(browser.transport.send, messages)
            got = await browser.read_messages(4)
        assert got == ['{"id":1,"s":"é"}'.encode(), big, b'{"id":3}', b'{"id":4}']
        assert browser.transport.send_now(b'{"id":5}')
        assert await browser.read_messages(1) == [b'{"id":5}']


async def test_pipe_send_to_a_closed_peer_raises_transport_closed() -> None:
    async with pipe_browser() as browser:
        await browser.reader.aclose()
        with pytest.raises(TransportClosed):
            await browser.transport.send(['{"id":1,"method":"A.a"}'])


async def test_pipe_aclose_closes_both_pipes() -> None:
    async with pipe_browser() as browser:
        await browser.transport.aclose()
        await browser.transport.aclose()  # idempotent
        assert await browser.reader.receive_some(100) == b""  # the browser sees end of file
        with pytest.raises(trio.BrokenResourceError):
            await browser.writer.send_all(b"{}\0")


async def test_connection_round_trip_over_pipes() -> None:
    async with pipe_browser() as browser, open_connection(browser.transport) as conn, trio.open_nursery() as nursery:
        listener_events: list[object] = []
        got_events = trio.Event()

        async def listen() -> None:
            async with conn.root.listen(cdp.page.LoadEventFired, "Test.raw") as channel:
                async for event in channel:
                    listener_events.append(event)
                    if len(listener_events) == 2:
                        got_events.set()

        nursery.start_soon(listen)
        await trio.testing.wait_all_tasks_blocked()
        calls = [Call(nursery, partial(conn.root.send, "Test.echo", {"n": n})) for n in range(50)]
        commands = [json.loads(m) for m in await browser.read_messages(50)]
        assert sorted(c["params"]["n"] for c in commands) == list(range(50))
        # Answer them all in reverse, with events in between, in a single write.
        out = [json.dumps({"method": "Page.loadEventFired", "params": {"timestamp": 1.5}})]
        out += [json.dumps({"id": c["id"], "result": {"echo": c["params"]["n"]}}) for c in reversed(commands)]
        out += [json.dumps({"method": "Test.raw", "params": {"k": "v"}})]
        await browser.writer.send_all("\0".join(out).encode() + b"\0")
        for call in calls:
            await call.done.wait()
        assert [call.value for call in calls] == [{"echo": n} for n in range(50)]
        await got_events.wait()
        assert listener_events == [
            cdp.page.LoadEventFired(timestamp=cdp.network.MonotonicTime(1.5)),
            RawEvent("Test.raw", {"k": "v"}, None),
        ]
        nursery.cancel_scope.cancel()


async def test_pipe_send_now_keeps_what_the_pipe_cannot_take_in_order() -> None:
    """send_now writes without blocking; a rest it keeps goes out first with the next send()."""
    big = json.dumps({"id": 1, "method": "M", "params": {"data": "z" * (3 << 20)}})
    async with pipe_browser() as browser, trio.open_nursery() as nursery:
        transport = browser.transport
        assert transport.send_now('{"id":0}')  # fits: written at once
        assert not transport.has_backlog
        assert transport.send_now(big)  # 3 MiB into a 1 MiB pipe: the rest is kept
        assert transport.has_backlog
        assert not transport.send_now('{"id":2}')  # never overtakes the kept rest
        got: list[bytes] = []

        async def read() -> None:
            got.extend(await browser.read_messages(3))

        nursery.start_soon(read)
        await transport.send(['{"id":2}'])
        assert not transport.has_backlog
    assert got == [b'{"id":0}', big.encode(), b'{"id":2}']


async def test_connection_writes_straight_through_the_pipe_and_in_order() -> None:
    """Commands queued while the writer task is busy never overtake one it is writing."""
    async with pipe_browser() as browser, open_connection(browser.transport) as connection:
        for i in range(200):
            connection.send_nowait("Test.small", {"i": i, "pad": "p" * (i * 500)})
        received = [json.loads(m) for m in await browser.read_messages(200)]
    assert [m["params"]["i"] for m in received] == list(range(200))
