"""SameSite rules for upstream handshake cookies (pure)."""

from __future__ import annotations

from typing import Any

from cdp_wsroute._cookies import handshake_cookies, site_of


def test_sites_are_schemeful_registrable_domains() -> None:
    assert site_of("ws://a.b.example.co.uk:8080/x") == ("http", "example.co.uk")
    assert site_of("wss://chat.example.com/") == ("https", "example.com")
    assert site_of("https://www.example.com/page") == ("https", "example.com")
    assert site_of("http://127.0.0.1:9/") == ("http", "127.0.0.1")
    assert site_of("http://[::1]:9/") == ("http", "::1")
    assert site_of("http://localhost:9/") == ("http", "localhost")
    assert site_of("about:blank") is None
    assert site_of("ws://example.com/") != site_of("https://example.com/")  # schemeful


def cookie(name: str, same_site: str) -> dict[str, Any]:
    return {"name": name, "value": "v", "sameSite": same_site}


COOKIES = [cookie("strict", "Strict"), cookie("lax", "Lax"), cookie("none", "None")]


def names(cookies: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in cookies]


def test_same_site_handshakes_carry_every_cookie() -> None:
    top = site_of("https://app.example.com/")
    assert names(handshake_cookies(COOKIES, "wss://ws.example.com/", top)) == ["strict", "lax", "none"]


def test_cross_site_handshakes_carry_only_samesite_none() -> None:
    top = site_of("https://other.test/")
    assert names(handshake_cookies(COOKIES, "wss://ws.example.com/", top)) == ["none"]
    # No site for cookies (a cross-site frame on the way up): the same.
    assert names(handshake_cookies(COOKIES, "wss://ws.example.com/", None)) == ["none"]
    # Same domain, other scheme: cross-site.
    assert names(handshake_cookies(COOKIES, "ws://ws.example.com/", site_of("https://example.com/"))) == ["none"]
