"""The routed socket's forwarding and close state machine (``cdp_wsroute._wsstate``): pure, no browser.

The module docstring is the spec; each section below follows one of its bullets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_wsroute._codec import close_message
from cdp_wsroute._wsstate import (
    Action,
    CallCloseHandler,
    CallMessageHandler,
    PageClose,
    PageError,
    PageOpen,
    PageSend,
    RouteState,
    ServerClose,
    ServerConnect,
    ServerSend,
    Side,
    SideState,
)

PAGE, SERVER = Side.PAGE, Side.SERVER
FAILED = [PageError(), PageClose(1006, "", False)]


def page_of(state: RouteState) -> SideState:
    """The page side's state (a call, so that type checkers do not narrow it across actions)."""
    return state.page


def server_of(state: RouteState) -> SideState:
    return state.server


def mocked_open(protocols: tuple[str, ...] = ()) -> RouteState:
    state = RouteState(protocols)
    assert state.handler_returned() == [PageOpen(protocols[0] if protocols else "", "")]
    return state


def connected(protocols: tuple[str, ...] = ()) -> RouteState:
    """connect_to_server() called inside the handler, the handler returned, the upstream still connecting."""
    state = RouteState(protocols)
    assert state.connect() == [ServerConnect()]
    assert state.handler_returned() == []
    assert page_of(state) is SideState.CONNECTING
    assert server_of(state) is SideState.CONNECTING
    return state


def connected_open(protocol: str = "") -> RouteState:
    state = connected()
    assert state.server_opened(protocol, "") == [PageOpen(protocol, "")]
    assert page_of(state) is SideState.OPEN
    assert server_of(state) is SideState.OPEN
    return state


# -- open -----------------------------------------------------------------------------------------------


def test_initial_state() -> None:
    state = RouteState(("chat",))
    assert page_of(state) is SideState.CONNECTING
    assert server_of(state) is SideState.NONE
    assert not state.connected
    assert not state.finished
    assert state.requested_protocols == ("chat",)


def test_mocked_opens_when_the_handler_returns_with_the_first_protocol() -> None:
    state = RouteState(("chat", "superchat"))
    assert state.handler_returned() == [PageOpen("chat", "")]
    assert page_of(state) is SideState.OPEN
    assert state.handler_returned() == []  # never twice


def test_mocked_without_protocols_opens_with_empty_protocol() -> None:
    assert RouteState().handler_returned() == [PageOpen("", "")]


def test_mocked_opens_at_the_first_route_send() -> None:
    state = RouteState(("chat",))
    assert state.route_send(PAGE, "hello") == [PageOpen("chat", ""), PageSend("hello")]
    assert state.route_send(PAGE, b"\x00") == [PageSend(b"\x00")]
    assert state.handler_returned() == []  # already open: never twice
    assert state.route_send(PAGE, "again") == [PageSend("again")]


def test_connected_page_does_not_open_when_the_handler_returns() -> None:
    state = connected(("chat", "superchat"))
    assert page_of(state) is SideState.CONNECTING
    # It opens with the protocol the server chose, and the server's extensions.
    assert state.server_opened("superchat", "permessage-deflate") == [PageOpen("superchat", "permessage-deflate")]
    assert state.server_opened("superchat", "") == []  # never twice


def test_connected_page_opens_even_if_the_handler_is_still_running() -> None:
    state = RouteState()
    assert state.connect() == [ServerConnect()]
    assert state.server_opened("", "") == [PageOpen("", "")]
    assert state.handler_returned() == []


def test_route_sends_to_a_connected_page_wait_for_the_open() -> None:
    state = connected()
    assert state.route_send(PAGE, "early 1") == []
    assert state.route_send(PAGE, b"early 2") == []
    assert page_of(state) is SideState.CONNECTING  # the page is not force-opened
    assert state.server_opened("p", "") == [PageOpen("p", ""), PageSend("early 1"), PageSend(b"early 2")]
    assert state.route_send(PAGE, "late") == [PageSend("late")]


def test_server_sends_while_connecting_are_flushed_in_order_before_the_page_opens() -> None:
    state = connected()
    assert state.route_send(SERVER, "one") == []
    assert state.route_send(PAGE, "to page") == []
    assert state.route_send(SERVER, b"two") == []
    assert state.route_send(SERVER, "three") == []
    assert state.server_opened("", "") == [
        ServerSend("one"),
        ServerSend(b"two"),
        ServerSend("three"),
        PageOpen("", ""),
        PageSend("to page"),
    ]
    assert state.route_send(SERVER, "four") == [ServerSend("four")]


