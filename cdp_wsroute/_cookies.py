"""Which cookies a WebSocket handshake carries: the SameSite rules Chromium applies. Pure, no I/O.

A handshake is a subresource request: a ``SameSite=Strict`` or ``Lax`` cookie (and one
without the attribute, which Chromium treats as Lax) goes only to a same-site URL, and
"same-site" is schemeful (``ws`` counts as ``http``, ``wss`` as ``https``) and compares
registrable domains from the Public Suffix List. The site for cookies is the top-level
document's, and there is none when a frame between it and the socket's document is
cross-site; then only ``SameSite=None`` cookies go.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any
from urllib.parse import urlsplit

from publicsuffixlist import PublicSuffixList

__all__ = ["handshake_cookies", "site_of"]

Site = tuple[str, str]  # (scheme, registrable domain)


@functools.cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the list ships with the package: no download


def site_of(url: str) -> Site | None:
    """The schemeful site of a URL, None for one without a host (about:blank, data:)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        return None
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        domain = _suffixes().privatesuffix(host) or host
    else:
        domain = host
    return scheme, domain


def handshake_cookies(cookies: list[dict[str, Any]], url: str, site_for_cookies: Site | None) -> list[dict[str, Any]]:
    """The cookies (already matched by domain, path and Secure) that a handshake to ``url`` sends."""
    same_site = site_for_cookies is not None and site_of(url) == site_for_cookies
    return [c for c in cookies if same_site or c.get("sameSite") == "None"]
