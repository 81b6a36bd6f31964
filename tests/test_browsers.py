"""browsers.lock, finding the Chromium executable, version checks and ``python -m cdp_wsroute install``."""

from __future__ import annotations

import dataclasses
import io
import os
import platform
import re
import stat
import subprocess
import sys
import tomllib
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import cdp_wsroute
from cdp_wsroute import BrowserVersionWarning, LaunchError, _browsers, launch
from cdp_wsroute._browsers import BrowserLock, check_version, find_executable, install, load_lock, parse_version

ROOT = Path(__file__).resolve().parent.parent
LOCK_FILE = ROOT / "browsers.lock"
ENV = "CDP_WSROUTE_CHROMIUM"
OTHER_VERSION = "120.0.6099.224"


@pytest.fixture(autouse=True)
def _no_env_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without $CDP_WSROUTE_CHROMIUM, whatever the caller's shell has."""
    monkeypatch.delenv(ENV, raising=False)


@pytest.fixture
def lock() -> BrowserLock:
    return load_lock()


def fake_chromium(path: Path, version: str = OTHER_VERSION) -> Path:
    """An executable script answering ``--version`` like Chromium does."""
    path.write_text(f'#!/bin/sh\necho "Chromium {version} built on Debian GNU/Linux 12 (bookworm)"\n')
    path.chmod(0o755)
    return path


def clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != ENV}


# -- browsers.lock ------------------------------------------------------------------------


def test_load_lock_matches_the_file(lock: BrowserLock) -> None:
    data = tomllib.loads(LOCK_FILE.read_text())["chromium"]
    assert dataclasses.asdict(lock) == data


def test_lock_is_self_consistent(lock: BrowserLock) -> None:
    assert parse_version(lock.version) == lock.version
    assert int(lock.version.split(".")[0]) == lock.major
    assert lock.debian_version.startswith(lock.version)
    assert os.path.isabs(lock.executable)
    assert lock.install_command[-1][-1] == lock.package


# -- find_executable ----------------------------------------------------------------------


def test_explicit_path_beats_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = fake_chromium(tmp_path / "explicit-chrome")
    from_env = fake_chromium(tmp_path / "env-chrome")
    monkeypatch.setenv(ENV, str(from_env))
    assert find_executable(explicit) == str(explicit)  # a PathLike is accepted
    assert find_executable(str(explicit)) == str(explicit)


def test_env_var_beats_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from_env = fake_chromium(tmp_path / "env-chrome")
    monkeypatch.setenv(ENV, str(from_env))
    assert find_executable() == str(from_env)
    assert find_executable(None) == str(from_env)


def test_env_var_name_is_looked_up_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_chromium(tmp_path / "my-chrome")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv(ENV, "my-chrome")
    assert find_executable() == str(tmp_path / "my-chrome")


def test_lock_executable_is_the_default(lock: BrowserLock) -> None:
    assert find_executable() == lock.executable


def test_empty_env_var_falls_back_to_lock(lock: BrowserLock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "")
    assert find_executable() == lock.executable


def assert_launch_error_hint(error: LaunchError, path: str, lock: BrowserLock) -> None:
    message = str(error)
    assert path in message
    assert "python -m cdp_wsroute install" in message
    assert f"{ENV}=" in message
    assert lock.version in message
    assert isinstance(error, cdp_wsroute.Error)


def test_missing_explicit_path_raises(tmp_path: Path, lock: BrowserLock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, str(fake_chromium(tmp_path / "env-chrome")))  # never consulted: the argument wins
    missing = tmp_path / "no" / "such" / "chrome"
    with pytest.raises(LaunchError) as info:
        find_executable(missing)
    assert_launch_error_hint(info.value, str(missing), lock)
    assert "executable_path" in str(info.value)


def test_non_executable_path_raises(tmp_path: Path, lock: BrowserLock) -> None:
    plain = fake_chromium(tmp_path / "chrome")
    plain.chmod(0o644)
    assert not plain.stat().st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    with pytest.raises(LaunchError) as info:
        find_executable(plain)
    assert_launch_error_hint(info.value, str(plain), lock)


def test_directory_path_raises(tmp_path: Path, lock: BrowserLock) -> None:
    with pytest.raises(LaunchError) as info:
        find_executable(tmp_path)
    assert_launch_error_hint(info.value, str(tmp_path), lock)


