"""Source functions' stored webhook requests: Segment's retry schedule, claims that lapse,
payloads alphabetized for the code, objects as warehouse rows, and a regulation's deletion of
both stores, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.functions.objects import FunctionObjects, check_set
from headwater.functions.requests import (
    CLAIM_SECONDS,
    MAX_ATTEMPTS,
    MAX_GAP,
    FunctionRequests,
    first_gap,
    retry_gap,
)
from headwater.functions.requests_erasure import FunctionObjectEraser, FunctionRequestEraser
from headwater.ingest.source_function_runs import incoming
from headwater.privacy.erasure import Erasure, Subjects
from headwater.store import schema
from headwater.store.workspace import WorkspaceStore
from headwater.warehouse.rows import object_row


def test_ac109_six_attempts_first_retry_in_one_to_three_minutes_doubling_to_twenty() -> None:
    """AC-109: the first gap is uniform(60, 180) s, each next one doubles, none over 20 min."""
    rng = random.Random(7)
    firsts = [first_gap(rng) for _ in range(2000)]
    assert 60 <= min(firsts) < 62 and 178 < max(firsts) <= 180
    for first in (60.0, 117.5, 180.0):
        gaps = [retry_gap(first, failed) for failed in range(1, MAX_ATTEMPTS)]
        assert len(gaps) == 5  # six attempts, five waits between them
        assert gaps[0] == first
        assert all(b == min(MAX_GAP, 2 * a) for a, b in itertools.pairwise(gaps))
        assert max(gaps) <= 20 * 60
    assert [retry_gap(100.0, n) for n in range(1, 6)] == [100, 200, 400, 800, 1200]


def test_claims_lapse_and_retries_wait(engine: Engine) -> None:
    requests = FunctionRequests(engine)
    request = {"method": "POST", "url": "http://hw/v1/functions/in", "headers": [], "body": "{}"}
    first = requests.add("ws", "src", request, now=1000.0)
    later = requests.add("ws", "src", request, now=1001.0)
    assert [r.id for r in requests.claim(now=1000.5)] == [first]  # the later one is not due
    assert [r.id for r in requests.claim(now=1001.0)] == [later]  # the first is held
    # A worker that died holding them: the claim lapses and the next one takes both.
    assert [r.id for r in requests.claim(now=1001.0 + CLAIM_SECONDS + 1)] == [first, later]
    requests.retry_at(first, attempts=1, at=2000.0, first_gap=99.0, error="RetryError: x")
    requests.done(later)
    assert requests.claim(now=1999.0) == []
    (again,) = requests.claim(now=2000.0)
    assert (again.attempts, again.first_gap, again.last_error) == (1, 99.0, "RetryError: x")
    assert again.request == request
    requests.done(first)
    assert requests.pending() == []


def test_the_code_gets_json_alphabetized_and_forms_as_sent() -> None:
    headers = [["Content-Type", "application/json; charset=utf-8"], ["X-Vendor", "v"]]
    got = incoming(
        {
            "method": "POST",
            "url": "http://hw/v1/functions/in?b=x",
            "headers": headers,
            "body": '{"zeta": 1, "alpha": {"y": [{"b": 2, "a": 1}], "x": "é"}}',
        }
    )
    assert got.body == '{"alpha":{"x":"é","y":[{"a":1,"b":2}]},"zeta":1}'.encode()
    assert got.headers == (("Content-Type", "application/json; charset=utf-8"), ("X-Vendor", "v"))
    assert got.url == "http://hw/v1/functions/in?b=x"
    form = [["content-type", "application/x-www-form-urlencoded"]]
    sent = "z=1&a=%7B%22b%22%3A1%7D"
    assert incoming({"method": "POST", "headers": form, "body": sent}).body == sent.encode()
    # Not JSON after all: the code's request.json() reports it, so the bytes go as sent.
    broken = incoming({"method": "POST", "headers": headers, "body": '{"a": '})
    assert broken.body == b'{"a": '
    raw = incoming({"method": "POST", "headers": form, "body_base64": "/w=="})
    assert raw.body == b"\xff"


def test_ac110_set_calls_are_checked_and_become_rows_of_their_collection() -> None:
    """AC-110: Segment.set({collection, id, properties}) is a row of table <collection>."""
    call = {
        "collection": "products",
        "id": "product_id",
        "properties": {"name": "Nike Air Max 90", "size": 11},
    }
    assert check_set(call) is None
    assert check_set({**call, "collection": "Products"}) == (
        "Segment.set: the collection 'Products' must be lowercase"
    )
    assert check_set({**call, "id": ""}) == "Segment.set needs the object's id"
    assert check_set({**call, "properties": [1]}) == "Segment.set: properties must be an object"
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    table, row = object_row(
        "products",
        "product_id",
        {"name": "Nike Air Max 90", "size": 11, "Shoe Info": {"Colour": "red"}, "id": "x"},
        received_at=at,
        now=at,
    )
    assert table == "products"
    assert row == {
        "id": "product_id",  # a property cannot take the object's id column
        "received_at": at,
        "uuid_ts": at,
        "name": "Nike Air Max 90",
        "size": 11,
        "shoe_info_colour": "red",
    }


def _erasure(
    workspace_id: str, subjects: Subjects, sources: frozenset[str] | None = None
) -> Erasure:
    return Erasure("reg_1", workspace_id, subjects, created_at=0.0, source_ids=sources)


def test_a_deletion_erases_the_subjects_waiting_requests_and_objects(engine: Engine) -> None:
    workspace = WorkspaceStore(engine)
    workspace_id = workspace.ensure_workspace("acme").id
    stripe = workspace.create_source("stripe-in").id
    other = workspace.create_source("other-in").id
    requests = FunctionRequests(engine)
    json_headers = [["content-type", "application/json"]]
    form_headers = [["content-type", "application/x-www-form-urlencoded"]]

    def add(source: str, body: str, headers: list[list[str]] = json_headers) -> int:
        return requests.add(
            workspace_id, source, {"method": "POST", "headers": headers, "body": body}, 1.0
        )

    nested = add(stripe, '{"data": {"object": {"customer": "cus_42", "email": "jo@x.io"}}}')
    form = add(stripe, "email=jo%40x.io&plan=pro", form_headers)
    quoted = add(stripe, '{"note": "said \\"hi\\"", "customer": "cus_42"}')
    kept = add(stripe, '{"data": {"object": {"customer": "cus_420"}}}')  # contains, not equal
    elsewhere = add(other, '{"customer": "cus_42"}')
    subjects = Subjects(
        user_ids=frozenset({"cus_42"}), external_ids=frozenset({("email", "jo@x.io")})
    )
    assert (
        FunctionRequestEraser(engine).erase(_erasure(workspace_id, subjects, frozenset({stripe})))
        is None
    )
    assert [r.id for r in requests.pending()] == [kept, elsewhere]
    assert nested and form and quoted
    # Workspace-wide: the other source's request goes too; an empty subject deletes nothing.
    FunctionRequestEraser(engine).erase(_erasure(workspace_id, Subjects()))
    assert len(requests.pending()) == 2
    FunctionRequestEraser(engine).erase(_erasure(workspace_id, subjects))
    assert [r.id for r in requests.pending()] == [kept]

    objects = FunctionObjects(engine)
    objects.add(
        stripe,
        [
            {"collection": "customers", "id": "obj_1", "properties": {"email": "jo@x.io"}},
            {"collection": "products", "id": "obj_2", "properties": {"name": "shoe"}},
            {"collection": "products", "id": "obj_3", "properties": {"name": "hat"}},
        ],
        2.0,
    )
    FunctionObjectEraser(engine).erase(
        _erasure(
            workspace_id,
            Subjects(
                object_ids=frozenset({"obj_3"}), external_ids=frozenset({("email", "jo@x.io")})
            ),
        )
    )
    assert [o.id for o in objects.after(stripe, 0)] == ["obj_2"]


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_objects_load_in_order_past_each_warehouses_position(engine: Engine) -> None:
    objects = FunctionObjects(engine)
    objects.add("src", [{"collection": "products", "id": str(n)} for n in range(5)], 1.0)
    objects.add("other", [{"collection": "products", "id": "x"}], 1.0)
    first = objects.after("src", 0, limit=3)
    assert [o.id for o in first] == ["0", "1", "2"]
    assert objects.position("wh", "src") == 0
    objects.advance("wh", "src", first[-1].seq)
    objects.advance("wh", "src", first[-1].seq)  # again: still one position
    assert [o.id for o in objects.after("src", objects.position("wh", "src"))] == ["3", "4"]
    assert objects.position("wh2", "src") == 0
    with engine.connect() as conn:
        positions = conn.execute(
            sa.select(sa.func.count()).select_from(schema.function_object_positions)
        ).scalar()
    assert positions == 1
