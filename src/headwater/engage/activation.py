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

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from headwater.engage.outbox import message_id
from headwater.engage.realtime import Computation
from headwater.timestamps import format_timestamp

ENTERED = "Audience Entered"
EXITED = "Audience Exited"
TRAIT_COMPUTED = "Trait Computed"


@dataclass(frozen=True)
class Connection:
    """A computation sent to one destination (an instance on the space's Engage source)."""

    destination: str  # the instance's name: the integrations object's key
    send_identify: bool = True
    send_track: bool = False
    entered_event: str = ENTERED
    exited_event: str = EXITED
    trait_event: str = TRAIT_COMPUTED


@dataclass(frozen=True)
class Identity:
    """Who the messages are about: the profile's identifier values a destination can key."""

    user_id: str | None
    emails: Sequence[str]
    anonymous_ids: Sequence[str]


def personas(space_id: str, computation: Computation) -> dict[str, str]:
    return {
        "computation_class": "audience" if computation.kind == "audience" else "trait",
        "computation_id": computation.id,
        "computation_key": computation.key,
        "namespace": space_id,
        "space_id": space_id,
    }


def messages(
    space_id: str,
    computation: Computation,
    value: Any,
    identity: Identity,
    connections: Sequence[Connection],
    *,
    at: float,
    cause: str,
) -> list[dict[str, Any]]:
    """Every message for one value of ``computation`` on one profile. ``cause`` makes the
    messageIds: the same cause (an event's messageId, an expiry's hour, a sync) gives the same
    ids, so a pass that runs again adds nothing the dedup stage would keep."""
    key = computation.key
    audience = computation.kind == "audience"
    if audience:
        value = bool(value)
    stamp = format_timestamp(datetime.fromtimestamp(at, UTC))
    out: list[dict[str, Any]] = []
    for connection in connections:
        for n, (user_id, anonymous_id, email) in enumerate(_recipients(computation, identity)):
            ids: dict[str, Any] = {}
            if user_id is not None:
                ids["userId"] = user_id
            if anonymous_id is not None:
                ids["anonymousId"] = anonymous_id
            base = {
                **ids,
                "timestamp": stamp,
                "context": {"personas": personas(space_id, computation)},
                "integrations": {"All": False, connection.destination: True},
            }
            if connection.send_identify:
                traits: dict[str, Any] = {key: value}
                if email is not None:
                    traits["email"] = email
                out.append(
                    {
                        **base,
                        "type": "identify",
                        "traits": traits,
                        "messageId": message_id(
                            cause, computation.id, connection.destination, "identify", n
                        ),
                    }
                )
            if connection.send_track:
                if audience:
                    event = connection.entered_event if value else connection.exited_event
                    properties = {"audience_key": key, key: value}
                else:
                    event = connection.trait_event
                    properties = {"trait_key": key, key: value}
                track = {
                    **base,
                    "type": "track",
                    "event": event,
                    "properties": properties,
                    "messageId": message_id(
                        cause, computation.id, connection.destination, "track", n
                    ),
                }
                if email is not None:
                    track["context"] = {**track["context"], "traits": {"email": email}}
                out.append(track)
    return out


def _recipients(
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
