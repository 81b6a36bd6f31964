"""Every task of the project: ``nox -s tests | lint | typecheck | demo | bench | soak``.

Run it with nox, or with nothing but Python 3.11+: ``python3 noxfile.py -s tests``
bootstraps nox into ``.nox/.bootstrap`` first (installing Debian's python3-venv
when it is missing and we are root).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
BOOTSTRAP = ROOT / ".nox" / ".bootstrap"
PLAYWRIGHT = "playwright==1.65.2"  # the benchmark's yardstick (nox -s bench only)

try:
    import nox
except ImportError:  # run as a script on a machine without nox: see the bottom of the file
    nox = None  # type: ignore[assignment]

if nox is not None:
    nox.options.default_venv_backend = "venv"
    nox.options.sessions = ["tests", "lint", "typecheck"]
    nox.options.reuse_existing_virtualenvs = True

    def install(session: nox.Session, *extras: str, editable: bool = False) -> None:
        """Install the project (with extras) into the session; the one helper every session uses."""
        spec = "." + (f"[{','.join(extras)}]" if extras else "")
        session.install("--upgrade", "pip")
        session.install(*(["-e", spec] if editable else [spec]))

    def ensure_browser(session: nox.Session) -> None:
        """Install the Chromium browsers.lock pins (apt, as root) and verify it; fail loudly if we cannot."""
        session.run("python", "-m", "cdp_wsroute", "install")

    @nox.session
    def tests(session: nox.Session) -> None:
        """The whole test suite, browser tests included, against the locked Chromium."""
        install(session, "test")
        ensure_browser(session)
        # Run from a directory that is not the checkout, so the installed wheel is what is tested.
        session.run(
            "pytest",
            "-p",
            "no:cacheprovider",
            f"--rootdir={ROOT}",
            "-c",
            str(ROOT / "pyproject.toml"),
            str(ROOT / "tests"),
            *session.posargs,
            env={"PYTHONDONTWRITEBYTECODE": "1"},
        )

    @nox.session
    def lint(session: nox.Session) -> None:
        """ruff format --check and ruff check."""
        session.install("ruff>=0.17,<0.18")
        session.run("ruff", "format", "--check", ".")
        session.run("ruff", "check", ".")

    @nox.session
    def typecheck(session: nox.Session) -> None:
        """mypy --strict over the package, the tests and this file."""
        install(session, "dev", editable=True)
        session.run("mypy")

    @nox.session
    def demo(session: nox.Session) -> None:
        """The showcase: launch headless Chromium and drive a page we serve on 127.0.0.1."""
        install(session)
        ensure_browser(session)
        session.run("python", "-m", "cdp_wsroute", "demo", *session.posargs)

    @nox.session
    def bench(session: nox.Session) -> None:
        """The benchmark suite, side by side with Playwright (on our Chromium): ``-- --quick``, ``--only NAME``."""
        install(session)
        # Playwright is only a yardstick, so it lives here; it drives our browser and downloads none.
        # If it cannot be installed the bench says so and measures the rest.
        session.install(PLAYWRIGHT, env={"PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"}, success_codes=[0, 1])
        ensure_browser(session)
        session.run("python", str(ROOT / "benchmarks" / "bench.py"), *session.posargs)
        # Observation under load: every frame reported, once, in order (native, mocked, pass-through).
        frames = "2000" if "--quick" in session.posargs else "20000"
        session.run("python", str(ROOT / "benchmarks" / "observe.py"), "--frames", frames)

    @nox.session
    def soak(session: nox.Session) -> None:
        """Load and churn, looking for leaks (about 4 minutes): ``-- --quick`` (under a minute), ``--minutes N``."""
        install(session)
        ensure_browser(session)
        session.run("python", str(ROOT / "benchmarks" / "soak.py"), *session.posargs)


def _bootstrap() -> None:
    """Make a venv with nox in it (once), then re-run this file with it."""
    python = BOOTSTRAP / "bin" / "python"
    if not python.exists():
        made = subprocess.run([sys.executable, "-m", "venv", str(BOOTSTRAP)], check=False)
        if made.returncode != 0 and os.geteuid() == 0 and Path("/etc/debian_version").exists():
            # Debian splits venv (and ensurepip) out of python3.
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "update"], check=True, env=env)
            version = f"python{sys.version_info.major}.{sys.version_info.minor}-venv"
            subprocess.run(["apt-get", "install", "-y", "python3-venv", version], check=False, env=env)
            subprocess.run(["rm", "-rf", str(BOOTSTRAP)], check=True)
            made = subprocess.run([sys.executable, "-m", "venv", str(BOOTSTRAP)], check=False)
        if made.returncode != 0:
            sys.exit("could not create a virtual environment: install python3-venv (Debian) and try again")
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip", "nox"], check=True)
    os.execv(str(python), [str(python), "-m", "nox", "-f", str(ROOT / "noxfile.py"), *sys.argv[1:]])


if __name__ == "__main__":
    if nox is None:
        _bootstrap()
    else:
        sys.exit(subprocess.call([sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"), *sys.argv[1:]]))
