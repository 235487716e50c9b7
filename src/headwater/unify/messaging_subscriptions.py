"""An Identify's ``context.messaging_subscriptions`` (spec/unify-engage.md §18.2), applied by
identity resolution (the Public API's synchronous write, ``subscription_replace``, applies the
same items with the same rules).

The stage hands over a pass's resolved Identify calls that carry the field, in order, inside
its transaction, so every state is set exactly once with the rest of the event's resolution.
Each item is ``{key, type, status, groups: [{name, status}]}``: the type ``EMAIL``, ``SMS`` or
``WhatsApp`` in any case, the status in any of Segment's spellings, the groups an email's. The
rules are ``subscriptions``'; a state is set at the event's time as a trait is
(``timestamp``, never after ``receivedAt``).

Whatever cannot be applied is skipped, never the event: a malformed item, a contact that is
none, an unknown status, type or group, a refused change. Each is one Profiles Insights
violation whose name is its code (``reasons.SUBSCRIPTION_CODES``), about the item's contact
(``email`` or ``phone``), with the event; a subscription CSV's row (``subscription_upload``:
its ``messageId`` and the upload's source) also goes in the upload's error report, a group
deleted since the upload checked the file as ``CONFIGURATION_ERROR``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from headwater import reasons
from headwater.errors import InvalidError
from headwater.store import schema
from headwater.unify.identifiers import Event, text
from headwater.unify.insights import Insights
from headwater.unify.profiles import event_instant
from headwater.unify.resolution import Resolution
from headwater.unify.subscription_groups import SubscriptionGroup, group_key, live_groups
from headwater.unify.subscription_upload import KIND, RowError, cells_of, record_errors
from headwater.unify.subscriptions import (
    MESSAGES,
    Channel,
    GroupState,
    State,
    Status,
    Vector,
    Written,
    channel_refusal,
    contact_key,
    group_refusal,
    key_error,
    newer,
    parse_channel,
    parse_status,
    read_states,
    write_states,
)

FIELD: Final = "messaging_subscriptions"
_UPLOADED_ROW = re.compile(r"(upl_[0-9A-Za-z]{22})-([1-9][0-9]{0,9})")
_ID_TYPES: Final[dict[str, str]] = {"EMAIL": "email", "SMS": "phone", "WHATSAPP": "phone"}
MAX_SHOWN: Final = 1000  # characters of a refused item's contact kept in Insights


def carries(event: Mapping[str, Any]) -> bool:
    """Whether an event is an Identify with ``context.messaging_subscriptions``."""
    context = event.get("context")
    return event.get("type") == "identify" and type(context) is dict and FIELD in context


class Item(NamedTuple):
    """One usable item: its vector, the status to set (None: none given) and its groups'."""

    channel: Channel
    key: str
    status: Status | None
    groups: tuple[tuple[str, Status], ...]  # (name as sent, status)
    contact: str  # the key as sent


class Refusal(NamedTuple):
    """Why part of an item was not applied; ``contact`` as sent (None when it is no text)."""

    code: str
    channel: Channel | None
    contact: str | None


