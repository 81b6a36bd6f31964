"""URL matching for WebSocket routes (``cdp_wsroute._urlmatch``): pure, no browser.

The page-side prefilter (:meth:`UrlMatcher.page_filter`) must never reject a URL
Python would route, so besides the glob rules themselves these tests check that
the JavaScript source it returns reads exactly as Python reads it: with ``re``,
with a property test against an independent glob matcher, and in Chromium's
own JavaScript engine.
"""

from __future__ import annotations

import functools
import itertools
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_wsroute import Page
from cdp_wsroute._errors import UsageError
from cdp_wsroute._urlmatch import UrlMatcher, glob_to_regex_source, to_websocket_url

BASE = "http://example.com:8080/app/index.html"


def _matches(pattern: str | re.Pattern[str] | Callable[[str], bool], url: str, base_url: str | None = None) -> bool:
    return UrlMatcher.compile(pattern, base_url).matches(url)


def _filter_accepts(matcher: UrlMatcher, url: str, *, search: bool) -> bool:
    """What the page-side RegExp says, read by Python's ``re`` (JavaScript ``test``: a search)."""
    page_filter = matcher.page_filter()
    assert page_filter is not None
    source, flags = page_filter
    compiled = re.compile(source, re.IGNORECASE if "i" in flags else 0)
    found = compiled.search(url) if search else compiled.fullmatch(url)
    return found is not None


# -- globs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("glob", "url", "expected"),
    [
        # `*`: any run of characters but `/`
        ("ws://h/*", "ws://h/", True),
        ("ws://h/*", "ws://h/chat", True),
        ("ws://h/*", "ws://h/chat/room", False),
        ("ws://h/*/x", "ws://h/a/x", True),
        ("ws://h/*/x", "ws://h/a/b/x", False),
        ("ws://*/chat", "ws://h:1/chat", True),
        ("ws://*/chat", "ws://h/a/chat", False),
        ("ws://h/a*c", "ws://h/abbbc", True),
        ("ws://h/a*c", "ws://h/ab/c", False),
        # `**`: any run at all
        ("**/chat", "ws://h/a/b/chat", True),
        ("**/chat", "wss://h:443/chat", True),
        ("**/chat", "ws://h/chat/x", False),
        ("ws://h/**", "ws://h/", True),
        ("ws://h/**", "ws://h/a/b?c=d", True),
        ("ws://h/a**z", "ws://h/a/b/z", True),
        ("ws://h/***", "ws://h/a/b", True),  # three stars are still "any run at all"
        ("**", "ws://anything/at/all", True),
        # `{a,b}`: either alternative
        ("ws://h/{chat,feed}", "ws://h/chat", True),
        ("ws://h/{chat,feed}", "ws://h/feed", True),
        ("ws://h/{chat,feed}", "ws://h/chatfeed", False),
        ("ws://h/{chat,feed}", "ws://h/{chat,feed}", False),
        ("ws://h/x{,y}", "ws://h/x", True),
        ("ws://h/x{,y}", "ws://h/xy", True),
        ("ws://h/{a*,b/**}", "ws://h/abc", True),
        ("ws://h/{a*,b/**}", "ws://h/b/c/d", True),
        ("ws://h/{a*,b/**}", "ws://h/a/c", False),
        ("{ws,wss}://h/", "wss://h/", True),
        ("ws://h/a,b", "ws://h/a,b", True),  # a comma outside braces is literal
        # `\` escapes the next character
        ("ws://h/a\\*b", "ws://h/a*b", True),
        ("ws://h/a\\*b", "ws://h/axb", False),
        ("ws://h/\\{a,b\\}", "ws://h/{a,b}", True),
        ("ws://h/\\{a,b\\}", "ws://h/a", False),
        ("ws://h/{a\\,b,c}", "ws://h/a,b", True),
        ("ws://h/{a\\,b,c}", "ws://h/a", False),
        ("ws://h/a\\\\b", "ws://h/a\\b", True),
        ("ws://h/\\a", "ws://h/a", True),
        ("ws://h/\\?", "ws://h/?", True),
        # `?` and `[` are literal, as are regex metacharacters
        ("ws://h/chat?room=1", "ws://h/chat?room=1", True),
        ("ws://h/chat?room=1", "ws://h/chatXroom=1", False),
        ("ws://h/cha?", "ws://h/chat", False),
        ("ws://h/[ab]", "ws://h/[ab]", True),
        ("ws://h/[ab]", "ws://h/a", False),
        ("ws://h/a.b", "ws://h/a.b", True),
        ("ws://h/a.b", "ws://h/axb", False),
        ("ws://h/a+$(x)|^", "ws://h/a+$(x)|^", True),
        ("ws://h/a+", "ws://h/aa", False),
        # whole-URL match, not a search
        ("ws://h/chat", "ws://h/chat/more", False),
        ("ws://h/chat", "xws://h/chat", False),
        ("h/chat", "ws://h/chat", False),
    ],
)
def test_glob(glob: str, url: str, expected: bool) -> None:
    matcher = UrlMatcher.compile(glob)
    assert matcher.matches(url) is expected
    assert _filter_accepts(matcher, url, search=False) is expected


