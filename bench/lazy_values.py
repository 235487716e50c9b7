"""What keeping a message's ``properties`` as the client's bytes would save, and what it costs.

    python bench/lazy_values.py [--repeat 7]

Issue 11 asked whether the Tracking API could leave the values no ingest check reads
(``properties``, ``traits``) undecoded (``msgspec.Raw``) for batches. Each figure is the best
of ``--repeat`` timings of a batch of 100 ``bench/batch.lua`` events (~700 bytes, 295 of them
properties), in CPU-µs per event on one core:

- the ways to decode one message (today's whole decode; ``dict[str, Raw]`` with every other
  member decoded, which keeps the message's key order and ``normalize`` on dicts; a Struct for
  the top level with properties raw or decoded, which needs a second normalize);
- the checks a kept value needs to stay exact (an object; no raw CR/LF for the archive's JSON
  lines; valid UTF-8; no number out of float range), which ``Raw`` skipping does not do;
- encoding the stored event with properties decoded or raw, and what ``decode_batch`` pays
  besides decoding (skimming the body for the messages' bytes, the per-message bracket count).

Freeing is part of each decode figure (the result is dropped before the next message).
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from msgspec import UNSET, Raw, UnsetType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from headwater.ingest.body import decode_batch  # noqa: E402

ITEM = (
    '{"type":"track","userId":"user-%d","event":"Order Completed","messageId":"bench-%d",'
    '"properties":{"order_id":"o-%d","total":27.5,"revenue":25.0,"currency":"USD","products":'
    '[{"product_id":"507f1f77bcf86cd799439011","sku":"45790-32","name":"Monopoly: 3rd Edition",'
    '"price":19,"quantity":1},{"product_id":"505bd76785ebb509fc183733","sku":"46493-32",'
    '"name":"Uno Card Game","price":3,"quantity":2}]},"context":{"library":{"name":'
    '"analytics-python","version":"2.3.4"},"page":{"path":"/checkout","url":'
    '"https://shop.example.com/checkout","title":"Checkout"},"userAgent":"Mozilla/5.0 '
    "(Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    'Chrome/113.0.0.0 Safari/537.36","ip":"203.0.113.7"}}'
)
MESSAGES = [(ITEM % (i % 1000, i, i)).encode() for i in range(100)]
BODY = b'{"batch":[' + b",".join(MESSAGES) + b"]}"


class Message(msgspec.Struct, forbid_unknown_fields=True):
    """Segment's top-level fields; anything else would take today's path."""

    type: Any = UNSET
    userId: Any = UNSET
    anonymousId: Any = UNSET
    event: Any = UNSET
    messageId: Any = UNSET
    timestamp: Any = UNSET
    originalTimestamp: Any = UNSET
    sentAt: Any = UNSET
    receivedAt: Any = UNSET
    context: Any = UNSET
    integrations: Any = UNSET
    properties: Raw | UnsetType = UNSET
    traits: Raw | UnsetType = UNSET
    name: Any = UNSET
    category: Any = UNSET
    groupId: Any = UNSET
    previousId: Any = UNSET
    channel: Any = UNSET
    version: Any = UNSET
    writeKey: Any = UNSET


class DecodedMessage(Message, forbid_unknown_fields=True):
    properties: Any = UNSET
    traits: Any = UNSET


_decode = msgspec.json.Decoder().decode
_members = msgspec.json.Decoder(dict[str, Raw]).decode
_struct = msgspec.json.Decoder(Message).decode
_decoded_struct = msgspec.json.Decoder(DecodedMessage).decode
_encode = msgspec.json.Encoder().encode
# Digits and signs to "0", exponent marks to "e", the rest to " ": an exponent of 3 digits or
# more ("e000", "e+000" becomes "e0000") or a 16-digit run may leave float range.
_NUMBERS = bytes(
    48 if 48 <= c <= 57 or c in b"+-" else (101 if c in b"eE" else 32) for c in range(256)
)


def keepable(value: Raw) -> bool:
    """The cheapest exact-or-conservative test found for keeping a value as sent."""
    text = bytes(value)
    if text[:1] != b"{" or 10 in text or 13 in text or not text.isascii():
        return False
    numbers = text.translate(_NUMBERS)
    return b"e000" not in numbers and b"0000000000000000" not in numbers


def members_decoded(message: bytes) -> dict[str, Any]:
    value = _members(message)
    for key, member in value.items():
        if key != "properties" and key != "traits":
            value[key] = _decode(member)
    return value


_items = msgspec.json.Decoder(list[Raw]).decode


def skim() -> list[Raw]:
    """What ``decode_batch`` does before decoding any message."""
    return _items(_members(BODY)["batch"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    kept = [_members(m)["properties"] for m in MESSAGES]
    decoded = [_decode(m) for m in MESSAGES]
    raw_props = [members_decoded(m) for m in MESSAGES]
    cases: list[tuple[str, Callable[[], object]]] = [
        ("decode_batch today (100 messages, per message)", lambda: decode_batch(BODY)),
        ("skim: the body's members, then its messages as Raw", skim),
        ("decode: whole message", lambda: [_decode(m) for m in MESSAGES]),
        (
            "decode: dict[str, Raw], other members decoded",
            lambda: [members_decoded(m) for m in MESSAGES],
        ),
        ("decode: Struct, properties raw", lambda: [_struct(m) for m in MESSAGES]),
        ("decode: Struct, properties decoded", lambda: [_decoded_struct(m) for m in MESSAGES]),
        ("checks on the kept properties", lambda: [keepable(p) for p in kept]),
        ("encode: properties decoded", lambda: _encode(decoded)),
        ("encode: properties raw", lambda: _encode(raw_props)),
        (
            "bracket count (decode_batch's depth bound)",
            lambda: [m.count(b"[") + m.count(b"{") for m in MESSAGES],
        ),
    ]
    assert all(keepable(p) for p in kept)
    for name, run in cases:
        best = min(timeit.repeat(run, number=200, repeat=args.repeat)) / 200 / len(MESSAGES)
        print(f"{name:52s} {best * 1e6:6.2f} µs")


if __name__ == "__main__":
    main()