def items_of(event: Mapping[str, Any]) -> tuple[list[Item], list[Refusal]]:
    """An Identify's usable items and what was refused of them, in the event's order."""
    context = event.get("context")
    found = context.get(FIELD) if type(context) is dict else None
    if found is None:
        return [], []
    if type(found) is not list:
        return [], [Refusal(reasons.INVALID_SUBSCRIPTION, None, None)]
    items: list[Item] = []
    refused: list[Refusal] = []
    for raw in found:
        if type(raw) is not dict:
            refused.append(Refusal(reasons.INVALID_SUBSCRIPTION, None, None))
            continue
        contact = text(raw.get("key"))
        try:
            channel = parse_channel(raw.get("type"))
        except InvalidError:
            refused.append(Refusal(reasons.INVALID_SUBSCRIPTION_TYPE, None, contact))
            continue
        try:
            key = contact_key(channel, raw.get("key"))
        except InvalidError:
            refused.append(Refusal(key_error(channel), channel, contact))
            continue
        status: Status | None = None
        try:
            status = parse_status(raw.get("status"))
        except InvalidError:
            refused.append(Refusal(reasons.INVALID_SUBSCRIPTION_STATUS, channel, contact))
        groups: list[tuple[str, Status]] = []
        given = raw.get("groups")
        if given is not None and (channel != "EMAIL" or type(given) is not list):
            refused.append(Refusal(reasons.INVALID_SUBSCRIPTION, channel, contact))
        elif given is not None:
            for group in given:
                name = group.get("name") if type(group) is dict else None
                if not isinstance(name, str) or not name.strip():
                    refused.append(Refusal(reasons.INVALID_SUBSCRIPTION, channel, contact))
                    continue
                try:
                    group_status = parse_status(group.get("status"))
                except InvalidError:
                    code = reasons.INVALID_SUBSCRIPTION_STATUS
                    refused.append(Refusal(code, channel, contact))
                    continue
                if group_status is not None:
                    groups.append((name, group_status))
        items.append(Item(channel, key, status, tuple(groups), contact or key))
    return items, refused


class Tally(NamedTuple):
    """What a call of ``record`` did: states set, item parts refused."""

    applied: int
    refused: int


class _Upload(NamedTuple):
    id: str
    row: int
    columns: list[str]


class SubscriptionRecorder:
    """Applies a pass's ``messaging_subscriptions`` (one per process, beside ``Insights``)."""

    def __init__(self, insights: Insights, *, clock: Callable[[], float] = time.time) -> None:
        self._insights = insights
        self._clock = clock

    def record(
        self,
        conn: Connection,
        space_id: str,
        events: Sequence[tuple[str, Event, Resolution]],
    ) -> Tally:
        """Apply the items of these resolved Identify calls (``(source_id, event,
        resolution)``, in the pass's order) in the pass's transaction."""
        parsed = [(source_id, event, r, *items_of(event)) for source_id, event, r in events]
        vectors: list[Vector] = [(i.channel, i.key) for *_, items, _ in parsed for i in items]
        if not vectors and not any(refused for *_, refused in parsed):
            return Tally(0, 0)
        states = read_states(conn, space_id, vectors)
        wants_groups = any(i.groups for *_, items, _ in parsed for i in items)
        groups = live_groups(conn, space_id) if wants_groups else {}
        uploads = _uploads(conn, space_id, [(s, e) for s, e, *_ in parsed])
        now = int(self._clock() * 1000)
        written: dict[tuple[str, str, str | None], Written] = {}  # the last write of each
        insights: list[dict[str, Any]] = []
        report: dict[str, list[RowError]] = {}
        for source_id, event, resolution, items, refused in parsed:
            message_id = str(event.get("messageId") or "")
            at = _millis(event, now)
            upload = uploads.get((source_id, message_id))
            refused = list(refused)
            for item in items:
                vector = (item.channel, item.key)
                state, writes = apply_item(
                    item, states[vector], at, upload is not None, groups, refused
                )
                states[vector] = state
                for w in writes:
                    done = w._replace(source_id=source_id, message_id=message_id)
                    written[(w.channel, w.key, w.group_id)] = done
            for refusal in refused:
                insights.append(_insight(space_id, source_id, event, resolution, refusal, now))
            if upload is not None and refused:
                code = refused[0].code
                if code == reasons.SUBSCRIPTION_GROUP_NOT_FOUND:
                    code = reasons.CONFIGURATION_ERROR
                cells = cells_of(upload.columns, event)
                report.setdefault(upload.id, []).append(
                    RowError(upload.row, code, MESSAGES[code], cells)
                )
        write_states(conn, space_id, list(written.values()))
        self._insights.write(conn, insights)
        for upload_id, rows in report.items():
            record_errors(conn, space_id, upload_id, rows)
        return Tally(len(written), len(insights))