@pytest.mark.parametrize(
    ("glob", "base_url", "url", "expected"),
    [
        ("/ws", BASE, "ws://example.com:8080/ws", True),
        ("/ws", BASE, "ws://example.com:8080/app/ws", False),
        ("/ws", "https://example.com/", "wss://example.com/ws", True),
        ("/ws", "https://example.com/", "ws://example.com/ws", False),
        ("ws", BASE, "ws://example.com:8080/app/ws", True),
        ("./ws", BASE, "ws://example.com:8080/app/ws", True),
        ("../ws", BASE, "ws://example.com:8080/ws", True),
        ("//other:1/ws", BASE, "ws://other:1/ws", True),
        ("//other:1/ws", "https://example.com/", "wss://other:1/ws", True),
        ("/ws/*", BASE, "ws://example.com:8080/ws/chat", True),
        ("/ws/*", BASE, "ws://example.com:8080/ws/chat/x", False),
        ("/ws/**", BASE, "ws://example.com:8080/ws/a/b", True),
        ("/{chat,feed}", BASE, "ws://example.com:8080/feed", True),
        ("/{chat,feed}", BASE, "ws://example.com:8080/x", False),
        ("/a\\*b", BASE, "ws://example.com:8080/a*b", True),
        ("/a\\*b", BASE, "ws://example.com:8080/axb", False),
        ("/chat?room=1", BASE, "ws://example.com:8080/chat?room=1", True),
        ("/[x]", BASE, "ws://example.com:8080/[x]", True),
        ("/ws", "ws://example.com:1/", "ws://example.com:1/ws", True),
        ("/ws", "wss://example.com/", "wss://example.com/ws", True),
        # globs starting with `*` are never resolved
        ("**/ws", BASE, "ws://elsewhere/ws", True),
        ("*", BASE, "ws://example.com:8080/", False),
        # absolute globs ignore the base
        ("ws://other/ws", BASE, "ws://other/ws", True),
        ("http://other/ws", BASE, "ws://other/ws", True),
        ("https://other/ws", BASE, "wss://other/ws", True),
        # no base: a relative glob stays as it is (and matches no absolute URL)
        ("/ws", None, "ws://example.com:8080/ws", False),
        ("/ws", None, "/ws", True),
    ],
)
def test_glob_relative_to_base_url(glob: str, base_url: str | None, url: str, expected: bool) -> None:
    matcher = UrlMatcher.compile(glob, base_url)
    assert matcher.matches(url) is expected
    assert _filter_accepts(matcher, url, search=False) is expected


@pytest.mark.parametrize(
    ("glob", "url"),
    [
        ("{a,b}/ws", "ws://example.com:8080/app/a/ws"),
        ("{a,b}/ws", "ws://example.com:8080/app/b/ws"),
        ("{ws,wss}://other/ws", "wss://other/ws"),
        ("{ws,wss}://other/ws", "ws://other/ws"),
        ("ws*://other/ws", "wss://other/ws"),
    ],
)
def test_glob_with_wildcards_in_its_first_segment_survives_base_url(glob: str, url: str) -> None:
    """A leading ``{`` or a wildcard scheme must not be mangled by resolution against the base URL.

    Without a base URL these globs work; with one they must still match (Playwright maps a
    wildcard scheme to ``http:`` before resolving, and keeps a leading group intact).
    """
    if "://" in glob:
        assert _matches(glob, url) is True
    assert _matches(glob, url, BASE) is True


