"""Shared fixtures: loopback HTTP servers for pages. Browser fixtures come from the plugin."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cdp_wsroute._http import StaticServer, serve_http


@pytest.fixture
async def server() -> AsyncIterator[StaticServer]:
    """An HTTP server on 127.0.0.1 (port 0); add pages with ``server.route(path, html)``."""
    async with serve_http("127.0.0.1") as srv:
        yield srv


@pytest.fixture
async def other_server() -> AsyncIterator[StaticServer]:
    """A second server, reached as http://localhost:PORT: a different origin (and site) from ``server``."""
    async with serve_http("127.0.0.1") as srv:
        srv.host = "localhost"
        yield srv
