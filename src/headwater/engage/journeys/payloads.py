"""The messages a journey's send step sends (§14.3, §15.3, §16).

A classic journey's step is sent as an audience would be: an Identify with ``traits: {<key>:
true}`` and/or a Track ``Audience Entered`` with ``audience_key: <key>``, ``context.personas``
of class ``audience`` naming the journey and the step's key, and ``Audience Exited`` / ``false``
when the journey's exit settings remove the profile (never to a list destination). An
event-triggered journey's step sends a Track with the step's custom event name, class
``journey_step``, and properties ``journey_context`` (the instance's event snapshots),
``journey_metadata`` and the mapped profile traits (a mapped trait the profile lacks is
``null``: JSON's nearest to Segment's ``undefined``).

Both go one per email, as every Engage message does (``activation.recipients``).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from headwater.engage import activation
from headwater.engage.activation import Connection, Identity
from headwater.engage.definition import Definition
from headwater.engage.definition import Literal as Const
from headwater.engage.journeys.model import Send, Step, step_id
from headwater.engage.outbox import message_id
from headwater.engage.realtime import Computation
from headwater.timestamps import format_timestamp

# A journey step is no definition of its own: activation needs a Computation to name.
_NO_DEFINITION = Definition("users", Const(True))
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def step_key(journey_key: str, step_name: str) -> str:
    """``j_o_<journey>__<step>_<6 characters>`` (§15.3), made once and kept by versions."""
    suffix = "".join(secrets.choice(_ALPHABET) for _ in range(6))
    return f"j_o_{journey_key}__{step_id(step_name)}_{suffix}"


def classic(
    space_id: str,
    journey_id: str,
    step: Step,
    value: bool,
    identity: Identity,
    *,
    at: float,
    cause: str,
) -> list[dict[str, Any]]:
    """A classic send step's messages: entered (``value`` True) or exited; list destinations
    get no exits."""
    send = step.send
    assert send is not None
    computation = Computation(journey_id, step.key, "audience", _NO_DEFINITION)
    connections = [
        Connection(t.name, send_identify=t.send_identify, send_track=t.send_track)
        for t in send.targets
        if value or not t.list
    ]
    return activation.messages(
        space_id, computation, value, identity, connections, at=at, cause=cause
    )


def triggered(
    space_id: str,
    journey_id: str,
    step: Step,
    identity: Identity,
    context: Mapping[str, Any],
    traits: Mapping[str, Any],
    *,
    epoch: str,
    at: float,
    cause: str,
) -> list[dict[str, Any]]:
    """An event-triggered send step's Track, one per recipient."""
    send: Send | None = step.send
    assert send is not None and send.event
    computation = Computation(step.key, step.key, "audience", _NO_DEFINITION)
    personas = {
        "computation_class": "journey_step",
        "computation_id": step.key,
        "computation_key": step.key,
        "namespace": space_id,
        "space_id": space_id,
    }
    properties: dict[str, Any] = {
        "journey_context": dict(context),
        "journey_metadata": {"journey_id": journey_id, "epoch_id": epoch},
    }
    for trait in send.traits:
        properties[trait] = traits.get(trait)  # mapped but missing: null
    stamp = format_timestamp(datetime.fromtimestamp(at, UTC))
    out: list[dict[str, Any]] = []
    for target in send.targets:
        for n, (user_id, anonymous_id, email) in enumerate(
            activation.recipients(computation, identity)
        ):
            ids = {k: v for k, v in (("userId", user_id), ("anonymousId", anonymous_id)) if v}
            if not ids:
                continue
            context_out: dict[str, Any] = {"personas": personas}
            if email is not None:
                context_out["traits"] = {"email": email}
            out.append(
                {
                    **ids,
                    "type": "track",
                    "event": send.event,
                    "timestamp": stamp,
                    "context": context_out,
                    "properties": properties,
                    "integrations": {"All": False, target.name: True},
                    "messageId": message_id(cause, target.name, "track", n),
                }
            )
    return out


def anyone(identity: Identity) -> bool:
    return bool(identity.user_id or identity.emails or identity.anonymous_ids)


def unique_targets(steps: Sequence[Step]) -> list[str]:
    return sorted({t.name for s in steps if s.send for t in s.send.targets})
