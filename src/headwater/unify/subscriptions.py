"""Engage's user subscriptions (spec/unify-engage.md §18): a state per contact vector.

A *contact vector* is one email address or one phone number of a space, with its channel:
``EMAIL``, ``SMS`` or ``WHATSAPP`` (SMS and WhatsApp share a number and keep a state each). Its
state is ``subscribed``, ``unsubscribed``, ``did_not_subscribe`` or none at all ("No
subscription status": a contact Unify collected without the user giving it). An email address
also has a state per subscription group of the space (``subscription_groups``).

States are the space's, not a profile's: a profile shows the vectors its ``email`` and ``phone``
identifiers name (``profile_vectors``). Identity resolution applies an Identify's
``context.messaging_subscriptions`` (``messaging_subscriptions``) inside its pass, so a state is
set exactly once per event, and a subscription CSV sends its rows as such Identify calls; the
Public API's synchronous write (``subscription_replace``) applies the same items at once. A
write never replaces a newer state, whichever commits last. The rules every writer follows are here:

- the event's time decides: a state is set by an item of an event at least as recent as the one
  that set the current state, never by an older one (equal times: the later processed wins);
- a CSV cannot change an SMS number that is ``unsubscribed`` (``UNABLE_TO_SUBSCRIBE``): Segment
  treats every such number as one whose user texted STOP, which only the user's START, YES or
  UNSTOP reverses; an Identify can (it is how the user's own answer reaches Headwater);
- a group can be set to ``subscribed`` only while the email's own state is ``subscribed``
  (``GLOBAL_STATE_NOT_SUBSCRIBED``).

Statuses are read case-insensitively with ``-`` and ``_`` alike (§21 #16), stored as
``did_not_subscribe`` and shown per surface (``render_status``). Contacts are compared
normalized (``contact_key``): an email trimmed and lowercased, a phone number as its digits
(with its leading ``+``), so ``(123) 555-5555`` and ``123.555.5555`` are one vector; no country
code is ever guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal, NamedTuple, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from headwater import reasons
from headwater.errors import InvalidError
from headwater.store import schema
from headwater.unify.graph import GraphStore

Channel = Literal["EMAIL", "SMS", "WHATSAPP"]
CHANNELS: Final[tuple[Channel, ...]] = ("EMAIL", "SMS", "WHATSAPP")
Status = Literal["subscribed", "unsubscribed", "did_not_subscribe"]
STATUSES: Final[tuple[Status, ...]] = ("subscribed", "unsubscribed", "did_not_subscribe")
Surface = Literal["csv", "api", "sql"]
# A messaging step's "Which subscription states should receive this message?": subscribed users
# only (the default) or "All subscription states including unsubscribed".
SendSetting = Literal["subscribed", "all"]
SEND_SETTINGS: Final[tuple[SendSetting, ...]] = ("subscribed", "all")

# The identifier types whose values are contact vectors, and the channels each value is.
CONTACT_TYPES: Final[dict[str, tuple[Channel, ...]]] = {
    "email": ("EMAIL",),
    "phone": ("SMS", "WHATSAPP"),
}
MAX_EMAIL: Final = 254
_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f.]+(\.[^@\s\x00-\x1f\x7f.]+)+")
_PHONE_PUNCTUATION = re.compile(r"[\s\-.()]")
_PHONE = re.compile(r"\+?[0-9]{7,15}")
CHUNK: Final = 500  # keys per IN (…) of a read

# The messages of Segment's error report for each code (Headwater's own for its codes).
MESSAGES: Final[dict[str, str]] = {
    reasons.INVALID_EMAIL: "The email address isn't formatted correctly.",
    reasons.INVALID_PHONE: "The phone number is invalid.",
    reasons.INVALID_SUBSCRIPTION_STATUS: (
        "The subscription status is invalid. Check the status or leave it blank."
    ),
    reasons.CONFIGURATION_ERROR: (
        "The subscription group of this column was deleted before the row was applied."
    ),
    reasons.SYSTEM_ERROR: "Something went wrong. Please try again.",
    reasons.UNABLE_TO_SUBSCRIBE: (
        "You can't update the subscription status for this phone number because the user "
        "unsubscribed by replying `STOP`. The user must reply `START` to resubscribe."
    ),
    reasons.GLOBAL_STATE_NOT_SUBSCRIBED: (
        "Global state isn't subscribed or set, so the group's subscription state can't be updated."
    ),
    reasons.INVALID_SUBSCRIPTION: (
        "A messaging subscription must be an object with a key, a type and a status; groups "
        "are for EMAIL only."
    ),
    reasons.INVALID_SUBSCRIPTION_TYPE: "The type must be EMAIL, SMS or WhatsApp.",
    reasons.SUBSCRIPTION_GROUP_NOT_FOUND: "The space has no subscription group of this name.",
}


# --- values ----------------------------------------------------------------------------------


def parse_status(value: object) -> Status | None:
    """A status as any surface spells it; None for a blank one (no change, no status).
    ``InvalidError`` for anything else."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidError(MESSAGES[reasons.INVALID_SUBSCRIPTION_STATUS], "status")
    text = value.strip()
    if not text:
        return None
    canonical = text.lower().replace("-", "_")
    if canonical not in STATUSES:
        raise InvalidError(MESSAGES[reasons.INVALID_SUBSCRIPTION_STATUS], "status")
    return canonical


