"""Observation under load: every frame reported, once, in order, at full speed.

    python benchmarks/observe.py [--frames N] [--json PATH]      (nox -s bench runs it too)

One page echoes ``--frames`` 20-byte text frames as fast as the socket takes them,
natively (reported by Chromium's Network domain), through a mocked route and
through a pass-through route (reported by the route runtime), while Python listens
to ``page.on("websocket")`` and each WebSocket's ``framesent`` / ``framereceived``.
It prints frames per second each way and how many frames were lost, duplicated or
out of order (must be 0: the exit status is 1 otherwise).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import trio
import trio_websocket

from cdp_wsroute import Page, WebSocket, WebSocketRoute, launch
from cdp_wsroute._http import serve_http

MODES = ("native", "mock", "pass")
DEADLINE = 120.0  # seconds per mode, whatever happens

PAGE = """<!doctype html><script>
window.run = ([url, count]) => new Promise((resolve) => {
  const ws = new WebSocket(url);
  let got = 0;
  let start = 0;
  ws.onopen = () => {
    start = performance.now();
    for (let i = 0; i < count; i++) ws.send(String(i).padStart(20, '0'));
  };
  ws.onmessage = () => {
    if (++got === count) {
      const ms = performance.now() - start;
      ws.close();
      resolve(ms);
    }
  };
});
</script>"""


async def echo(request: trio_websocket.WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except trio_websocket.ConnectionClosed:
        pass


@asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        listener = await nursery.start(trio_websocket.serve_websocket, echo, "127.0.0.1", 0, None)
        yield listener.port
        nursery.cancel_scope.cancel()


def mock(route: WebSocketRoute) -> None:
    route.on_message(route.send)


def pass_through(route: WebSocketRoute) -> None:
    route.connect_to_server()


def problems(frames: list[str | bytes], count: int) -> int:
    """Frames lost, duplicated or out of place."""
    expected = [str(i).zfill(20) for i in range(count)]  # the page's String(i).padStart(20, '0')
    return sum(1 for got, want in zip(frames, expected, strict=False) if got != want) + abs(len(frames) - count)


async def measure(page: Page, url: str, mode: str, count: int) -> dict[str, float | int | str]:
    if mode == "mock":
        await page.route_web_socket("**/observed", mock)
    elif mode == "pass":
        await page.route_web_socket("**/observed", pass_through)
    sent: list[str | bytes] = []
    received: list[str | bytes] = []
    all_reported = trio.Event()

    def recorder(frames: list[str | bytes]) -> Callable[[str | bytes], None]:
        def record(payload: str | bytes) -> None:
            frames.append(payload)
            if len(sent) >= count and len(received) >= count:
                all_reported.set()

        return record

    def on_websocket(ws: WebSocket) -> None:
        ws.on("framesent", recorder(sent))
        ws.on("framereceived", recorder(received))

    page.on("websocket", on_websocket)
    with trio.fail_after(DEADLINE):
        ms: float = await page.evaluate("(a) => run(a)", [url, count])
        await all_reported.wait()  # reporting may trail the page by a few events
    page.remove_listener("websocket", on_websocket)
    return {
        "mode": mode,
        "frames": count,
        "ms": round(ms, 1),
        "frames_per_s_each_way": round(count / ms * 1000),
        "problems_sent": problems(sent, count),
        "problems_received": problems(received, count),
    }


async def run_all(count: int) -> list[dict[str, float | int | str]]:
    results = []
    async with launch() as browser, serve_http() as http, echo_server() as port:
        http.route("/", PAGE)
        for mode in MODES:
            page = await browser.new_page()
            await page.goto(http.url("/"))
            results.append(await measure(page, f"ws://127.0.0.1:{port}/observed", mode, count))
            await page.close()
    return results


def main(count: int, out: Path | None) -> int:
    results = trio.run(run_all, count)
    for result in results:
        print(
            f"observe {result['mode']:<6} {result['frames_per_s_each_way']:>8,} frames/s each way  "
            f"lost/duplicated/reordered: sent {result['problems_sent']}, received {result['problems_received']}"
        )
    if out is not None:
        out.write_text(json.dumps(results, indent=2))
    return 1 if any(r["problems_sent"] or r["problems_received"] for r in results) else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sys.exit(main(args.frames, args.json))
