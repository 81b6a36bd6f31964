"""A test page whose sockets log their events, and the helpers that read the logs.

The helpers only need the page's ``logs`` array; test_route_core.py has a page of its
own (subprotocols, thrown constructors, binary as bytes) and reads it with them too.

``openWs(url)`` opens a socket and returns its index; ``logs[i]`` records "open",
"message <text>", "binary <byteLength>", "error" and "close <code> <reason> <wasClean>".
"""

from __future__ import annotations

from cdp_wsroute import Frame, Page
from tests.support import STEP

HELPERS = """
window.socks = [];
window.logs = [];
window.openWs = (url) => {
  const i = socks.length;
  const log = [];
  logs.push(log);
  const ws = new WebSocket(url);
  socks.push(ws);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => log.push("open");
  ws.onmessage = (e) => log.push(typeof e.data === "string" ? "message " + e.data : "binary " + e.data.byteLength);
  ws.onerror = () => log.push("error");
  ws.onclose = (e) => log.push(`close ${e.code} ${e.reason} ${e.wasClean}`);
  return i;
};
"""
PAGE = f"<!doctype html><title>sockets</title><script>{HELPERS}</script>"

Log = list[str]


async def open_ws(target: Page | Frame, url: str) -> int:
    index: int = await target.evaluate("(url) => openWs(url)", url)
    return index


async def get_log(target: Page | Frame, index: int) -> Log:
    log: Log = await target.evaluate("(i) => logs[i]", index)
    return log


async def wait_log(target: Page | Frame, index: int, entry: str) -> Log:
    """Wait until the socket's log has ``entry``; return the log."""
    await target.wait_for_function("([i, e]) => logs[i].includes(e)", [index, entry], timeout=STEP)
    return await get_log(target, index)


async def wait_closed(target: Page | Frame, index: int) -> Log:
    """Wait for the socket's close event; return its whole log."""
    await target.wait_for_function("(i) => logs[i].some((e) => e.startsWith('close '))", index, timeout=STEP)
    return await get_log(target, index)
