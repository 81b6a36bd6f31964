"""launch() and connect() against a real Chromium: processes, temp dirs, failures, transports, protocol drift.

Process bookkeeping reads /proc. "The browser's processes" are everything in its process
group or session, its descendants, and anything whose initial environment carries a tag
unique to the test (Chromium's crashpad handlers leave the group and the process tree,
but keep the environment). A process counts as gone when /proc has no entry for it, a
different process now has its pid, or it is a zombie (an orphan already reparented to
PID 1, which may not reap it); the browser itself, our own child, must be reaped.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import pytest
import trio
import trio.testing

import cdp_wsroute
from cdp_wsroute import (
    Browser,
    BrowserContext,
    ConnectionClosedError,
    LaunchError,
    Page,
    TargetClosedError,
    connect,
    launch,
)
from cdp_wsroute._browsers import find_executable
from cdp_wsroute._process import BrowserProcess
from cdp_wsroute._pytest_plugin import _read_port_file
from tests.support import closed_port, eventually

pytestmark = pytest.mark.browser

TAG_VARIABLE = "CDP_WSROUTE_TEST_LAUNCH_TAG"

# How long processes may take to disappear after being SIGKILLed (or losing their pipe): the
# kernel finishes a killed process asynchronously, so /proc is polled until this deadline.
EXIT_DEADLINE = 10.0


# -- /proc ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    pgrp: int
    session: int
    state: str
    start_time: int


def proc_info(pid: int) -> ProcInfo | None:
    """The process's /proc/<pid>/stat, None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after the last ")".
    rest = text[text.rindex(")") + 2 :].split()
    return ProcInfo(
        pid=pid,
        ppid=int(rest[1]),
        pgrp=int(rest[2]),
        session=int(rest[3]),
        state=rest[0],
        start_time=int(rest[19]),
    )


def all_processes() -> list[ProcInfo]:
    infos = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = proc_info(int(entry))
            if info is not None:
                infos.append(info)
    return infos


def has_tag(pid: int, tag: str) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{TAG_VARIABLE}={tag}".encode() in environ.split(b"\0")


def is_live(info: ProcInfo | None) -> bool:
    return info is not None and info.state not in ("Z", "X", "x")


def browser_processes(leader: int, tag: str | None = None) -> dict[int, int]:
    """The live processes of the browser led by ``leader``: pid -> start time."""
    infos = all_processes()
    children: dict[int, list[int]] = {}
    for info in infos:
        children.setdefault(info.ppid, []).append(info.pid)
    found = {info.pid for info in infos if leader in (info.pgrp, info.session)}
    descendants: set[int] = set()
    stack = [leader]
    while stack:
        pid = stack.pop()
        if pid not in descendants:
            descendants.add(pid)
            stack.extend(children.get(pid, []))
    found |= descendants
    if tag is not None:
        found |= {info.pid for info in infos if info.pid != os.getpid() and has_tag(info.pid, tag)}
    by_pid = {info.pid: info for info in infos}
    return {pid: by_pid[pid].start_time for pid in found if pid in by_pid and is_live(by_pid[pid])}


def survivors(processes: dict[int, int], leader: int) -> list[int]:
    """Which of ``processes`` still run, plus any live member of the leader's group or session."""
    left = []
    for pid, start_time in processes.items():
        info = proc_info(pid)
        if is_live(info) and info is not None and info.start_time == start_time:
            left.append(pid)
    for info in all_processes():
        if leader in (info.pgrp, info.session) and is_live(info) and info.pid not in left:
            left.append(info.pid)
    return sorted(left)


def describe(pids: list[int]) -> str:
    lines = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            cmdline = "?"
        lines.append(f"{pid} {proc_info(pid)}: {cmdline[:200]}")
    return "\n".join(lines)


def is_reaped(pid: int, start_time: int) -> bool:
    """True when our child ``pid`` has been waited for: no /proc entry (not even a zombie)."""
    info = proc_info(pid)
    return info is None or info.start_time != start_time


async def assert_all_gone(processes: dict[int, int], leader: int) -> None:
    """Every one of ``processes`` and of the leader's group exits within EXIT_DEADLINE."""
    # Polling is unavoidable here: the kernel tears killed processes down asynchronously.
    with trio.move_on_after(EXIT_DEADLINE):
        while survivors(processes, leader):
            await trio.sleep(0.01)
    left = survivors(processes, leader)
    assert not left, f"still running {EXIT_DEADLINE}s later:\n{describe(left)}"


