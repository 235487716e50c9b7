"""``decode_batch`` answers exactly as ``decode_json`` does, and knows each message's size."""

from __future__ import annotations

from typing import Any

import pytest

from headwater.errors import BodyError
from headwater.ingest.body import BATCH_DEPTH, decode_batch, decode_json


def nest(depth: int) -> str:
    return "[" * (depth - 1) + "{}" + "]" * (depth - 1)


BODIES = [
    b'{"batch":[{"type":"track","userId":"u","event":"E"}]}',
    b'{"writeKey":"k","batch":[{"a":1},{"b":[2,{"c":null}]}],"sentAt":"2024-01-01T00:00:00Z"}',
    b'{"context":{"ip":"1.2.3.4"},"batch":[],"integrations":{"All":false}}',
    b' { "batch" : [ { "a" : 1 } , 2, "three", null, [4] ] } ',
    b'{"batch":{"not":"an array"}}',
    b'{"batch":"text"}',
    b'{"no batch":[]}',
    b'{"batch":[1],"batch":[2,3]}',  # the last one counts, as everywhere
    b"[1,2]",
    b'"a string"',
    b'{"batch":[{"s":"\\u00e9\\n\\"[[[{{{"}]}',
    '{"batch":[{"name":"Zoë ✓"}]}'.encode(),
    b'{"batch":[{"a":1},]}',  # trailing comma
    b'{"batch":[{"a":01}]}',
    b'{"batch":[{"a":"\xff"}]}',  # not UTF-8 in a message
    b'{"x":"\xff","batch":[]}',  # ... and beside the messages
    b'{"\xff":1,"batch":[]}',
    b'{"batch":[{"a":"\\ud800"}]}',  # a lone surrogate
    b'{"batch":[{"a":1e999}]}',  # out of range
    b'{"batch":[{"a":1}]',  # cut short
    b"",
    # Nesting: the limit, one past it, in a message and beside the messages; brackets in
    # strings are not nesting.
    ('{"batch":[' + nest(BATCH_DEPTH - 2) + "]}").encode(),
    ('{"batch":[' + nest(BATCH_DEPTH - 1) + "]}").encode(),
    ('{"context":' + nest(BATCH_DEPTH - 1) + ',"batch":[]}').encode(),
    ('{"context":' + nest(BATCH_DEPTH) + ',"batch":[]}').encode(),
    ('{"batch":[{"s":"' + "[" * 300 + '"}]}').encode(),
    ('{"batch":[' + "[" * 5000 + "]" * 5000 + "]}").encode(),
]


def outcome(decode: Any, raw: bytes) -> Any:
    try:
        return decode(raw)
    except BodyError as exc:
        return ("error", exc.code, exc.message)


@pytest.mark.parametrize("raw", BODIES)
def test_the_same_answer_as_decoding_the_body_whole(raw: bytes) -> None:
    whole = outcome(lambda r: decode_json(r, BATCH_DEPTH), raw)
    found = outcome(decode_batch, raw)
    if isinstance(whole, tuple):  # an error: the same code and message
        assert found == whole
    else:
        body, _ = found
        assert body == whole
        if isinstance(whole, dict):
            assert list(body) == list(whole)  # the body's own key order


def test_each_message_size_is_its_json_as_sent() -> None:
    items = [b'{"a":1}', b'{ "b" : [ 1 , 2 ] }', b"3", b'"\\u00e9"']
    raw = b'{"batch":[' + b" , ".join(items) + b'],"writeKey":"k"}'
    body, sizes = decode_batch(raw)
    assert sizes == [len(i) for i in items]
    assert body == {"batch": [{"a": 1}, {"b": [1, 2]}, 3, "é"], "writeKey": "k"}


def test_no_sizes_without_an_array_of_messages() -> None:
    assert decode_batch(b'{"batch":{}}') == ({"batch": {}}, None)
    assert decode_batch(b"[]") == ([], None)
