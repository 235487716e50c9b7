"""A space's identity settings: Segment's defaults, priorities, limits, blocked values.

A-UE-9 (the suggested blocked values), A-UE-13 and A-UE-17 (priority), A-UE-15 and A-UE-16 (limits, per period).
"""

from __future__ import annotations

import re

import msgspec
import pytest

from headwater.errors import InvalidError
from headwater.unify.settings import (
    DEFAULT_TYPES,
    SUGGESTED_BLOCKED,
    BlockedValue,
    IdentifierSetting,
    IdentitySettings,
    decode,
    encode,
    entry_of,
    settings_of,
)


def test_the_default_space_is_segments() -> None:
    """§2.1, §2.3.2, §2.3.3, §2.6: the 11 defaults, user_id 1 value and the rest 5, user_id
    ranked 1 and email 2, nothing blocked, 100 merges and 1,000 values a profile."""
    settings = IdentitySettings()
    assert [s.type for s in settings.identifiers] == list(DEFAULT_TYPES)
    assert len(DEFAULT_TYPES) == 11
    limits = {s.type: (s.limit, s.period) for s in settings.identifiers}
    assert limits.pop("user_id") == (1, "ever")
    assert set(limits.values()) == {(5, "ever")}
    assert {s.type: s.priority for s in settings.identifiers if s.priority} == {
        "user_id": 1,
        "email": 2,
    }
    assert all(not s.blocked for s in settings.identifiers)
    assert all(s.default and not s.custom for s in settings.identifiers)
    group = settings.get("group_id")
    assert group is not None and group.collection == "accounts"
    assert {s.collection for s in settings.identifiers if s.type != "group_id"} == {"users"}
    assert (settings.max_merges, settings.max_mappings) == (100, 1000)
    assert [s.type for s in settings.identifiers if s.merge_protected] == ["user_id"]


def test_a17_unranked_types_follow_alphabetically_and_reshuffle() -> None:
    """A-UE-17: seen {user_id, email, anonymous_id, ga_client_id} rank in that order; once
    android.id appears unranked it takes rank 3."""
    settings = IdentitySettings()
    seen = {"ga_client_id", "anonymous_id", "email", "user_id"}
    assert settings.priority_order(seen) == ["user_id", "email", "anonymous_id", "ga_client_id"]
    assert settings.priority_order(seen | {"android.id"}) == [
        "user_id",
        "email",
        "android.id",
        "anonymous_id",
        "ga_client_id",
    ]


def test_an_explicit_rank_comes_before_every_unranked_type() -> None:
    settings = IdentitySettings().with_identifier(IdentifierSetting(type="phone", priority=3))
    order = settings.priority_order(["anonymous_id", "phone", "android.id", "user_id", "zeta"])
    assert order == ["user_id", "phone", "android.id", "anonymous_id", "zeta"]
    unranked = IdentitySettings().with_identifier(IdentifierSetting(type="phone"))
    assert unranked.priority_order(["phone", "anonymous_id", "user_id"]) == [
        "user_id",
        "anonymous_id",
        "phone",
    ]


def test_a13_a15_a16_settings_read_from_a_config_shape() -> None:
    """The knobs of A-UE-13 (limits and priorities) and A-UE-16 (a limit per week) from plain data."""
    data = {
        "identifiers": [
            {"type": "user_id", "limit": 1, "priority": 1},
            {"type": "email", "limit": 5, "priority": 2},
            {"type": "anonymous_id", "limit": 5, "period": "weekly", "priority": 3},
            {"type": "phone", "key": "phone_number", "blocked": [{"value": "void"}]},
        ]
    }
    settings = msgspec.convert(data, IdentitySettings)
    anonymous = settings.get("anonymous_id")
    assert anonymous is not None and anonymous.window == 7 * 86_400.0
    assert not anonymous.merge_protected
    phone = settings.get("phone")
    assert phone is not None and phone.custom and phone.is_blocked("void")
    assert settings.priority_order(["phone", "anonymous_id"]) == ["anonymous_id", "phone"]
    with pytest.raises(msgspec.ValidationError, match="share priority"):
        msgspec.convert(
            {"identifiers": [{"type": "a", "priority": 1}, {"type": "b", "priority": 1}]},
            IdentitySettings,
        )


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: IdentifierSetting(type="Phone"), "lowercase"),
        (lambda: IdentifierSetting(type="phone:x"), "lowercase"),
        (lambda: IdentifierSetting(type="phone", limit=0), "limit"),
        (lambda: IdentifierSetting(type="phone", priority=0), "priority"),
        (lambda: IdentifierSetting(type="email", key="mail"), "custom identifiers only"),
        (lambda: IdentifierSetting(type="group_id"), "accounts collection"),
        (lambda: IdentifierSetting(type="user_id", collection="accounts"), "users collection"),
        (
            lambda: IdentifierSetting(type="phone", blocked=(BlockedValue(value="(", regex=True),)),
            "blocked pattern",
        ),
        (
            lambda: IdentitySettings(
                identifiers=(IdentifierSetting(type="a"), IdentifierSetting(type="a"))
            ),
            "twice",
        ),
        (lambda: IdentitySettings(max_mappings=0), "max_mappings"),
    ],
)
def test_settings_that_cannot_work_are_refused(build: object, message: str) -> None:
    with pytest.raises(InvalidError, match=re.escape(message)):
        build()  # type: ignore[operator]