@pytest.fixture
def tag(monkeypatch: pytest.MonkeyPatch) -> str:
    """A unique value in the environment the browsers of this test inherit."""
    value = uuid.uuid4().hex
    monkeypatch.setenv(TAG_VARIABLE, value)
    return value


@dataclass
class Snapshot:
    leader: int
    leader_start: int
    temp_dir: str
    processes: dict[int, int] = field(default_factory=dict)


def snapshot(browser: Browser, tag: str) -> Snapshot:
    """The launched browser's pid, temp dir and processes, checked for plausibility."""
    leader = browser.process_id
    assert leader is not None
    assert browser._process is not None
    temp_dir = browser._process.temp_dir
    assert os.path.isdir(temp_dir)
    assert os.path.isdir(os.path.join(temp_dir, "profile"))
    info = proc_info(leader)
    assert is_live(info)
    assert info is not None
    assert info.pgrp == leader, "the browser leads its own process group"
    assert info.session == leader, "the browser leads its own session"
    processes = browser_processes(leader, tag)
    assert leader in processes
    # Chromium with a page open runs a zygote, a renderer and utility processes besides itself.
    assert len(processes) >= 3, describe(sorted(processes))
    return Snapshot(leader, info.start_time, temp_dir, processes)


def path_exists(path: str | Path) -> bool:
    return os.path.exists(path)


def directory_entries(path: Path) -> list[Path]:
    return list(path.iterdir())


async def assert_cleaned_up(snap: Snapshot) -> None:
    assert is_reaped(snap.leader, snap.leader_start), "the browser process was not reaped"
    assert not path_exists(snap.temp_dir), "the temporary profile was not removed"
    await assert_all_gone(snap.processes, snap.leader)


# -- launch(): the block owns the browser ------------------------------------------------


class Boom(Exception):
    pass


@pytest.mark.parametrize("how", ["normal", "exception", "cancel"])
async def test_launch_block_exit_leaves_nothing(how: Literal["normal", "exception", "cancel"], tag: str) -> None:
    snaps: list[Snapshot] = []
    pages: list[Page] = []
    browsers: list[Browser] = []
    boom = Boom("raised inside the block")
    leaving: list[float] = []

    async def use_browser(scope: trio.CancelScope) -> None:
        async with launch() as browser:
            browsers.append(browser)
            assert browser.version.startswith("Chromium/156."), browser.version
            assert browser.is_connected()
            page = await browser.new_page()
            pages.append(page)
            assert await page.evaluate("6 * 7") == 42
            snaps.append(snapshot(browser, tag))
            leaving.append(trio.current_time())
            if how == "exception":
                raise boom
            if how == "cancel":
                scope.cancel()
                # Cancelled while a command is pending in the browser.
                await page.evaluate("new Promise(() => {})")
                pytest.fail("the evaluate should have been cancelled")

    with trio.CancelScope() as scope:
        if how == "exception":
            with pytest.raises(Boom) as excinfo:
                await use_browser(scope)
            assert excinfo.value is boom, "the block's own exception propagates unchanged (not in a group)"
        else:
            await use_browser(scope)
    left_after = trio.current_time() - leaving[0]
    assert scope.cancelled_caught == (how == "cancel")
    assert len(snaps) == 1
    # Closing a healthy browser takes a fraction of a second; 5 s would mean a fallback timeout ran out.
    assert left_after < 5, f"leaving the block ({how}) took {left_after:.1f}s"
    assert not browsers[0].is_connected()
    assert pages[0].is_closed()
    await assert_cleaned_up(snaps[0])