@pytest.mark.parametrize(
    ("glob", "url", "expected"),
    [
        ("WS://h/chat", "ws://h/chat", True),
        ("Ws://h/chat", "ws://h/chat", True),
        ("WSS://h/chat", "wss://h/chat", True),
        ("HTTP://h/chat", "ws://h/chat", True),
        ("Https://h/chat", "wss://h/chat", True),
        ("http://h/chat", "wss://h/chat", False),
        ("https://h/chat", "ws://h/chat", False),
        ("ws://h/CHAT", "ws://h/chat", False),  # only the scheme is case-insensitive
    ],
)
def test_glob_scheme(glob: str, url: str, expected: bool) -> None:
    assert _matches(glob, url) is expected


def test_relative_glob_with_uppercase_base_scheme() -> None:
    assert _matches("/ws", url="wss://example.com/ws", base_url="HTTPS://example.com/") is True
    assert _matches("/ws", url="ws://example.com/ws", base_url="HTTP://example.com/") is True


@pytest.mark.parametrize(
    ("glob", "base_url", "url", "expected"),
    [
        ("ws://h:1", None, "ws://h:1/", True),
        ("ws://h", None, "ws://h/", True),
        ("wss://h:443", None, "wss://h:443/", True),
        ("http://h:1", None, "ws://h:1/", True),
        ("https://h", None, "wss://h/", True),
        ("ws://h:1", BASE, "ws://h:1/", True),
        ("ws://h:1", None, "ws://h:1/x", False),
        ("ws://h:1/", None, "ws://h:1/", True),
        ("ws://h:1/x", None, "ws://h:1/x", True),
        ("ws://h:1?q=1", None, "ws://h:1?q=1", True),
    ],
)
def test_host_only_glob_matches_the_normalised_url(glob: str, base_url: str | None, url: str, expected: bool) -> None:
    matcher = UrlMatcher.compile(glob, base_url)
    assert matcher.matches(url) is expected
    assert _filter_accepts(matcher, url, search=False) is expected


@pytest.mark.parametrize("glob", ["{a", "a}", "ws://h/{a,{b,c}}", "ws://h/a\\", "{a,b}}", "}{"])
def test_invalid_glob_raises_usage_error(glob: str) -> None:
    with pytest.raises(UsageError, match="invalid glob"):
        UrlMatcher.compile(glob)
    with pytest.raises(UsageError, match="invalid glob"):
        glob_to_regex_source(glob)


@pytest.mark.parametrize("pattern", [1, 1.5, None, b"ws://h/", ["ws://h/"], ("ws://h/",), {"ws://h/"}])
def test_non_pattern_types_raise_usage_error(pattern: object) -> None:
    with pytest.raises(UsageError, match=r"glob string, a re\.Pattern or a callable"):
        UrlMatcher.compile(pattern)  # type: ignore[arg-type]


def test_bytes_regex_raises_usage_error() -> None:
    """A ``re.Pattern[bytes]`` can never match a ``str`` URL: it must be refused up front, not
    fail with TypeError on the first socket (and never reach the page as a filter)."""
    with pytest.raises(UsageError):
        UrlMatcher.compile(re.compile(b"ws"))  # type: ignore[arg-type]


def test_to_websocket_url() -> None:
    assert to_websocket_url("http://h/x") == "ws://h/x"
    assert to_websocket_url("HTTPS://h/x") == "wss://h/x"
    assert to_websocket_url("WS://h/X") == "ws://h/X"
    assert to_websocket_url("wss://h/") == "wss://h/"
    assert to_websocket_url("/relative") == "/relative"
    assert to_websocket_url("**/x") == "**/x"
    assert to_websocket_url("httpx://h/") == "httpx://h/"


