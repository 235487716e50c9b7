"""Functions through the REST API (SQLite and PostgreSQL): create, versions with their LATEST
and DEPLOYED labels, save, deploy, restore, the workspace limit (AC-111), refused code
(AC-113), a function in use, instances' settings with secrets redacted, the error log, and the
test runner on a real sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.api.functions import close_runtime, use_functions
from headwater.functions.contract import Invocation, LogLine
from headwater.functions.sandbox.runtime import SandboxRuntime
from headwater.functions.store import FunctionLogs
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from tests.api.client import TOKEN, api_with_destination
from tests.api.test_sources_api import assert_error
from tests.support.receiver import Receiver

ENRICH = """
async function onTrack(event, settings) {
  console.log('enriching with', settings.apiKey)
  event.properties.message = 'Enriched'
  return event
}
async function onIdentify(event) { throw new DropEvent('no identifies here') }
"""
SECRET = [{"name": "apiKey", "label": "API key", "type": "string", "secret": True}]


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with api_with_destination(
        engine, {"name": "hook", "type": "webhook", "settings": {"url": "http://127.0.0.1:9/hook"}}
    ) as http:
        yield http


def create(client: TestClient, name: str = "enrich", **extra: Any) -> dict[str, Any]:
    body = {"name": name, "kind": "insert", "language": "javascript", "code": ENRICH, **extra}
    created = client.post("/api/v1/functions", json=body)
    assert created.status_code == 201, created.text
    found: dict[str, Any] = created.json()["data"]["function"]
    return found


def labels(client: TestClient, name: str) -> dict[int, list[str]]:
    versions = client.get(f"/api/v1/functions/{name}/versions").json()["data"]["versions"]
    return {v["version"]: v["labels"] for v in versions}


def test_create_read_list_delete(client: TestClient, engine: Engine) -> None:
    before = WorkspaceStore(engine).config_version()
    shown = create(client, description="adds a message", settings=SECRET)
    assert shown["id"].startswith("fn_")
    assert (shown["kind"], shown["language"], shown["code"]) == ("insert", "javascript", ENRICH)
    assert (shown["latestVersion"], shown["deployedVersion"]) == (1, 1)
    assert shown["settings"][0]["secret"] is True
    assert WorkspaceStore(engine).config_version() > before
    got = client.get(f"/api/v1/functions/{shown['id']}").json()["data"]["function"]
    assert got == {**shown, "usedBy": []}
    listed = client.get("/api/v1/functions").json()["data"]
    assert [f["name"] for f in listed["functions"]] == ["enrich"]
    assert listed["limit"] == 25 and "code" not in listed["functions"][0]
    deleted = client.delete("/api/v1/functions/enrich")
    assert deleted.status_code == 200, deleted.text
    assert_error(client.get("/api/v1/functions/enrich"), 404, "not_found")


def test_save_deploy_restore(client: TestClient) -> None:
    create(client)
    saved = client.patch("/api/v1/functions/enrich", json={"code": ENRICH + "// v2\n"})
    assert saved.status_code == 200, saved.text
    assert labels(client, "enrich") == {2: ["LATEST"], 1: ["DEPLOYED"]}
    deployed = client.post("/api/v1/functions/enrich/deploy")
    assert deployed.json()["data"]["function"]["deployedVersion"] == 2
    assert labels(client, "enrich") == {2: ["LATEST", "DEPLOYED"], 1: []}
    one = client.get("/api/v1/functions/enrich/versions/1").json()["data"]["version"]
    assert one["code"] == ENRICH
    restored = client.post("/api/v1/functions/enrich/versions/1/restore")
    assert restored.json()["data"]["function"]["latestVersion"] == 3
    assert labels(client, "enrich") == {3: ["LATEST"], 2: ["DEPLOYED"], 1: []}
    assert client.get("/api/v1/functions/enrich").json()["data"]["function"]["code"] == ENRICH
    back = client.post("/api/v1/functions/enrich/deploy", json={"version": 1})
    assert back.json()["data"]["function"]["deployedVersion"] == 1
    both = client.patch(
        "/api/v1/functions/enrich", json={"code": ENRICH + "// v4\n", "deploy": True}
    )
    assert both.json()["data"]["function"]["deployedVersion"] == 4
    restore_deploy = client.post(
        "/api/v1/functions/enrich/versions/2/restore", json={"deploy": True}
    )
    assert restore_deploy.json()["data"]["function"]["deployedVersion"] == 5
    assert_error(client.get("/api/v1/functions/enrich/versions/9"), 404, "not_found")
    assert_error(client.post("/api/v1/functions/enrich/versions/9/restore"), 404, "not_found")
    assert_error(
        client.post("/api/v1/functions/enrich/deploy", json={"version": 9}), 404, "not_found"
    )


def test_ac111_a_26th_function_is_refused(client: TestClient) -> None:
    """AC-111: Segment's default, 25 functions a workspace (all kinds); the 26th is refused
    with a clear 409 and nothing is saved."""
    for i in range(25):
        create(client, f"f{i}")
    refused = client.post(
        "/api/v1/functions",
        json={"name": "f25", "kind": "source", "language": "python", "code": "x = 1"},
    )
    assert_error(refused, 409, "conflict")
    assert "25" in refused.json()["errors"][0]["message"]
    assert len(client.get("/api/v1/functions").json()["data"]["functions"]) == 25


def test_ac113_saving_code_that_calls_segments_function_host_is_refused(
    client: TestClient,
) -> None:
    """AC-113: source function code containing https://fn.segmentapis.com is not saved."""
    looping = (
        "async function onRequest(request) {\n"
        "  await fetch('https://fn.segmentapis.com/?b=' + btoa('key:'), {method: 'POST'})\n"
        "}"
    )
    body = {"name": "loop", "kind": "source", "language": "javascript", "code": looping}
    assert_error(client.post("/api/v1/functions", json=body), 422, "validation", "code")
    assert client.get("/api/v1/functions").json()["data"]["functions"] == []
    create(client, "hook-in", kind="source", code="async function onRequest() {}")
    saved = client.patch("/api/v1/functions/hook-in", json={"code": looping})
    assert_error(saved, 422, "validation", "code")
    assert labels(client, "hook-in") == {1: ["LATEST", "DEPLOYED"]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "nope"}, "kind"),
        ({"language": "ruby"}, "language"),
        ({"code": ""}, "code"),
        ({"name": "x" * 121}, "name"),
        ({"settings": [{"name": "a b"}]}, "settings[0].name"),
        ({"settings": [{"name": "a", "type": "date"}]}, "settings[0].type"),
    ],
)
def test_bad_functions_are_refused(client: TestClient, body: dict[str, Any], field: str) -> None:
    full = {"name": "enrich", "kind": "insert", "language": "javascript", "code": ENRICH, **body}
    assert_error(client.post("/api/v1/functions", json=full), 422, "validation", field)
    assert_error(client.post("/api/v1/functions", json={**full, "extra": 1}), 422, "validation")


