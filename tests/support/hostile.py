"""Hostile input for the "never a 500" tests: JSON values no honest client sends.

Values are JSON *text*, not Python objects, so that what no JSON library would write can be
sent anyway: lone surrogates as ``\\ud800`` escapes, ``NaN``, numbers past every range, nesting
deeper than any recursive parser allows.
"""

from __future__ import annotations

import gzip
import zlib


def deep_array(depth: int) -> str:
    return "[" * depth + "]" * depth


def deep_object(depth: int, leaf: str = "1") -> str:
    return '{"a":' * depth + leaf + "}" * depth


# Values a field may be given: each is a complete JSON text.
VALUES: list[str] = [
    # nesting
    deep_array(150),
    deep_array(999),
    deep_array(1000),
    deep_array(2000),
    deep_array(10_000),
    deep_object(150),
    deep_object(999),
    deep_object(2000),
    "[" * 3000,  # deep and unterminated
    # strings no UTF-8 encoder takes
    '"\\ud800"',
    '"\\udfff"',
    '"a\\ud800b"',
    '"\\udc00\\ud800"',
    '{"\\ud800":1}',
    '["\\ud800"]',
    '"\\u0000"',
    '"\\uffff"',
    # numbers past every range
    "1e999",
    "-1e999",
    "1e-999",
    "1" + "0" * 400,
    "-" + "9" * 5000,
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "NaN",
    "Infinity",
    "-Infinity",
    # wrong types
    "null",
    "true",
    "0",
    "-1",
    "1.5",
    '""',
    "[]",
    "{}",
    '"x"',
    "[null]",
    '{"": null}',
    '"' + "x" * 5000 + '"',
]

# Whole bodies that are not JSON objects at all.
RAW_BODIES: list[bytes] = [
    b"",
    b" ",
    b"\x00",
    b"{",
    b"}",
    b"[",
    b"{{}}",
    b"\xff\xfe\xfd",
    b"\xef\xbb\xbf{}",
    b'{"a":"\xff"}',
    b'{"a":"\xed\xa0\x80"}',
    b'{"a":"\xc0\xaf"}',
    b'{"a":1,}',
    b"'a'",
    b'{"a":1}{"b":2}',
    b"null",
    b"[]",
    b"1e999",
    b"NaN",
]

# (body, Content-Encoding) pairs: broken, mislabelled and exploding compressed bodies.
_bomb = gzip.compress(b" " * (20 << 20), compresslevel=9)
_deep_gzip = gzip.compress(deep_array(100_000).encode())
ENCODED_BODIES: list[tuple[bytes, str]] = [
    (b"not gzip at all", "gzip"),
    (b"", "gzip"),
    (b"\x1f\x8b\x08\x00garbage", "gzip"),
    (gzip.compress(b'{"userId":"u","event":"e"}')[:-9], "gzip"),  # truncated
    (gzip.compress(b'{"userId":"u","event":"e"}') + b"trailing garbage", "gzip"),
    (gzip.compress(b'{"userId":"u","event":"e"}')[:-4] + b"\0\0\0\0", "gzip"),  # bad length
    (gzip.compress(b"{not json"), "gzip"),
    (gzip.compress(gzip.compress(b'{"userId":"u"}')), "gzip"),
    (_bomb, "gzip"),
    (_deep_gzip, "gzip"),
    (zlib.compress(b'{"userId":"u","event":"e"}')[:-3], "deflate"),
    (gzip.compress(b'{"userId":"u","event":"e"}'), "deflate"),
    (b'{"userId":"u","event":"e"}', "br"),
    (b'{"userId":"u","event":"e"}', "gzip, br"),
]

# Timestamps at and past the ends of what datetime (and JavaScript's Date) can hold.
TIMESTAMPS: list[str] = [
    '"0001-01-01T00:00:00.000Z"',
    '"9999-12-31T23:59:59.999Z"',
    '"+275760-09-13T00:00:00.000Z"',
    '"-271821-04-20T00:00:00.000Z"',
    '"0000-00-00T00:00:00Z"',
    '"2024-13-45T99:99:99Z"',
    '"2024-01-01T00:00:00+99:99"',
    '"\\ud800"',
    "1e308",
    "-1e308",
    "8640000000000001",
    "1e999",
]
