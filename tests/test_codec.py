"""The tunnel's wire format (``cdp_wsroute._codec``): pure, no browser.

Everything the page sends is untrusted: :func:`decode_batch` must keep every
well-formed message, give a reason for every bad one, and never raise.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_wsroute import _codec
from cdp_wsroute._codec import (
    MAX_MESSAGE_BYTES,
    MAX_PAYLOAD_CHARS,
    MAX_SOCKET_ID,
    Binary,
    Close,
    Create,
    Lost,
    PageMessage,
    Text,
    close_message,
    data_message,
    decode_batch,
    error_message,
    filters_message,
    is_protocol_token,
    is_valid_close_code,
    open_message,
    passthrough_message,
)

TOKEN = "tok-3f9a1c"


def _payload(*messages: Any, token: str = TOKEN) -> str:
    return json.dumps([token, *messages])


def _decode(*messages: Any) -> tuple[list[PageMessage], list[str]]:
    return decode_batch(_payload(*messages), TOKEN)


def _decode_one(message: Any) -> PageMessage:
    messages, errors = _decode(message)
    assert errors == []
    assert len(messages) == 1
    return messages[0]


def _reject_one(message: Any) -> str:
    """Decode a batch with this one message between two good ones; it must be the only casualty."""
    messages, errors = _decode(["l", 7], message, ["t", 8, "after"])
    assert messages == [Lost(7), Text(8, "after")], message
    assert len(errors) == 1, message
    assert isinstance(errors[0], str)
    assert errors[0]
    return errors[0]


# -- well-formed batches ------------------------------------------------------------------------------


def test_every_message_kind() -> None:
    messages, errors = _decode(
        ["c", 1, "ws://h:1/chat", ["chat", "v2.json"]],
        ["c", 2, "wss://h/", []],
        ["t", 1, "hello"],
        ["t", 1, ""],
        ["b", 1, base64.b64encode(b"\x00\x01\xff").decode()],
        ["b", 1, ""],
        ["x", 1, 1000, "bye"],
        ["x", 1, None, ""],
        ["x", 1, 3000, ""],
        ["x", 1, 4999, "r"],
        ["k", 2, None, ""],
        ["k", 2, 4000, "early"],
        ["l", 3],
    )
    assert errors == []
    assert messages == [
        Create(1, "ws://h:1/chat", ("chat", "v2.json")),
        Create(2, "wss://h/", ()),
        Text(1, "hello"),
        Text(1, ""),
        Binary(1, b"\x00\x01\xff"),
        Binary(1, b""),
        Close(1, 1000, "bye", connecting=False),
        Close(1, None, "", connecting=False),
        Close(1, 3000, "", connecting=False),
        Close(1, 4999, "r", connecting=False),
        Close(2, None, "", connecting=True),
        Close(2, 4000, "early", connecting=True),
        Lost(3),
    ]


def test_empty_batch() -> None:
    assert decode_batch(_payload(), TOKEN) == ([], [])


def test_text_keeps_unicode_exactly() -> None:
    text = "héllo \U0001f600 \u2028 \x00 \ufffd"
    assert _decode_one(["t", 5, text]) == Text(5, text)
    # The same text as JavaScript's JSON.stringify writes it (escaped surrogate pair).
    messages, errors = decode_batch(f'["{TOKEN}", ["t", 5, "\\ud83d\\ude00"]]', TOKEN)
    assert (messages, errors) == ([Text(5, "\U0001f600")], [])


@pytest.mark.parametrize("socket_id", [1, 2, 12345, MAX_SOCKET_ID])
def test_good_socket_ids(socket_id: int) -> None:
    assert MAX_SOCKET_ID == 2**53 - 1
    assert _decode_one(["l", socket_id]) == Lost(socket_id)
    assert _decode_one(["t", socket_id, "x"]) == Text(socket_id, "x")


@pytest.mark.parametrize(
    "reason",
    ["a" * 123, "é" * 61 + "a", "\U0001f600" * 30 + "abc", ""],
    ids=["123-ascii", "123-bytes-2byte", "123-bytes-4byte", "empty"],
)
def test_close_reason_up_to_123_utf8_bytes(reason: str) -> None:
    assert len(reason.encode()) <= 123
    assert _decode_one(["x", 1, 1000, reason]) == Close(1, 1000, reason, connecting=False)
    assert _decode_one(["k", 1, 1000, reason]) == Close(1, 1000, reason, connecting=True)


def test_protocol_tokens() -> None:
    token_chars = "!#$%&'*+-.^_`|~09AZaz"
    assert _decode_one(["c", 1, "ws://h/", [token_chars, "a"]]) == Create(1, "ws://h/", (token_chars, "a"))
    assert is_protocol_token("chat")
    assert not is_protocol_token("")
    for bad in ["a b", "a,b", "a/b", "a:b", "a;b", "a=b", "(a)", "é", "a\x00", 'a"', "a\t", "{a}"]:
        assert not is_protocol_token(bad), bad


@pytest.mark.parametrize("code", [1000, 3000, 3500, 4999])
def test_valid_close_codes(code: int) -> None:
    assert is_valid_close_code(code)


@pytest.mark.parametrize("code", [0, 999, 1001, 1005, 1006, 1011, 2999, 5000, 65535, -1000])
def test_invalid_close_codes(code: int) -> None:
    assert not is_valid_close_code(code)


# -- rejected whole --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    ["", "tok", TOKEN + "x", TOKEN.upper(), " " + TOKEN, TOKEN[:-1]],
)
def test_wrong_token_rejects_the_whole_batch(token: str) -> None:
    messages, errors = decode_batch(_payload(["l", 1], ["t", 1, "x"], token=token), TOKEN)
    assert messages == []
    assert len(errors) == 1
    assert "token" in errors[0]


@pytest.mark.parametrize(
    "payload",
    [None, 1, 1.5, True, b"[]", [TOKEN, ["l", 1]], {"token": TOKEN}, bytearray(b"x")],
    ids=repr,
)
def test_non_string_payload(payload: object) -> None:
    messages, errors = decode_batch(payload, TOKEN)
    assert messages == []
    assert len(errors) == 1
    assert "not a string" in errors[0]


@pytest.mark.parametrize(
    "payload",
    ["", "[", f'["{TOKEN}", ["l", 1]', f"['{TOKEN}']", "nul", f'["{TOKEN}",]', "\ud800", f'["{TOKEN}"] x'],
)
def test_non_json_payload(payload: str) -> None:
    messages, errors = decode_batch(payload, TOKEN)
    assert messages == []
    assert len(errors) == 1
    assert "not JSON" in errors[0]


@pytest.mark.parametrize(
    "payload",
    ["{}", f'{{"{TOKEN}": 1}}', f'"{TOKEN}"', "1", "null", "[]", '[1, ["l", 1]]', '[["l", 1]]', "[null]", "true"],
)
def test_payload_not_a_token_led_list(payload: str) -> None:
    messages, errors = decode_batch(payload, TOKEN)
    assert messages == []
    assert len(errors) == 1
    assert "token-led list" in errors[0]


def test_oversize_payload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_codec, "MAX_PAYLOAD_CHARS", 100)
    ok = _payload(["t", 1, "x" * (99 - len(_payload(["t", 1, ""])))])
    assert len(ok) == 99
    assert decode_batch(ok, TOKEN)[1] == []
    over = _payload(["t", 1, "x" * (101 - len(_payload(["t", 1, ""])))])
    assert len(over) == 101
    messages, errors = decode_batch(over, TOKEN)
    assert messages == []
    assert len(errors) == 1
    assert "too large" in errors[0]


def test_size_limits_fit_the_largest_message() -> None:
    # The largest binary frame, base64-encoded with padding, must fit a payload and a "b" message.
    largest_b64 = 4 * -(-MAX_MESSAGE_BYTES // 3)
    assert largest_b64 + len(_payload(["b", MAX_SOCKET_ID, ""])) <= MAX_PAYLOAD_CHARS


def test_deeply_nested_payload_does_not_raise() -> None:
    """A hostile page can nest arrays deeper than the recursion limit: still a reason, not a crash."""
    for payload in ["[" * 100_000, "[" * 100_000 + "]" * 100_000, f'["{TOKEN}", ' + "[" * 50_000 + "]" * 50_001]:
        messages, errors = decode_batch(payload, TOKEN)
        assert messages == []
        assert len(errors) == 1


def test_token_with_lone_surrogate_does_not_raise() -> None:
    """The token slot is page-controlled: a lone surrogate there is a wrong token, not an exception."""
    messages, errors = decode_batch('["\\ud800", ["l", 1]]', TOKEN)
    assert messages == []
    assert len(errors) == 1
    assert "token" in errors[0]


# -- one bad message among good ones --------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        None,
        1,
        "l",
        {"op": "l", "id": 1},
        [],
        [1, 1],
        [None, 1],
        [["l"], 1],
        ["?", 1],
        ["L", 1],
        ["o", 1, "", ""],  # a Python -> page kind
        ["e", 1],
        ["p", 1],
        ["r", [], False],
        ["", 1],
        ["lost", 1],
    ],
    ids=repr,
)
def test_not_a_message_or_unknown_kind(message: Any) -> None:
    _reject_one(message)


def test_unknown_kind_reason_names_it() -> None:
    assert "unknown message kind" in _reject_one(["zz", 1])


SOCKET_ID_TEMPLATES: list[list[Any]] = [
    ["l", None],
    ["t", None, "x"],
    ["b", None, ""],
    ["c", None, "ws://h/", []],
    ["x", None, 1000, ""],
    ["k", None, None, ""],
]


@pytest.mark.parametrize("template", SOCKET_ID_TEMPLATES, ids=lambda t: t[0])
@pytest.mark.parametrize(
    "socket_id",
    [0, -1, -(2**53), 1.0, 1.5, True, False, 2**53, 2**53 + 1, 2**64, 10**30, "1", None, [1], {"id": 1}, float("inf")],
    ids=repr,
)
def test_bad_socket_ids(template: list[Any], socket_id: Any) -> None:
    message = list(template)
    message[1] = socket_id
    assert "socket id" in _reject_one(message)


@pytest.mark.parametrize(
    "message",
    [
        ["l"],
        ["l", 1, 2],
        ["t", 1],
        ["t", 1, "x", "y"],
        ["b", 1],
        ["b", 1, "", ""],
        ["c", 1, "ws://h/"],
        ["c", 1, "ws://h/", [], 0],
        ["x", 1, 1000],
        ["x", 1, 1000, "", True],
        ["k", 1],
        ["k", 1, None, "", 0],
    ],
    ids=repr,
)
def test_wrong_arity(message: list[Any]) -> None:
    _reject_one(message)


@pytest.mark.parametrize("text", [None, 1, 5.5, ["x"], {"t": "x"}, True], ids=repr)
def test_text_must_be_a_string(text: Any) -> None:
    assert "bad text" in _reject_one(["t", 1, text])


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "\udc00\ud800", "ok\ud83d"], ids=ascii)
def test_text_with_lone_surrogates(text: str) -> None:
    assert "surrogate" in _reject_one(["t", 1, text])
    # The same, written raw into the payload instead of as a JSON escape.
    payload = json.dumps([TOKEN, ["t", 1, text], ["l", 2]], ensure_ascii=False)
    messages, errors = decode_batch(payload, TOKEN)
    assert messages == [Lost(2)]
    assert len(errors) == 1


def test_oversize_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_codec, "MAX_MESSAGE_BYTES", 10)
    assert _decode_one(["t", 1, "x" * 10]) == Text(1, "x" * 10)
    assert "too large" in _reject_one(["t", 1, "x" * 11])


@pytest.mark.parametrize(
    "data",
    ["!!!!", "QQ", "QQ=", "Q===", "QUJD\n", "QU JD", "é", "QUJ-", "QUJ_", "=QUJ", None, 1, [1]],
    ids=repr,
)
def test_bad_binary(data: Any) -> None:
    _reject_one(["b", 1, data])


def test_oversize_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    # The batch-level check comes first with the same limit, so check the message on its own.
    monkeypatch.setattr(_codec, "MAX_PAYLOAD_CHARS", 16)
    assert _codec._decode_one(["b", 1, "QUJD" * 4]) == Binary(1, b"ABC" * 4)
    with pytest.raises(ValueError, match="too large"):
        _codec._decode_one(["b", 1, "QUJD" * 5])


@pytest.mark.parametrize("kind", ["x", "k"])
@pytest.mark.parametrize(
    "code", [0, 999, 1001, 1005, 1006, 1015, 2999, 5000, -1, 1000.0, 3000.5, "1000", True, [1000]], ids=repr
)
def test_bad_close_codes(kind: str, code: Any) -> None:
    assert "close code" in _reject_one([kind, 1, code, ""])


@pytest.mark.parametrize("kind", ["x", "k"])
@pytest.mark.parametrize(
    "reason",
    ["a" * 124, "é" * 62, "\U0001f600" * 31, "a" * 10_000],
    ids=["124-ascii", "124-bytes-2byte", "124-bytes-4byte", "huge"],
)
def test_close_reason_over_123_bytes(kind: str, reason: str) -> None:
    assert "123 bytes" in _reject_one([kind, 1, 1000, reason])


@pytest.mark.parametrize("kind", ["x", "k"])
@pytest.mark.parametrize("reason", ["\ud800", "ok\udfff", "\ud800" * 42], ids=["lone", "trailing", "many"])
def test_close_reason_that_is_not_unicode(kind: str, reason: str) -> None:
    assert "not valid Unicode" in _reject_one([kind, 1, 1000, reason])


@pytest.mark.parametrize("url", ["ws://127.0.0.1:9/\u00e9", "ws://h\u00e9.test/", "ws://127.0.0.1:9/\ud800"])
def test_urls_no_serialiser_makes_are_rejected(url: str) -> None:
    assert "non-ASCII" in _reject_one(["c", 1, url, []])


@pytest.mark.parametrize("reason", [None, 1, ["r"]], ids=repr)
def test_close_reason_must_be_a_string(reason: Any) -> None:
    assert "bad close" in _reject_one(["x", 1, 1000, reason])


@pytest.mark.parametrize(
    "message",
    [
        ["c", 1, "", []],
        ["c", 1, None, []],
        ["c", 1, 1, []],
        ["c", 1, "ws://h/", None],
        ["c", 1, "ws://h/", "chat"],
        ["c", 1, "ws://h/", {"0": "chat"}],
    ],
    ids=repr,
)
def test_bad_create(message: list[Any]) -> None:
    _reject_one(message)


@pytest.mark.parametrize(
    "protocols",
    [
        ["chat", "chat"],
        ["a", "b", "a"],
        [""],
        ["a b"],
        ["a,b"],
        ["é"],
        [1],
        [None],
        [["chat"]],
        ["chat", 1],
        [f"p{i}" for i in range(257)],
    ],
    ids=lambda p: repr(p)[:30],
)
def test_bad_protocols(protocols: list[Any]) -> None:
    assert "protocols" in _reject_one(["c", 1, "ws://h/", protocols])


def test_duplicate_protocols_reason() -> None:
    assert "duplicate" in _reject_one(["c", 1, "ws://h/", ["chat", "chat"]])


def test_many_protocols_up_to_the_limit() -> None:
    protocols = [f"p{i}" for i in range(256)]
    assert _decode_one(["c", 1, "ws://h/", protocols]) == Create(1, "ws://h/", tuple(protocols))


def test_oversize_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_codec, "MAX_URL_CHARS", 20)
    url = "ws://h/" + "a" * 13
    assert len(url) == 20
    assert _decode_one(["c", 1, url, []]) == Create(1, url, ())
    assert "url" in _reject_one(["c", 1, url + "a", []])


def test_many_bad_messages_keep_all_good_ones() -> None:
    good: list[Any] = [["l", i] for i in range(1, 6)]
    bad: list[Any] = [["l", 0], ["t", 1, None], ["b", 1, "!"], ["x", 1, 1001, ""], ["?", 1]]
    interleaved = [m for pair in zip(good, bad, strict=True) for m in pair]
    messages, errors = _decode(*interleaved)
    assert messages == [Lost(i) for i in range(1, 6)]  # in order
    assert len(errors) == 5
    assert all(isinstance(e, str) and e for e in errors)


# -- round trips and the page-bound builders --------------------------------------------------------


def _as_sent(message: list[Any]) -> list[Any]:
    """A page-bound message as the page receives it (base64 as text)."""
    return _codec.plain_batch([message])[0]


def test_every_byte_value_round_trips() -> None:
    everything = bytes(range(256))
    assert _decode_one(_as_sent(data_message(9, everything))) == Binary(9, everything)
    for value in range(256):
        one = bytes([value])
        assert _decode_one(_as_sent(data_message(9, one))) == Binary(9, one)
        assert _decode_one(["b", 9, base64.b64encode(one * 3).decode()]) == Binary(9, one * 3)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_binary_round_trips(data: bytes) -> None:
    assert _decode_one(_as_sent(data_message(3, data))) == Binary(3, data)
    assert _decode_one(_as_sent(data_message(3, memoryview(data)))) == Binary(3, data)


def test_text_round_trips() -> None:
    for text in ["", "x", "héllo", "\U0001f600", "\x00\n\t", '"\\']:
        assert _decode_one(data_message(3, text)) == Text(3, text)


def test_page_bound_builders() -> None:
    assert open_message(4, "chat", "permessage-deflate") == ["o", 4, "chat", "permessage-deflate"]
    assert data_message(4, "hi") == ["t", 4, "hi"]
    assert data_message(4, b"\x00\xff") == ["b", 4, b"AP8="]  # base64 stays bytes until written
    assert data_message(4, b"") == ["b", 4, b""]
    assert _codec.part_message(4, b"\x00\xff") == ["m", 4, "b", b"AP8="]
    assert _codec.part_message(4, "h") == ["m", 4, "t", "h"]
    assert error_message(4) == ["e", 4]
    assert close_message(4, None, None, True) == ["c", 4, 1005, "", True]
    assert close_message(4, 1006, "", False) == ["c", 4, 1006, "", False]
    assert close_message(4, 3000, "bye", True) == ["c", 4, 3000, "bye", True]
    assert passthrough_message(4) == ["p", 4]
    assert filters_message([("^ws:\\/\\/h\\/$", ""), ("chat", "i")], True) == [
        "r",
        [["^ws:\\/\\/h\\/$", ""], ["chat", "i"]],
        True,
    ]
    # All of them are plain JSON once the base64 is text.
    built = [open_message(1, "", ""), data_message(1, b"x"), close_message(1, None, None, False)]
    plain = _codec.plain_batch(built)
    assert plain == [["o", 1, "", ""], ["b", 1, "eA=="], ["c", 1, 1005, "", False]]
    assert json.loads(json.dumps(plain)) == plain
    text_only = [data_message(1, "x")]
    assert _codec.plain_batch(text_only) is text_only  # nothing to convert: no copy


# -- fuzz -------------------------------------------------------------------------------------------------

_odd_chars = st.sampled_from(["\ud800", "\udfff", "\udc00", "\x00", '"', "\\", "é", "\U0001f600", "\u2028"])
# Mostly plain text, and some with lone surrogates and the characters JSON escapes.
_text = st.one_of(
    st.text(max_size=8),
    st.lists(st.one_of(_odd_chars, st.characters(max_codepoint=0x7F)), max_size=6).map("".join),
)
_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2, 2**53 - 1, 2**53, 1000, 1001, 3000, 4999, 5000]),
    st.sampled_from([0.0, -0.0, 1.0, 1.5, 1e300, float("inf"), float("-inf")]),
    _text,
    st.sampled_from(["c", "t", "b", "x", "k", "l", TOKEN, "QUJD", "ws://h/"]),
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=3), children, max_size=2),
    ),
    max_leaves=6,
)
# Message-shaped lists reach deeper into the validators than arbitrary values do.
_message_like = st.tuples(st.sampled_from(["c", "t", "b", "x", "k", "l", "?"]), st.lists(_json_values, max_size=3)).map(
    lambda kv: [kv[0], *kv[1]]
)


def _check_result(result: object) -> tuple[list[PageMessage], list[str]]:
    assert isinstance(result, tuple)
    assert len(result) == 2
    messages, errors = result
    assert isinstance(messages, list)
    assert isinstance(errors, list)
    assert all(isinstance(m, Create | Text | Binary | Close | Lost) for m in messages)
    assert all(isinstance(e, str) for e in errors)
    return messages, errors


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        _json_values,
        st.lists(_json_values, max_size=3),
        st.lists(st.one_of(_message_like, _json_values), max_size=4).map(lambda items: [TOKEN, *items]),
        st.tuples(_text, st.lists(_json_scalars, max_size=2)).map(lambda t: [t[0], *t[1]]),
    ),
    st.booleans(),
)
def test_fuzz_json_values(value: Any, ascii_only: bool) -> None:
    payload = json.dumps(value, ensure_ascii=ascii_only)
    messages, errors = _check_result(decode_batch(payload, TOKEN))
    if isinstance(value, list) and value and value[0] == TOKEN:
        # Every item is accounted for: decoded or rejected with a reason.
        assert len(messages) + len(errors) == len(value) - 1
    else:
        assert messages == []
        assert len(errors) == 1
    # Python values of any type, not only JSON text.
    _check_result(decode_batch(value, TOKEN))


@settings(max_examples=1000, deadline=None)
@given(st.one_of(_text, st.text(alphabet=st.sampled_from('[]{}",:0123456789.-etruflasn\\u '), max_size=40)))
def test_fuzz_strings(payload: str) -> None:
    messages, errors = _check_result(decode_batch(payload, TOKEN))
    assert messages == []
    assert len(errors) == 1
    _check_result(decode_batch(f'["{TOKEN}", {payload}]', TOKEN))
    _check_result(decode_batch(f'["{TOKEN}", ["t", 1, "{payload}"]]', TOKEN))


# ---------------------------------------------------------------- Python -> page: the batch expression

_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)  # what route.send() accepts
_OUTGOING = st.one_of(
    st.builds(_codec.data_message, st.integers(1, 2**53 - 1), st.binary(max_size=64)),
    st.builds(_codec.data_message, st.integers(1, 2**53 - 1), _TEXT),
    st.builds(_codec.part_message, st.integers(1, 2**53 - 1), st.binary(max_size=64)),
    st.builds(_codec.part_message, st.integers(1, 2**53 - 1), _TEXT),
    st.builds(_codec.close_message, st.integers(1, 99), st.sampled_from([None, 1000, 4999]), _TEXT, st.booleans()),
    st.builds(_codec.open_message, st.integers(1, 99), _TEXT, _TEXT),
    st.builds(_codec.ack_message, st.integers(1, 99), st.integers(0, 10**6)),
    st.builds(_codec.error_message, st.integers(1, 99)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_OUTGOING, min_size=1, max_size=8))
def test_batch_expression_is_the_expression_json_would_make(batch: list[list[Any]]) -> None:
    """Built by hand around base64 payloads, it is the very text of the JSON-encoded expression."""
    token = "aZ09-_tok"
    literal = json.dumps(_codec.plain_batch(batch), ensure_ascii=False, separators=(",", ":"))
    expression = f"__wsr_d({json.dumps(token)},{literal})"
    built = b"".join(_codec.batch_expression("__wsr_d", token, batch))
    assert built == json.dumps(expression, ensure_ascii=False).encode()
    assert json.loads(built) == expression


def test_batch_expression_of_a_big_binary_frame() -> None:
    data = bytes(range(256)) * 4096
    view = memoryview(data)
    batch = [_codec.part_message(3, view[:3000]), _codec.data_message(3, view[3000:])]
    built = b"".join(_codec.batch_expression("d", "t", batch))
    expression = json.loads(built)
    assert expression.startswith('d("t",')
    assert expression.endswith(")")
    parts = json.loads(expression[len('d("t",') : -1])
    assert base64.b64decode(parts[0][3]) + base64.b64decode(parts[1][2]) == data


# ---------------------------------------------------------------- page -> Python: frames in parts


def test_parts_decode_to_text_or_bytes() -> None:
    messages, errors = decode_batch(_payload(["m", 3, "t", "é😀"], ["m", 3, "b", "QUJD"], ["m", 4, "b", ""]), TOKEN)
    assert errors == []
    assert messages == [_codec.Part(3, "é😀"), _codec.Part(3, b"ABC"), _codec.Part(4, b"")]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (["m", 3, "x", "a"], "bad part message"),
        (["m", 3, "t"], "bad part message"),
        (["m", 3, "t", "a", "b"], "bad part message"),
        (["m", 3, "t", 5], "bad part message"),
        (["m", 3, ["t"], "a"], "bad part message"),
        (["m", 3, "t", "\ud800"], "lone surrogate"),
        (["m", 3, "b", "not base64!"], "invalid base64"),
        (["m", 0, "t", "a"], "bad socket id"),
    ],
)
def test_malformed_parts_are_rejected(message: list[Any], reason: str) -> None:
    messages, errors = decode_batch(json.dumps([TOKEN, message, ["t", 1, "ok"]]), TOKEN)
    assert messages == [Text(1, "ok")]
    assert len(errors) == 1
    assert reason in errors[0]


def test_a_part_over_the_frame_limit_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    # Parts go through the same checks as whole frames (binary: the same helper as "b", tested above).
    monkeypatch.setattr(_codec, "MAX_MESSAGE_BYTES", 8)
    assert decode_batch(_payload(["m", 3, "t", "x" * 8]), TOKEN) == ([_codec.Part(3, "x" * 8)], [])
    assert decode_batch(_payload(["m", 3, "t", "x" * 9]), TOKEN) == ([], ["text message too large"])


def test_part_chars_make_base64_parts_that_decode_alone() -> None:
    assert _codec.PART_CHARS % 4 == 0
    assert _codec.PART_CHARS < MAX_PAYLOAD_CHARS