def test_names_are_unique(client: TestClient) -> None:
    create(client)
    again = {"name": "enrich", "kind": "insert", "language": "javascript", "code": ENRICH}
    assert_error(client.post("/api/v1/functions", json=again), 409, "conflict", "name")


def test_instances_settings_are_redacted_and_block_deletion(client: TestClient) -> None:
    create(client, settings=SECRET)
    create(client, "stripe", kind="source", code="async function onRequest() {}")
    path = "/api/v1/destinations/hook/insert-function"
    attached = client.put(path, json={"function": "enrich", "settings": {"apiKey": "s3cret"}})
    assert attached.status_code == 200, attached.text
    shown = attached.json()["data"]["function"]
    assert shown["settings"] == {"apiKey": "[redacted]"} and shown["function"]["name"] == "enrich"
    assert "s3cret" not in client.get(path).text
    # Sent back redacted, the secret stays as it was.
    again = client.put(path, json={"function": "enrich", "settings": {"apiKey": "[redacted]"}})
    assert again.status_code == 200, again.text
    in_use = client.delete("/api/v1/functions/enrich")
    assert_error(in_use, 409, "conflict")
    assert "hook" in in_use.json()["errors"][0]["message"]
    assert client.get("/api/v1/functions/enrich").json()["data"]["function"]["usedBy"] == [
        "destination 'hook'"
    ]
    wrong_kind = client.put(path, json={"function": "stripe"})
    assert_error(wrong_kind, 422, "validation", "insert_function")
    unknown = client.put(path, json={"function": "enrich", "settings": {"other": "x"}})
    assert_error(unknown, 422, "validation")
    source_path = "/api/v1/sources/web/function"
    assert client.get(source_path).json() == {"data": {"function": None}}
    assert client.put(source_path, json={"function": "stripe"}).status_code == 200
    assert client.get(source_path).json()["data"]["function"]["function"]["name"] == "stripe"
    assert_error(client.get("/api/v1/sources/nope/function"), 404, "not_found")
    assert client.delete(path).status_code == 200
    assert client.delete(source_path).status_code == 200
    assert client.delete("/api/v1/functions/enrich").status_code == 200