def test_connect_after_the_page_opened() -> None:
    state = mocked_open()
    assert state.connect() == [ServerConnect()]
    assert state.page_message("queued") == []  # forwarded, but the upstream is still connecting
    assert state.route_send(PAGE, "direct") == [PageSend("direct")]  # the page is open already
    assert state.server_opened("ignored", "") == [ServerSend("queued")]  # no second PageOpen


def test_connect_after_the_page_closed_does_nothing() -> None:
    state = mocked_open()
    assert state.page_close(1000, "") == [PageClose(1000, "", True)]
    assert state.connect() == []
    assert server_of(state) is SideState.CLOSED
    assert state.finished
    assert state.route_send(SERVER, "x") == []


def test_route_send_to_server_without_a_server_is_dropped() -> None:
    state = mocked_open()
    assert state.route_send(SERVER, "x") == []
    assert not state.connected


# -- messages -------------------------------------------------------------------------------------------


def test_page_message_goes_to_the_page_handler_first() -> None:
    state = connected_open()
    state.message_handler[PAGE] = True
    assert state.page_message("hi") == [CallMessageHandler(PAGE, "hi")]
    assert state.page_message(b"\x01") == [CallMessageHandler(PAGE, b"\x01")]


def test_page_message_goes_to_the_server_when_connected() -> None:
    state = connected_open()
    assert state.page_message("hi") == [ServerSend("hi")]
    assert state.page_message(b"\x01") == [ServerSend(b"\x01")]


def test_page_message_is_dropped_when_mocked_without_handler() -> None:
    state = mocked_open()
    assert state.page_message("hi") == []


def test_page_message_mocked_with_handler() -> None:
    state = mocked_open()
    state.message_handler[PAGE] = True
    assert state.page_message("hi") == [CallMessageHandler(PAGE, "hi")]


def test_page_message_unless_the_page_is_open() -> None:
    state = RouteState()
    state.message_handler[PAGE] = True
    assert state.page_message("before open") == []
    state = connected_open()
    assert state.page_close(3000, "bye") == [ServerClose(3000, "bye")]
    assert state.page_message("while closing") == []


def test_page_message_to_a_closing_server_is_dropped() -> None:
    state = connected_open()
    assert state.route_close(SERVER, 1000, "") == [ServerClose(1000, "")]
    assert state.page_message("x") == []


def test_server_message_goes_to_the_server_handler() -> None:
    state = connected_open()
    state.message_handler[SERVER] = True
    assert state.server_message("hi") == [CallMessageHandler(SERVER, "hi")]


def test_server_message_goes_to_the_page_by_default() -> None:
    state = connected_open()
    assert state.server_message("hi") == [PageSend("hi")]
    assert state.server_message(b"\x02") == [PageSend(b"\x02")]
    # The page-side message handler does not take server messages.
    state.message_handler[PAGE] = True
    assert state.server_message("x") == [PageSend("x")]


def test_server_message_while_the_server_is_closing_still_arrives() -> None:
    state = connected_open()
    assert state.route_close(SERVER, 1000, "") == [ServerClose(1000, "")]
    assert state.server_message("late") == [PageSend("late")]


def test_server_message_before_open_or_without_server() -> None:
    assert RouteState().server_message("x") == []
    assert connected().server_message("x") == []


# -- page closes ----------------------------------------------------------------------------------------


def test_page_close_goes_to_the_page_close_handler() -> None:
    state = connected_open()
    state.close_handler[PAGE] = True
    assert state.page_close(3000, "bye") == [CallCloseHandler(PAGE, 3000, "bye")]
    assert page_of(state) is SideState.CLOSING  # until route.close()
    assert server_of(state) is SideState.OPEN  # not closed automatically
    assert state.page_close(3001, "again") == []
    # route.close() then closes the page, and not the server (the handler owns closes).
    assert state.route_close(PAGE, 3002, "done") == [PageClose(3002, "done", True)]
    assert server_of(state) is SideState.OPEN


def test_page_close_is_forwarded_to_the_server_then_the_page_gets_the_echo() -> None:
    state = connected_open()
    assert state.page_close(3002, "oops") == [ServerClose(3002, "oops")]
    assert page_of(state) is SideState.CLOSING
    assert server_of(state) is SideState.CLOSING
    assert state.server_closed(3002, "oops") == [PageClose(3002, "oops", True)]
    assert page_of(state) is SideState.CLOSED
    assert server_of(state) is SideState.CLOSED
    assert state.finished


