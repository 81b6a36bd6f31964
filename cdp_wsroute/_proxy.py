"""Upstream connections through a proxy: HTTP CONNECT (with basic auth) and SOCKS5 (RFC 1928/1929).

A context's ``proxy`` option (Playwright's shape: ``{"server", "bypass", "username",
"password"}``) is given to Chromium for the pages and used here for routed sockets'
upstreams, so both reach the same places the same way. As in Chromium, loopback
hosts bypass the proxy unless the bypass list says ``<-loopback>``.
"""

from __future__ import annotations

import base64
import ipaddress
import struct
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import trio

from ._errors import UsageError

__all__ = ["ProxyError", "ProxySettings", "open_via_proxy"]

_MAX_RESPONSE_HEAD = 16 * 1024


class ProxyError(OSError):
    """The proxy refused or failed the tunnel; reported like a network failure."""


@dataclass(frozen=True)
class ProxySettings:
    scheme: str  # "http" or "socks5"
    host: str
    port: int
    bypass: tuple[str, ...]
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, proxy: dict[str, Any]) -> ProxySettings:
        """Check a ``proxy={...}`` option. Raises UsageError when it is not usable."""
        if not isinstance(proxy, dict) or not isinstance(proxy.get("server"), str):
            raise UsageError('proxy must be a dict with a "server" such as "http://host:3128" or "socks5://host:1080"')
        server = proxy["server"]
        parts = urlsplit(server if "://" in server else f"http://{server}")
        scheme = parts.scheme.lower()
        if scheme not in ("http", "socks5") or not parts.hostname:
            raise UsageError(f"proxy server must be http://host:port or socks5://host:port, not {server!r}")
        bypass = tuple(b.strip().lower() for b in str(proxy.get("bypass") or "").split(",") if b.strip())
        username, password = proxy.get("username"), proxy.get("password")
        if (username is None) != (password is None):
            raise UsageError("proxy username and password go together")
        return cls(
            scheme=scheme,
            host=parts.hostname,
            port=parts.port or (1080 if scheme == "socks5" else 3128),
            bypass=bypass,
            username=username,
            password=password,
        )

    @property
    def chromium_server(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def chromium_bypass(self) -> str:
        return ",".join(self.bypass)

    def applies_to(self, host: str) -> bool:
        """Whether a connection to ``host`` goes through the proxy (Chromium's bypass rules, simplified)."""
        host = host.lower().strip("[]")
        if _is_loopback(host) and "<-loopback>" not in self.bypass:
            return False
        for rule in self.bypass:
            if rule == "<-loopback>":
                continue
            if (
                rule == "*"
                or host == rule.lstrip("*.")
                or (rule.startswith((".", "*.")) and host.endswith(rule.lstrip("*")))
            ):
                return False
        return True


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def open_via_proxy(proxy: ProxySettings, host: str, port: int) -> trio.abc.Stream:
    """A stream to ``host:port`` tunnelled through the proxy.

    Raises:
        ProxyError: the proxy refused (an HTTP status other than 200, a SOCKS error reply,
            rejected credentials) or broke the protocol.
        OSError: the proxy could not be reached.
    """
    stream = await trio.open_tcp_stream(proxy.host, proxy.port)
    try:
        if proxy.scheme == "http":
            await _http_connect(stream, proxy, host, port)
        else:
            await _socks5_connect(stream, proxy, host, port)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


async def _http_connect(stream: trio.SocketStream, proxy: ProxySettings, host: str, port: int) -> None:
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if proxy.username is not None:
        token = base64.b64encode(f"{proxy.username}:{proxy.password}".encode()).decode()
        lines.append(f"Proxy-Authorization: Basic {token}")
    await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise ProxyError(f"the proxy {proxy.chromium_server} closed the connection during CONNECT")
        head += chunk
        if len(head) > _MAX_RESPONSE_HEAD:
            raise ProxyError(f"the proxy {proxy.chromium_server} sent an oversized CONNECT response")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    fields = status_line.split(" ", 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or fields[1] != "200":
        raise ProxyError(f"the proxy {proxy.chromium_server} refused CONNECT {target}: {status_line}")
    if head.index(b"\r\n\r\n") + 4 != len(head):
        raise ProxyError(f"the proxy {proxy.chromium_server} sent data before the tunnel was open")


_SOCKS_ERRORS = {
    1: "general failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


async def _receive_exactly(stream: trio.SocketStream, count: int, proxy: ProxySettings) -> bytes:
    data = b""
    while len(data) < count:
        chunk = await stream.receive_some(count - len(data))
        if not chunk:
            raise ProxyError(f"the SOCKS5 proxy {proxy.chromium_server} closed the connection")
        data += chunk
    return data


async def _socks5_connect(stream: trio.SocketStream, proxy: ProxySettings, host: str, port: int) -> None:
    methods = b"\x00\x02" if proxy.username is not None else b"\x00"
    await stream.send_all(b"\x05" + bytes([len(methods)]) + methods)
    version, method = await _receive_exactly(stream, 2, proxy)
    if version != 5 or method == 0xFF:
        raise ProxyError(f"the SOCKS5 proxy {proxy.chromium_server} accepts none of our authentication methods")
    if method == 2:
        user = (proxy.username or "").encode()
        password = (proxy.password or "").encode()
        await stream.send_all(b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password)
        _, status = await _receive_exactly(stream, 2, proxy)
        if status != 0:
            raise ProxyError(f"the SOCKS5 proxy {proxy.chromium_server} rejected the credentials")
    elif method != 0:
        raise ProxyError(f"the SOCKS5 proxy {proxy.chromium_server} chose an unknown method {method}")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        encoded = host.encode("idna")
        destination = b"\x03" + bytes([len(encoded)]) + encoded
    else:
        destination = (b"\x01" if address.version == 4 else b"\x04") + address.packed
    await stream.send_all(b"\x05\x01\x00" + destination + struct.pack("!H", port))
    _, reply, _, kind = await _receive_exactly(stream, 4, proxy)
    if reply != 0:
        reason = _SOCKS_ERRORS.get(reply, f"error {reply}")
        raise ProxyError(f"the SOCKS5 proxy {proxy.chromium_server} refused {host}:{port}: {reason}")
    length = {1: 4, 4: 16}.get(kind)
    if length is None:
        length = (await _receive_exactly(stream, 1, proxy))[0]
    await _receive_exactly(stream, length + 2, proxy)  # the bound address and port