async def test_close_inside_block_is_idempotent_and_later_calls_fail(tag: str) -> None:
    async with launch() as browser:
        context = await browser.new_context()
        page = await context.new_page()
        snap = snapshot(browser, tag)
        disconnected = trio.Event()
        page_closed = trio.Event()
        browser.on("disconnected", lambda _browser: disconnected.set())
        page.on("close", lambda _page: page_closed.set())
        pending_errors: list[BaseException] = []

        async def pending_call() -> None:
            try:
                await page.evaluate("new Promise(() => {})")
            except BaseException as exc:
                pending_errors.append(exc)
                raise

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_expect_target_closed, pending_call)
                await trio.testing.wait_all_tasks_blocked()  # the evaluate is in flight
                await browser.close()
            await disconnected.wait()
            await page_closed.wait()
        assert len(pending_errors) == 1
        assert isinstance(pending_errors[0], TargetClosedError)
        assert not browser.is_connected()
        assert page.is_closed()
        # close() waited for the browser to exit (and reaped it).
        assert is_reaped(snap.leader, snap.leader_start)

        await browser.close()  # again: nothing happens
        with pytest.raises(TargetClosedError):
            await page.evaluate("1")
        with pytest.raises(TargetClosedError):
            await page.goto("data:text/html,x")
        with pytest.raises(TargetClosedError):
            await browser.new_page()
        with pytest.raises(TargetClosedError):
            await browser.new_context()
        with pytest.raises(TargetClosedError):
            await context.new_page()
    await assert_cleaned_up(snap)


async def _expect_target_closed(call: Callable[[], Any]) -> None:
    with pytest.raises(TargetClosedError):
        await call()


async def test_killed_browser_fails_pending_calls_promptly(tag: str) -> None:
    async with launch() as browser:
        page = await browser.new_page()
        assert await page.evaluate("1 + 1") == 2
        snap = snapshot(browser, tag)
        page_closed = trio.Event()
        disconnected = trio.Event()
        page.on("close", lambda _page: page_closed.set())
        browser.on("disconnected", lambda _browser: disconnected.set())
        errors: list[BaseException] = []

        async def record(call: Callable[[], Any]) -> None:
            try:
                await call()
            except TargetClosedError as exc:
                errors.append(exc)
            else:
                pytest.fail("a call pending in a killed browser returned")

        with trio.fail_after(10):  # a hang would be the bug
            async with trio.open_nursery() as nursery:
                nursery.start_soon(record, partial(page.evaluate, "new Promise(() => {})"))
                nursery.start_soon(record, partial(page.wait_for_function, "false", timeout=0))
                await trio.testing.wait_all_tasks_blocked()  # both are waiting for the browser
                os.kill(snap.leader, signal.SIGKILL)
            await page_closed.wait()
            await disconnected.wait()
        assert len(errors) == 2
        assert all(isinstance(error, (TargetClosedError, ConnectionClosedError)) for error in errors)
        assert not browser.is_connected()
        assert page.is_closed()
        with pytest.raises(TargetClosedError):
            await page.evaluate("1")
        with pytest.raises(TargetClosedError):
            await browser.new_page()
    await assert_cleaned_up(snap)


async def test_pipe_carries_32_mib_message() -> None:
    size = 32 * 1024 * 1024
    async with launch() as browser:
        page = await browser.new_page()
        with trio.fail_after(60):
            received = await page.evaluate("'abcdefgh'.repeat(4 * 1024 * 1024) + '!'")
            assert isinstance(received, str)
            assert len(received) == size + 1
            assert received == "abcdefgh" * (4 * 1024 * 1024) + "!"
            # And a big one the other way (several pipe buffers' worth).
            sent = "0123456789abcdef" * (256 * 1024) + "?"
            assert await page.evaluate("s => s.length + ':' + s.slice(-3)", sent) == f"{len(sent)}:ef?"
            # The connection is still healthy afterwards.
            assert await page.evaluate("'after'") == "after"


# -- launch failures -------------------------------------------------------------------------


@pytest.fixture
def private_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where launch() makes its temporary directory in this test (to check it is removed)."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def read_pid(path: Path) -> int:
    return int(path.read_text().strip())


@pytest.mark.parametrize("kind", ["missing", "not_executable"])
async def test_launch_unusable_executable(kind: str, tmp_path: Path, private_tempdir: Path) -> None:
    executable = tmp_path / "no-such-chromium"
    if kind == "not_executable":
        executable.write_text("#!/bin/sh\nexit 0\n")
        executable.chmod(0o644)
    with trio.fail_after(5), pytest.raises(LaunchError) as excinfo:
        async with launch(executable_path=executable):
            pytest.fail("launched a browser that cannot exist")
    assert str(executable) in str(excinfo.value)
    assert directory_entries(private_tempdir) == []