def test_page_close_forwarded_the_server_answers_with_its_own_code() -> None:
    state = connected_open()
    assert state.page_close(None, "") == [ServerClose(None, "")]
    assert state.server_closed(4001, "server says") == [PageClose(4001, "server says", True)]


def test_page_close_mocked_is_echoed() -> None:
    state = mocked_open()
    assert state.page_close(4000, "bye") == [PageClose(4000, "bye", True)]
    assert state.finished
    assert state.page_close(4000, "bye") == []


def test_page_close_mocked_without_code_is_echoed_as_1005() -> None:
    state = mocked_open()
    actions = state.page_close(None, "")
    assert actions == [PageClose(None, "", True)]
    close = actions[0]
    assert isinstance(close, PageClose)
    # On the wire to the page, "no code" is 1005 (native), not Playwright's 0.
    assert close_message(1, close.code, close.reason, close.was_clean) == ["c", 1, 1005, "", True]


def test_page_close_echoed_when_the_server_is_already_gone() -> None:
    state = connected_open()
    state.close_handler[SERVER] = True
    assert state.server_closed(1000, "") == [CallCloseHandler(SERVER, 1000, "")]
    assert page_of(state) is SideState.OPEN  # the server close handler decides
    assert state.page_close(3000, "x") == [PageClose(3000, "x", True)]


@pytest.mark.parametrize("connecting_flag", [True, False])
def test_page_close_while_connecting_mocked(connecting_flag: bool) -> None:
    state = RouteState()  # the handler is still running
    assert state.page_close(None, "", connecting=connecting_flag) == FAILED
    assert page_of(state) is SideState.CLOSED
    assert state.handler_returned() == []  # never opens afterwards
    assert state.route_send(PAGE, "x") == []
    assert state.finished


def test_page_close_while_connecting_closes_a_connecting_server_with_1001() -> None:
    state = connected()
    assert state.route_send(SERVER, "queued") == []
    assert state.route_send(PAGE, "queued") == []
    assert state.page_close(3000, "x", connecting=True) == [*FAILED, ServerClose(1001, "")]
    assert server_of(state) is SideState.CLOSING
    assert state.server_opened("", "") == []  # nothing queued leaks out
    assert state.server_closed(1001, "") == []
    assert state.finished


def test_page_close_while_connecting_with_page_close_handler() -> None:
    state = connected()
    state.close_handler[PAGE] = True
    assert state.page_close(None, "", connecting=True) == [
        *FAILED,
        CallCloseHandler(PAGE, 1006, ""),
        ServerClose(1001, ""),
    ]


def test_page_close_connecting_flag_wins_over_a_racing_open() -> None:
    """The page closed while CONNECTING but Python already sent the open: still a failed socket."""
    state = mocked_open()
    assert state.page_close(1000, "", connecting=True) == FAILED
    assert page_of(state) is SideState.CLOSED


def test_page_lost() -> None:
    state = connected_open()
    state.close_handler[PAGE] = True
    state.close_handler[SERVER] = True
    # The page showed error + 1006 itself: no Page* action.
    assert state.page_lost() == [CallCloseHandler(PAGE, None, None), ServerClose(1001, "")]
    assert state.page_lost() == []
    assert state.server_closed(1001, "") == [CallCloseHandler(SERVER, 1001, "")]
    assert state.finished


def test_page_lost_mocked() -> None:
    state = mocked_open()
    assert state.page_lost() == []
    assert state.finished


# -- server closes ----------------------------------------------------------------------------------------


def test_server_close_goes_to_the_page_by_default() -> None:
    state = connected_open()
    assert state.server_closed(1008, "oops") == [PageClose(1008, "oops", True)]
    assert state.finished
    assert state.page_close(1000, "") == []  # the follow-up is ignored: no loop
    assert state.server_closed(1000, "") == []


def test_server_close_without_code() -> None:
    state = connected_open()
    assert state.server_closed(None, "") == [PageClose(None, "", True)]


def test_server_close_goes_to_the_server_close_handler() -> None:
    state = connected_open()
    state.close_handler[SERVER] = True
    assert state.server_closed(1008, "oops") == [CallCloseHandler(SERVER, 1008, "oops")]
    assert page_of(state) is SideState.OPEN  # not closed automatically
    assert state.route_send(SERVER, "x") == []  # nothing to a closed server
    assert state.route_send(PAGE, "y") == [PageSend("y")]
    assert state.route_close(PAGE, 1000, "") == [PageClose(1000, "", True)]
    assert state.finished


