"""Page script attacks on the tunnel that test_shim.py does not already make: built-ins redefined
*after* a routed socket exists (test_shim.py redefines them before the page opens any).

The shim captures every built-in it uses when it starts, so the moment a page redefines
them must not matter: a socket opened before the redefinition keeps working exactly, and
none of the page's spies sees a single call from the tunnel.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import trio

from cdp_wsroute import Page, WebSocketRoute
from cdp_wsroute._http import StaticServer
from tests.support import STEP
from tests.test_shim import HOOK_GROUPS, HOOKS_JS, ISSUE_GROUPS
from tests.wsservers import echo, serve_ws

pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]

PAGE = "<!doctype html><title>attacks</title><body></body>"

# 1. Open a routed socket and use it once, with nothing redefined.
OPEN_AND_USE = r"""
async (url) => {
  const received = Object.setPrototypeOf([], null);
  const ws = new WebSocket(url, 'chat');
  window.ws = ws;
  window.received = received;
  await new Promise((resolve) => { ws.onopen = resolve; });
  ws.onmessage = (e) => { received[received.length] = e.data; if (window.onReceived) window.onReceived(); };
  const first = new Promise((resolve) => { window.onReceived = resolve; });
  ws.send('before the redefinitions');
  await first;
  // Everything the armed phase needs, made now: while armed the page touches only the socket.
  window.payloads = Object.setPrototypeOf([
    'SECRET-text-é', new Blob(['SECRET-blob']), new TextEncoder().encode('SECRET-bytes'),
    new DataView(new TextEncoder().encode('xSECRET-viewx').buffer, 1, 11),
    new TextEncoder().encode('SECRET-buffer').buffer,
  ], null);
  return received[0];
}
"""

# 3. With the page's spies armed, send every kind of payload, read the echoes (flipping binaryType
#    after each), and close.
ARMED_SESSION = r"""
async () => {
  const ws = window.ws;
  const received = window.received;
  const payloads = window.payloads;
  let done, closed;
  const whenDone = new Promise((resolve) => { done = resolve; });
  const whenClosed = new Promise((resolve) => { closed = resolve; });
  let closeEvent = null;
  window.onReceived = () => {
    ws.binaryType = ws.binaryType === 'blob' ? 'arraybuffer' : 'blob';
    if (received.length === 6) done();
  };
  ws.onclose = (e) => { closeEvent = e; closed(); };
  window.__armed = true;
  for (let i = 0; i < 5; i++) ws.send(payloads[i]);
  await whenDone;
  ws.close(3000, 'SECRET-close');
  await whenClosed;
  window.__armed = false;
  const data = [];
  for (let i = 1; i < received.length; i++) {
    const d = received[i];
    if (typeof d === 'string') data.push(['string', d]);
    else if (d instanceof Blob) data.push(['blob', new TextDecoder().decode(await d.arrayBuffer())]);
    else data.push([Object.prototype.toString.call(d), new TextDecoder().decode(d)]);
  }
  return {log: Array.from(window.__hookLog).slice(0, 40), calls: window.__hookCount(), data,
          close: [closeEvent.code, closeEvent.reason, closeEvent.wasClean]};
}
"""

EXPECTED_DATA = [
    ["string", "SECRET-text-é"],
    ["[object ArrayBuffer]", "SECRET-blob"],  # binaryType flips after every message
    ["blob", "SECRET-bytes"],
    ["[object ArrayBuffer]", "SECRET-view"],
    ["blob", "SECRET-buffer"],
]


async def session_with_redefinitions_after_open(page: Page, server: StaticServer, groups: list[str], mode: str) -> Any:
    server.route("/attacks.html", PAGE)
    routes: list[WebSocketRoute] = []

    def connect(route: WebSocketRoute) -> None:
        routes.append(route)
        route.connect_to_server()

    async with serve_ws(echo) as upstream:
        await page.route_web_socket(re.compile(r"/attacked"), connect)
        await page.goto(server.url("/attacks.html"))
        with trio.fail_after(STEP):
            first = await page.evaluate(OPEN_AND_USE, upstream.url("/attacked"))
            assert first == "before the redefinitions"
            # 2. The page redefines the built-ins now, with the socket open.
            await page.evaluate(f"() => ({HOOKS_JS})({json.dumps(groups)}, {json.dumps(mode)})")
            assert await page.evaluate("window.__hooksInstalled") == len(groups)
            result = await page.evaluate(ARMED_SESSION)
            conn = await upstream.next_connection()
            await conn.wait_for(lambda c: c.closed is not None)
    assert len(routes) == 1
    assert conn.messages == [
        "before the redefinitions",
        "SECRET-text-é",
        b"SECRET-blob",
        b"SECRET-bytes",
        b"SECRET-view",
        b"SECRET-buffer",
    ]
    assert conn.closed == (3000, "SECRET-close")
    assert result["data"] == EXPECTED_DATA
    assert result["close"] == [3000, "SECRET-close", True]
    tunnel = page._tunnel
    assert tunnel is not None
    assert tunnel.rejected == 0
    return result


@pytest.mark.parametrize("group", HOOK_GROUPS)
async def test_builtins_redefined_after_a_socket_opened_see_nothing(
    page: Page, server: StaticServer, group: str
) -> None:
    result = await session_with_redefinitions_after_open(page, server, [group], "spy")
    assert not result["log"], f"{result['calls']} calls reached the page's redefined {group}:\n" + "\n".join(
        result["log"]
    )


async def test_builtins_sabotaged_after_a_socket_opened_do_not_break_it(page: Page, server: StaticServer) -> None:
    """Every redefinition the issue names at once, each throwing when called, installed mid-session."""
    result = await session_with_redefinitions_after_open(page, server, ISSUE_GROUPS, "throw")
    assert not result["log"], "\n".join(result["log"])
