"""``/api/v1/regulations`` and ``/api/v1/suppressions``: Segment's shapes, limits and refusals."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.errors import RegulationRefused
from headwater.privacy.regulations import PERIOD_SECONDS, STATUSES, WORKSPACE, Regulations
from headwater.privacy.runner import DeletionRunner
from headwater.store import schema
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from tests.support.clock import Clock

TOKEN = "test-admin-token"


@pytest.fixture
def http(engine: Engine, clock: Clock) -> Iterator[TestClient]:
    WorkspaceStore(engine).ensure_workspace("acme")
    app = create_api(engine, admin_token_hash=hash_token(TOKEN), clock=clock)
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        assert client.post("/api/v1/sources", json={"name": "web"}).status_code == 201
        yield client


def regulate(
    http: TestClient, type_: str, ids: list[str], subject: str = "USER_ID", path: str = ""
) -> Any:
    body = {"regulationType": type_, "subjectType": subject, "subjectIds": ids}
    return http.post(f"/api/v1/regulations{path}", json=body)


def source_id(http: TestClient) -> str:
    found: str = http.get("/api/v1/sources/web").json()["data"]["source"]["id"]
    return found


def process(engine: Engine, clock: Clock) -> None:
    DeletionRunner(engine, [], [], clock=clock).run_due()


def refused(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    errors = response.json()["errors"]
    assert len(errors) == 1 and errors[0]["message"]
    error: dict[str, Any] = errors[0]
    return error


def test_a_ds_1_suppress_only_is_listed_once_processed(
    http: TestClient, engine: Engine, clock: Clock
) -> None:
    """A-DS-1: 200 with a regulate id and the rate headers; in GET /suppressions once processed."""
    created = regulate(http, "SUPPRESS_ONLY", ["u1"])
    assert created.status_code == 200, created.text
    regulate_id = created.json()["data"]["regulateId"]
    assert regulate_id.startswith("reg_")
    assert created.headers["X-RateLimit-Remaining"] == "109999"
    reset = parsedate_to_datetime(created.headers["X-RateLimit-Reset"])
    assert reset.timestamp() == int(clock.now + PERIOD_SECONDS)
    assert created.headers["X-RateLimit-Reset"].endswith(" GMT")

    assert http.get("/api/v1/suppressions").json()["data"]["subjectIds"] == []
    shown = http.get(f"/api/v1/regulations/{regulate_id}").json()["data"]["regulation"]
    assert shown["overallStatus"] == "INITIALIZED" and "finishedAt" not in shown
    process(engine, clock)

    suppressions = http.get("/api/v1/suppressions").json()["data"]
    assert suppressions["subjectType"] == "USER_ID"
    assert suppressions["subjectIds"] == ["u1"]
    shown = http.get(f"/api/v1/regulations/{regulate_id}").json()["data"]["regulation"]
    workspace = WorkspaceStore(engine).workspace()
    assert workspace is not None
    assert shown["id"] == regulate_id and shown["workspaceId"] == workspace.id
    assert shown["overallStatus"] == "FINISHED" and shown["finishedAt"] and shown["createdAt"]
    assert shown["streamStatus"] == [
        {"id": workspace.id, "status": "FINISHED", "destinationStatus": []}
    ]


def test_a_ds_8_deletions_are_not_listed_as_suppressed_users(
    http: TestClient, engine: Engine, clock: Clock
) -> None:
    """A-DS-8 (the API's half): SUPPRESS_WITH_DELETE is a deletion request, not a suppressed user."""
    assert regulate(http, "SUPPRESS_WITH_DELETE", ["u2"]).status_code == 200
    assert regulate(http, "SUPPRESS_ONLY", ["u1"]).status_code == 200
    process(engine, clock)
    assert http.get("/api/v1/suppressions").json()["data"]["subjectIds"] == ["u1"]
    listed = http.get("/api/v1/regulations").json()["data"]["regulations"]
    assert {r["regulationType"] for r in listed} == {"SUPPRESS_WITH_DELETE", "SUPPRESS_ONLY"}


def test_a_ds_3_too_many_ids_or_too_large_a_body_is_refused(http: TestClient) -> None:
    """A-DS-3: 5,001 ids → 400; a body over 4 MB → 413; nothing made."""
    error = refused(regulate(http, "SUPPRESS_ONLY", [f"u{i}" for i in range(5001)]), 400)
    assert error["field"] == "subjectIds" and "5000" in error["message"]
    assert error["type"] == "validation" and error["status"] == 400
    assert regulate(http, "SUPPRESS_ONLY", [f"u{i}" for i in range(5000)]).status_code == 200
    big = json.dumps(
        {
            "regulationType": "SUPPRESS_ONLY",
            "subjectType": "USER_ID",
            "subjectIds": ["x" * 999] * 4300,
        }
    )
    assert len(big) > 4 * 1024 * 1024
    error = refused(http.post("/api/v1/regulations", content=big), 413)
    assert "4 MB" in error["message"]
    assert len(http.get("/api/v1/regulations").json()["data"]["regulations"]) == 1


def test_a_ds_4_the_110001st_subject_in_30_days_is_rate_limited_per_category(
    http: TestClient, clock: Clock
) -> None:
    """A-DS-4: 429 with X-RateLimit-Remaining and X-RateLimit-Reset, per category."""
    for n in range(22):
        created = regulate(http, "DELETE_INTERNAL", [f"u{n}-{i}" for i in range(5000)])
        assert created.status_code == 200, created.text
        clock.advance(1)
    assert created.headers["X-RateLimit-Remaining"] == "0"
    limited = regulate(http, "SUPPRESS_ONLY", ["one-more"])  # the same category: Segment-only
    error = refused(limited, 429)
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    reset = parsedate_to_datetime(limited.headers["X-RateLimit-Reset"]).timestamp()
    assert reset == int(clock.now - 22 + PERIOD_SECONDS)
    assert "110000" in error["message"]
    other = regulate(http, "DELETE_ONLY", ["one-more"])  # Segment & Destination
    assert other.status_code == 200 and other.headers["X-RateLimit-Remaining"] == "109999"
    clock.now = reset + 1  # the first regulation left the 30 days
    assert regulate(http, "SUPPRESS_ONLY", ["one-more"]).status_code == 200


def test_600_creations_a_minute_then_429(http: TestClient, engine: Engine, clock: Clock) -> None:
    workspace = WorkspaceStore(engine).workspace()
    assert workspace is not None
    with engine.begin() as conn:
        conn.execute(
            schema.regulations.insert(),
            [
                {
                    "id": f"reg_old{i}",
                    "workspace_id": workspace.id,
                    "regulation_type": "SUPPRESS_ONLY",
                    "subject_type": "USER_ID",
                    "subjects": ["x"],
                    "subject_count": 1,
                    "status": "FINISHED",
                    "created_at": clock.now - 30 + i * 0.01,
                }
                for i in range(600)
            ],
        )
    limited = regulate(http, "SUPPRESS_ONLY", ["u1"])
    refused(limited, 429)
    assert int(limited.headers["Retry-After"]) == 30
    assert parsedate_to_datetime(limited.headers["X-RateLimit-Reset"]).timestamp() == int(
        clock.now + 30
    )
    clock.advance(31)
    assert regulate(http, "SUPPRESS_ONLY", ["u1"]).status_code == 200


def test_a_ds_5_archive_only_and_anonymous_ids_belong_to_sources(http: TestClient) -> None:
    """A-DS-5."""
    source = source_id(http)
    error = refused(regulate(http, "DELETE_ARCHIVE_ONLY", ["u1"]), 400)
    assert error["field"] == "regulationType"
    assert (
        regulate(
            http, "DELETE_ARCHIVE_ONLY", ["a1"], "ANONYMOUS_ID", f"/sources/{source}"
        ).status_code
        == 200
    )
    assert (
        regulate(http, "DELETE_ARCHIVE_ONLY", ["u1"], path=f"/sources/{source}").status_code == 200
    )
    for type_ in ("SUPPRESS_ONLY", "DELETE_INTERNAL", "SUPPRESS_WITH_DELETE"):
        error = refused(regulate(http, type_, ["a1"], "ANONYMOUS_ID", f"/sources/{source}"), 400)
        assert error["field"] == "subjectType"
    refused(regulate(http, "DELETE_ONLY", ["a1"], "ANONYMOUS_ID"), 400)  # not on the workspace


def test_a_ds_9_a_source_cannot_unsuppress_a_workspace_suppression(
    http: TestClient, engine: Engine, clock: Clock
) -> None:
    """A-DS-9: refused with 400 and Segment's error body."""
    source = source_id(http)
    assert regulate(http, "SUPPRESS_ONLY", ["u3"]).status_code == 200
    # Refused while the workspace's suppression waits for the worker, and once it holds.
    error = refused(regulate(http, "UNSUPPRESS", ["u3"], path=f"/sources/{source}"), 400)
    assert "whole workspace" in error["message"] and error["field"] == "subjectIds"
    process(engine, clock)
    refused(regulate(http, "UNSUPPRESS", ["u4", "u3"], path=f"/sources/{source}"), 400)
    # A source's own suppression it can lift; the workspace can lift its own.
    assert regulate(http, "SUPPRESS_ONLY", ["u5"], path=f"/sources/{source}").status_code == 200
    assert regulate(http, "UNSUPPRESS", ["u5"], path=f"/sources/{source}").status_code == 200
    assert regulate(http, "UNSUPPRESS", ["u3"]).status_code == 200
    clock.advance(1)
    process(engine, clock)
    assert http.get("/api/v1/suppressions").json()["data"]["subjectIds"] == []


def test_a_ds_7_statuses_and_the_list_filters(
    http: TestClient, engine: Engine, clock: Clock
) -> None:
    """A-DS-7: only the documented statuses; the list's filters and pagination."""
    source = source_id(http)
    for n, type_ in enumerate(["SUPPRESS_ONLY", "DELETE_INTERNAL", "DELETE_ONLY", "UNSUPPRESS"]):
        assert regulate(http, type_, [f"u{n}"]).status_code == 200
        clock.advance(1)
    assert regulate(http, "SUPPRESS_ONLY", ["s1"], path=f"/sources/{source}").status_code == 200
    clock.advance(1)
    process(engine, clock)  # no erasers given: every deletion finishes at once
    assert regulate(http, "DELETE_ONLY", ["late"]).status_code == 200

    listed = http.get("/api/v1/regulations").json()["data"]
    assert listed["pagination"]["totalEntries"] == 6
    assert {r["status"] for r in listed["regulations"]} <= set(STATUSES)
    first = listed["regulations"][0]
    assert set(first) >= {"id", "subjectType", "subjects", "status", "createdAt", "regulationType"}
    assert first["subjects"] == ["late"] and first["status"] == "INITIALIZED"
    assert "finishedAt" not in first and "finishedAt" in listed["regulations"][1]

    def ids(query: str) -> list[list[str]]:
        answer = http.get(f"/api/v1/regulations{query}")
        assert answer.status_code == 200, answer.text
        return [r["subjects"] for r in answer.json()["data"]["regulations"]]

    assert ids("?status=INITIALIZED") == [["late"]]
    assert ids("?regulationTypes=DELETE_ONLY&regulationTypes=UNSUPPRESS") == [
        ["late"],
        ["u3"],
        ["u2"],
    ]
    assert ids("?regulationTypes=DELETE_INTERNAL,SUPPRESS_ONLY&status=FINISHED") == [
        ["s1"],
        ["u1"],
        ["u0"],
    ]
    assert ids(f"/sources/{source}") == [["s1"]]
    assert ids("/sources/web") == [["s1"]]  # by name too
    refused(http.get("/api/v1/regulations?status=DONE"), 422)
    refused(http.get("/api/v1/regulations?regulationTypes=DELETE_ALL"), 422)

    page = http.get("/api/v1/regulations?pagination.count=4").json()["data"]
    assert len(page["regulations"]) == 4 and "previous" not in page["pagination"]
    following = page["pagination"]["next"]
    rest = http.get(f"/api/v1/regulations?pagination.count=4&pagination.cursor={following}")
    assert len(rest.json()["data"]["regulations"]) == 2
    assert "next" not in rest.json()["data"]["pagination"]
    assert rest.json()["data"]["pagination"]["previous"]
    refused(http.get("/api/v1/regulations?pagination.count=1001"), 422)
    refused(http.get("/api/v1/regulations?pagination.count=0"), 422)
    refused(http.get("/api/v1/regulations?pagination.cursor=nonsense"), 422)


def test_cloud_sources_take_object_ids_with_a_collection(http: TestClient) -> None:
    source = source_id(http)
    path = f"/api/v1/regulations/cloudsources/{source}"
    body = {
        "regulationType": "DELETE_INTERNAL",
        "subjectType": "OBJECT_ID",
        "subjectIds": ["obj-1"],
        "collection": "contacts",
    }
    assert http.post(path, json=body).status_code == 200
    error = refused(http.post(path, json={**body, "collection": None}), 400)
    assert error["field"] == "collection"
    refused(http.post(path, json={**body, "subjectType": "USER_ID"}), 400)
    refused(http.post(path, json={**body, "regulationType": "SUPPRESS_ONLY"}), 400)
    refused(http.post("/api/v1/regulations", json={**body}), 400)  # collection: cloud only


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", None),
        (b"[1]", None),
        (b'{"regulationType": "SUPPRESS_ONLY", "subjectType": "USER_ID"}', "subjectIds"),
        (
            b'{"regulationType": "ERASE", "subjectType": "USER_ID", "subjectIds": ["u"]}',
            "regulationType",
        ),
        (
            b'{"regulationType": "SUPPRESS_ONLY", "subjectType": "EMAIL", "subjectIds": ["u"]}',
            "subjectType",
        ),
        (
            b'{"regulationType": "SUPPRESS_ONLY", "subjectType": "USER_ID", "subjectIds": []}',
            "subjectIds",
        ),
        (
            b'{"regulationType": "SUPPRESS_ONLY", "subjectType": "USER_ID", "subjectIds": [1]}',
            "subjectIds",
        ),
        (
            b'{"regulationType": "SUPPRESS_ONLY", "subjectType": "USER_ID", "subjectIds": [""]}',
            "subjectIds",
        ),
        (
            b'{"regulationType": "SUPPRESS_ONLY", "subjectType": "USER_ID", "subjectIds": ["a\\u0000"]}',
            "subjectIds",
        ),
        (
            b'{"regulationType": "SUPPRESS_ONLY", "subjectType": "USER_ID", "subjectIds": ["\\ud800"]}',
            "subjectIds",
        ),
        (
            b'{"regulationType": "SUPPRESS_ONLY", "subjectType": "USER_ID", "subjectIds": ["u"], "x": 1}',
            "x",
        ),
        (b"[" * 100_000, None),
    ],
)
def test_bad_requests_get_segments_error_envelope(
    http: TestClient, body: bytes, field: str | None
) -> None:
    error = refused(http.post("/api/v1/regulations", content=body), 400)
    assert error.get("field") == field and error["type"] == "validation"