def test_server_close_before_the_page_opened_fails_the_page() -> None:
    state = connected()
    assert state.server_closed(1000, "") == FAILED


def test_route_close_on_the_server_side() -> None:
    state = connected_open()
    assert state.route_close(SERVER, 4000, "x") == [ServerClose(4000, "x")]
    assert state.route_close(SERVER, 4000, "x") == []  # each close at most once
    assert state.route_send(SERVER, "late") == []
    # The server's answer reaches the page as any server close does.
    assert state.server_closed(4000, "x") == [PageClose(4000, "x", True)]


# -- server failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize("page_error", [True, False])
def test_refused_never_opened_gives_error_and_1006(page_error: bool) -> None:
    state = connected()
    assert state.route_send(PAGE, "queued") == []
    assert state.server_failed("connection refused", page_error=page_error) == FAILED
    assert state.finished
    assert state.server_opened("", "") == []


def test_dropped_after_open_gives_1006_without_error() -> None:
    state = connected_open()
    assert state.server_failed("connection lost", page_error=False) == [PageClose(1006, "", False)]
    assert state.finished


def test_protocol_error_after_open_gives_error_and_1006() -> None:
    state = connected_open()
    assert state.server_failed("invalid frame", page_error=True) == FAILED


@pytest.mark.parametrize("opened", [True, False])
@pytest.mark.parametrize("page_error", [True, False])
def test_failure_with_server_close_handler_only_calls_it(opened: bool, page_error: bool) -> None:
    state = connected_open() if opened else connected()
    state.close_handler[SERVER] = True
    before = state.page
    assert state.server_failed("boom", page_error=page_error) == [CallCloseHandler(SERVER, 1006, "boom")]
    assert page_of(state) is before
    assert server_of(state) is SideState.CLOSED


def test_failure_while_the_page_is_closing() -> None:
    state = connected_open()
    assert state.page_close(3000, "") == [ServerClose(3000, "")]
    assert state.server_failed("no answer", page_error=False) == [PageClose(1006, "", False)]


def test_failure_after_the_page_closed() -> None:
    state = connected_open()
    state.close_handler[PAGE] = True
    assert state.route_close(PAGE, 1000, "") == [PageClose(1000, "", True)]
    assert state.server_failed("lost", page_error=True) == []


def test_failure_without_server() -> None:
    state = mocked_open()
    assert state.server_failed("?", page_error=True) == []
    assert state.server_closed(1000, "") == []
    assert page_of(state) is SideState.OPEN


# -- route.close on the page side ---------------------------------------------------------------------------


def test_route_close_page_also_closes_the_server() -> None:
    state = connected_open()
    assert state.route_close(PAGE, 3009, "oops") == [PageClose(3009, "oops", True), ServerClose(3009, "oops")]
    assert state.route_close(PAGE, 3009, "oops") == []
    # The server's answer finds the page closed already: nothing more.
    assert state.server_closed(3009, "oops") == []
    assert state.finished


def test_route_close_page_with_page_close_handler_leaves_the_server() -> None:
    state = connected_open()
    state.close_handler[PAGE] = True
    assert state.route_close(PAGE, 3009, "oops") == [PageClose(3009, "oops", True)]
    assert server_of(state) is SideState.OPEN
    assert state.server_message("still flowing") == []  # nowhere to go: the page is closed
    assert state.route_send(SERVER, "still") == [ServerSend("still")]


def test_route_close_page_while_the_server_connects() -> None:
    state = connected()
    assert state.route_close(PAGE, 1000, "") == [*FAILED, ServerClose(1000, "")]


def test_route_close_page_mocked() -> None:
    state = mocked_open()
    assert state.route_close(PAGE, None, "") == [PageClose(None, "", True)]
    assert state.finished


def test_route_close_inside_the_handler_before_the_mock_opened() -> None:
    """Like a server closing before the handshake completes: the page's connection fails."""
    state = RouteState()
    assert state.route_close(PAGE, 1000, "") == FAILED
    assert state.handler_returned() == []


# -- lifecycle and handler failures ----------------------------------------------------------------------


def test_lifecycle_closed_calls_both_handlers_and_closes_the_server_with_1001() -> None:
    state = connected_open()
    state.close_handler[PAGE] = True
    state.close_handler[SERVER] = True
    actions = state.lifecycle_closed()
    assert actions == [CallCloseHandler(PAGE, None, None), ServerClose(1001, ""), CallCloseHandler(SERVER, None, None)]
    assert state.finished
    assert state.lifecycle_closed() == []
    assert state.server_closed(1001, "") == []
    assert state.server_message("x") == []
    assert state.page_close(1000, "") == []


