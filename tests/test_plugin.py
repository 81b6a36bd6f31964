"""The pytest plugin's ``browser``/``context``/``page`` fixtures, run in inner pytest sessions (pytester)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.browser

INI = """
[pytest]
trio_mode = true
filterwarnings = error
addopts = -p no:cacheprovider
"""

# Each inner test records what it saw, one JSON line per test, in $RECORD.
# The browser's own pid comes from CDP (SystemInfo), so it names the process the test is really talking to.
INNER_TESTS = """
import json
import os

from cdp_wsroute import Browser, BrowserContext, Page


async def record(name: str, browser: Browser, context: BrowserContext, page: Page) -> None:
    info = await browser._root.send("SystemInfo.getProcessInfo")
    (pid,) = [p["id"] for p in info["processInfo"] if p["type"] == "browser"]
    target = await page._session.send("Target.getTargetInfo")
    contexts = await browser._root.send("Target.getBrowserContexts")
    line = {
        "test": name,
        "browser_pid": pid,
        "process_id": browser.process_id,
        "context_id": target["targetInfo"]["browserContextId"],
        "live_contexts": contexts["browserContextIds"],
    }
    with open(os.environ["RECORD"], "a") as f:
        f.write(json.dumps(line) + "\\n")


async def test_one(browser: Browser, context: BrowserContext, page: Page) -> None:
    assert page.context is context
    assert context.pages == [page]
    await page.goto("data:text/html,<title>one</title>")
    assert await page.evaluate("document.title") == "one"
    await record("one", browser, context, page)


async def test_two(browser: Browser, context: BrowserContext, page: Page) -> None:
    assert page.context is context
    assert context.pages == [page]
    assert page.url == "about:blank"
    await page.goto("data:text/html,<title>two</title>")
    assert await page.evaluate("n => n * 2", 21) == 42
    await record("two", browser, context, page)
"""


def run_inner(pytester: pytest.Pytester, tmp_path: Path, *args: str) -> tuple[pytest.RunResult, list[dict[str, Any]]]:
    record = tmp_path / "record.jsonl"
    pytester.makeini(INI)
    pytester.makepyfile(test_inner=INNER_TESTS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECORD", str(record))
        mp.delenv("CDP_WSROUTE_CHROMIUM", raising=False)
        result = pytester.runpytest_subprocess(*args, timeout=90)
    lines = record.read_text().splitlines() if record.exists() else []
    return result, [json.loads(line) for line in lines]


def process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie is dead too, only not reaped by its new parent yet


def test_shared_browser_fresh_contexts(pytester: pytest.Pytester, tmp_path: Path) -> None:
    result, records = run_inner(pytester, tmp_path)
    result.assert_outcomes(passed=2)
    one, two = records
    assert (one["test"], two["test"]) == ("one", "two")
    # One browser process serves the session; each test is connected to it (not launched: no process of its own).
    assert one["browser_pid"] == two["browser_pid"]
    assert one["process_id"] is None
    assert two["process_id"] is None
    # Each test gets its own context, and the first test's context was closed after it.
    assert one["context_id"] != two["context_id"]
    assert one["context_id"] in one["live_contexts"]
    assert one["context_id"] not in two["live_contexts"]
    assert two["context_id"] in two["live_contexts"]
    # The session's browser is gone with the session.
    assert process_gone(one["browser_pid"])


def test_fresh_browser_per_test(pytester: pytest.Pytester, tmp_path: Path) -> None:
    result, records = run_inner(pytester, tmp_path, "--cdp-wsroute-fresh-browser")
    result.assert_outcomes(passed=2)
    one, two = records
    assert one["browser_pid"] != two["browser_pid"]
    # Launched for the test: the Browser knows its own process.
    assert one["process_id"] == one["browser_pid"]
    assert two["process_id"] == two["browser_pid"]
    assert one["context_id"] != two["context_id"]
    assert process_gone(one["browser_pid"])
    assert process_gone(two["browser_pid"])


def test_explicit_executable(pytester: pytest.Pytester, tmp_path: Path) -> None:
    from cdp_wsroute._browsers import load_lock

    real = load_lock().executable
    calls = tmp_path / "calls"
    wrapper = tmp_path / "my-chrome"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {calls}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    result, records = run_inner(pytester, tmp_path, f"--cdp-wsroute-executable={wrapper}")
    result.assert_outcomes(passed=2)
    assert len(records) == 2
    flags = calls.read_text().splitlines()  # the wrapper ran, once, for the shared browser
    assert flags.count("--remote-debugging-port=0") == 1
    assert "--headless" in flags


def test_missing_executable_is_a_clear_error(pytester: pytest.Pytester, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-chrome")
    result, records = run_inner(pytester, tmp_path, f"--cdp-wsroute-executable={missing}")
    result.assert_outcomes(errors=2)
    assert records == []
    output = result.stdout.str()
    assert "LaunchError" in output
    assert missing in output
    assert "CDP_WSROUTE_CHROMIUM" in output