async def test_launch_executable_that_cannot_be_spawned(tmp_path: Path, private_tempdir: Path) -> None:
    # Executable, but not a program the kernel can run (no shebang, not ELF): posix_spawn fails.
    executable = tmp_path / "garbage"
    executable.write_bytes(b"\x7fELF not really\n")
    executable.chmod(0o755)
    with trio.fail_after(5), pytest.raises(LaunchError) as excinfo:
        async with launch(executable_path=executable):
            pytest.fail("launched garbage")
    assert str(executable) in str(excinfo.value)
    assert directory_entries(private_tempdir) == []


async def test_launch_executable_that_exits_at_once(tmp_path: Path, private_tempdir: Path) -> None:
    pid_file = tmp_path / "pid"
    executable = write_script(
        tmp_path / "fake-chromium",
        f"echo $$ > {pid_file}\n"
        "echo 'fake-chromium: first complaint' >&2\n"
        "echo 'fake-chromium: Missing X server or $DISPLAY (exit 3)' >&2\n"
        "exit 3\n",
    )
    start = trio.current_time()
    with trio.fail_after(10), pytest.raises(LaunchError) as excinfo:
        async with launch(executable_path=executable):
            pytest.fail("a browser that exits at once was reported as launched")
    assert trio.current_time() - start < 5, "noticing the exit must not wait for the launch timeout"
    message = str(excinfo.value)
    assert str(executable) in message
    assert "--remote-debugging-pipe" in message
    assert "--user-data-dir=" in message
    assert "fake-chromium: first complaint" in message
    assert "fake-chromium: Missing X server or $DISPLAY (exit 3)" in message
    pid = read_pid(pid_file)
    assert proc_info(pid) is None, "the exited browser was not reaped"
    assert directory_entries(private_tempdir) == []


async def test_launch_executable_that_never_answers(tmp_path: Path, private_tempdir: Path) -> None:
    pid_file = tmp_path / "pid"
    executable = write_script(
        tmp_path / "silent-chromium",
        f"echo $$ > {pid_file}\necho 'silent-chromium: waiting for nothing' >&2\nsleep 60\nexit 0\n",
    )
    timeout = 1.5
    start = trio.current_time()
    with trio.fail_after(15), pytest.raises(LaunchError) as excinfo:
        async with launch(executable_path=executable, timeout=timeout):
            pytest.fail("a browser that never answers was reported as launched")
    elapsed = trio.current_time() - start
    assert timeout <= elapsed < timeout + 5
    message = str(excinfo.value)
    assert str(executable) in message
    assert "--remote-debugging-pipe" in message
    assert "--user-data-dir=" in message
    assert "silent-chromium: waiting for nothing" in message
    leader = read_pid(pid_file)
    assert proc_info(leader) is None, "the hung browser was not killed and reaped"
    assert directory_entries(private_tempdir) == []
    # Its child (the sleep) was in its process group and must not outlive it.
    await assert_all_gone({}, leader)


# -- the browser dies with its owner ---------------------------------------------------------

