"""``python -m cdp_wsroute demo`` / ``nox -s demo``: the WebSocket routing showcase.

It serves a small chat page on 127.0.0.1 and a real upstream chat server (a
trio-websocket echo bot), launches headless Chromium, then:

* mocks the page's notifications socket entirely in Python, and
* intercepts the chat socket with ``connect_to_server()``: what the page sends
  is rewritten on the way up, what the server answers is tagged on the way down,

and prints a transcript of every frame in both directions.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import TextIO

import trio
import trio_websocket

from ._browser import launch
from ._http import serve_http
from ._route import WebSocketRoute, enable_trace

PAGE = """<!doctype html>
<title>cdp_wsroute chat</title>
<ul id="messages"></ul>
<script>
  window.log = [];
  const show = (text) => {
    const li = document.createElement("li");
    li.textContent = text;
    document.getElementById("messages").append(li);
    window.log.push(text);
  };
  const notifications = new WebSocket("/notifications");
  notifications.onmessage = (e) => show("notification: " + JSON.parse(e.data).text);
  const chat = new WebSocket(CHAT_URL, ["chat.v1"]);
  chat.onopen = () => {
    show("chat open (" + chat.protocol + ")");
    for (const text of ["hello", "how are you?", "bye"]) chat.send(text);
  };
  chat.onmessage = (e) => {
    show("chat: " + e.data);
    if (e.data.includes("BYE")) chat.close(1000, "done");
  };
  chat.onclose = (e) => show("chat closed " + e.code + " " + e.reason);
</script>
"""


async def chat_bot(request: trio_websocket.WebSocketRequest) -> None:
    """The real server: answers every message."""
    ws = await request.accept(subprotocol="chat.v1" if "chat.v1" in request.proposed_subprotocols else None)
    try:
        while True:
            message = await ws.get_message()
            await ws.send_message(f"bot heard {message!r}")
    except trio_websocket.ConnectionClosed:
        pass


async def run_demo(out: TextIO = sys.stdout) -> None:
    def say(text: str) -> None:
        print(text, file=out, flush=True)

    async with trio.open_nursery() as servers:
        bot = await servers.start(functools.partial(trio_websocket.serve_websocket, chat_bot, "127.0.0.1", 0, None))
        chat_url = f"ws://127.0.0.1:{bot.port}/chat"
        async with serve_http() as http, launch() as browser:
            http.route("/", PAGE.replace("CHAT_URL", json.dumps(chat_url)))
            say(f"launched {browser.version}; page at {http.url('/')}; chat server at {chat_url}\n")
            page = await browser.new_page()

            def notifications(route: WebSocketRoute) -> None:
                say(f"[notifications] mocked in Python: {route.url}")
                for text in ("welcome back", "3 unread messages"):
                    payload = json.dumps({"text": text})
                    say(f"  python -> page   {payload}")
                    route.send(payload)

            def chat(route: WebSocketRoute) -> None:
                say(f"[chat] intercepted, connecting to the real server (protocols {route.protocols()})")
                server = route.connect_to_server()

                def from_page(message: str | bytes) -> None:
                    rewritten = message.upper() if isinstance(message, str) else message
                    say(f"  page -> python   {message!r}  => server gets {rewritten!r}")
                    server.send(rewritten)

                def from_server(message: str | bytes) -> None:
                    tagged = f"{message} [via cdp_wsroute]" if isinstance(message, str) else message
                    say(f"  server -> python {message!r}  => page gets {tagged!r}")
                    route.send(tagged)

                # Closes keep their default forwarding: the page's close(1000, "done")
                # reaches the server, and the server's answer closes the page's socket.
                route.on_message(from_page)
                server.on_message(from_server)

            await page.route_web_socket("**/notifications", notifications)
            await page.route_web_socket(chat_url, chat)
            await page.goto(http.url("/"))
            log = await page.wait_for_function("window.log.some(t => t.startsWith('chat closed')) && window.log")
            say("\nwhat the page showed:")
            for line in log:
                say(f"  {line}")
        say("\nbrowser closed; nothing left running")
        servers.cancel_scope.cancel()


def main(*, trace: bool = False) -> None:
    if trace:
        enable_trace()
    trio.run(run_demo)