def render_status(status: Status | None, surface: Surface) -> str | None:
    """A status as a surface writes it: the CSV's ``did-not-subscribe``, the Identify call's
    and the APIs' ``DID_NOT_SUBSCRIBE``, SQL's ``did_not_subscribe``."""
    if status is None:
        return None
    if surface == "csv":
        return status.replace("_", "-")
    if surface == "api":
        return status.upper()
    return status


def parse_channel(value: object) -> Channel:
    """``EMAIL``, ``SMS`` or ``WHATSAPP``, in any case (Segment writes ``WhatsApp``)."""
    if isinstance(value, str) and value.strip().upper() in CHANNELS:
        return cast(Channel, value.strip().upper())
    raise InvalidError(MESSAGES[reasons.INVALID_SUBSCRIPTION_TYPE], "type")


def key_error(channel: Channel) -> str:
    """The code of a contact that is not one: ``INVALID_EMAIL`` or ``INVALID_PHONE``."""
    return reasons.INVALID_EMAIL if channel == "EMAIL" else reasons.INVALID_PHONE


def contact_key(channel: Channel, value: object) -> str:
    """The vector's key: an email trimmed and lowercased, a phone number's digits after its
    ``+``. ``InvalidError`` (with Segment's report message) when it is no contact."""
    if isinstance(value, int) and not isinstance(value, bool) and channel != "EMAIL":
        value = str(value)
    if not isinstance(value, str):
        raise InvalidError(MESSAGES[key_error(channel)], "key")
    text = value.strip()
    if channel == "EMAIL":
        key = text.lower()
        if len(key) > MAX_EMAIL or not _EMAIL.fullmatch(key):
            raise InvalidError(MESSAGES[reasons.INVALID_EMAIL], "key")
        return key
    digits = _PHONE_PUNCTUATION.sub("", text)
    if not _PHONE.fullmatch(digits):
        raise InvalidError(MESSAGES[reasons.INVALID_PHONE], "key")
    return digits


def sendable(status: Status | None, setting: SendSetting = "subscribed") -> bool:
    """Whether a messaging step sends to a vector in ``status``: by default only to
    ``subscribed`` ones; "All subscription states including unsubscribed" to every vector."""
    if setting == "all":
        return True
    return status == "subscribed"


# --- the rules -------------------------------------------------------------------------------


def newer(at: int, current_at: int | None) -> bool:
    """Whether an item of an event at ``at`` may replace a state set at ``current_at``."""
    return current_at is None or at >= current_at


def channel_refusal(
    channel: Channel, current: Status | None, new: Status, *, uploaded: bool
) -> str | None:
    """Why ``new`` may not replace ``current`` (a code), or None. Only a CSV is refused: an
    SMS number that is ``unsubscribed`` keeps that state until its user says otherwise."""
    if uploaded and channel == "SMS" and current == "unsubscribed" and new != "unsubscribed":
        return reasons.UNABLE_TO_SUBSCRIBE
    return None


def group_refusal(global_status: Status | None, new: Status) -> str | None:
    """Why a group may not be set to ``new`` while the email's own state is ``global_status``."""
    if new == "subscribed" and global_status != "subscribed":
        return reasons.GLOBAL_STATE_NOT_SUBSCRIBED
    return None


# --- states ----------------------------------------------------------------------------------


class GroupState(NamedTuple):
    group_id: str
    status: Status
    updated_at: int  # epoch milliseconds


class State(NamedTuple):
    """A vector's state; ``status`` None: no subscription status. ``groups``: an email's, by
    group id (deleted groups' too: they are kept)."""

    channel: Channel
    key: str
    status: Status | None = None
    updated_at: int | None = None
    groups: Mapping[str, GroupState] = {}


Vector = tuple[Channel, str]  # (channel, key)