def test_lifecycle_closed_without_handlers() -> None:
    state = connected_open()
    assert state.lifecycle_closed() == [ServerClose(1001, "")]  # no Page* action: the document is gone


def test_lifecycle_closed_while_connecting() -> None:
    state = connected()
    state.close_handler[SERVER] = True
    assert state.lifecycle_closed() == [ServerClose(1001, ""), CallCloseHandler(SERVER, None, None)]
    assert state.server_opened("", "") == []


def test_lifecycle_closed_mocked() -> None:
    state = mocked_open()
    state.close_handler[PAGE] = True
    assert state.lifecycle_closed() == [CallCloseHandler(PAGE, None, None)]
    assert state.finished


def test_lifecycle_closed_after_a_page_close_handler_ran() -> None:
    state = mocked_open()
    state.close_handler[PAGE] = True
    assert state.page_close(3000, "") == [CallCloseHandler(PAGE, 3000, "")]
    assert state.lifecycle_closed() == [CallCloseHandler(PAGE, None, None)]


def test_lifecycle_closed_while_the_server_is_closing_sends_no_second_close() -> None:
    """ "Each close reaches each side at most once": a closing upstream gets no second ServerClose."""
    state = connected_open()
    state.close_handler[SERVER] = True
    assert state.route_close(SERVER, 4000, "bye") == [ServerClose(4000, "bye")]
    actions = state.lifecycle_closed()
    assert [a for a in actions if isinstance(a, ServerClose)] == []
    assert CallCloseHandler(SERVER, None, None) in actions
    assert state.finished


def test_handler_failed_gives_1011_to_an_open_page() -> None:
    state = mocked_open()
    assert state.handler_failed() == [PageClose(1011, "", True)]
    assert state.finished


def test_handler_failed_connected() -> None:
    state = connected_open()
    assert state.handler_failed() == [PageClose(1011, "", True), ServerClose(1011, "")]
    assert state.handler_failed() == []


def test_handler_failed_before_the_page_opened() -> None:
    state = RouteState()
    assert state.handler_failed() == FAILED


# -- property: nothing ever goes to a closed side ------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    name: str
    args: tuple[Any, ...] = ()


_data = st.sampled_from(["a", b"b", "", b""])
_code = st.sampled_from([None, 1000, 3000, 4999])
_reason = st.sampled_from(["", "r"])
_side = st.sampled_from([PAGE, SERVER])

_events = st.one_of(
    st.just(Event("connect")),
    st.just(Event("handler_returned")),
    st.tuples(_side, _data).map(lambda a: Event("route_send", a)),
    st.tuples(_side, _code, _reason).map(lambda a: Event("route_close", a)),
    _data.map(lambda d: Event("page_message", (d,))),
    st.tuples(_code, _reason, st.booleans()).map(lambda a: Event("page_close", a)),
    st.just(Event("page_lost")),
    st.sampled_from(["", "chat"]).map(lambda p: Event("server_opened", (p, ""))),
    _data.map(lambda d: Event("server_message", (d,))),
    st.tuples(_code, _reason).map(lambda a: Event("server_closed", a)),
    st.booleans().map(lambda b: Event("server_failed", ("boom", b))),
    st.just(Event("lifecycle_closed")),
    st.just(Event("handler_failed")),
    st.tuples(st.sampled_from(["message_handler", "close_handler"]), _side, st.booleans()).map(
        lambda a: Event("set", a)
    ),
)

PAGE_ACTIONS = (PageOpen, PageSend, PageError, PageClose)
SERVER_ACTIONS = (ServerConnect, ServerSend, ServerClose)


def _apply(state: RouteState, event: Event) -> list[Action] | None:
    """Run one event as the I/O layer would; None when the I/O layer would never produce it."""
    if event.name == "connect":
        if state.server is not SideState.NONE:  # the caller raises "Already connected" instead
            return None
        return state.connect()
    if event.name == "handler_returned":
        if state.handler_done:  # the handler runs once
            return None
        return state.handler_returned()
    if event.name == "set":
        attribute, side, value = event.args
        getattr(state, attribute)[side] = value
        return []
    if event.name == "page_close":
        code, reason, connecting = event.args
        return state.page_close(code, reason, connecting=connecting)
    if event.name == "server_failed":
        reason, page_error = event.args
        return state.server_failed(reason, page_error=page_error)
    method: Callable[..., list[Action]] = getattr(state, event.name)
    return method(*event.args)