def test_glob_regex_source_is_anchored_and_escaped() -> None:
    assert glob_to_regex_source("ws://h/{a,b}*?") == r"^ws:\/\/h\/(?:a|b)[^/]*\?$"
    for url in ("", "a", "ws://h/a/b?c", "/"):
        assert re.fullmatch(glob_to_regex_source("**"), url)


# -- regular expressions and predicates --------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "url", "expected"),
    [
        (re.compile(r"/ws$"), "ws://h/ws", True),
        (re.compile(r"/ws$"), "ws://h/ws/x", False),
        (re.compile(r"chat"), "ws://h/a/chat/b", True),  # searched, not anchored
        (re.compile(r"^ws://h/"), "ws://h/x", True),
        (re.compile(r"^h/"), "ws://h/x", False),
        (re.compile(r"CHAT", re.IGNORECASE), "ws://h/chat", True),
        (re.compile(r"CHAT"), "ws://h/chat", False),
        (re.compile(r".*"), "ws://h/", True),
        (re.compile(r"http://"), "ws://h/", False),  # no http -> ws rewriting for regexes
    ],
)
def test_regex_search_semantics(pattern: re.Pattern[str], url: str, expected: bool) -> None:
    matcher = UrlMatcher.compile(pattern, BASE)
    assert matcher.matches(url) is expected
    assert matcher.pattern is pattern
    assert _filter_accepts(matcher, url, search=True) is expected


def test_predicate() -> None:
    seen: list[str] = []

    def predicate(url: str) -> bool:
        seen.append(url)
        return url.endswith("/yes")

    matcher = UrlMatcher.compile(predicate, BASE)
    assert matcher.matches("ws://h/yes") is True
    assert matcher.matches("ws://h/no") is False
    assert seen == ["ws://h/yes", "ws://h/no"]  # the URL as given, not resolved or rewritten
    assert matcher.page_filter() is None
    assert matcher.pattern is predicate


def test_predicate_result_is_made_bool() -> None:
    truthy = UrlMatcher.compile(lambda url: 1)  # type: ignore[arg-type,return-value]
    falsy = UrlMatcher.compile(lambda url: "")  # type: ignore[arg-type,return-value]
    assert truthy.matches("ws://h/") is True
    assert falsy.matches("ws://h/") is False


def test_predicate_exception_propagates() -> None:
    def predicate(url: str) -> bool:
        raise ZeroDivisionError(url)

    matcher = UrlMatcher.compile(predicate)
    with pytest.raises(ZeroDivisionError, match="ws://h/"):
        matcher.matches("ws://h/")


def test_callable_object_is_a_predicate() -> None:
    @dataclass
    class EndsWith:
        suffix: str

        def __call__(self, url: str) -> bool:
            return url.endswith(self.suffix)

    matcher = UrlMatcher.compile(EndsWith("/a"))
    assert matcher.matches("ws://h/a")
    assert not matcher.matches("ws://h/b")


# -- the page-side prefilter --------------------------------------------------------------------------

SAMPLE_URLS = [
    "ws://h/",
    "ws://h/chat",
    "ws://h/chat/",
    "ws://h/chat/room",
    "ws://h/chat?room=1",
    "ws://h/chatXroom=1",
    "ws://h:1/",
    "ws://h:1/chat",
    "wss://h/chat",
    "wss://other:443/a/b/chat",
    "ws://example.com:8080/ws",
    "ws://example.com:8080/app/ws",
    "ws://example.com:8080/app/a/ws",
    "ws://example.com:8080/feed",
    "ws://h/a*b",
    "ws://h/axb",
    "ws://h/{a,b}",
    "ws://h/a,b",
    "ws://h/[ab]",
    "ws://h/a",
    "ws://h/b/c/d",
    "ws://h/a.b",
    "ws://h/a\\b",
    "ws://h/WS",
    "WS://H/CHAT",
    "",
    "/ws",
]