OWNER_SCRIPT = """
import trio
from cdp_wsroute import launch

async def main() -> None:
    async with launch() as browser:
        await browser.new_page()
        print(browser.process_id, flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
async def test_browser_dies_with_its_owner(signum: signal.Signals, tag: str) -> None:
    leader: int | None = None
    try:
        async with trio.open_nursery() as nursery:
            owner: trio.Process = await nursery.start(
                partial(
                    trio.run_process,
                    [sys.executable, "-c", OWNER_SCRIPT],
                    stdout=subprocess.PIPE,
                    check=False,
                )
            )
            assert owner.stdout is not None
            output = b""
            with trio.fail_after(60):
                while not output.endswith(b"\n"):
                    chunk = await owner.stdout.receive_some()
                    assert chunk, f"the owner exited before printing the browser pid: {output!r}"
                    output += chunk
            leader = int(output)
            processes = browser_processes(leader, tag)
            assert leader in processes
            assert owner.pid in processes, "the owner carries the tag too"
            assert len(processes) >= 4, describe(sorted(processes))
            assert proc_info(leader) is not None
            owner.send_signal(signum)
            with trio.fail_after(10):
                status = await owner.wait()
            assert status == -signum
        await assert_all_gone(processes, leader)
    finally:
        if leader is not None:  # on failure, do not leave a browser behind
            try:
                os.killpg(leader, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


# -- connect() ----------------------------------------------------------------------------------


@dataclass
class DevToolsBrowser:
    """A Chromium we started ourselves, listening on a loopback DevTools port."""

    process: BrowserProcess
    port: int
    ws_url: str

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def devtools_browser() -> AsyncIterator[DevToolsBrowser]:
    process = BrowserProcess.spawn(find_executable(), args=("--remote-debugging-port=0",))
    try:
        port_file = process.user_data_dir / "DevToolsActivePort"

        def written() -> bool:
            assert process.poll() is None, f"Chromium exited:\n{process.stderr_tail()}"
            return _read_port_file(port_file) is not None

        # Polling is unavoidable: Chromium writes the file and tells nobody.
        await eventually(written, "Chromium's DevToolsActivePort file", timeout=30)
        endpoint = _read_port_file(port_file)
        assert endpoint is not None
        port = int(endpoint.rsplit(":", 1)[1].split("/", 1)[0])
        yield DevToolsBrowser(process, port, endpoint)
    finally:
        process.cleanup()


async def get_json(url: str) -> Any:
    def fetch() -> Any:
        with urllib.request.urlopen(url, timeout=10) as response:  # loopback only
            return json.load(response)

    return await trio.to_thread.run_sync(fetch)


async def page_titles(devtools: DevToolsBrowser) -> list[str]:
    targets = await get_json(devtools.http_url + "/json/list")
    return [str(target.get("title", "")) for target in targets if target.get("type") == "page"]


async def browser_context_ids(browser: Browser) -> list[str]:
    result = await browser._root.send("Target.getBrowserContexts")
    return [str(context_id) for context_id in result["browserContextIds"]]


@pytest.mark.parametrize("endpoint", ["http", "ws"])
async def test_connect_uses_and_leaves_a_running_browser(
    endpoint: Literal["http", "ws"], devtools_browser: DevToolsBrowser
) -> None:
    url = devtools_browser.http_url if endpoint == "http" else devtools_browser.ws_url
    marker = f"connect-{endpoint}-{uuid.uuid4().hex}"
    with trio.fail_after(60):
        async with connect(url) as browser:
            assert browser.version.startswith("Chromium/156."), browser.version
            assert browser.process_id is None
            contexts_before = await browser_context_ids(browser)
            assert len(browser.contexts) == 1
            default = browser.contexts[0]
            assert isinstance(default, BrowserContext)

            context = await browser.new_context()
            assert browser.contexts == [default, context]
            page = await context.new_page()
            assert context.pages == [page]
            assert page.context is context
            await page.goto(f"data:text/html,<title>{marker}</title>")
            assert await page.evaluate("document.title") == marker
            assert await page.evaluate("n => n * 2", 21) == 42

            # A page of the browser's default context: not one of ours to dispose.
            default_page = await default.new_page()
            assert default_page.context is default
            assert default_page in default.pages
            assert await default_page.evaluate("1 + 2") == 3
            await default_page.close()
            assert default_page.is_closed()

            assert len(await browser_context_ids(browser)) == len(contexts_before) + 1
            assert marker in await page_titles(devtools_browser)
            page_closed = trio.Event()
            page.on("close", lambda _page: page_closed.set())
        assert page_closed.is_set()
        assert page.is_closed()
        assert not browser.is_connected()

        # The browser keeps running, without our context or its page.
        assert devtools_browser.process.poll() is None
        assert marker not in await page_titles(devtools_browser)
        async with connect(devtools_browser.ws_url) as again:
            assert await browser_context_ids(again) == contexts_before
            page = await again.new_page()
            assert await page.evaluate("'still alive'") == "still alive"
        assert devtools_browser.process.poll() is None


async def test_connect_carries_big_frames_through_a_route(devtools_browser: DevToolsBrowser) -> None:
    """Over the WebSocket transport too, the tunnel's big commands (built as UTF-8 pieces) arrive whole."""
    with trio.fail_after(60):
        async with connect(devtools_browser.ws_url) as browser:
            page = await (await browser.new_context()).new_page()
            url = f"ws://127.0.0.1:{closed_port()}/echo"
            await page.route_web_socket(url, lambda route: route.on_message(route.send))
            await page.goto("data:text/html,<title>big frames</title>")
            result = await page.evaluate(
                """async (url) => {
                    const ws = new WebSocket(url);
                    ws.binaryType = "arraybuffer";
                    await new Promise((resolve) => { ws.onopen = resolve; });
                    const data = new Uint8Array(3 << 20).map((_, i) => (i * 7) % 251);
                    const text = "é" + "x".repeat(400000) + String.fromCharCode(34, 92); // a quote, a backslash
                    const got = [];
                    const done = new Promise((resolve) => {
                        ws.onmessage = (event) => { got.push(event.data); if (got.length === 2) resolve(); };
                    });
                    ws.send(data);
                    ws.send(text);
                    await done;
                    const back = new Uint8Array(got[0]);
                    return [back.length, back.every((v, i) => v === data[i]), got[1] === text];
                }""",
                url,
            )
    assert result == [3 << 20, True, True]