def read_states(conn: Connection, space_id: str, vectors: Iterable[Vector]) -> dict[Vector, State]:
    """The states of ``vectors`` (a vector without one: ``State`` with no status), groups
    included, in two indexed reads per 500 keys."""
    wanted = list(dict.fromkeys(vectors))
    found: dict[Vector, State] = {v: State(*v) for v in wanted}
    keys = sorted({key for _, key in wanted})
    emails = sorted({key for channel, key in wanted if channel == "EMAIL"})
    t, g = schema.unify_subscriptions, schema.unify_group_subscriptions
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start : start + CHUNK]
        rows = conn.execute(
            sa.select(t.c.channel, t.c.key, t.c.status, t.c.updated_at).where(
                t.c.space_id == space_id, t.c.key.in_(chunk)
            )
        )
        for row in rows:
            vector = (row.channel, row.key)
            if vector in found:
                found[vector] = found[vector]._replace(
                    status=row.status, updated_at=int(row.updated_at)
                )
    groups: dict[str, dict[str, GroupState]] = {}
    for start in range(0, len(emails), CHUNK):
        chunk = emails[start : start + CHUNK]
        rows = conn.execute(
            sa.select(g.c.key, g.c.group_id, g.c.status, g.c.updated_at).where(
                g.c.space_id == space_id, g.c.key.in_(chunk)
            )
        )
        for row in rows:
            groups.setdefault(row.key, {})[row.group_id] = GroupState(
                row.group_id, row.status, int(row.updated_at)
            )
    for key, held in groups.items():
        vector = ("EMAIL", key)
        if vector in found:
            found[vector] = found[vector]._replace(groups=held)
    return found


def state_of(conn: Connection, space_id: str, channel: object, contact: object) -> State:
    """One vector's state, the contact as given (``InvalidError`` for a channel or a contact
    that is none)."""
    kind = parse_channel(channel)
    vector = (kind, contact_key(kind, contact))
    return read_states(conn, space_id, [vector])[vector]


class Written(NamedTuple):
    """A state to store: the vector's, or (``group_id`` given) one of its groups'."""

    channel: Channel
    key: str
    status: Status
    at: int
    source_id: str
    message_id: str
    group_id: str | None = None


def write_states(conn: Connection, space_id: str, written: Sequence[Written]) -> None:
    """Store states (identity resolution in its pass's transaction, the Public API's write in
    its own); a stored state newer than the one written stays."""
    vectors = {(w.channel, w.key): w for w in written if w.group_id is None}
    groups = {(w.key, w.group_id): w for w in written if w.group_id is not None}
    if vectors:
        _upsert(
            conn,
            schema.unify_subscriptions,
            [
                {
                    "space_id": space_id,
                    "channel": w.channel,
                    "key": w.key,
                    "status": w.status,
                    "updated_at": w.at,
                    "source_id": w.source_id[:40],
                    "message_id": w.message_id,
                }
                for w in vectors.values()
            ],
            ("space_id", "channel", "key"),
        )
    if groups:
        _upsert(
            conn,
            schema.unify_group_subscriptions,
            [
                {
                    "space_id": space_id,
                    "key": w.key,
                    "group_id": w.group_id,
                    "status": w.status,
                    "updated_at": w.at,
                }
                for w in groups.values()
            ],
            ("space_id", "key", "group_id"),
        )


def _upsert(
    conn: Connection, table: sa.Table, rows: list[dict[str, Any]], keys: Sequence[str]
) -> None:
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt: Any = sqlite_insert(table)
    else:
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(table)
    updates = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
    # Never older over newer, whichever writer commits last (identity resolution, the API).
    newest = table.c.updated_at <= stmt.excluded.updated_at
    conn.execute(
        stmt.on_conflict_do_update(index_elements=list(keys), set_=updates, where=newest), rows
    )


# --- a profile's vectors ---------------------------------------------------------------------


class ProfileVector(NamedTuple):
    """One contact vector of a profile: the identifier's value as the profile holds it."""

    channel: Channel
    value: str
    key: str


def profile_vectors(graph: GraphStore, profile_id: str) -> list[ProfileVector]:
    """The vectors a profile's ``email`` and ``phone`` identifiers name, in the order the graph
    got them (a phone number: its SMS vector, then its WhatsApp one); values that are no
    contact (``not-an-email``) name none. ``KeyError`` for an unknown profile."""
    found: list[ProfileVector] = []
    seen: set[Vector] = set()
    for identifier in graph.identifiers(profile_id, list(CONTACT_TYPES)):
        for channel in CONTACT_TYPES[identifier.type]:
            try:
                key = contact_key(channel, identifier.value)
            except InvalidError:
                continue
            if (channel, key) not in seen:
                seen.add((channel, key))
                found.append(ProfileVector(channel, identifier.value, key))
    return found


def profile_states(
    conn: Connection, space_id: str, graph: GraphStore, profile_id: str
) -> list[tuple[ProfileVector, State]]:
    """A profile's contact vectors with their states (what a messaging step checks with
    ``sendable``). ``KeyError`` for an unknown profile."""
    vectors = profile_vectors(graph, profile_id)
    states = read_states(conn, space_id, [(v.channel, v.key) for v in vectors])
    return [(v, states[(v.channel, v.key)]) for v in vectors]
