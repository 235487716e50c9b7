"""Record payloads decode into their typed shape; the consumer groups of a process share one
decoding of each payload they all read."""

from __future__ import annotations

import pytest

from headwater.errors import RecordError
from headwater.store import record as record_module
from headwater.store.record import decode_processed, decode_record
from tests.support.records import log_record, stored_event

AT = "2024-03-05T10:00:00.000Z"


def test_groups_reading_one_payload_share_its_decoding() -> None:
    payload = log_record("src_a", AT, [stored_event("m1", AT)])
    first = decode_processed(payload)
    assert decode_processed(payload) is first
    assert first == decode_record(payload)
    # an equal payload read separately (another read of the database) is decoded on its own
    assert decode_processed(bytes(bytearray(payload))) is not first


def test_the_shared_decodings_are_bounded_and_the_oldest_go_first() -> None:
    payloads = [
        log_record("src_a", AT, [stored_event(f"m{n}", AT)])
        for n in range(record_module._SHARED_RECORDS + 1)
    ]
    decoded = [decode_processed(p) for p in payloads]
    assert len(record_module._shared) <= record_module._SHARED_RECORDS
    assert decode_processed(payloads[-1]) is decoded[-1]
    assert decode_processed(payloads[0]) is not decoded[0]  # evicted: decoded again
    assert decode_processed(payloads[0]) == decoded[0]


def test_a_payload_that_is_not_a_record_is_refused_every_time() -> None:
    for _ in range(2):
        with pytest.raises(RecordError):
            decode_processed(b'{"v": 99}')