CANCELLED_CONNECT_SCRIPT = """
import sys
import time

import trio
from cdp_wsroute import connect

async def main() -> None:
    with trio.CancelScope() as scope:
        async with connect(sys.argv[1]) as browser:
            context = await browser.new_context()
            page = await context.new_page()
            assert await page.evaluate("1 + 1") == 2
            started = time.monotonic()
            scope.cancel()
            await page.evaluate("new Promise(() => {})")
    assert scope.cancelled_caught
    print(f"left {time.monotonic() - started:.3f}", flush=True)

trio.run(main)
"""


async def test_connect_block_left_by_cancellation(devtools_browser: DevToolsBrowser) -> None:
    async with connect(devtools_browser.ws_url) as browser:
        contexts_before = await browser_context_ids(browser)
    # In a child process: a cleanup that hangs inside a shielded scope could not be interrupted here.
    with trio.move_on_after(15) as guard:
        result = await trio.run_process(
            [sys.executable, "-c", CANCELLED_CONNECT_SCRIPT, devtools_browser.ws_url],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert not guard.cancelled_caught, "leaving a cancelled connect() block hangs (child killed after 15s)"
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    left_after = float(result.stdout.decode().split()[-1])
    assert left_after < 5, f"leaving a cancelled connect() block took {left_after:.1f}s"
    assert devtools_browser.process.poll() is None
    async with connect(devtools_browser.ws_url) as browser:
        assert await browser_context_ids(browser) == contexts_before
        page = await browser.new_page()
        assert await page.evaluate("'still alive'") == "still alive"


@pytest.mark.parametrize("scheme", ["http", "ws"])
async def test_connect_to_closed_port_fails_quickly(scheme: str) -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}" if scheme == "http" else f"ws://127.0.0.1:{port}/devtools/browser/x"
    start = trio.current_time()
    with trio.fail_after(10), pytest.raises(LaunchError) as excinfo:
        async with connect(url):
            pytest.fail("connected to a closed port")
    assert trio.current_time() - start < 5
    assert str(port) in str(excinfo.value)


# -- drift guard: the CDP the library speaks exists in the browser -----------------------------

_CDP_NAME = re.compile(r"^[A-Z][A-Za-z]*\.[a-z][A-Za-z]*$")
_COMMAND_CALLS = {"send", "send_nowait"}
_EVENT_CALLS = {"on", "once", "listen"}


@dataclass
class CDPUsage:
    commands: dict[str, set[str]] = field(default_factory=dict)  # method -> parameter names passed
    events: set[str] = field(default_factory=set)
    where: dict[str, str] = field(default_factory=dict)


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    if isinstance(call.func, ast.Name):  # e.g. `on = session.on; on("Page.frameAttached", ...)`
        return call.func.id
    return None


def _constant_str(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _dict_keys(node: ast.AST) -> set[str]:
    if not isinstance(node, ast.Dict):
        return set()
    return {key for key in (_constant_str(k) for k in node.keys if k is not None) if key is not None}


def _keys_of_variable(scope: ast.AST, name: str) -> set[str]:
    """Keys a function gives the dict variable ``name``: literal assignments and ``name["key"] = ...``."""
    keys: set[str] = set()
    for node in ast.walk(scope):
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign):
            targets, value = [node.target], node.value
        for target in targets:
            if isinstance(target, ast.Name) and target.id == name and value is not None:
                keys |= _dict_keys(value)
            if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) and target.value.id == name:
                key = _constant_str(target.slice)
                if key is not None:
                    keys.add(key)
    return keys


