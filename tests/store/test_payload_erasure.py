"""A regulation's deletion in the state database's event stores (A-DS-6, Headwater's own
stores): the debugger, Event Delivery samples, the delivery queue, blocked events and violation
samples lose the subject's rows and keep everyone else's, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.delivery.queue import DeliveryQueue, NewJob
from headwater.destinations.store import DestinationStore
from headwater.privacy.erasure import Erasure, Subjects
from headwater.store import schema
from headwater.store.counters import CounterKey, CounterStore
from headwater.store.database import write_transaction
from headwater.store.debugger import append_entries
from headwater.store.payload_erasure import TABLES, payload_erasers
from headwater.store.workspace import WorkspaceStore

MARKER = "zq-marker-5f1c9e"  # only in u2's events
EMAIL = "u2@example.com"


def message(user: str, anonymous: str, message_id: str, **properties: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": user,
        "anonymousId": anonymous,
        "messageId": message_id,
        "properties": properties,
        "receivedAt": "2024-03-10T12:00:00.000Z",
    }


def u2(message_id: str) -> dict[str, Any]:
    return message("u2", "a2", message_id, note=MARKER)


def u3(message_id: str) -> dict[str, Any]:
    # order_id "u2": a bare value equal to u2's user id is not u2's data
    return message("u3", "a3", message_id, order_id="u2", friend=f"u2-{message_id}")


class World:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        workspace = WorkspaceStore(engine)
        self.workspace_id = workspace.ensure_workspace("acme").id
        self.web = workspace.create_source("Web", slug="web").id
        self.app = workspace.create_source("App", slug="app").id
        self.hook = (
            DestinationStore(workspace)
            .create("hook", "webhook", self.web, settings={"url": "https://hooks.example.com/x"})
            .id
        )

    def fill(self) -> None:
        """Every store gets a row of u2 and a row of u3, through its owner where it has one."""
        with write_transaction(self.engine) as conn:
            append_entries(
                conn,
                [
                    {
                        "source_id": source,
                        "received_at": "2024-03-10T12:00:00.000Z",
                        "status": "accepted",
                        "reason": None,
                        "entry": {"message": event, "size": 100},
                    }
                    for source in (self.web, self.app)
                    for event in (u2(f"d-{source}-2"), u3(f"d-{source}-3"))
                ],
            )
        key = CounterKey(self.web, self.hook, "delivered", "")
        CounterStore(self.engine).add(
            {key: 3},
            {
                key: [
                    # Event Delivery's shape: You Sent, and the request's body as text
                    {
                        "you_sent": u2("s-2"),
                        "request": {"body": json.dumps({"distinct_id": "u2", "note": MARKER})},
                    },
                    {"you_sent": u3("s-3"), "request": {"body": json.dumps({"user": "u2"})}},
                ]
            },
        )
        DeliveryQueue(self.engine).enqueue(
            [
                NewJob(self.hook, f"q-{n}", json.dumps(event).encode(), 0)
                for n, event in enumerate(
                    (
                        u2("q-2"),
                        u3("q-3"),
                        message("x", "a2", "q-4"),  # u2's anonymousId under another userId
                        message("y", "ay", "q-5", contact={"email": EMAIL}),  # u2's email
                    )
                )
            ]
        )
        with write_transaction(self.engine) as conn:
            conn.execute(
                schema.blocked_events.insert(),
                [
                    {"source_id": self.web, "blocked_at": 1, "reason": "r", "message": m}
                    for m in (u2("b-2"), u3("b-3"))
                ],
            )
            conn.execute(
                schema.violation_samples.insert(),
                [
                    {
                        "source_id": self.web,
                        "plan_id": "",
                        "event_type": "track",
                        "event_name": "Order Completed",
                        "field": "properties.note",
                        "violation_type": "Invalid Type",
                        "recorded_at": 1,
                        "sample": m,
                    }
                    for m in (u2("v-2"), u3("v-3"))
                ],
            )

    def erase(self, **scope: Any) -> None:
        erasure = Erasure(
            "reg_1",
            self.workspace_id,
            Subjects(
                user_ids=frozenset({"u2"}),
                anonymous_ids=frozenset({"a2"}),
                external_ids=frozenset({("email", EMAIL)}),
            ),
            created_at=0.0,
            **scope,
        )
        for eraser in payload_erasers(self.engine):
            assert eraser.target.kind == "internal"
            assert eraser.erase(erasure) is None

    def texts(self, table: sa.Table) -> list[str]:
        """Each row as JSON text (a queued message's bytes decoded in place)."""
        with self.engine.connect() as conn:
            return [
                json.dumps(
                    [json.loads(v) if isinstance(v, bytes) else v for v in row],
                    default=str,
                    sort_keys=True,
                )
                for row in conn.execute(sa.select(table))
            ]


@pytest.fixture
def world(engine: Engine) -> World:
    return World(engine)


def is_subjects(row: str) -> bool:
    """What the test calls u2's row: its marker, its email, or its anonymousId in a message."""
    return MARKER in row or EMAIL in row or '"anonymousId": "a2"' in row


def test_every_event_store_loses_the_subject_and_keeps_the_others_a_ds_6(world: World) -> None:
    world.fill()
    before = {store.name: world.texts(store.table) for store in TABLES}
    for name, rows in before.items():  # the subject and someone else in every store first
        assert any(is_subjects(r) for r in rows), name
        assert any(not is_subjects(r) for r in rows), name

    world.erase()

    for store in TABLES:
        after = world.texts(store.table)
        assert not [r for r in after if MARKER in r or EMAIL in r], store.name
        # Everyone else's rows are all still there, unchanged (u3's order_id "u2" included).
        kept = [r for r in before[store.name] if not is_subjects(r)]
        assert kept and sorted(after) == sorted(kept), store.name
    # Queued jobs naming u2's anonymousId or email are the subject's too; u3's stays.
    with world.engine.connect() as conn:
        ids = conn.execute(sa.select(schema.delivery_jobs.c.message_id)).scalars().all()
    assert ids == ["q-1"]


def test_a_source_scoped_erasure_keeps_other_sources_rows(world: World) -> None:
    world.fill()
    world.erase(source_ids=frozenset({world.app}))
    entries = world.texts(schema.debugger_entries)
    assert len(entries) == 3  # the app's u2 entry went; the web's stayed
    assert sum(MARKER in e for e in entries) == 1
    assert all(world.app not in e for e in entries if MARKER in e)
    # Stores of the web source only (queue, samples, blocked…) are untouched.
    assert sum(MARKER in r for r in world.texts(schema.blocked_events)) == 1


def test_erasing_twice_changes_nothing_more(world: World) -> None:
    world.fill()
    world.erase()
    once = {store.name: sorted(world.texts(store.table)) for store in TABLES}
    world.erase()
    assert {store.name: sorted(world.texts(store.table)) for store in TABLES} == once