SAMPLE_GLOBS: list[tuple[str, str | None]] = [
    ("ws://h/*", None),
    ("ws://h/**", None),
    ("**/chat", None),
    ("**/chat*", None),
    ("ws://h/chat?room=1", None),
    ("ws://h:1", None),
    ("ws://h/{chat,feed,a\\,b}", None),
    ("{ws,wss}://h/**", None),
    ("ws://h/a\\*b", None),
    ("ws://h/\\{a,b\\}", None),
    ("ws://h/[ab]", None),
    ("ws://h/a.b", None),
    ("ws://h/a\\\\b", None),
    ("/ws", BASE),
    ("ws", BASE),
    ("/{ws,feed}", BASE),
    ("HTTP://h/chat", None),
    ("*", None),
    ("**", None),
]


@pytest.mark.parametrize(("glob", "base_url"), SAMPLE_GLOBS)
def test_glob_page_filter_is_the_python_regex(glob: str, base_url: str | None) -> None:
    matcher = UrlMatcher.compile(glob, base_url)
    page_filter = matcher.page_filter()
    assert page_filter is not None
    source, flags = page_filter
    assert flags == ""
    assert source.startswith("^")
    assert source.endswith("$")
    # The page tests exactly the regular expression Python matches with.
    for url in SAMPLE_URLS:
        assert matcher.matches(url) is (re.fullmatch(source, url) is not None), url
        assert matcher.matches(url) is (re.search(source, url) is not None), url


def test_glob_page_filter_of_an_absolute_glob_is_its_regex_source() -> None:
    glob = "ws://h/{a,b}/*/**"
    assert UrlMatcher.compile(glob).page_filter() == (glob_to_regex_source(glob), "")


PORTABLE_REGEXES: list[re.Pattern[str]] = [
    re.compile(r"/ws$"),
    re.compile(r"^wss?://[a-z0-9.-]+(:\d+)?/chat"),
    re.compile(r"(?:chat|feed)/(?!private)\w+"),
    re.compile(r"(?=.*room)ws"),
    re.compile(r"\bchat\b"),
    re.compile(r"\.example\.com[:/]"),
    re.compile(r"a{2,3}|b+?|c*|d?"),
    re.compile(r"[^/]+/[^?]*\?x=\d+"),
    re.compile(r"\/ws\/\-\:"),
    re.compile(r"\S\s\D\W"),
    re.compile(r"CHAT", re.IGNORECASE),
    re.compile(r"^ws://h/(a|b)$"),
    re.compile(r".*"),
    re.compile(r"x{"),
]


@pytest.mark.parametrize("pattern", PORTABLE_REGEXES, ids=lambda p: p.pattern)
def test_portable_regex_page_filter(pattern: re.Pattern[str]) -> None:
    matcher = UrlMatcher.compile(pattern)
    expected_flags = "i" if pattern.flags & re.IGNORECASE else ""
    assert matcher.page_filter() == (pattern.pattern, expected_flags)
    for url in SAMPLE_URLS:
        assert matcher.matches(url) is _filter_accepts(matcher, url, search=True), url


@pytest.mark.parametrize(
    "pattern",
    [
        re.compile(r"(?P<name>chat)"),
        re.compile(r"(?P<name>chat)(?P=name)"),
        re.compile(r"\Aws://"),
        re.compile(r"/ws\Z"),
        re.compile(r"ws :// h", re.VERBOSE),
        re.compile(r"^ws://h/$", re.MULTILINE),
        re.compile(r"ws://h/.*", re.DOTALL),
        re.compile(r"(?<=/)chat"),
        re.compile(r"(?<!/)chat"),
        re.compile(r"/ch\u00e4t"),
        re.compile("/chät"),
        re.compile(r"(?i)chat"),
        re.compile(r"(?i:chat)"),
        re.compile(r"(?#comment)chat"),
        re.compile(r"(a)\1"),
        re.compile(r"(?>a+)b"),
        re.compile(r"(a)?(?(1)b|c)"),
    ],
    ids=lambda p: f"{p.pattern}/{p.flags}",
)
def test_non_portable_regex_has_no_page_filter(pattern: re.Pattern[str]) -> None:
    matcher = UrlMatcher.compile(pattern)
    assert matcher.page_filter() is None
    # Python still decides with the pattern itself.
    assert matcher.matches("ws://h/chat") is (pattern.search("ws://h/chat") is not None)


