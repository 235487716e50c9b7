"""Every route of the REST API, fed hostile path parameters, query parameters and bodies,
answers a 4xx with the Public API's error shape, never a 5xx.

Routes come from the application's own OpenAPI document, so a route added later is walked
without touching this file. The API runs on a real uvicorn server, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from headwater.api.app import create_api
from headwater.api.debugger import router as debugger_router
from headwater.api.engage import use_batch_runs
from headwater.api.source_schema import router as source_schema_router
from headwater.api.sql_traits import use_warehouse_queries
from headwater.api.tester import router as event_tester_router
from headwater.api.tester import use_delivery
from headwater.api.uploads import use_appender
from headwater.delivery.engine import DeliveryEngine
from headwater.destinations.store import DestinationCache, DestinationStore
from headwater.engage.batch_runs import BatchRuns
from headwater.ingest.internal import InternalAppend
from headwater.store.admin_token import hash_token
from headwater.store.database import database_url, open_engine
from headwater.store.ingest_log import open_ingest_log
from headwater.store.migrations import migrate
from headwater.store.workspace import WorkspaceStore
from headwater.warehouse.profiles_tables import ProfilesWarehouses
from headwater.warehouse.query import WarehouseQueries
from headwater.warehouse.store import WarehouseStore
from tests.support.hostile import RAW_BODIES, VALUES, deep_array, deep_object
from tests.support.postgres import new_database

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    app = create_api(
        sa.create_engine("sqlite://"),
        admin_token_hash="x",
        extra_routers=[debugger_router, source_schema_router, event_tester_router],
    )
    spec = app.openapi()
    return [
        (method.upper(), path, {**operation, "components": spec["components"]})
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
    ]


OPERATIONS = _operations()

# Path and query parameter values, already percent-encoded where they need to be.
PARAMETER_VALUES = [
    "%ED%A0%80",
    "%00",
    "%FF",
    "%F0%9F%98%80",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "1" + "0" * 400,
    "-1",
    "0",
    "1e999",
    "NaN",
    "null",
    "x" * 3000,
    "%2F..%2F",
]
DEEP_FQL = '"' + "(" * 2000 + 'type = \\"track\\"' + ")" * 2000 + '"'
DEEP_DIRECTIVE = '{"@path":' * 500 + '"$.userId"' + "}" * 500
# (label, JSON text) for one field of a body.
FIELD_VALUES: list[tuple[str, str]] = [
    ("deep array 2000", deep_array(2000)),
    ("deep object 500", deep_object(500)),
    ("deep object 2000", deep_object(2000)),
    ("deep FQL", DEEP_FQL),
    ("deep directive", DEEP_DIRECTIVE),
    ("deep object of deep FQL", '{"x":' + DEEP_FQL + "}"),
    ("surrogate", '"\\ud800"'),
    ("surrogate inside", '"a\\udc00b"'),
    ("surrogate key", '{"\\ud800":1}'),
    ("surrogate in list", '["\\ud800"]'),
    ("surrogate value", '{"a":"\\ud800"}'),
    ("NUL", '"\\u0000"'),
    ("NUL value", '{"a":"\\u0000"}'),
    ("NUL key", '{"\\u0000":1}'),
    ("NUL in list", '["\\u0000"]'),
    ("1e999", "1e999"),
    ("huge int", "1" + "0" * 400),
    ("int64+1", "9223372036854775808"),
    ("int64-1", "-9223372036854775809"),
    ("-1", "-1"),
    ("NaN", "NaN"),
    ("null", "null"),
    ("true", "true"),
    ("0", "0"),
    ("1.5", "1.5"),
    ("empty string", '""'),
    ("[]", "[]"),
    ("{}", "{}"),
    ("string", '"x"'),
    ("long string", '"' + "x" * 5000 + '"'),
    ("list of objects", '[{"a":1}]'),
]
# Sensible values for body fields, so that one hostile field at a time meets real checks.
FIELD_DEFAULTS: dict[str, Any] = {
    "type": "webhook",
    "if": 'type = "track"',
    "actions": [{"type": "DROP"}],
    "trigger": 'type = "track"',
    "action": "send",
    "fields": {"url": "http://127.0.0.1:9/"},
    "filter": {"if": 'type = "track"', "actions": [{"type": "DROP"}]},
    "payload": {"type": "track", "event": "E"},
    "start": "2024-01-01T00:00:00Z",
    "end": "2024-01-02T00:00:00Z",
    "settings": {},
    "options": {},
}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def base_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("hostile-api")
    if request.param == "sqlite":
        url = database_url(tmp, None)
    else:
        url = database_url(tmp, new_database(request.getfixturevalue("postgres_url")))
    engine = open_engine(url)
    migrate(engine)
    WorkspaceStore(engine).ensure_workspace("acme")
    app = create_api(
        engine,
        admin_token_hash=hash_token(TOKEN),
        extra_routers=[debugger_router, source_schema_router, event_tester_router],
        archive_dir=tmp / "archive",
    )
    workspace = WorkspaceStore(engine)
    use_delivery(
        app, DeliveryEngine(engine, DestinationCache(DestinationStore(workspace), workspace))
    )
    log = open_ingest_log(engine, tmp, durability="normal", clock=time.time)
    use_appender(app, InternalAppend(log, clock=time.time))  # profile CSV uploads
    use_warehouse_queries(app, WarehouseQueries(WarehouseStore(workspace), tmp))  # SQL traits
    use_batch_runs(  # audience and computed-trait previews
        app,
        BatchRuns(
            engine,
            workspace,
            ProfilesWarehouses(WarehouseStore(workspace), engine, tmp),
            owner="hostile",
        ),
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            lifespan="off",
            log_level="critical",
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    log.close()
    engine.dispose()


_serial = itertools.count()


def _resources(http: httpx.Client) -> dict[str, str]:
    """A fresh source, destinations, filter, mapping, warehouse, sync, tracking plan, space
    (with a subscription group, an audience, a computed trait and a journey) and SQL trait for
    one route's walk."""
    n = next(_serial)

    def made(response: httpx.Response) -> dict[str, Any]:
        assert response.status_code in (200, 201, 202), response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    source = made(http.post("/api/v1/sources", json={"name": f"src-{n}"}))["source"]
    hook = made(
        http.post(
            "/api/v1/destinations",
            json={
                "name": f"hook-{n}",
                "type": "webhook",
                "source": source["name"],
                "settings": {"url": "http://127.0.0.1:9/"},
            },
        )
    )
    made(
        http.post(
            "/api/v1/destinations",
            json={"name": f"act-{n}", "type": "webhook-actions", "source": source["name"]},
        )
    )
    filter_ = made(
        http.post(
            f"/api/v1/destinations/hook-{n}/filters",
            json={"if": 'type = "track"', "actions": [{"type": "DROP"}]},
        )
    )["filter"]
    mapping = made(
        http.post(
            f"/api/v1/destinations/act-{n}/mappings",
            json={
                "name": "m",
                "trigger": 'type = "track"',
                "action": "send",
                "fields": {"url": "http://127.0.0.1:9/"},
            },
        )
    )["mapping"]
    transformation = made(
        http.post(
            "/api/v1/transformations",
            json={
                "name": "t",
                "sourceId": source["id"],
                "enabled": True,
                "if": "event = 'x'",
                "newEventName": "y",
            },
        )
    )["transformation"]
    made(http.post("/api/v1/warehouses", json={"name": f"wh-{n}", "type": "duckdb"}))
    sync = made(http.post(f"/api/v1/warehouses/wh-{n}/syncs"))["sync"]
    plan = made(http.post("/api/v1/tracking-plans", json={"name": f"tp-{n}"}))["trackingPlan"]
    made(http.post("/api/v1/spaces", json={"name": f"space-{n}", "sourceIds": [source["id"]]}))
    made(http.post(f"/api/v1/spaces/space-{n}/access-tokens", json={"name": "site/production"}))
    made(http.post(f"/api/v1/spaces/space-{n}/subscription-groups", json={"name": "News letter"}))
    made(
        http.post(
            f"/api/v1/spaces/space-{n}/audiences",
            json={"name": "Buyers", "definition": {"query": "event('Order').count() >= 1"}},
        )
    )
    made(
        http.post(
            f"/api/v1/spaces/space-{n}/computed-traits",
            json={"name": "Orders", "definition": {"query": "event('Order').count()"}},
        )
    )
    made(
        http.post(
            f"/api/v1/spaces/space-{n}/journeys",
            json={
                "name": "First Purchase",
                "definition": {
                    "entry": {"audience": "buyers"},
                    "steps": [{"name": "Wait", "delay": {"days": 1}}],
                },
            },
        )
    )
    upload = made(
        http.post(
            f"/api/v1/spaces/space-{n}/profiles/uploads",
            params={"fileName": "people.csv"},
            content=b"user_id\nu1\n",
            headers={"content-type": "text/csv"},
        )
    )["upload"]
    trait = made(
        http.post(
            f"/api/v1/spaces/space-{n}/sql-traits",
            json={"name": "t", "warehouse": f"wh-{n}", "query": "select 'u' as user_id, 1 as n"},
        )
    )["sqlTrait"]
    regulation = made(
        http.post(
            "/api/v1/regulations",
            json={"regulationType": "SUPPRESS_ONLY", "subjectType": "USER_ID", "subjectIds": ["u"]},
        )
    )["regulateId"]
    # A workspace keeps at most 100 custom matchers, and the walk has more routes than that.
    for old in made(http.get("/api/v1/privacy/matchers"))["matchers"]:
        if old["type"] == "CUSTOM":
            http.delete(f"/api/v1/privacy/matchers/{old['id']}")
    matcher = made(
        http.post(
            "/api/v1/privacy/matchers", json={"name": f"matcher-{n}", "classification": "RED"}
        )
    )["matcher"]
    made(
        http.post(
            "/api/v1/privacy/inventory", json={"path": f"properties.f{n}", "classification": "RED"}
        )
    )
    made(http.post("/api/v1/consent/categories", json={"categoryId": f"c{n}", "name": "C"}))
    # One function for every walk (a workspace keeps at most 25); a walk may have deleted it.
    if http.get("/api/v1/functions/fn-hostile").status_code == 404:
        made(
            http.post(
                "/api/v1/functions",
                json={
                    "name": "fn-hostile",
                    "kind": "insert",
                    "language": "javascript",
                    "code": "async function onTrack(event) { return event }",
                },
            )
        )
    user = made(http.post("/api/v1/users", json={"email": f"user-{n}@example.com"}))["user"]
    token = made(http.post("/api/v1/tokens", json={"description": f"token-{n}"}))["token"]
    group = made(http.post("/api/v1/groups", json={"name": f"group-{n}"}))["userGroup"]
    invite = made(http.post("/api/v1/invites", json={"email": f"invitee-{n}@example.com"}))
    return {
        "source": source["name"],
        "sourceId": source["id"],
        "destinationId": hook["destination"]["id"],
        "writeKey": source["writeKeys"][0],
        "destinationMetadataId": "54521fdc25e721e32a72ef04",  # Webhooks
        "sourceMetadataId": "IqDTy1TpoU",  # Javascript
        "warehouseMetadataId": "duckdb",
        "matcherId": matcher["id"],
        "path": f"properties.f{n}",
        "channel": "slack",
        "regulateId": regulation,
        "hook": f"hook-{n}",
        "actions": f"act-{n}",
        "warehouse": f"wh-{n}",
        "warehouseId": f"wh-{n}",
        "filterId": filter_["id"],
        "mappingId": mapping["id"],
        "transformationId": transformation["id"],
        "key": source["writeKeys"][0],
        "syncId": str(sync["id"]),
        "trackingPlanId": plan["id"],
        "space": f"space-{n}",
        "spaceId": f"space-{n}",
        "id": "buyers",  # Segment's audience path parameter
        "tokenName": "site/production",
        "uploadId": upload["id"],
        "groupIdOrName": quote("News letter", safe=""),
        "audienceId": "buyers",
        "computedTraitId": "orders",
        "journeyId": "first_purchase",
        "profileId": "use_000000000000000000000000000",
        "traitId": trait["id"],
        "categoryId": f"c{n}",
        "function": "fn-hostile",
        "functionId": "fn-hostile",
        "versionId": "1",
        "version": "1",
        "userId": user["id"],
        "tokenId": token["id"],
        "groupId": group["id"],
        "inviteId": invite["invite"]["id"],
        "value": "prod",  # labels/{key}/{value}: ``key`` is the write key (no such label)
    }


