"""Command line: ``python -m cdp_wsroute install | demo | version``."""

from __future__ import annotations

import argparse
import sys

from . import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cdp_wsroute", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="install the Chromium browsers.lock pins (Debian, as root) and verify it")
    demo = commands.add_parser("demo", help="the WebSocket routing showcase (headless Chromium, local servers)")
    demo.add_argument("--trace", action="store_true", help="log the upstream handshake and every frame")
    commands.add_parser("version", help="print the versions of cdp_wsroute and the locked Chromium")
    args = parser.parse_args(argv)
    if args.command == "install":
        from ._browsers import install

        return install()
    if args.command == "demo":
        from ._demo import main as demo_main

        demo_main(trace=args.trace)
        return 0
    from ._browsers import load_lock

    lock = load_lock()
    print(f"cdp_wsroute {__version__}; Chromium {lock.version} ({lock.package}, major {lock.major})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