@pytest.mark.parametrize(
    "pattern",
    [
        re.compile(r"[]a]"),  # Python: the class {']', 'a'}; JavaScript: an empty class, then "a]"
        re.compile(r"[^]a]"),  # Python: not ']' or 'a'; JavaScript: any character, then "a]"
        re.compile(r"/a{,3}b"),  # Python: 0 to 3 'a'; JavaScript (no u flag): the literal "a{,3}b"
        re.compile(r"/a*+b"),  # possessive quantifiers: a SyntaxError in JavaScript
        re.compile(r"/a++b"),
        re.compile(r"/a?+b"),
        re.compile(r"/a{2}+b"),
    ],
    ids=lambda p: p.pattern,
)
def test_regex_javascript_reads_differently_has_no_page_filter(pattern: re.Pattern[str]) -> None:
    """``_portable_regex`` promises "if JavaScript reads it exactly as Python does"."""
    assert UrlMatcher.compile(pattern).page_filter() is None


# -- property: the page filter of a glob agrees with Python and with an independent glob matcher -----


@dataclass(frozen=True)
class _Tok:
    kind: str  # "lit", "star", "dstar", "alt"
    glob: str
    text: str = ""  # for "lit": the literal characters it stands for
    alts: tuple[tuple[_Tok, ...], ...] = ()


_LITERALS = [
    ("a", "a"),
    ("b", "b"),
    ("ab", "ab"),
    ("/", "/"),
    (".", "."),
    ("?", "?"),
    ("[", "["),
    ("]", "]"),
    (",", ","),
    ("-", "-"),
    ("+", "+"),
    ("$", "$"),
    ("^", "^"),
    ("|", "|"),
    ("(", "("),
    ("\\*", "*"),
    ("\\{", "{"),
    ("\\}", "}"),
    ("\\,", ","),
    ("\\\\", "\\"),
    ("\\a", "a"),
    ("\\?", "?"),
]
_URL_ALPHABET = "ab/.?[],*{}\\-+$^|("

_lit = st.sampled_from(_LITERALS).map(lambda lt: _Tok("lit", lt[0], lt[1]))
_star = st.just(_Tok("star", "*"))
_dstar = st.just(_Tok("dstar", "**"))
_simple = st.one_of(_lit, _lit, _star, _dstar)
_alternative = st.lists(_simple, max_size=3).map(tuple)
_alt = st.lists(_alternative, min_size=1, max_size=3).map(
    lambda alts: _Tok("alt", "{" + ",".join("".join(t.glob for t in alt) for alt in alts) + "}", alts=tuple(alts))
)
_PREFIXES = ["", "ws://h/", "**/"]


def _render(tokens: tuple[_Tok, ...] | list[_Tok]) -> str:
    return "".join(t.glob for t in tokens)


def _instantiate(draw: st.DrawFn, tokens: tuple[_Tok, ...] | list[_Tok]) -> str:
    """A URL the glob probably matches."""
    out = []
    for tok in tokens:
        if tok.kind == "lit":
            out.append(tok.text)
        elif tok.kind == "star":
            out.append(draw(st.text(alphabet=_URL_ALPHABET.replace("/", ""), max_size=3)))
        elif tok.kind == "dstar":
            out.append(draw(st.text(alphabet=_URL_ALPHABET, max_size=4)))
        else:
            out.append(_instantiate(draw, draw(st.sampled_from(tok.alts))))
    return "".join(out)


