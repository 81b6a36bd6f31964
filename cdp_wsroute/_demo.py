"""``python -m cdp_wsroute demo`` / ``nox -s demo``: launch Chromium, open a page we serve, show what it says."""

from __future__ import annotations

import sys
from typing import TextIO

import trio

from ._browser import launch
from ._http import serve_http

PAGE = """<!doctype html>
<title>cdp_wsroute demo</title>
<h1>Hello from 127.0.0.1</h1>
<script>
  window.log = [];
  console.log("page script ran");
  window.sum = [1, 2, 3, 4].reduce((a, b) => a + b, 0);
</script>
<iframe name="child" srcdoc="<p>inside the iframe</p>"></iframe>
"""


async def run_demo(out: TextIO = sys.stdout) -> None:
    def say(text: str) -> None:
        print(text, file=out, flush=True)

    async with serve_http() as server:
        server.route("/", PAGE)
        async with launch() as browser:
            say(f"launched {browser.version} (headless)")
            page = await browser.new_page()
            page.on("console", lambda message: say(f"  console.{message.type}: {message.text}"))
            await page.goto(server.url("/"))
            say(f"opened   {page.url}")
            say(f"title    {await page.evaluate('document.title')!r}")
            say(f"sum      {await page.evaluate('window.sum')}")
            say(f"doubled  {await page.evaluate('n => n * 2', 21)}")
            say(f"frames   {[(frame.name or '(main)', frame.url) for frame in page.frames]}")
            child = page.frame("child")
            assert child is not None
            say(f"iframe   {await child.evaluate('document.body.textContent')!r}")
        say("browser closed; nothing left running")


def main() -> None:
    trio.run(run_demo)
