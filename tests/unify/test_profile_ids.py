"""Profile ids: ``use_`` and a 27-character base62 KSUID (A-UE-1)."""

from __future__ import annotations

from headwater.unify.profile_ids import BASE62, KSUID_EPOCH, ProfileIds, is_profile_id

AT = 1_735_689_600.0  # 2025-01-01
DAY = 86_400


def _decode(profile_id: str) -> tuple[int, bytes]:
    number = 0
    for char in profile_id.removeprefix("use_"):
        number = number * 62 + BASE62.index(char)
    raw = number.to_bytes(20, "big")
    return int.from_bytes(raw[:4], "big"), raw[4:]


def test_a1_profile_ids_look_like_segments() -> None:
    """A-UE-1: ``^use_[0-9A-Za-z]{27}$``, like ``use_4paotyretuj4Ta2bEYQ0vKOq1e7``."""
    ids = ProfileIds()
    made = {ids.new(AT) for _ in range(1000)}
    assert len(made) == 1000
    assert all(is_profile_id(p) for p in made)
    assert is_profile_id("use_4paotyretuj4Ta2bEYQ0vKOq1e7")
    assert not is_profile_id("use_4paotyretuj4Ta2bEYQ0vKOq1e")
    assert not is_profile_id("usr_4paotyretuj4Ta2bEYQ0vKOq1e7")


def test_a1_an_id_is_a_ksuid_of_the_events_time() -> None:
    """The first 4 bytes are the seconds since the KSUID epoch, so ids sort by day."""
    profile_id = ProfileIds().new(AT)
    seconds, payload = _decode(profile_id)
    assert seconds + KSUID_EPOCH == int(AT)
    assert len(payload) == 16
    ids = ProfileIds()
    made = [ids.new(AT + day * DAY) for day in range(5, 0, -1)]
    assert sorted(made) == made[::-1]


def test_a_seeded_generator_repeats_itself() -> None:
    a, b = ProfileIds(42), ProfileIds(42)
    assert [a.new(AT) for _ in range(10)] == [b.new(AT) for _ in range(10)]
    assert ProfileIds(1).new(AT) != ProfileIds(2).new(AT)
    assert ProfileIds().new(AT) != ProfileIds().new(AT)


def test_times_out_of_range_are_clamped() -> None:
    assert _decode(ProfileIds().new(0))[0] == 0
    assert _decode(ProfileIds().new(1e12))[0] == 2**32 - 1
