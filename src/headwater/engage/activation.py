"""The messages that tell a destination about a computation's value (Segment §14.2, §14.3).

One change of one computation on one profile becomes, for each connected destination, an
Identify (``traits: {key: value}``) and/or a Track (``Audience Entered`` / ``Audience Exited`` /
``Trait Computed`` with ``audience_key`` / ``trait_key`` and the value), with
``context.personas`` naming the computation and ``integrations`` naming only that destination
(``{"All": false, "<name>": true}``), so the router hands it to no other.

Fan-out per identifier (§14.2 item 4): one message per email on the profile (``traits.email`` on
an Identify, ``context.traits.email`` on a Track), each with the profile's user id; without an
email, one message with the user id; an audience that includes anonymous users also sends one
per ``anonymousId``. A profile with none of these gets nothing (a destination could not key it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from headwater.engage.outbox import message_id
from headwater.engage.realtime import Computation
from headwater.timestamps import format_timestamp

ENTERED = "Audience Entered"
EXITED = "Audience Exited"
TRAIT_COMPUTED = "Trait Computed"


STRATEGIES = ("last_added", "first_added", "all")
MAX_ALL = 3  # ID Sync: at most three identifiers with the strategy "all"


@dataclass(frozen=True)
class IdSync:
    """Trait Activation's ID Sync (§14.6): a Segment identifier sent as a destination field,
    its last added value, its first, or all of them (one message each)."""

    identifier: str  # a Segment identifier type: user_id, email, phone, …
    field: str  # where the destination reads it
    strategy: str = "last_added"


@dataclass(frozen=True)
class Connection:
    """A computation sent to one destination (an instance on the space's Engage source)."""

    destination: str  # the instance's name: the integrations object's key
    send_identify: bool = True
    send_track: bool = False
    entered_event: str = ENTERED
    exited_event: str = EXITED
    trait_event: str = TRAIT_COMPUTED
    id_sync: tuple[IdSync, ...] = ()
    trait_enrichment: tuple[tuple[str, str], ...] = ()  # (Segment trait, destination field)
    # A list destination (its definition creates audiences): the audience's id there, None
    # until it is created (nothing is sent before: its first upload carries every member),
    # and the connection's audience settings, both in ``context.personas`` as Segment puts them.
    list_audience: bool = False
    external_audience_id: str | None = None
    audience_settings: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Identity:
    """Who the messages are about: the profile's identifier values a destination can key
    (``values``: every type's, in the order they were added, for ID Sync)."""

    user_id: str | None
    emails: Sequence[str]
    anonymous_ids: Sequence[str]
    values: Mapping[str, Sequence[str]] = field(default_factory=dict)


def personas(space_id: str, computation: Computation) -> dict[str, str]:
    return {
        "computation_class": "audience" if computation.kind == "audience" else "trait",
        "computation_id": computation.id,
        "computation_key": computation.key,
        "namespace": space_id,
        "space_id": space_id,
    }


def _personas(space_id: str, computation: Computation, connection: Connection) -> dict[str, Any]:
    """``context.personas``; for a list destination with the audience's external id and
    settings, which its sync action reads (``$.context.personas.external_audience_id``) and
    actions-core hands it as ``audienceSettings``."""
    found: dict[str, Any] = dict(personas(space_id, computation))
    if connection.list_audience:
        found["external_audience_id"] = connection.external_audience_id
        found["audience_settings"] = dict(connection.audience_settings or {})
    return found


def messages(
    space_id: str,
    computation: Computation,
    value: Any,
    identity: Identity,
    connections: Sequence[Connection],
    *,
    at: float,
    cause: str,
    traits: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every message for one value of ``computation`` on one profile. ``cause`` makes the
    messageIds: the same cause (an event's messageId, an expiry's hour, a sync) gives the same
    ids, so a pass that runs again adds nothing the dedup stage would keep. ``traits``: the
    profile's traits, for Trait Enrichment (§14.6: ``traits.<field>`` on an Identify,
    ``properties.<field>`` on a Track)."""
    key = computation.key
    audience = computation.kind == "audience"
    if audience:
        value = bool(value)
    stamp = format_timestamp(datetime.fromtimestamp(at, UTC))
    out: list[dict[str, Any]] = []
    for connection in connections:
        if connection.list_audience and connection.external_audience_id is None:
            continue  # not created yet: its first upload will carry this member
        # ID Sync keys an entry or a trait's value; an exit goes to every id (§14.6).
        synced = connection.id_sync and not (audience and not value)
        keyed = (
            _synced(connection.id_sync, identity)
            if synced
            else [
                (_ids(user_id, anonymous_id), {"email": email} if email is not None else {})
                for user_id, anonymous_id, email in recipients(computation, identity)
            ]
        )
        enriched = {
            field: traits[trait]
            for trait, field in connection.trait_enrichment
            if traits is not None and trait in traits
        }
        for n, (ids, fields) in enumerate(keyed):
            if not ids:  # the Spec needs a userId or an anonymousId
                fallback = identity.user_id or next(reversed(identity.anonymous_ids), None)
                if fallback is None:
                    continue
                ids = {"userId" if identity.user_id else "anonymousId": fallback}
            context: dict[str, Any] = {"personas": _personas(space_id, computation, connection)}
            if fields:
                context["traits"] = dict(fields)  # a Track's keys (§14.2 item 6)
            base = {
                **ids,
                "timestamp": stamp,
                "integrations": {"All": False, connection.destination: True},
            }
            if connection.send_identify:
                traits_out: dict[str, Any] = {key: value, **enriched, **fields}
                out.append(
                    {
                        **base,
                        "context": {"personas": context["personas"]},
                        "type": "identify",
                        "traits": traits_out,
                        "messageId": message_id(
                            cause, computation.id, connection.destination, "identify", n
                        ),
                    }
                )
            if connection.send_track:
                if audience:
                    event = connection.entered_event if value else connection.exited_event
                    properties = {"audience_key": key, key: value, **enriched}
                else:
                    event = connection.trait_event
                    properties = {"trait_key": key, key: value, **enriched}
                out.append(
                    {
                        **base,
                        "context": context,
                        "type": "track",
                        "event": event,
                        "properties": properties,
                        "messageId": message_id(
                            cause, computation.id, connection.destination, "track", n
                        ),
                    }
                )
    return out


def group_messages(
    space_id: str,
    computation: Computation,
    value: Any,
    group_id: str,
    user_id: str,
    connections: Sequence[Connection],
    *,
    at: float,
    cause: str,
) -> list[dict[str, Any]]:
    """An account-level value's Group call (one per account, §13.10: ``<key>: value`` among
    the account's traits) for each connection sending traits. The Spec wants a userId on
    every call: one of the account's users carries it."""
    if computation.kind == "audience":
        value = bool(value)
    stamp = format_timestamp(datetime.fromtimestamp(at, UTC))
    return [
        {
            "type": "group",
            "groupId": group_id,
            "userId": user_id,
            "traits": {computation.key: value},
            "timestamp": stamp,
            "integrations": {"All": False, connection.destination: True},
            "context": {"personas": personas(space_id, computation)},
            "messageId": message_id(cause, computation.id, connection.destination, "group", 0),
        }
        for connection in connections
        if connection.send_identify
    ]


def _ids(user_id: str | None, anonymous_id: str | None) -> dict[str, str]:
    ids = {}
    if user_id is not None:
        ids["userId"] = user_id
    if anonymous_id is not None:
        ids["anonymousId"] = anonymous_id
    return ids


def _synced(
    mappings: Sequence[IdSync], identity: Identity
) -> list[tuple[dict[str, str], dict[str, str]]]:
    """ID Sync's messages: (ids, fields) each. Single-valued mappings go in every message; each
    value of an ``all`` mapping makes a message of its own. ``user_id`` and ``anonymous_id``
    key the message (``userId``, ``anonymousId``); other identifiers become fields (a trait on
    an Identify, ``context.traits`` on a Track). A profile none of them has gets nothing."""
    single: dict[str, str] = {}
    ids: dict[str, str] = {}
    spread: list[tuple[str, str]] = []  # (field or id key, value), one message each
    for mapping in mappings:
        values = list(identity.values.get(mapping.identifier, ()))
        if not values:
            continue
        target = {"user_id": "userId", "anonymous_id": "anonymousId"}.get(mapping.identifier)
        chosen = (
            values
            if mapping.strategy == "all"
            else [values[-1] if mapping.strategy == "last_added" else values[0]]
        )
        if mapping.strategy == "all" and len(chosen) > 1:
            spread += [(target or mapping.field, v) for v in chosen]
        elif target is not None:
            ids[target] = chosen[0]
        else:
            single[mapping.field] = chosen[0]
    if not (single or ids or spread):
        return []
    if not spread:
        return [(ids, single)]
    found = []
    for name, item in spread:
        if name in ("userId", "anonymousId"):
            found.append(({**ids, name: item}, dict(single)))
        else:
            found.append((dict(ids), {**single, name: item}))
    return found


def recipients(
    computation: Computation, identity: Identity
) -> list[tuple[str | None, str | None, str | None]]:
    """(userId, anonymousId, email) of each message a destination gets for one value."""
    found: list[tuple[str | None, str | None, str | None]] = []
    latest_anonymous = identity.anonymous_ids[-1] if identity.anonymous_ids else None
    keyed_anonymous = latest_anonymous if identity.user_id is None else None
    if identity.emails:
        found += [(identity.user_id, keyed_anonymous, email) for email in identity.emails]
    elif identity.user_id is not None:
        found.append((identity.user_id, None, None))
    # A trait has no "include anonymous users" setting: an anonymous profile's value goes out
    # keyed by its anonymousIds, which is all a destination could key it by.
    if computation.include_anonymous or (computation.kind == "trait" and not found):
        sent = {a for _, a, _ in found}
        found += [
            (identity.user_id, anonymous, None)
            for anonymous in identity.anonymous_ids
            if anonymous not in sent
        ]
    return found
