"""The Public API's "Replace Messaging Subscriptions in Spaces" (§18.2: the synchronous write,
for unsubscribes that must be confirmed): items as an Identify's ``context.
messaging_subscriptions`` carries them, applied at once with the same rules, each one whole or
not at all, answered with the states written.

An item is applied at the request's time, as an Identify of that moment would be (so an SMS
number a user stopped can be subscribed again here, as by an Identify, not by a CSV); its
refusals are answered rather than recorded in Profiles Insights. Identity resolution applies
events in its own transaction: a state it writes from an older event never replaces a newer one
written here (``subscriptions.write_states``).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy.engine import Connection

from headwater.unify.messaging_subscriptions import FIELD, Refusal, apply_item, items_of
from headwater.unify.subscription_groups import live_groups
from headwater.unify.subscriptions import State, Written, read_states, write_states

SOURCE = "public-api"  # ``unify_subscriptions.source_id`` of a state written here


class Outcome(NamedTuple):
    """One item's result: its vector's state after the write, or why it was refused."""

    sent: Mapping[str, Any]
    state: State | None
    refused: tuple[Refusal, ...]


def replace(
    conn: Connection, space_id: str, items: Sequence[Mapping[str, Any]], at: int
) -> list[Outcome]:
    """Apply ``items`` in order at ``at`` (epoch milliseconds) in ``conn``'s transaction."""
    message_id = "api-" + secrets.token_hex(8)
    groups = live_groups(conn, space_id)
    outcomes: list[Outcome] = []
    written: dict[tuple[str, str, str | None], Written] = {}
    states: dict[tuple[str, str], State] = {}
    for sent in items:
        [*parsed], refused = items_of({"type": "identify", "context": {FIELD: [sent]}})
        if not parsed:
            outcomes.append(Outcome(sent, None, tuple(refused)))
            continue
        [item] = parsed
        vector = (item.channel, item.key)
        current = states.get(vector) or read_states(conn, space_id, [vector])[vector]
        state, writes = apply_item(item, current, at, False, groups, refused)
        if refused:  # the item whole, or not at all
            outcomes.append(Outcome(sent, None, tuple(refused)))
            continue
        states[vector] = state
        for w in writes:
            written[(w.channel, w.key, w.group_id)] = w._replace(
                source_id=SOURCE, message_id=message_id
            )
        outcomes.append(Outcome(sent, state, ()))
    write_states(conn, space_id, list(written.values()))
    return outcomes
