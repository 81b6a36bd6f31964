"""Starting and stopping a Chromium process we own.

The browser is spawned with ``posix_spawn`` straight from the calling thread:
fds 3 and 4 become the ``--remote-debugging-pipe`` pair, stderr goes to a log
file in the temporary directory (so nobody has to drain it), and the browser
leads a new session so its whole process group can be killed at the end.

The browser dies with its owner without help: when our process ends, for any
reason including SIGKILL, the kernel closes our end of the pipe and Chromium
exits on end of file. Everything else (the group's stragglers, the temporary
profile) is removed by :meth:`BrowserProcess.cleanup`; should the owner die
without running it (SIGTERM with no handler, SIGKILL), a detached ``sh`` janitor
that waits on a pipe from the owner removes the temporary directory once the
browser's process group is gone.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import tempfile
from pathlib import Path

import trio

from ._transport import PipeTransport, close_fd_quietly

__all__ = ["DEFAULT_ARGS", "BrowserProcess"]

# The janitor: a grandchild in its own session (init reaps it), holding the read end of
# a pipe whose write end only the owner has. End of file (the owner closed it or died)
# -> wait up to 30 s for the browser's group ($0) to go, else kill it as cleanup() would
# -> remove the directory ($1).
_JANITOR = """(
  cat >/dev/null
  i=0
  while kill -0 "-$0" 2>/dev/null; do
    if [ "$i" -ge 300 ]; then kill -9 "-$0" 2>/dev/null; break; fi
    sleep 0.1
    i=$((i + 1))
  done
  rm -rf -- "$1"
) <&3 3<&- >/dev/null 2>&1 &"""

# Flags for a quiet, deterministic automation browser on a machine with no
# network but loopback. Each one removes a source of background work or flakiness.
DEFAULT_ARGS: tuple[str, ...] = (
    "--no-first-run",
    "--no-default-browser-check",
    "--no-startup-window",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-client-side-phishing-detection",
    "--disable-popup-blocking",
    "--disable-prompt-on-repost",
    "--disable-hang-monitor",
    # Pages of other tabs keep full-speed timers: tests drive several pages at once.
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
    # The tunnel makes many CDP calls per second; do not let Chromium throttle them.
    "--disable-ipc-flooding-protection",
    "--disable-dev-shm-usage",
    "--metrics-recording-only",
    "--password-store=basic",
    "--use-mock-keychain",
    "--mute-audio",
    "--hide-scrollbars",
    "--enable-automation",
    "--remote-debugging-pipe",
)

_STDERR_TAIL_BYTES = 16384


def _high_fd(fd: int) -> int:
    """Move a descriptor above the stdio range so the child's dup2 never clobbers it."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


def default_flags(*, headless: bool, user_data_dir: str, extra: tuple[str, ...] | list[str] = ()) -> list[str]:
    flags = list(DEFAULT_ARGS)
    if os.name == "posix" and os.geteuid() == 0:
        flags.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    if headless:
        flags.append("--headless")
    flags.append(f"--user-data-dir={user_data_dir}")
    flags.extend(extra)
    return flags