def apply_item(
    item: Item,
    state: State,
    at: int,
    uploaded: bool,
    groups: Mapping[str, SubscriptionGroup],
    refused: list[Refusal],
) -> tuple[State, list[Written]]:
    """The vector's state once ``item`` (of an event at ``at``) is applied, and the states it
    set; what it may not do goes in ``refused``."""
    writes: list[Written] = []
    contact = item.contact
    if item.status is not None and newer(at, state.updated_at):
        code = channel_refusal(item.channel, state.status, item.status, uploaded=uploaded)
        if code is not None:
            refused.append(Refusal(code, item.channel, contact))
        else:
            state = state._replace(status=item.status, updated_at=at)
            writes.append(Written(item.channel, item.key, item.status, at, "", ""))
    for name, status in item.groups:
        group = groups.get(group_key(name))
        if group is None:
            refused.append(Refusal(reasons.SUBSCRIPTION_GROUP_NOT_FOUND, item.channel, contact))
            continue
        current = state.groups.get(group.id)
        if not newer(at, current.updated_at if current is not None else None):
            continue
        code = group_refusal(state.status, status)
        if code is not None:
            refused.append(Refusal(code, item.channel, contact))
            continue
        state = state._replace(groups={**state.groups, group.id: GroupState(group.id, status, at)})
        writes.append(Written(item.channel, item.key, status, at, "", "", group.id))
    return state, writes


def _millis(event: Event, now: int) -> int:
    """The event's time as traits take it (``profiles.event_instant``: its ``timestamp``, never
    after its ``receivedAt``)."""
    return round(event_instant(event, lambda: now / 1000).timestamp() * 1000)


def _uploads(
    conn: Connection, space_id: str, events: Sequence[tuple[str, Event]]
) -> dict[tuple[str, str], _Upload]:
    """The events that are rows of the space's subscription CSV uploads, sent from the
    upload's own source: (source id, messageId) → the upload and row."""
    rows: dict[tuple[str, str], tuple[str, int]] = {}
    for source_id, event in events:
        message_id = event.get("messageId")
        matched = _UPLOADED_ROW.fullmatch(message_id) if isinstance(message_id, str) else None
        if matched is not None:
            rows[(source_id, str(message_id))] = (matched.group(1), int(matched.group(2)))
    if not rows:
        return {}
    t = schema.unify_csv_uploads
    found = {
        row.id: row
        for row in conn.execute(
            sa.select(t.c.id, t.c.source_id, t.c.columns).where(
                t.c.space_id == space_id,
                t.c.kind == KIND,
                t.c.id.in_(sorted({upload_id for upload_id, _ in rows.values()})),
            )
        )
    }
    uploads: dict[tuple[str, str], _Upload] = {}
    for (source_id, message_id), (upload_id, number) in rows.items():
        upload = found.get(upload_id)
        if upload is not None and upload.source_id == source_id:
            uploads[(source_id, message_id)] = _Upload(upload_id, number, list(upload.columns))
    return uploads


def _insight(
    space_id: str,
    source_id: str,
    event: Event,
    resolution: Resolution,
    refusal: Refusal,
    now: int,
) -> dict[str, Any]:
    """A Profiles Insights violation about the refused item's contact."""
    id_type = _ID_TYPES.get(refusal.channel or "")
    value = refusal.contact[:MAX_SHOWN] if refusal.contact is not None else None
    return {
        "space_id": space_id,
        "kind": "violation",
        "reason": refusal.code,
        "collection": "users",
        "id_type": id_type if value is not None else None,
        "id_value": value if id_type is not None else None,
        "profile_id": resolution.user,
        "merged_id": None,
        "new_profile": False,
        "identifiers": [["users", id_type, value]] if id_type and value is not None else [],
        "source_id": source_id,
        "message_id": resolution.message_id,
        "event_type": "identify",
        "recorded_at": now,
        "payload": event,
    }