def test_logs_are_the_most_recent(client: TestClient, engine: Engine) -> None:
    create(client)
    logs = FunctionLogs(WorkspaceStore(engine))
    for i in range(3):
        logs.record(
            "enrich",
            1,
            None,
            Invocation(error="ValidationError", message=f"bad #{i}", logs=[LogLine("log", "hi")]),
            {"type": "track", "userId": f"u{i}"},
        )
    found = client.get("/api/v1/functions/enrich/logs").json()["data"]["logs"]
    assert [e["message"] for e in found] == ["bad #2", "bad #1", "bad #0"]
    assert found[0]["error"] == "ValidationError" and found[0]["logs"] == [["log", "hi"]]
    assert found[0]["payload"] == {"type": "track", "userId": "u2"}
    two = client.get("/api/v1/functions/enrich/logs", params={"count": 2}).json()["data"]["logs"]
    assert len(two) == 2
    assert_error(
        client.get("/api/v1/functions/enrich/logs", params={"count": 101}), 422, "validation"
    )
    assert_error(client.get("/api/v1/functions/nope/logs"), 404, "not_found")


def test_test_runner_refuses_what_it_cannot_run(client: TestClient) -> None:
    create(client, settings=SECRET)
    create(client, "stripe", kind="source", code="async function onRequest() {}")
    path = "/api/v1/functions/enrich/test"
    event = {"type": "track", "event": "x"}
    assert_error(client.post(path, json={}), 422, "validation")
    assert_error(client.post(path, json={"event": event, "events": [event]}), 422, "validation")
    assert_error(client.post(path, json={"event": {"type": "nope"}}), 422, "validation")
    assert_error(client.post(path, json={"events": []}), 422, "validation", "events")
    assert_error(
        client.post(path, json={"event": event, "settings": {"other": 1}}), 422, "validation"
    )
    assert_error(
        client.post("/api/v1/functions/stripe/test", json={"event": event}), 422, "validation"
    )
    assert_error(
        client.post("/api/v1/functions/nope/test", json={"event": event}), 404, "not_found"
    )


# --- the test runner, on real sandbox processes ------------------------------------------------

POST = """
async function onTrack(event, settings) {
  const r = await fetch(settings.url + '?key=' + settings.apiKey, {
    method: 'POST', body: JSON.stringify(event)
  })
  console.log('posted', r.status)
  if (r.status >= 500) throw new RetryError('HTTP ' + r.status)
  return {status: r.status}
}
async function onBatch(events, settings) { return events.map(e => ({status: 200})) }
"""
WEBHOOK = """
async function onRequest(request, settings) {
  const body = await request.json()
  Segment.track({event: body.type, userId: body.data.customer, properties: {via: settings.label}})
}
"""


@pytest.fixture
def runner(engine: Engine, receiver: Receiver) -> Iterator[TestClient]:
    """The API with a test runner whose fetch may call the loopback receiver."""
    WorkspaceStore(engine).ensure_workspace("acme")
    app = create_api(engine, admin_token_hash=hash_token(TOKEN))
    use_functions(app, runtime=lambda: SandboxRuntime(fetch_allow=["127.0.0.1"]))
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        yield http
        http.portal.call(close_runtime, app)  # type: ignore[union-attr]