class BrowserProcess:
    """A spawned Chromium with its pipe, temporary profile and stderr log.

    Resource handling: :meth:`spawn` creates the temporary directory and the process;
    :meth:`cleanup` (sync, idempotent, never raises) kills what is left of the
    process group, reaps the browser and removes the directory.
    """

    def __init__(self, executable: str, flags: list[str], temp_dir: str, pid: int, read_fd: int, write_fd: int) -> None:
        self.executable = executable
        self.flags = flags
        self.temp_dir = temp_dir
        self.pid = pid
        self.returncode: int | None = None
        self._read_fd: int | None = read_fd
        self._write_fd: int | None = write_fd
        self._janitor_fd = _start_janitor(pid, temp_dir)
        self._cleaned = False

    @property
    def stderr_path(self) -> Path:
        return Path(self.temp_dir) / "stderr.log"

    @property
    def user_data_dir(self) -> Path:
        return Path(self.temp_dir) / "profile"

    @classmethod
    def spawn(cls, executable: str, *, headless: bool = True, args: tuple[str, ...] | list[str] = ()) -> BrowserProcess:
        """Start the browser. Raises OSError if the executable cannot be run."""
        temp_dir = tempfile.mkdtemp(prefix="cdp_wsroute-")
        try:
            profile = os.path.join(temp_dir, "profile")
            os.mkdir(profile)
            flags = default_flags(headless=headless, user_data_dir=profile, extra=args)
            to_browser_r, to_browser_w = (_high_fd(fd) for fd in os.pipe())
            from_browser_r, from_browser_w = (_high_fd(fd) for fd in os.pipe())
            stderr_fd = os.open(os.path.join(temp_dir, "stderr.log"), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                pid = os.posix_spawn(
                    executable,
                    [executable, *flags],
                    dict(os.environ),
                    file_actions=[
                        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                        (os.POSIX_SPAWN_DUP2, stderr_fd, 1),
                        (os.POSIX_SPAWN_DUP2, stderr_fd, 2),
                        (os.POSIX_SPAWN_DUP2, to_browser_r, 3),
                        (os.POSIX_SPAWN_DUP2, from_browser_w, 4),
                    ],
                    setsid=True,
                    setsigdef=(signal.SIGINT, signal.SIGTERM, signal.SIGPIPE),
                )
            except BaseException:
                for fd in (to_browser_w, from_browser_r):
                    close_fd_quietly(fd)
                raise
            finally:
                for fd in (to_browser_r, from_browser_w, stderr_fd):
                    close_fd_quietly(fd)
        except BaseException:
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise
        return cls(executable, flags, temp_dir, pid, from_browser_r, to_browser_w)

    def transport(self) -> PipeTransport:
        """The pipe transport to the browser; can be taken once."""
        if self._read_fd is None or self._write_fd is None:
            raise RuntimeError("the browser pipe was already taken")
        transport = PipeTransport(self._read_fd, self._write_fd)
        self._read_fd = self._write_fd = None
        return transport

    def stderr_tail(self, lines: int = 20) -> str:
        """The browser's last stderr lines, for error messages."""
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - _STDERR_TAIL_BYTES))
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def poll(self) -> int | None:
        """The exit status if the browser has exited (reaping it), else None."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
            else:
                if pid != 0:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    async def wait(self) -> int:
        """Wait for the browser process to exit; returns its exit status."""
        if self.poll() is not None:
            return self.returncode  # type: ignore[return-value]
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            pidfd = None
        if pidfd is not None:
            try:
                while self.poll() is None:
                    await trio.lowlevel.wait_readable(pidfd)
            finally:
                os.close(pidfd)
        else:  # pragma: no cover - kernels before 5.3: a thread blocks in waitpid instead
            await trio.to_thread.run_sync(self._blocking_wait, abandon_on_cancel=True)
        return self.returncode  # type: ignore[return-value]

    def _blocking_wait(self) -> None:
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            self.returncode = -1
        else:
            self.returncode = os.waitstatus_to_exitcode(status)

    def kill(self) -> None:
        """SIGKILL the browser's whole process group (and the browser, should it have left it)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def cleanup(self) -> None:
        """Kill what is left, reap the browser, close our pipe ends, remove the temp dir."""
        if self._cleaned:
            return
        self._cleaned = True
        for fd in (self._read_fd, self._write_fd):
            if fd is not None:
                close_fd_quietly(fd)
        self._read_fd = self._write_fd = None
        # The group outlives its leader while renderers or the zygote linger.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.poll() is None:
            self.kill()
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.returncode = self.returncode if self.returncode is not None else -signal.SIGKILL
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        if self._janitor_fd is not None:
            close_fd_quietly(self._janitor_fd)  # the janitor finds nothing left to do and exits
            self._janitor_fd = None


def _start_janitor(browser_pid: int, temp_dir: str) -> int | None:
    """Start the janitor (see _JANITOR); returns the pipe end that keeps it waiting.

    Best effort: without /bin/sh the directory is still removed by cleanup().
    """
    read_fd, write_fd = os.pipe()  # neither is inherited by later spawns
    try:
        shell = os.posix_spawn(
            "/bin/sh",
            ["sh", "-c", _JANITOR, str(browser_pid), temp_dir],
            {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, read_fd, 3),
            ],
            setsid=True,
            setsigdef=(signal.SIGINT, signal.SIGTERM, signal.SIGPIPE),
        )
    except OSError:
        close_fd_quietly(write_fd)
        return None
    finally:
        close_fd_quietly(read_fd)
    try:
        os.waitpid(shell, 0)  # the shell forks the janitor and exits at once
    except ChildProcessError:
        pass  # SIGCHLD is ignored: the kernel reaped it
    return write_fd