def _reference_glob_match(glob: str, url: str) -> bool:
    """An independent reading of the glob rules: expand the groups, then match by backtracking."""
    # Parse into parts; each part is a list of alternatives; each alternative a list of atoms.
    parts: list[list[list[str]]] = []
    alternatives: list[list[str]] | None = None
    current: list[str] = []
    i = 0
    while i < len(glob):
        char = glob[i]
        if char == "\\":
            current.append("L" + glob[i + 1])
            i += 2
            continue
        if char == "*":
            j = i
            while j < len(glob) and glob[j] == "*":
                j += 1
            current.append("**" if j - i > 1 else "*")
            i = j
            continue
        if char == "{":
            parts.append([current])
            alternatives, current = [], []
        elif char == "," and alternatives is not None:
            alternatives.append(current)
            current = []
        elif char == "}":
            assert alternatives is not None
            alternatives.append(current)
            parts.append(alternatives)
            alternatives, current = None, []
        else:
            current.append("L" + char)
        i += 1
    parts.append([current])
    for choice in itertools.product(*parts):
        atoms = tuple(atom for alt in choice for atom in alt)
        if _match_atoms(atoms, url):
            return True
    return False


@functools.cache
def _match_atoms(atoms: tuple[str, ...], url: str) -> bool:
    if not atoms:
        return not url
    head, rest = atoms[0], atoms[1:]
    if head == "**":
        return any(_match_atoms(rest, url[k:]) for k in range(len(url) + 1))
    if head == "*":
        k = 0
        while True:
            if _match_atoms(rest, url[k:]):
                return True
            if k == len(url) or url[k] == "/":
                return False
            k += 1
    return url[:1] == head[1] and _match_atoms(rest, url[1:])


@st.composite
def _glob_and_url(draw: st.DrawFn) -> tuple[str, str]:
    prefix = draw(st.sampled_from(_PREFIXES))
    tokens = draw(st.lists(st.one_of(_simple, _alt), max_size=6))
    glob = prefix + _render(tokens)
    data_url = draw(st.booleans())
    if data_url:
        url_prefix = "ws://h/" if prefix == "ws://h/" else draw(st.sampled_from(["", "ws://h/", "x/"]))
        url = url_prefix + _instantiate(draw, tokens)
        if draw(st.booleans()):  # a small mutation, to probe the edges
            position = draw(st.integers(0, len(url)))
            url = url[:position] + draw(st.sampled_from(list(_URL_ALPHABET))) + url[position + 1 :]
    else:
        url = draw(st.sampled_from(["", "ws://h/"])) + draw(st.text(alphabet=_URL_ALPHABET, max_size=10))
    return glob, url


@settings(max_examples=600, deadline=None)
@given(_glob_and_url())
def test_glob_page_filter_agrees_with_python(glob_url: tuple[str, str]) -> None:
    glob, url = glob_url
    matcher = UrlMatcher.compile(glob)
    page_filter = matcher.page_filter()
    assert page_filter is not None
    source, flags = page_filter
    assert flags == ""
    expected = _reference_glob_match(glob, url)
    assert matcher.matches(url) is expected
    assert (re.fullmatch(source, url) is not None) is expected
    assert (re.search(source, url) is not None) is expected  # what JavaScript's RegExp#test does


def test_reference_matcher_sanity() -> None:
    """The property test's oracle must itself be right, or it proves nothing."""
    assert _reference_glob_match("a*b", "axxb")
    assert not _reference_glob_match("a*b", "ax/b")
    assert _reference_glob_match("a**b", "ax/b")
    assert _reference_glob_match("{a,b/}c", "b/c")
    assert not _reference_glob_match("{a,b/}c", "c")
    assert _reference_glob_match("\\*\\{", "*{")
    assert not _reference_glob_match("a", "ab")


@pytest.mark.parametrize(
    "url",
    [
        "ws://h/a\n",  # Python's `$` also matches before a final newline; JavaScript's does not
        "ws://h/a\nb",
        "ws://h/a\rb",
        "ws://h/a\u2028b",  # JavaScript's `.` stops at line terminators, `**` must not
    ],
)
def test_glob_page_filter_agrees_on_line_terminators(url: str) -> None:
    """``page_filter()`` must accept every URL ``matches()`` accepts (its docstring), whatever the URL,
    and ``**`` is "any run at all". Read with JavaScript's semantics: ``.`` excludes \\n \\r \\u2028
    \\u2029 and ``$`` matches only at the very end."""
    for glob, expected in (("ws://h/a", url == "ws://h/a"), ("ws://h/**", True), ("**b", url.endswith("b"))):
        matcher = UrlMatcher.compile(glob)
        assert matcher.matches(url) is expected, glob
        assert _filter_accepts_like_javascript(matcher, url) is expected, glob