def test_unknown_things_are_404(http: TestClient) -> None:
    refused(regulate(http, "SUPPRESS_ONLY", ["u"], path="/sources/nope"), 404)
    refused(http.get("/api/v1/regulations/reg_nope"), 404)
    refused(http.get("/api/v1/regulations/sources/nope"), 404)
    assert (
        http.post("/api/v1/regulations", json={}, headers={"Authorization": ""}).status_code == 401
    )


def test_no_deletion_while_a_replay_runs_and_no_replay_while_a_deletion_waits(
    http: TestClient, engine: Engine, clock: Clock
) -> None:
    hook = {
        "name": "hook",
        "type": "webhook",
        "source": "web",
        "settings": {"url": "http://127.0.0.1:9/"},
    }
    assert http.post("/api/v1/destinations", json=hook).status_code == 201
    regulations = Regulations(engine, clock=clock)
    running = regulations.begin_replay("dst")
    error = refused(regulate(http, "SUPPRESS_WITH_DELETE", ["u2"]), 409)
    assert "replay is running" in error["message"]
    assert regulate(http, "SUPPRESS_ONLY", ["u1"]).status_code == 200  # suppression may go on
    clock.advance(601)  # a replay not heard from for ten minutes died with its process
    assert regulate(http, "DELETE_ONLY", ["u2"]).status_code == 200
    regulations.end_replay(running)

    day = datetime.fromtimestamp(clock(), UTC)  # within the data retention (A-DS-10)
    window = {"start": (day - timedelta(days=1)).isoformat(), "end": day.isoformat()}
    error = refused(http.post("/api/v1/destinations/hook/replay", json=window), 409)
    assert "deletion" in error["message"] and "pending" in error["message"]
    process(engine, clock)
    assert http.post("/api/v1/destinations/hook/replay", json=window).status_code == 200
    with engine.connect() as conn:  # the replay's mark is gone with it
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(schema.replays_running)).scalar()
            == 0
        )


def test_creates_at_the_same_moment_never_pass_the_limit_together(
    engine: Engine, clock: Clock
) -> None:
    """With room for one more 5,000-id regulation, eight made at once: exactly one is taken
    (PostgreSQL's creates take turns per workspace, SQLite's writes are serial)."""
    regulations = Regulations(engine, clock=clock)
    for n in range(21):  # 105,000 of 110,000 used
        regulations.create(
            "ws", WORKSPACE, "DELETE_INTERNAL", "USER_ID", [f"u{n}-{i}" for i in range(5000)]
        )
        clock.advance(1)
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def create(n: int) -> None:
        start.wait()
        try:
            regulations.create(
                "ws",
                WORKSPACE,
                "DELETE_INTERNAL",
                "USER_ID",
                [f"late{n}-{i}" for i in range(5000)],
            )
            outcomes.append("created")
        except RegulationRefused as refusal:
            outcomes.append(str(refusal.status))

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["429"] * 7 + ["created"]
