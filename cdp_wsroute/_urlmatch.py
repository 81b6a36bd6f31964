"""Which WebSocket URLs a route takes: globs, regular expressions, predicates. Pure, no I/O.

Globs follow Playwright: ``*`` is any run of characters but ``/``, ``**`` any run at
all, ``{a,b}`` either alternative, ``\\`` escapes the next character, everything
else (``?`` and ``[`` included) is literal. A glob without a scheme is resolved
against the context's ``base_url``; ``http(s)`` becomes ``ws(s)`` on both sides,
schemes compare case-insensitively, and ``ws://host:port`` also matches the
``ws://host:port/`` the browser normalises it to.

Each matcher can also say how the page may pre-filter sockets without asking
Python (:meth:`UrlMatcher.page_filter`): globs and simple regular expressions
become a JavaScript regular expression the shim tests in the constructor, so a
socket no route can match stays native; predicates and regular expressions we
cannot translate exactly make the shim ask Python (one round trip per socket).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from ._errors import UsageError

__all__ = ["UrlMatcher", "glob_to_regex_source", "to_websocket_url"]

UrlPattern = str | re.Pattern[str] | Callable[[str], bool]

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_WILD_SCHEME = re.compile(r"^[a-zA-Z0-9+.\-*{},]+://")
_REGEX_SPECIAL = set(".^$*+?()[]{}|\\/")
_PORTABLE_ESCAPES = set("dDwWsSb.^$*+?()[]{}|/\\:-")


def to_websocket_url(url: str) -> str:
    """``http://`` -> ``ws://``, ``https://`` -> ``wss://``; the scheme lower-cased."""
    match = _SCHEME.match(url)
    if not match:
        return url
    scheme = match.group(1).lower()
    scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
    return scheme + url[match.end(1) :]


def glob_to_regex_source(glob: str) -> str:
    """An anchored regular expression, valid in Python and JavaScript alike.

    Raises:
        UsageError: unbalanced ``{`` / ``}``, nested braces, or a trailing ``\\``.
    """
    out = ["^"]
    in_group = False
    i = 0
    while i < len(glob):
        char = glob[i]
        if char == "\\":
            if i + 1 == len(glob):
                raise UsageError(f"invalid glob {glob!r}: it ends with a lone backslash")
            i += 1
            out.append(_escape(glob[i]))
        elif char == "*":
            if glob.startswith("**", i):
                out.append("[\\s\\S]*")
                while i + 1 < len(glob) and glob[i + 1] == "*":
                    i += 1
            else:
                out.append("[^/]*")
        elif char == "{":
            if in_group:
                raise UsageError(f"invalid glob {glob!r}: nested {{ }} groups are not supported")
            in_group = True
            out.append("(?:")
        elif char == "}":
            if not in_group:
                raise UsageError(f"invalid glob {glob!r}: '}}' without '{{'")
            in_group = False
            out.append(")")
        elif char == "," and in_group:
            out.append("|")
        else:
            out.append(_escape(char))
        i += 1
    if in_group:
        raise UsageError(f"invalid glob {glob!r}: '{{' without '}}'")
    out.append("$")
    return "".join(out)


def _escape(char: str) -> str:
    return "\\" + char if char in _REGEX_SPECIAL else char


def _resolve_glob(glob: str, base_url: str | None) -> str:
    """Make a glob absolute against ``base_url`` and normalise its scheme and empty path."""
    if not _SCHEME.match(glob) and not _WILD_SCHEME.match(glob) and not glob.startswith("*") and base_url:
        # Protect the wildcards from URL resolution, which would percent-encode or fold them.
        marks = {"*": "\ue000", "{": "\ue001", "}": "\ue002", ",": "\ue003"}
        protected = "".join(marks.get(c, c) for c in glob)
        resolved = urljoin(to_websocket_url(base_url), protected)
        reverse = {v: k for k, v in marks.items()}
        glob = "".join(reverse.get(c, c) for c in resolved)
    glob = to_websocket_url(glob)
    parts = urlsplit(glob) if _SCHEME.match(glob) else None
    if parts is not None and parts.netloc and not parts.path and not parts.query and "*" not in parts.netloc:
        glob += "/"
    return glob


@dataclass(frozen=True)
class UrlMatcher:
    """A compiled route URL pattern.

    Attributes:
        pattern: what the user passed.
    """

    pattern: UrlPattern
    _regex: re.Pattern[str] | None
    _predicate: Callable[[str], bool] | None
    _js: tuple[str, str] | None  # (source, flags) of the page-side filter, None: ask Python

    @classmethod
    def compile(cls, pattern: UrlPattern, base_url: str | None = None) -> UrlMatcher:
        """Compile a glob, regular expression or predicate.

        Raises:
            UsageError: an invalid glob, or a pattern of another type.
        """
        if isinstance(pattern, str):
            source = glob_to_regex_source(_resolve_glob(pattern, base_url))
            return cls(pattern, re.compile(source), None, (source, ""))
        if isinstance(pattern, re.Pattern):
            if not isinstance(pattern.pattern, str):
                raise UsageError("a route URL regular expression must be a str pattern, not bytes")
            js = _portable_regex(pattern)
            return cls(pattern, pattern, None, js)
        if callable(pattern):
            return cls(pattern, None, pattern, None)
        raise UsageError(f"a route URL must be a glob string, a re.Pattern or a callable, not {type(pattern).__name__}")

    def matches(self, url: str) -> bool:
        """Whether the route takes a socket with this (normalised, ws/wss) URL.

        A predicate's exception propagates: the caller treats it as the handler's.
        """
        if self._predicate is not None:
            return bool(self._predicate(url))
        assert self._regex is not None
        if isinstance(self.pattern, str):
            return self._regex.fullmatch(url) is not None
        return self._regex.search(url) is not None

    def page_filter(self) -> tuple[str, str] | None:
        """``(source, flags)`` of a JavaScript RegExp that accepts at least every URL this matches,
        or None when only Python can decide."""
        return self._js


def _portable_regex(pattern: re.Pattern[str]) -> tuple[str, str] | None:
    """The pattern as a JavaScript RegExp, if JavaScript reads it exactly as Python does.

    Accepted: literals, escapes of punctuation and ``\\d \\w \\s \\b``, classes without
    escapes inside, plain, ``(?:``, ``(?=`` and ``(?!`` groups, quantifiers, anchors and
    alternation; no flags but IGNORECASE. Anything else is decided in Python.
    """
    flags = pattern.flags & ~re.UNICODE
    if flags & ~re.IGNORECASE:
        return None
    source = pattern.pattern
    if not source.isascii():
        return None
    i = 0
    while i < len(source):
        char = source[i]
        if char == "\\":
            if i + 1 == len(source) or source[i + 1] not in _PORTABLE_ESCAPES:
                return None
            i += 2
            continue
        if char == "[":
            if source.startswith(("[]", "[^]"), i):
                return None
            end = source.find("]", i + 2)
            if end < 0 or "\\" in source[i:end] or "[" in source[i + 1 : end]:
                return None
            i = end + 1
            continue
        if char == "{" and source.startswith(",", i + 1):
            return None
        if char in "*+?}" and source.startswith("+", i + 1):
            return None  # possessive (a SyntaxError in JavaScript), or x}+ (conservatively)
        if char == "(" and source.startswith("?", i + 1) and source[i + 2 : i + 3] not in (":", "=", "!"):
            return None
        i += 1
    return source, "i" if flags & re.IGNORECASE else ""