def test_missing_env_var_path_raises(tmp_path: Path, lock: BrowserLock, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = str(tmp_path / "gone-chrome")
    monkeypatch.setenv(ENV, missing)
    with pytest.raises(LaunchError) as info:
        find_executable()
    assert_launch_error_hint(info.value, missing, lock)
    assert f"${ENV}" in str(info.value)


def test_missing_lock_executable_raises(tmp_path: Path, lock: BrowserLock, monkeypatch: pytest.MonkeyPatch) -> None:
    moved = dataclasses.replace(lock, executable=str(tmp_path / "usr-lib-chromium"))
    monkeypatch.setattr(_browsers, "load_lock", lambda: moved)
    with pytest.raises(LaunchError) as info:
        find_executable()
    assert_launch_error_hint(info.value, moved.executable, moved)
    assert "browsers.lock" in str(info.value)


# -- versions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Chromium 156.0.8078.79 built on Debian GNU/Linux 12 (bookworm)\n", "156.0.8078.79"),
        ("Chromium 156.0.8078.79 \n", "156.0.8078.79"),
        ("Google Chrome 120.0.6099.224 \n", "120.0.6099.224"),
        ("HeadlessChrome/156.0.8078.79", "156.0.8078.79"),
        ("Chrome/121.0.6167.85", "121.0.6167.85"),
        ("no version here", None),
        ("Chromium 156.0", None),
        ("", None),
    ],
)
def test_parse_version(text: str, expected: str | None) -> None:
    assert parse_version(text) == expected


def test_check_version_warns_for_another_major(lock: BrowserLock) -> None:
    with pytest.warns(BrowserVersionWarning) as record:
        assert check_version(f"Chromium {OTHER_VERSION} built on Debian", lock) == OTHER_VERSION
    assert len(record) == 1
    message = str(record[0].message)
    assert OTHER_VERSION in message
    assert lock.version in message


def test_check_version_uses_the_lock_by_default(lock: BrowserLock) -> None:
    with pytest.warns(BrowserVersionWarning, match=re.escape(lock.version)) as record:
        assert check_version(f"HeadlessChrome/{OTHER_VERSION}") == OTHER_VERSION
    assert OTHER_VERSION in str(record[0].message)


def test_check_version_warns_when_the_lock_pins_another_major(lock: BrowserLock) -> None:
    old = dataclasses.replace(lock, major=1, version="1.2.3.4")
    with pytest.warns(BrowserVersionWarning) as record:
        check_version(f"Chrome/{lock.version}", old)
    message = str(record[0].message)
    assert "1.2.3.4" in message
    assert lock.version in message


@pytest.mark.parametrize("build", ["{version}", "{major}.0.1.2", "{major}.9.9999.999"])
def test_check_version_is_quiet_for_the_locked_major(build: str, lock: BrowserLock) -> None:
    version = build.format(version=lock.version, major=lock.major)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert check_version(f"Chromium {version} built on Debian", lock) == version
        assert check_version(f"HeadlessChrome/{version}", lock) == version
    assert caught == []


def test_check_version_without_a_version(lock: BrowserLock) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert check_version("not a browser", lock) is None
    assert caught == []


# -- install() ----------------------------------------------------------------------------


