"""The calls a SQL trait's rows become: an Identify per user, a Group per account (§6), each a
complete Segment message for Engage's outbox.

- The identifier column says where the identifier goes: ``user_id`` → ``userId``,
  ``anonymous_id`` → ``anonymousId``, ``email`` → ``traits.email``, ``group_id`` → ``groupId``
  (with ``userId`` from the row's ``user_id`` column, which associates that user with the
  account). The Spec needs a ``userId`` or an ``anonymousId`` on every call, so a call that
  would have neither (an ``email`` row, an account without a user) gets an ``anonymousId``
  made from its identifier, the same every run: ``sql_`` and 32 hex digits of a SHA-256.
- ``traits``: every trait column, by its column name; a row whose values changed is sent
  whole, with ``null`` for a trait the previous run sent and this one no longer returns.
- ``context.personas`` names the computation (§14.3); ``integrations`` is ``{"All": false}``
  with ``true`` for each destination connected to the trait (§14.2 #9).
- ``context.messaging_subscriptions``: the row's subscription states (§18.5), if any.
- ``messageId``: from the trait, the run and the identifier, so one decision is one id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Final

from headwater.engage import outbox
from headwater.engage.sql_traits.definitions import SqlTrait
from headwater.engage.sql_traits.results import Value

ANONYMOUS_PREFIX: Final = "sql_"


def message(
    trait: SqlTrait,
    *,
    run_id: int,
    id_type: str,
    identifier: str,
    traits: Mapping[str, Value],
    user_id: str | None,
    timestamp: str,
    destinations: Sequence[str],
    subscriptions: Sequence[tuple[str, str, str]] = (),
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "group" if id_type == "group_id" else "identify"}
    sent = dict(traits)
    if id_type == "user_id":
        body["userId"] = identifier
    elif id_type == "anonymous_id":
        body["anonymousId"] = identifier
    elif id_type == "email":
        sent["email"] = identifier
        body["anonymousId"] = anonymous_id(id_type, identifier)
    else:
        body["groupId"] = identifier
        if user_id is not None:
            body["userId"] = user_id
        else:
            body["anonymousId"] = anonymous_id(id_type, identifier)
    body["traits"] = sent
    body["messageId"] = outbox.message_id(trait.id, run_id, id_type, identifier)
    body["timestamp"] = timestamp
    body["context"] = {
        "personas": {
            "computation_class": "trait",
            "computation_id": trait.id,
            "computation_key": trait.key,
            "namespace": trait.space_id,
            "space_id": trait.space_id,
        }
    }
    if subscriptions:  # §18.5: identity resolution sets the states, as from any Identify
        body["context"]["messaging_subscriptions"] = [
            {"key": contact, "type": channel, "status": status}
            for channel, contact, status in subscriptions
        ]
    body["integrations"] = {"All": False, **dict.fromkeys(destinations, True)}
    return body


def anonymous_id(id_type: str, identifier: str) -> str:
    """The ``anonymousId`` of a call that has no other (the same for the same identifier)."""
    digest = hashlib.sha256(f"{id_type}\x1f{identifier}".encode()).hexdigest()
    return ANONYMOUS_PREFIX + digest[:32]