def _filter_accepts_like_javascript(matcher: UrlMatcher, url: str) -> bool:
    """The page filter read as a non-multiline JavaScript RegExp reads it: ``.`` is
    ``[^\\n\\r\\u2028\\u2029]`` and ``$`` is the very end of the input."""
    page_filter = matcher.page_filter()
    assert page_filter is not None
    source, _ = page_filter
    out = []
    i = 0
    while i < len(source):
        char = source[i]
        if char == "\\":
            out.append(source[i : i + 2])
            i += 2
            continue
        if char == "[":
            end = source.index("]", i + 1)
            out.append(source[i : end + 1])
            i = end + 1
            continue
        out.append({".": "[^\n\r\u2028\u2029]", "$": r"\Z"}.get(char, char))
        i += 1
    return re.search("".join(out), url) is not None


# -- JavaScript itself --------------------------------------------------------------------------------

# Runs in the page the shim runs in: Chromium's own V8 is the engine that matters.
_JS_CHECK = r"""(cases) => cases.map(([source, flags, urls]) => {
  let re;
  try { re = new RegExp(source, flags); } catch (e) { return "SyntaxError: " + e.message; }
  return urls.map((u) => re.test(u));
})"""


def _random_globs(count: int) -> list[str]:
    rng = random.Random(20240601)
    atoms = [g for g, _ in _LITERALS] + ["*", "**", "/"]
    globs = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(0, 6)):
            if rng.random() < 0.2:
                alts = ["".join(rng.choice(atoms) for _ in range(rng.randint(0, 2))) for _ in range(rng.randint(1, 3))]
                parts.append("{" + ",".join(alts) + "}")
            else:
                parts.append(rng.choice(atoms))
        globs.append(rng.choice(_PREFIXES) + "".join(parts))
    return globs


def _random_urls(count: int) -> list[str]:
    rng = random.Random(7)
    return [
        rng.choice(["", "ws://h/", "x/"]) + "".join(rng.choice(_URL_ALPHABET) for _ in range(rng.randint(0, 8)))
        for _ in range(count)
    ]


async def test_page_filters_compile_and_agree_in_javascript(page: Page) -> None:
    """In Chromium: every page filter compiles with ``new RegExp(source, flags)`` and its ``test``
    agrees with ``matches`` (globs: SAMPLE_GLOBS and 300 random ones; every regex that gets a filter)."""
    matchers: list[UrlMatcher] = [UrlMatcher.compile(glob, base) for glob, base in SAMPLE_GLOBS]
    matchers += [UrlMatcher.compile(glob) for glob in _random_globs(300)]
    regexes = [
        *PORTABLE_REGEXES,
        re.compile(r"[]a]"),
        re.compile(r"[^]a]"),
        re.compile(r"/a{,3}b"),
        re.compile(r"/a*+b"),
    ]
    matchers += [UrlMatcher.compile(p) for p in regexes]
    urls = [*SAMPLE_URLS, *_random_urls(60), "]a]", "xa]", "/aab", "/a{,3}b", "/aaab"]
    cases = []
    kept = []
    for matcher in matchers:
        page_filter = matcher.page_filter()
        if page_filter is None:
            continue
        kept.append(matcher)
        cases.append([page_filter[0], page_filter[1], urls])
    assert len(kept) > 320  # the portable regexes really were checked
    answers = await page.evaluate(_JS_CHECK, cases)
    problems = []
    for matcher, answer in zip(kept, answers, strict=True):
        if isinstance(answer, str):
            problems.append(f"{matcher.pattern!r}: {answer}")
            continue
        for url, in_javascript in zip(urls, answer, strict=True):
            if matcher.matches(url) is not in_javascript:
                problems.append(
                    f"{matcher.pattern!r} on {url!r}: Python {not in_javascript}, JavaScript {in_javascript}"
                )
    assert not problems, f"{len(problems)} disagreements:\n" + "\n".join(problems[:30])