def test_the_test_runner_runs_latest_with_an_insert_functions_output(runner: TestClient) -> None:
    create(runner, settings=SECRET)
    runner.patch("/api/v1/functions/enrich", json={"code": ENRICH.replace("'Enriched'", "'v2'")})
    event = {"type": "track", "event": "Signed Up", "userId": "u1", "properties": {}}
    ran = runner.post(
        "/api/v1/functions/enrich/test", json={"event": event, "settings": {"apiKey": "s3cret-k"}}
    )
    assert ran.status_code == 200, ran.text
    result = ran.json()["data"]
    assert result["version"] == 2 and result["handler"] == "onTrack"  # LATEST, not DEPLOYED
    assert result["error"] is None
    assert result["output"]["properties"] == {"message": "v2"}
    assert result["logs"] == [["log", "enriching with [redacted]"]]
    assert "s3cret-k" not in ran.text
    dropped = runner.post(
        "/api/v1/functions/enrich/test",
        json={"event": {**event, "type": "identify"}, "settings": {"apiKey": "k"}},
    ).json()["data"]
    assert dropped["error"]["type"] == "DropEvent"
    assert dropped["error"]["code"] == "Filtered at insert function"
    missing = runner.post(
        "/api/v1/functions/enrich/test",
        json={"event": {**event, "type": "page"}, "settings": {"apiKey": "k"}},
    ).json()["data"]
    assert missing["error"]["type"] == "EventNotSupported"
    assert (missing["error"]["code"], missing["error"]["retry"]) == (
        "UNSUPPORTED_EVENT_TYPE",
        False,
    )
    # Nothing a test does reaches the function's log.
    assert runner.get("/api/v1/functions/enrich/logs").json()["data"]["logs"] == []


def test_the_test_runner_shows_outgoing_requests(runner: TestClient, receiver: Receiver) -> None:
    settings = [{"name": "url", "required": True}, {"name": "apiKey", "secret": True}]
    create(runner, "post", kind="destination", code=POST, settings=settings)
    body = {
        "event": {"type": "track", "event": "Signed Up", "userId": "u1"},
        "settings": {"url": receiver.url + "/events", "apiKey": "s3cret-k"},
    }
    result = runner.post("/api/v1/functions/post/test", json=body).json()["data"]
    assert result["error"] is None and result["output"] == {"status": 200}
    [request] = result["requests"]
    assert request["method"] == "POST" and request["status"] == 200
    assert request["url"] == receiver.url + "/events?key=[redacted]"
    assert result["logs"] == [["log", "posted 200"]]
    assert receiver.wait_for(1)[0].json()["userId"] == "u1"
    batch = runner.post(
        "/api/v1/functions/post/test",
        json={"events": [body["event"]] * 3, "settings": body["settings"]},
    ).json()["data"]
    assert batch["handler"] == "onBatch" and batch["output"] == [{"status": 200}] * 3


def test_the_test_runner_runs_a_source_functions_request(runner: TestClient) -> None:
    settings = [{"name": "label"}]
    create(runner, "stripe", kind="source", code=WEBHOOK, settings=settings)
    sent = {
        "request": {"body": {"type": "charge.succeeded", "data": {"customer": "cus_1"}}},
        "settings": {"label": "stripe"},
    }
    result = runner.post("/api/v1/functions/stripe/test", json=sent).json()["data"]
    assert result["handler"] == "onRequest" and result["error"] is None, result
    [emitted] = result["emitted"]
    assert emitted["type"] == "track" and emitted["event"] == "charge.succeeded"
    assert emitted["userId"] == "cus_1" and emitted["properties"] == {"via": "stripe"}


def test_the_test_runner_runs_python_functions(runner: TestClient) -> None:
    code = (
        "def on_track(event, settings):\n"
        "    print('enriching with', settings['apiKey'])\n"
        "    event['properties']['message'] = 'Enriched'\n"
        "    return event\n\n"
        "def on_identify(event, settings):\n"
        "    raise DropEvent('no identifies here')\n"
    )
    create(runner, "enrich-py", language="python", code=code, settings=SECRET)
    event = {"type": "track", "event": "Signed Up", "userId": "u1", "properties": {}}
    body = {"event": event, "settings": {"apiKey": "s3cret-k"}}
    ran = runner.post("/api/v1/functions/enrich-py/test", json=body)
    result = ran.json()["data"]
    assert result["error"] is None, result
    assert result["output"]["properties"] == {"message": "Enriched"}
    assert result["logs"] == [["log", "enriching with [redacted]"]]
    assert "s3cret-k" not in ran.text
    body["event"] = {**event, "type": "identify"}
    dropped = runner.post("/api/v1/functions/enrich-py/test", json=body).json()["data"]
    assert dropped["error"]["type"] == "DropEvent"