def forbid_subprocess(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(*args: Any, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        pytest.fail(f"install() ran a subprocess: {args} {kwargs}")

    monkeypatch.setattr(subprocess, "run", run)


def no_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(executable_path: object = None) -> str:
        raise LaunchError("Chromium executable '/nowhere/chromium' (from browsers.lock) was not found")

    monkeypatch.setattr(_browsers, "find_executable", missing)


def test_install_with_the_browser_present(lock: BrowserLock, monkeypatch: pytest.MonkeyPatch) -> None:
    real_version = subprocess.run([lock.executable, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"\d+\.\d+\.\d+\.\d+", real_version)
    assert match is not None, real_version
    commands: list[Sequence[str]] = []
    real_run = subprocess.run

    def recording_run(command: Sequence[str], *args: Any, **kwargs: Any) -> Any:
        commands.append(list(command))
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", recording_run)
    out = io.StringIO()
    assert install(out=out) == 0
    text = out.getvalue()
    assert "ready" in text
    assert lock.executable in text
    assert match.group(0) in text
    assert commands == [[lock.executable, "--version"]]  # nothing installed: the browser is there


def test_install_with_another_major_warns_but_succeeds(
    tmp_path: Path, lock: BrowserLock, monkeypatch: pytest.MonkeyPatch
) -> None:
    chrome = fake_chromium(tmp_path / "chrome")
    monkeypatch.setenv(ENV, str(chrome))
    out = io.StringIO()
    assert install(out=out) == 0
    text = out.getvalue()
    assert "warning" in text
    assert OTHER_VERSION in text
    assert lock.version in text
    assert str(chrome) in text
    assert "ready" not in text


def test_install_with_a_browser_that_has_no_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "not-chrome"
    script.write_text("#!/bin/sh\necho hello\n")
    script.chmod(0o755)
    monkeypatch.setenv(ENV, str(script))
    out = io.StringIO()
    assert install(out=out) == 1
    assert str(script) in out.getvalue()


@pytest.mark.parametrize(("system", "debian"), [("Linux", False), ("Darwin", True), ("Windows", False)])
def test_install_elsewhere_prints_the_hint(
    system: str, debian: bool, lock: BrowserLock, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_browser(monkeypatch)
    monkeypatch.setattr(_browsers, "_is_debian", lambda: debian)
    monkeypatch.setattr(platform, "system", lambda: system)
    forbid_subprocess(monkeypatch)
    out = io.StringIO()
    assert install(out=out) == 1
    text = out.getvalue()
    assert f"{ENV}=" in text
    assert lock.version in text
    assert "executable_path" in text


def test_install_on_debian_needs_root(lock: BrowserLock, monkeypatch: pytest.MonkeyPatch) -> None:
    no_browser(monkeypatch)
    monkeypatch.setattr(_browsers, "_is_debian", lambda: True)
    monkeypatch.setattr(platform, "system", lambda: "Linux")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    forbid_subprocess(monkeypatch)
    out = io.StringIO()
    assert install(out=out) == 1
    text = out.getvalue()
    assert "root" in text
    assert "sudo python -m cdp_wsroute install" in text


class FakeApt:
    """Stands in for subprocess.run: apt-get "installs" the browser, which then reports a version."""

    def __init__(self, executable: str, version: str, fail: str | None = None) -> None:
        self.executable = executable
        self.version = version
        self.fail = fail
        self.installed = False
        self.calls: list[tuple[list[str], dict[str, str] | None]] = []

    def run(self, command: Sequence[str], *args: Any, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        argv = list(command)
        self.calls.append((argv, kwargs.get("env")))
        if argv[0] == "apt-get":
            if argv[1] == self.fail:
                return subprocess.CompletedProcess(argv, 100, "", "E: failed")
            if argv[1] == "install":
                self.installed = True
            return subprocess.CompletedProcess(argv, 0, "", "")
        assert argv == [self.executable, "--version"], argv
        return subprocess.CompletedProcess(argv, 0, f"Chromium {self.version} built on Debian\n", "")

    def find_executable(self, executable_path: object = None) -> str:
        if not self.installed:
            raise LaunchError(f"Chromium executable {self.executable!r} (from browsers.lock) was not found")
        return self.executable


def debian_root(monkeypatch: pytest.MonkeyPatch, apt: FakeApt) -> None:
    monkeypatch.setattr(_browsers, "_is_debian", lambda: True)
    monkeypatch.setattr(platform, "system", lambda: "Linux")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(_browsers, "find_executable", apt.find_executable)
    monkeypatch.setattr(subprocess, "run", apt.run)


def test_install_on_debian_as_root_runs_apt(lock: BrowserLock, monkeypatch: pytest.MonkeyPatch) -> None:
    apt = FakeApt(lock.executable, lock.version)
    debian_root(monkeypatch, apt)
    out = io.StringIO()
    assert install(out=out) == 0
    assert [argv for argv, _ in apt.calls] == [*lock.install_command, [lock.executable, "--version"]]
    for argv, env in apt.calls[:2]:
        assert env is not None, argv
        assert env["DEBIAN_FRONTEND"] == "noninteractive"
    text = out.getvalue()
    assert "+ apt-get update" in text
    assert f"+ apt-get install -y --no-install-recommends {lock.package}" in text
    assert "ready" in text


def test_install_reports_a_failed_apt_get(lock: BrowserLock, monkeypatch: pytest.MonkeyPatch) -> None:
    apt = FakeApt(lock.executable, lock.version, fail="update")
    debian_root(monkeypatch, apt)
    out = io.StringIO()
    assert install(out=out) == 1
    assert [argv for argv, _ in apt.calls] == [["apt-get", "update"]]  # stops at the first failure
    text = out.getvalue()
    assert "`apt-get update` failed" in text
    assert f"{ENV}=" in text


# -- the command line ---------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdp_wsroute", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
    )


def test_cli_version(lock: BrowserLock) -> None:
    result = run_cli("version")
    assert result.returncode == 0, result.stderr
    assert f"cdp_wsroute {cdp_wsroute.__version__}" in result.stdout
    assert lock.version in result.stdout
    assert f"major {lock.major}" in result.stdout


def test_cli_install_with_the_browser_present(lock: BrowserLock) -> None:
    result = run_cli("install")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ready" in result.stderr
    assert lock.executable in result.stderr


def test_cli_without_a_command_is_a_usage_error() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "install" in result.stderr


# -- launch() -----------------------------------------------------------------------------


async def launch_and_evaluate() -> str:
    """Launch the browser, use it, close it; its version."""
    async with launch() as browser:
        page = await browser.new_page()
        assert await page.evaluate("n => n + 1", 41) == 42
        return browser.version


@pytest.mark.browser
async def test_launch_outside_the_lock_warns(lock: BrowserLock, monkeypatch: pytest.MonkeyPatch) -> None:
    pinned_elsewhere = dataclasses.replace(lock, major=1, version="1.0.0.0")
    monkeypatch.setattr(_browsers, "load_lock", lambda: pinned_elsewhere)
    with pytest.warns(BrowserVersionWarning) as record:
        version = await launch_and_evaluate()  # a warning, not a failure
    assert len(record) == 1
    running = version.removeprefix("Chromium/")
    assert parse_version(running) == running
    message = str(record[0].message)
    assert running in message
    assert "1.0.0.0" in message


@pytest.mark.browser
async def test_launch_of_the_locked_browser_does_not_warn() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with launch() as browser:
            assert browser.version.startswith("Chromium/")
    assert [w for w in caught if issubclass(w.category, BrowserVersionWarning)] == []