@dataclass
class _Tracker:
    """What has been sent to each side so far, checked against the rules after each event."""

    page_opened: bool = False
    page_closed: bool = False  # a PageClose went out, or the page dropped the socket itself
    page_gone: bool = False  # the document went away
    server_connected: bool = False
    server_closed: bool = False  # the upstream reported its close or failure, or the document went away
    server_close_sent: bool = False  # a ServerClose went out

    def check(self, state: RouteState, event: Event, actions: list[Action], *, strict_server: bool) -> None:
        for action in actions:
            if isinstance(action, PAGE_ACTIONS):
                assert not self.page_closed, f"{action} after the page closed ({event})"
                assert not self.page_gone, f"{action} after the document went away ({event})"
            if isinstance(action, SERVER_ACTIONS):
                assert not self.server_closed, f"{action} after the server closed ({event})"
                if strict_server:
                    assert not self.server_close_sent, f"{action} after a ServerClose ({event})"
            if isinstance(action, PageOpen):
                assert not self.page_opened, f"second PageOpen ({event})"
                self.page_opened = True
            elif isinstance(action, PageSend):
                assert self.page_opened, f"PageSend before PageOpen ({event})"
            elif isinstance(action, PageClose):
                self.page_closed = True
            elif isinstance(action, ServerConnect):
                assert not self.server_connected, f"second ServerConnect ({event})"
                self.server_connected = True
            elif isinstance(action, ServerSend | ServerClose):
                assert self.server_connected, f"{action} without a server ({event})"
                if isinstance(action, ServerClose):
                    self.server_close_sent = True
            elif isinstance(action, CallMessageHandler):
                assert state.message_handler[action.side], f"{action} without a handler ({event})"
            elif isinstance(action, CallCloseHandler):
                assert state.close_handler[action.side], f"{action} without a handler ({event})"
        errors = [i for i, a in enumerate(actions) if isinstance(a, PageError)]
        for i in errors:
            assert i + 1 < len(actions), f"PageError last ({event})"
            assert isinstance(actions[i + 1], PageClose), f"PageError not followed by PageClose ({event})"
        if event.name == "page_lost":
            self.page_closed = True
        if event.name == "lifecycle_closed":
            self.page_gone = True
            if self.server_connected:
                self.server_closed = True
        if state.finished:
            assert self.page_closed or self.page_gone


def _run(events: list[Event], *, strict_server: bool) -> None:
    state = RouteState(("chat", "other"))
    tracker = _Tracker()
    for event in events:
        server_before = state.server
        actions = _apply(state, event)
        if actions is None:
            continue
        assert isinstance(actions, list)
        tracker.check(state, event, actions, strict_server=strict_server)
        if event.name in ("server_closed", "server_failed") and server_before is not SideState.NONE:
            tracker.server_closed = True
        if state.finished:
            assert page_of(state) is SideState.CLOSED
        if tracker.page_closed or tracker.page_gone:
            assert page_of(state) is SideState.CLOSED


@settings(max_examples=700, deadline=None)
@given(st.lists(_events, max_size=20))
def test_no_action_towards_a_closed_side(events: list[Event]) -> None:
    """Random event sequences never produce Page* actions after the page closed (PageClose,
    page_lost, lifecycle), two PageClose actions, or Server* actions after the server closed."""
    _run(events, strict_server=False)


@settings(max_examples=700, deadline=None)
@given(st.lists(_events, max_size=20))
def test_each_close_reaches_the_server_at_most_once(events: list[Event]) -> None:
    """The module docstring: "each close reaches each side at most once" - nothing follows a ServerClose."""
    _run(events, strict_server=True)


def test_property_harness_catches_a_violation() -> None:
    """The tracker really fails on a Page* action after a PageClose (so the properties can fail)."""
    tracker = _Tracker()
    state = mocked_open()
    tracker.check(state, Event("x"), [PageOpen("", ""), PageClose(1000, "", True)], strict_server=False)
    with pytest.raises(AssertionError, match="after the page closed"):
        tracker.check(state, Event("y"), [PageSend("late")], strict_server=False)
    tracker = _Tracker()
    tracker.check(state, Event("x"), [ServerConnect(), ServerClose(1000, "")], strict_server=True)
    with pytest.raises(AssertionError, match="after a ServerClose"):
        tracker.check(state, Event("y"), [ServerSend("late")], strict_server=True)