@pytest.mark.parametrize("value", ["0", "000", "0-0", "---", "-1", "null", "anonymous", ""])
def test_a9_the_suggested_values_are_blocked(value: str) -> None:
    """A-UE-9: Segment's suggested blocked values, once opted into."""
    setting = IdentifierSetting(type="user_id", limit=1, blocked=SUGGESTED_BLOCKED)
    assert setting.is_blocked(value)
    assert not IdentifierSetting(type="user_id", limit=1).is_blocked(value)


@pytest.mark.parametrize("value", ["abc123", "10", "0a", "Null", "anonymous1", "1"])
def test_a9_other_values_are_not_blocked_unless_added(value: str) -> None:
    """A-UE-9: ``abc123`` is blocked only when the space adds it; exact matches are exact."""
    suggested = IdentifierSetting(type="user_id", limit=1, blocked=SUGGESTED_BLOCKED)
    assert not suggested.is_blocked(value)
    added = IdentifierSetting(
        type="user_id", limit=1, blocked=(*SUGGESTED_BLOCKED, BlockedValue(value=value))
    )
    assert added.is_blocked(value)


def test_entries_take_segments_presets_and_round_trip() -> None:
    """What the file and the API give: a left-out limit is the type's preset (user_id keeps its
    merge protection), a left-out collection the type's own; ``entry_of`` writes back only what
    differs, or every field."""
    settings = settings_of(
        [
            {"type": "user_id", "priority": 1, "blocked": [{"value": "-1"}]},
            {"type": "group_id"},
            {"type": "phone", "key": "phone_number", "period": "monthly"},
            {"type": "store_id", "collection": "accounts", "limit": 2},
        ]
    )
    user_id, group_id = settings.get("user_id"), settings.get("group_id")
    assert user_id is not None and user_id.limit == 1 and user_id.merge_protected
    assert user_id.is_blocked("-1") and not user_id.is_blocked("1")
    assert group_id is not None and (group_id.limit, group_id.collection) == (5, "accounts")
    written = [entry_of(s) for s in settings.identifiers]
    assert written == [
        {"type": "user_id", "priority": 1, "blocked": [{"value": "-1"}]},
        {"type": "group_id"},
        {"type": "phone", "period": "monthly", "key": "phone_number"},
        {"type": "store_id", "limit": 2, "collection": "accounts"},
    ]
    assert settings_of(written) == settings
    assert settings_of([entry_of(s, complete=True) for s in settings.identifiers]) == settings
    assert decode(encode(settings)) == settings
    assert encode(IdentitySettings()) is None and decode(None) == IdentitySettings()
    defaults = [entry_of(s) for s in IdentitySettings().identifiers]
    assert settings_of(defaults) == IdentitySettings()


@pytest.mark.parametrize(
    ("entries", "field"),
    [
        ([], "identifiers"),
        ([{"type": "a"}, {"type": "b", "limit": 0}], "identifiers[1].limit"),
        ([{"type": "a", "priority": 100_001}], "identifiers[0].priority"),
        ([{"type": "a", "blocked": [{"value": "x"}, {"value": "[", "regex": True}]}],
         "identifiers[0].blocked[1].value"),
        ([{"type": "a", "blocked": [{"value": "x" * 1001}]}], "identifiers[0].blocked[0].value"),
        ([{"type": "a", "key": "k\x00"}], "identifiers[0].key"),
        ([{"type": "a", "key": "\ud800"}], "identifiers[0].key"),
        ([{"type": "a", "priority": 3}, {"type": "b", "priority": 3}], "identifiers[1].priority"),
        ([{"type": "a"}, {"type": "a"}], "identifiers[1].type"),
    ],
)  # fmt: skip
def test_a_refused_entry_is_named(entries: list[dict[str, object]], field: str) -> None:
    with pytest.raises(InvalidError) as refused:
        settings_of(entries)
    assert refused.value.field == field