def _path_values(path: str, made: dict[str, str]) -> dict[str, str]:
    """Existing resources for each of the path's parameters."""
    if path.startswith("/api/v1/sources"):
        owner = made["source"]
    elif path.startswith("/api/v1/warehouses"):
        owner = made["warehouse"]
    elif path.startswith("/api/v1/spaces"):
        owner = made["space"]
    elif "/mappings" in path:
        owner = made["actions"]
    elif path.startswith("/api/v1/functions"):
        owner = made["function"]
    else:
        owner = made["hook"]
    return {"idOrName": quote(owner, safe=""), "event": "Order%20Completed", **made}


def _schema(operation: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return None
    schema: dict[str, Any] = content["schema"]
    for option in schema.get("anyOf", [schema]):
        ref = option.get("$ref")
        if ref:
            found: dict[str, Any] = operation["components"]["schemas"][ref.rsplit("/", 1)[1]]
            return found
    return schema


def _base_body(schema: dict[str, Any], made: dict[str, str], path: str) -> dict[str, Any]:
    """The schema's required fields with sensible values."""
    segment: dict[str, Any] = {}
    if path.startswith("/segment/v1/sources"):  # Segment's Public API bodies
        segment = {
            "slug": f"slug_{next(_serial)}",
            "enabled": True,
            "metadataId": made["sourceMetadataId"],
        }
    elif path.startswith("/segment/v1/destinations"):
        segment = {
            "sourceId": made["sourceId"],
            "metadataId": made["destinationMetadataId"],
            "settings": {"url": "http://127.0.0.1:9/"},
        }
    elif path.startswith("/segment/v1/destination/"):  # a destination's filters
        segment = {"sourceId": made["sourceId"], "title": "f", "enabled": True}
    elif path.startswith("/segment/v1/warehouses"):
        segment = {"metadataId": made["warehouseMetadataId"], "settings": {}}
    elif path.startswith("/segment/v1/spaces"):
        segment = {"definition": {"query": "event('Order').count() >= 1"}}
    elif path.startswith("/segment/v1/functions"):
        segment = {
            "displayName": f"fn-{next(_serial)}",
            "resourceType": "INSERT_DESTINATION",
            "code": "async function onTrack(event) { return event }",
            "versionId": "1",
        }
    body: dict[str, Any] = {}
    for name in schema.get("required", []):
        if name in segment:
            body[name] = segment[name]
        elif name in FIELD_DEFAULTS:
            body[name] = FIELD_DEFAULTS[name]
        elif name == "source":
            body[name] = made["source"]
        else:
            body[name] = f"{name}-{next(_serial)}"
    return body


def _stream_stays_open(response: httpx.Response) -> tuple[int, str]:
    try:
        for _ in response.iter_raw():
            pass
    except httpx.ReadTimeout:
        return response.status_code, ""  # still open and polling: healthy
    except httpx.TransportError as exc:
        return 599, f"the event stream broke off: {exc!r}"
    return 599, "the event stream ended"


def _with_field(body: dict[str, Any], field: str, raw: str) -> bytes:
    rest = {k: v for k, v in body.items() if k != field}
    text = json.dumps(rest)
    spliced = f'{{"{field}":{raw}' + ("," + text[1:] if rest else "}")
    return spliced.encode()


@pytest.mark.parametrize(
    ("method", "path", "operation"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS]
)
def test_hostile_input_never_gets_a_5xx(
    base_url: str, method: str, path: str, operation: dict[str, Any]
) -> None:
    failures: list[tuple[str, int, str]] = []
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=30) as http:
        made = _resources(http)
        good = _path_values(path, made)
        parameters = operation.get("parameters", [])
        path_names = [p["name"] for p in parameters if p["in"] == "path"]
        query_names = [p["name"] for p in parameters if p["in"] == "query"]
        if path.endswith("/debugger"):
            query_names += ["limit", "q"]
        if path == "/api/v1/sources" or (
            path.startswith("/segment/v1") and "pagination.count" in query_names
        ):
            query_names += ["pagination[count]", "pagination[cursor]"]
        schema = _schema(operation)
        # A live stream answers, then polls: an error in a poll shows as a stream that ends.
        timeout = httpx.Timeout(30, read=1.5) if path.endswith("/stream") else 30

        def url(overrides: dict[str, str]) -> str:
            values = {**good, **overrides}
            return path.format(**{name: values[name] for name in path_names})

        def send(
            label: str,
            target: str,
            content: bytes | None = None,
            headers: dict[str, str] | None = None,
        ) -> None:
            if content is None and schema is not None:
                content = json.dumps(_base_body(schema, made, path)).encode()
            extra = {"content-type": "application/json"} if content is not None else {}
            try:
                with http.stream(
                    method,
                    target,
                    content=content,
                    timeout=timeout,
                    headers={**extra, **(headers or {})},
                ) as response:
                    status = response.status_code
                    if response.headers.get("content-type", "").startswith("text/event-stream"):
                        status, text = _stream_stays_open(response)
                    else:
                        text = response.read().decode(errors="replace")
            except httpx.TransportError as exc:  # the server dropped the connection: no answer
                status, text = 599, repr(exc)
            if status >= 500:
                failures.append((label, status, text[:300]))
            elif status >= 400:
                errors = json.loads(text)["errors"]
                assert errors and errors[0]["message"], (label, text)

        for name in path_names:
            for value in PARAMETER_VALUES:
                send(f"path {name} = {value[:40]}", url({name: value}))
        for name in query_names:
            for value in [*PARAMETER_VALUES, ""]:
                send(f"query {name} = {value[:40]}", f"{url({})}?{quote(name)}={value}")
        if path.endswith("/stream"):
            for value in ("9223372036854775808", "-1", "x", "1" + "0" * 400, "NaN"):
                send(f"Last-Event-ID = {value[:40]}", url({}), headers={"Last-Event-ID": value})
        if schema is not None:
            for raw in [*VALUES, *(b.decode("latin-1") for b in RAW_BODIES)]:
                send(f"body = {raw[:40]}", url({}), raw.encode("latin-1", "replace"))
            for field in schema.get("properties", {}):
                for label, raw in FIELD_VALUES:
                    # A fresh body each time: a name taken by an earlier request would stop
                    # the next one at the name check, before its other fields are looked at.
                    send(
                        f"field {field} = {label}",
                        url({}),
                        _with_field(_base_body(schema, made, path), field, raw),
                    )
    assert not failures, "\n".join(
        f"{status} on {label}: {text}" for label, status, text in failures
    )