def _calls_with_scopes(node: ast.AST, scope: ast.AST) -> list[tuple[ast.Call, ast.AST]]:
    """Every call under ``node``, with its innermost enclosing function (or the module)."""
    found: list[tuple[ast.Call, ast.AST]] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Call):
            found.append((child, scope))
        inner = child if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) else scope
        found.extend(_calls_with_scopes(child, inner))
    return found


def library_cdp_usage() -> CDPUsage:
    usage = CDPUsage()
    package = Path(cdp_wsroute.__file__).parent
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for call, scope in _calls_with_scopes(tree, tree):
            name = _called_name(call)
            if name in _COMMAND_CALLS and call.args:
                method = _constant_str(call.args[0])
                if method is None or not _CDP_NAME.match(method):
                    continue
                params: ast.expr | None = call.args[1] if len(call.args) > 1 else None
                for keyword in call.keywords:
                    if keyword.arg == "params":
                        params = keyword.value
                keys = _dict_keys(params) if params is not None else set()
                if isinstance(params, ast.Name):
                    keys = _keys_of_variable(scope, params.id)
                usage.commands.setdefault(method, set()).update(keys)
                usage.where.setdefault(method, f"{path.name}:{call.lineno}")
            elif name in _EVENT_CALLS:
                for arg in call.args:
                    event = _constant_str(arg)
                    if event is not None and _CDP_NAME.match(event):
                        usage.events.add(event)
                        usage.where.setdefault(event, f"{path.name}:{call.lineno}")
    return usage


def test_cdp_usage_scan_finds_what_the_library_uses() -> None:
    usage = library_cdp_usage()
    for method in (
        "Browser.getVersion",
        "Browser.close",
        "Page.navigate",
        "Runtime.callFunctionOn",
        "Runtime.runIfWaitingForDebugger",
        "Target.setAutoAttach",
        "Target.createTarget",
        "Target.createBrowserContext",
    ):
        assert method in usage.commands, method
    for event in ("Target.attachedToTarget", "Target.detachedFromTarget", "Page.frameNavigated"):
        assert event in usage.events, event
    assert {"url", "frameId"} <= usage.commands["Page.navigate"]
    assert {"autoAttach", "waitForDebuggerOnStart", "flatten"} <= usage.commands["Target.setAutoAttach"]
    # Built up in a variable before being sent: found through the variable.
    assert {"url", "browserContextId"} <= usage.commands["Target.createTarget"]
    assert len(usage.commands) >= 15
    assert all(_CDP_NAME.match(name) for name in [*usage.commands, *usage.events])


async def test_cdp_the_library_uses_exists_in_the_browser(devtools_browser: DevToolsBrowser) -> None:
    usage = library_cdp_usage()
    assert usage.commands
    assert usage.events
    protocol = await get_json(devtools_browser.http_url + "/json/protocol")
    domains = {domain["domain"]: domain for domain in protocol["domains"]}
    assert "Page" in domains
    assert "Target" in domains
    problems: list[str] = []
    for method, params in sorted(usage.commands.items()):
        domain_name, command_name = method.split(".")
        domain = domains.get(domain_name)
        commands = {command["name"]: command for command in (domain or {}).get("commands", [])}
        command = commands.get(command_name)
        if command is None:
            problems.append(f"command {method} ({usage.where[method]}) is not in the browser's protocol")
            continue
        known = {parameter["name"] for parameter in command.get("parameters", [])}
        for param in sorted(params - known):
            problems.append(f"command {method} ({usage.where[method]}) has no parameter {param!r}")
    for event in sorted(usage.events):
        domain_name, event_name = event.split(".")
        domain = domains.get(domain_name)
        if event_name not in {e["name"] for e in (domain or {}).get("events", [])}:
            problems.append(f"event {event} ({usage.where[event]}) is not in the browser's protocol")
    assert not problems, "\n".join(problems)
