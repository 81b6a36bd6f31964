"""Which Chromium to run: browsers.lock, finding the executable, installing it.

``browsers.lock`` (TOML, at the repository root and inside the wheel) names the
Chromium the project is tested with. :func:`find_executable` resolves the binary
to run; :func:`install` puts it on a Debian machine; :func:`check_version`
warns when a browser outside the lock is used.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tomllib
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ._errors import LaunchError

__all__ = [
    "BrowserLock",
    "BrowserVersionWarning",
    "check_version",
    "find_executable",
    "install",
    "load_lock",
]

ENV_EXECUTABLE = "CDP_WSROUTE_CHROMIUM"


class BrowserVersionWarning(UserWarning):
    """The browser in use is not the major version browsers.lock accepts."""


@dataclass(frozen=True)
class BrowserLock:
    """The contents of browsers.lock."""

    source: str
    package: str
    version: str
    debian_version: str
    major: int
    protocol_version: str
    executable: str

    @property
    def install_command(self) -> list[list[str]]:
        return [["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", self.package]]


def _lock_text() -> str:
    packaged = resources.files("cdp_wsroute").joinpath("browsers.lock")
    if packaged.is_file():
        return packaged.read_text()
    # A source checkout (editable install): the file sits at the repository root.
    return (Path(__file__).resolve().parent.parent / "browsers.lock").read_text()


def load_lock() -> BrowserLock:
    data = tomllib.loads(_lock_text())["chromium"]
    return BrowserLock(
        source=str(data["source"]),
        package=str(data["package"]),
        version=str(data["version"]),
        debian_version=str(data["debian_version"]),
        major=int(data["major"]),
        protocol_version=str(data["protocol_version"]),
        executable=str(data["executable"]),
    )


def find_executable(executable_path: str | os.PathLike[str] | None = None) -> str:
    """The Chromium binary to run: the argument, then $CDP_WSROUTE_CHROMIUM, then the lock's.

    Raises:
        LaunchError: no usable executable, with what to install and how.
    """
    lock = load_lock()
    if executable_path is not None:
        candidate, origin = os.fspath(executable_path), "executable_path"
    elif os.environ.get(ENV_EXECUTABLE):
        candidate, origin = os.environ[ENV_EXECUTABLE], f"${ENV_EXECUTABLE}"
    else:
        candidate, origin = lock.executable, "browsers.lock"
    resolved = candidate if os.sep in candidate else shutil.which(candidate)
    if resolved and os.path.isfile(resolved) and os.access(resolved, os.X_OK):
        return resolved
    raise LaunchError(
        f"Chromium executable {candidate!r} (from {origin}) was not found or is not executable.\n{install_hint(lock)}"
    )


def install_hint(lock: BrowserLock | None = None) -> str:
    lock = lock or load_lock()
    return (
        f"cdp_wsroute is tested with Chromium {lock.version} (any {lock.major}.x is accepted). "
        f"On Debian, as root: `python -m cdp_wsroute install` (runs `apt-get install {lock.package}`). "
        f"Elsewhere, install Chromium or Chrome {lock.major} and set {ENV_EXECUTABLE}=/path/to/chrome "
        "or pass launch(executable_path=...)."
    )


_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)\.(\d+)")


def parse_version(text: str) -> str | None:
    """The dotted version in ``chromium --version`` or ``Browser.getVersion`` output."""
    match = _VERSION.search(text)
    return match.group(0) if match else None


def check_version(version_text: str, lock: BrowserLock | None = None) -> str | None:
    """Warn (BrowserVersionWarning) if the version is not the lock's major; return the version."""
    lock = lock or load_lock()
    version = parse_version(version_text)
    if version is None:
        return None
    if int(version.split(".")[0]) != lock.major:
        warnings.warn(
            f"Chromium {version} is outside browsers.lock, which pins {lock.version} "
            f"(major {lock.major}); behaviour may differ. {install_hint(lock)}",
            BrowserVersionWarning,
            stacklevel=3,
        )
    return version


def executable_version(executable: str) -> str | None:
    """Ask the binary for its version (``--version``), None if it cannot say."""
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_version(out.stdout + out.stderr)


def _is_debian() -> bool:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return False
    return bool(re.search(r"^(ID|ID_LIKE)=.*debian", text, re.MULTILINE))


def install(*, out: object = None) -> int:
    """Install the locked Chromium when missing (Debian, as root) and verify it.

    Returns a process exit status: 0 when a browser of the locked major is ready.
    """

    def say(text: str) -> None:
        print(text, file=sys.stderr if out is None else out)  # type: ignore[arg-type]

    lock = load_lock()
    try:
        executable = find_executable()
    except LaunchError:
        executable = None
    if executable is None:
        if platform.system() != "Linux" or not _is_debian():
            say(f"Cannot install Chromium automatically on this system.\n{install_hint(lock)}")
            return 1
        if os.geteuid() != 0:
            say(f"Installing Chromium needs root: run `sudo python -m cdp_wsroute install`.\n{install_hint(lock)}")
            return 1
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in lock.install_command:
            say("+ " + " ".join(command))
            if subprocess.run(command, env=env, check=False).returncode != 0:
                say(f"`{' '.join(command)}` failed.\n{install_hint(lock)}")
                return 1
        try:
            executable = find_executable()
        except LaunchError as exc:
            say(str(exc))
            return 1
    version = executable_version(executable)
    if version is None:
        say(f"{executable} did not report a version; is it a Chromium?")
        return 1
    if int(version.split(".")[0]) != lock.major:
        say(f"warning: Chromium {version} at {executable} is outside browsers.lock")
        say(f"         which pins {lock.version} (major {lock.major}); behaviour may differ.")
    else:
        note = "" if version == lock.version else f" (the lock's tested version is {lock.version})"
        say(f"Chromium {version} at {executable}: ready{note}.")
    return 0
