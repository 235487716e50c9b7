"""Source functions through a running server (§11.2): the webhook endpoint, its refusals, the
code's Segment calls in the source's debugger, objects in the warehouse only, real-world
webhooks (Stripe- and GitHub-shaped, with their signature checks), and Segment's retries on a
moved clock."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.clock import OFFSET_FILE_VARIABLE, OffsetClock
from headwater.functions.logs import FunctionLogs
from headwater.functions.requests import FunctionRequests, StoredRequest, retry_gap
from headwater.functions.store import FunctionStore
from headwater.store import schema
from headwater.store.database import database_url, open_engine
from headwater.store.workspace import WorkspaceStore
from tests.support.hostile import ENCODED_BODIES, RAW_BODIES, VALUES
from tests.support.live import ADMIN_TOKEN, LiveServer, run_headwater
from tests.support.waiting import wait_for

pytestmark = pytest.mark.live  # every test here starts a headwater server process

CONFIG = """\
workspace: test
sources:
  - name: web
    write_key: WK_web
  - name: webhooks-in
    write_key: WK_hooks
  - name: stripe-in
    write_key: WK_stripe
  - name: stripe-py
    write_key: WK_stripe_py
  - name: github-in
    write_key: WK_github
  - name: github-py
    write_key: WK_github_py
  - name: objects-in
    write_key: WK_objects
  - name: retry-in
    write_key: WK_retry
  - name: limits-in
    write_key: WK_limits
    function: limits-fn
functions:
  - name: limits-fn
    kind: source
    language: javascript
    code: |
      async function onRequest(request, settings) {
        console.log(JSON.stringify(await request.json()))
        Segment.track({ event: 'Too Big', userId: 'u', properties: { blob: 'x'.repeat(33 * 1024) } })
        Segment.track({ event: 'No One' })
        Segment.set({ collection: 'Products', id: 'p1', properties: {} })
        Segment.track({ event: 'Small', userId: 'u-small' })
      }
"""
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SIGNING_SECRET = "whsec_test_5ecret"

PAGE_VIEWED = """\
async function onRequest(request, settings) {
  const body = await request.json()
  console.log('hello', body.name)
  Segment.track({
    event: 'Page Viewed',
    userId: 'user_id',
    properties: { page_name: 'Summer Collection 2020', visitor: body.name }
  })
  return { secret: 'the function output never reaches the caller' }
}
"""

STRIPE_JS = """\
async function onRequest(request, settings) {
  const crypto = require('crypto')
  const header = request.headers.get('Stripe-Signature') || ''
  const parts = {}
  for (const item of header.split(',')) {
    const [key, value] = item.split('=')
    parts[key] = value
  }
  const body = await request.text()
  const expected = crypto.createHmac('sha256', settings.signingSecret)
    .update(parts.t + '.' + body).digest('hex')
  if (expected !== parts.v1) throw new ValidationError('Stripe signature does not match')
  const event = JSON.parse(body)
  const object = event.data.object
  Segment.track({
    event: event.type,
    userId: object.customer,
    properties: { amount: object.amount / 100, currency: object.currency, stripe_id: event.id }
  })
  Segment.identify({ userId: object.customer, traits: { email: object.receipt_email } })
}
"""

STRIPE_PY = """\
import hashlib
import hmac
import itertools
import json


def on_request(request, settings):
    parts = dict(item.split("=", 1) for item in request.headers.get("Stripe-Signature", "").split(","))
    body = request.text()
    expected = hmac.new(
        settings["signingSecret"].encode(), (parts.get("t", "") + "." + body).encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, parts.get("v1", "")):
        raise ValidationError("Stripe signature does not match")
    event = json.loads(body)
    obj = event["data"]["object"]
    segment.track({
        "event": event["type"],
        "userId": obj["customer"],
        "properties": {"amount": obj["amount"] / 100, "currency": obj["currency"], "stripe_id": event["id"]},
    })
    segment.identify({"userId": obj["customer"], "traits": {"email": obj["receipt_email"]}})
"""

# GitHub's form-encoded webhooks: the JSON is the ``payload`` field; the signature covers the
# raw body as sent.
GITHUB_JS = """\
async function onRequest(request, settings) {
  const crypto = require('crypto')
  const body = await request.text()
  const expected = 'sha256=' + crypto.createHmac('sha256', settings.signingSecret)
    .update(body).digest('hex')
  const given = request.headers.get('X-Hub-Signature-256') || ''
  if (given.length !== expected.length ||
      !crypto.timingSafeEqual(Buffer.from(given), Buffer.from(expected))) {
    throw new ValidationError('GitHub signature does not match')
  }
  const payload = JSON.parse(new URLSearchParams(body).get('payload'))
  Segment.track({
    event: 'GitHub ' + request.headers.get('X-GitHub-Event'),
    userId: payload.sender.login,
    properties: { repository: payload.repository.full_name, action: payload.action }
  })
}
"""

GITHUB_PY = """\
import hashlib
import hmac
import itertools
import json
from urllib.parse import parse_qs


def on_request(request, settings):
    body = request.text()
    expected = "sha256=" + hmac.new(settings["signingSecret"].encode(), body.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("X-Hub-Signature-256", "")):
        raise ValidationError("GitHub signature does not match")
    payload = json.loads(parse_qs(body)["payload"][0])
    segment.track({
        "event": "GitHub " + request.headers.get("X-GitHub-Event"),
        "userId": payload["sender"]["login"],
        "properties": {"repository": payload["repository"]["full_name"], "action": payload["action"]},
    })
"""

OBJECTS = """\
async function onRequest(request, settings) {
  const body = await request.json()
  Segment.set({
    collection: 'products',
    id: 'product_id',
    properties: { name: 'Nike Air Max 90', size: body.size || 11 }
  })
  Segment.track({ event: 'Product Saved', userId: 'u-objects', properties: { sku: body.sku } })
}
"""

ALWAYS_RETRY = """\
async function onRequest(request, settings) {
  console.log('trying')
  throw new RetryError('upstream is down')
}
"""

SIGNING = [{"name": "signingSecret", "label": "Signing secret", "type": "string", "secret": True}]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    base = tmp_path_factory.mktemp("source-functions")
    config = base / "headwater.yaml"
    config.write_text(CONFIG)
    server = LiveServer(
        data_dir=base / "data",
        config=config,
        role="all",
        env={OFFSET_FILE_VARIABLE: str(base / "clock-offset")},
    )
    try:
        server.start(timeout=120)  # two cores shared: a busy machine starts slowly
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def engine(live: LiveServer) -> Iterator[Engine]:
    db = open_engine(database_url(live.data_dir, None))
    yield db
    db.dispose()


@pytest.fixture(scope="module")
def functions(engine: Engine) -> FunctionStore:
    return FunctionStore(WorkspaceStore(engine))


def deploy(
    functions: FunctionStore,
    source: str,
    code: str,
    *,
    language: str = "javascript",
    declared: list[dict[str, Any]] | None = None,
    settings: dict[str, Any] | None = None,
) -> str:
    """A source function named after ``source``, running on it; its id."""
    created = functions.create(f"{source}-fn", "source", language, code, settings=declared or [])
    functions.attach_source(source, created.name, settings or {})
    return created.id


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def debugger(live: LiveServer, source: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{live.url}/api/v1/sources/{source}/debugger", params={"limit": 100}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["data"]["events"]
    return events


def messages(live: LiveServer, source: str) -> list[dict[str, Any]]:
    """The debugger's messages of ``source``, oldest first."""
    found = [e.get("message", e) for e in debugger(live, source)]
    return list(reversed(found))


def drained(engine: Engine, source_id: str | None = None) -> bool:
    return not FunctionRequests(engine).pending(source_id)


def source_id(engine: Engine, name: str) -> str:
    with engine.connect() as conn:
        found: str = conn.execute(
            sa.select(schema.sources.c.id).where(schema.sources.c.name == name)
        ).scalar_one()
    return found


def test_ac108_a_webhook_becomes_the_sources_track_and_the_caller_sees_only_success(
    live: LiveServer, functions: FunctionStore, engine: Engine
) -> None:
    """AC-108: POST {"name":"Jane"} → the code's Segment.track is in the source's debugger;
    the caller gets {"success": true}, never the function's value or logs."""
    function_id = deploy(functions, "webhooks-in", PAGE_VIEWED)
    url = f"{live.url}/v1/functions/webhooks-in"
    response = httpx.post(url, json={"name": "Jane"}, headers=basic("WK_hooks"))
    assert response.status_code == 200
    assert response.json() == {"success": True}
    # Segment's webhook URL form: the key in ``b``, base64 of "<writeKey>:"; by source id too.
    b = base64.b64encode(b"WK_hooks:").decode()
    by_id = f"{live.url}/v1/functions/{source_id(engine, 'webhooks-in')}"
    second = httpx.post(by_id, params={"b": b}, json={"name": "Joe"})
    assert (second.status_code, second.json()) == (200, {"success": True})
    found = wait_for(
        lambda: len(messages(live, "webhooks-in")) >= 2 and messages(live, "webhooks-in"),
        30,
        "the source function's tracks in the debugger",
    )
    assert [m["event"] for m in found] == ["Page Viewed", "Page Viewed"]
    assert {m["properties"]["visitor"] for m in found} == {"Jane", "Joe"}
    first = found[0]
    assert first["type"] == "track" and first["userId"] == "user_id"
    assert first["properties"]["page_name"] == "Summer Collection 2020"
    assert drained(engine)
    # A successful run that logged something is in the function's log, with its console.
    entries = FunctionLogs(WorkspaceStore(engine)).recent(function_id)
    assert entries and entries[0].error is None
    assert ["log", "hello Joe"] in [e.logs[0] for e in entries] or ["log", "hello Jane"] in [
        e.logs[0] for e in entries
    ]


def test_ac108_refusals(live: LiveServer, functions: FunctionStore, engine: Engine) -> None:
    """AC-108: GET rejected, 513 KiB rejected, text/xml → BAD_REQUEST "Unsupported
    content-type"; no key → 401; a wrong key or a source without a function → Segment's
    discard reasons; nothing of a refused request is kept."""
    wait_for(lambda: functions.source_function("webhooks-in") is not None, 5, "the function")
    url = f"{live.url}/v1/functions/webhooks-in"
    auth = basic("WK_hooks")
    got = httpx.get(url, headers=auth)
    assert got.status_code == 405 and got.headers["allow"] == "POST"
    assert "GET requests are not supported" in got.json()["message"]
    big = {"blob": "x" * (513 * 1024)}
    too_big = httpx.post(url, json=big, headers=auth)
    assert too_big.status_code == 413, too_big.text
    assert too_big.json()["code"] == "payload_too_large"
    assert "512 KiB" in too_big.json()["message"]
    just_under = httpx.post(
        url,
        content=b'{"a":"' + b"x" * (512 * 1024 - 10) + b'"}',
        headers={**auth, "Content-Type": "application/json"},
    )
    assert just_under.status_code == 200
    xml = httpx.post(url, content=b"<a/>", headers={**auth, "Content-Type": "text/xml"})
    assert xml.status_code == 400
    assert xml.json()["code"] == "BAD_REQUEST"
    assert xml.json()["message"].startswith("Unsupported content-type")
    none = httpx.post(url, content=b"{}", headers=auth)  # no Content-Type at all
    assert (none.status_code, none.json()["code"]) == (400, "BAD_REQUEST")
    anonymous = httpx.post(url, json={"a": 1})
    assert anonymous.status_code == 401
    assert anonymous.json() == {
        "code": "unknown_source",
        "message": "Could not read write key from url",
    }
    for wrong in (basic("WK_nope"), basic("WK_web")):  # unknown; another source's key
        refused = httpx.post(url, json={"a": 1}, headers=wrong)
        assert refused.status_code == 401
        assert refused.json()["message"] == "Could not find source from write key"
    garbled = httpx.post(url, params={"b": "%%%"}, json={"a": 1})
    assert garbled.status_code == 401
    plain = httpx.post(f"{live.url}/v1/functions/web", json={"a": 1}, headers=basic("WK_web"))
    assert plain.status_code == 404 and plain.json()["code"] == "unknown_source"
    # Only the request just under the limit was taken.
    wait_for(lambda: drained(engine), 30, "the accepted request to run")
    with engine.connect() as conn:
        logged = conn.execute(
            sa.select(sa.func.count()).select_from(schema.function_logs)
        ).scalar_one()
    assert logged >= 1


def test_form_bodies_reach_the_code_as_sent(
    live: LiveServer, functions: FunctionStore, engine: Engine
) -> None:
    deploy(
        functions,
        "github-in",
        GITHUB_JS,
        declared=SIGNING,
        settings={"signingSecret": SIGNING_SECRET},
    )
    body = urlencode(
        {
            "payload": json.dumps(
                {
                    "action": "opened",
                    "sender": {"login": "octocat"},
                    "repository": {"full_name": "octo/hello"},
                }
            )
        }
    ).encode()
    signature = "sha256=" + hmac.new(SIGNING_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        **basic("WK_github"),
        "Content-Type": "application/x-www-form-urlencoded",
        "X-GitHub-Event": "pull_request",
        "X-Hub-Signature-256": signature,
    }
    assert (
        httpx.post(f"{live.url}/v1/functions/github-in", content=body, headers=headers).status_code
        == 200
    )
    forged = {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}
    assert (
        httpx.post(f"{live.url}/v1/functions/github-in", content=body, headers=forged).status_code
        == 200
    )
    found = wait_for(lambda: messages(live, "github-in"), 30, "the GitHub event")
    wait_for(lambda: drained(engine), 30, "both requests to run")
    assert [(m["event"], m["userId"], m["properties"]) for m in messages(live, "github-in")] == [
        ("GitHub pull_request", "octocat", {"repository": "octo/hello", "action": "opened"})
    ]
    assert found
    # The forged one failed the signature check: shown in the Errors tab, not retried.
    errors = [
        e
        for e in FunctionLogs(WorkspaceStore(engine)).recent("github-in-fn")
        if e.error is not None
    ]
    assert [(e.error, e.message) for e in errors] == [
        ("ValidationError", "GitHub signature does not match")
    ]
    assert SIGNING_SECRET not in json.dumps([e.shown() for e in errors])


def _stripe(source: str, key: str, live: LiveServer) -> None:
    # Segment gives deployed functions their JSON alphabetized; Stripe's signature covers
    # the body as sent, so this one is sent alphabetized and compact, as a check would need.
    event = {
        "data": {
            "object": {
                "amount": 4200,
                "currency": "usd",
                "customer": f"cus_{source}",
                "receipt_email": "jane@example.com",
            }
        },
        "id": "evt_1",
        "type": "charge.succeeded",
    }
    body = json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
    t = str(int(time.time()))
    v1 = hmac.new(SIGNING_SECRET.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    response = httpx.post(
        f"{live.url}/v1/functions/{source}",
        content=body,
        headers={
            **basic(key),
            "Content-Type": "application/json",
            "Stripe-Signature": f"t={t},v1={v1}",
        },
    )
    assert response.status_code == 200
    found = wait_for(
        lambda: len(messages(live, source)) >= 2 and messages(live, source), 30, "Stripe's events"
    )
    assert [(m["type"], m["userId"]) for m in found] == [
        ("track", f"cus_{source}"),
        ("identify", f"cus_{source}"),
    ]
    assert found[0]["event"] == "charge.succeeded"
    assert found[0]["properties"] == {"amount": 42, "currency": "usd", "stripe_id": "evt_1"}
    assert found[1]["traits"] == {"email": "jane@example.com"}


def test_a_stripe_webhook_in_javascript(live: LiveServer, functions: FunctionStore) -> None:
    deploy(
        functions,
        "stripe-in",
        STRIPE_JS,
        declared=SIGNING,
        settings={"signingSecret": SIGNING_SECRET},
    )
    _stripe("stripe-in", "WK_stripe", live)


def test_a_stripe_webhook_in_python(live: LiveServer, functions: FunctionStore) -> None:
    deploy(
        functions,
        "stripe-py",
        STRIPE_PY,
        language="python",
        declared=SIGNING,
        settings={"signingSecret": SIGNING_SECRET},
    )
    _stripe("stripe-py", "WK_stripe_py", live)


def test_a_github_form_webhook_in_python(live: LiveServer, functions: FunctionStore) -> None:
    deploy(
        functions,
        "github-py",
        GITHUB_PY,
        language="python",
        declared=SIGNING,
        settings={"signingSecret": SIGNING_SECRET},
    )
    body = urlencode(
        {
            "payload": json.dumps(
                {
                    "action": "closed",
                    "sender": {"login": "hubot"},
                    "repository": {"full_name": "octo/x"},
                }
            )
        }
    ).encode()
    signature = "sha256=" + hmac.new(SIGNING_SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = httpx.post(
        f"{live.url}/v1/functions/github-py",
        content=body,
        headers={
            **basic("WK_github_py"),
            "Content-Type": "application/x-www-form-urlencoded",
            "X-GitHub-Event": "issues",
            "X-Hub-Signature-256": signature,
        },
    )
    assert response.status_code == 200
    found = wait_for(lambda: messages(live, "github-py"), 30, "the GitHub event")
    assert [(m["event"], m["userId"]) for m in found] == [("GitHub issues", "hubot")]


def _synced_once(http: httpx.Client) -> bool:
    syncs = http.get("/api/v1/warehouses/default/syncs", headers=ADMIN).json()["data"]["syncs"]
    return any(sync["status"] in ("success", "partial", "failure") for sync in syncs)


def test_ac110_set_objects_reach_the_warehouse_and_not_the_debugger(
    live: LiveServer, functions: FunctionStore, engine: Engine
) -> None:
    """AC-110: Segment.set({collection:'products', id:'product_id', properties:{…}}) → a row
    in warehouse table products; nothing of it in the debugger."""
    deploy(functions, "objects-in", OBJECTS)
    with httpx.Client(base_url=live.url, timeout=10) as http:
        wait_for(lambda: _synced_once(http), 60, "the first scheduled sync")
        response = http.post(
            "/v1/functions/objects-in", json={"sku": "NK-90"}, headers=basic("WK_objects")
        )
        assert response.status_code == 200
    found = wait_for(lambda: messages(live, "objects-in"), 30, "the track beside the object")
    wait_for(lambda: drained(engine), 30, "the request to run")
    assert [(m["type"], m.get("event")) for m in messages(live, "objects-in")] == [
        ("track", "Product Saved")
    ]
    assert found
    synced = run_headwater(
        "warehouse", "sync", "default", "--url", live.url, data_dir=live.data_dir
    )
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert "objects_in.products: 1" in synced.stdout, synced.stdout
    queried = run_headwater(
        "warehouse",
        "query",
        "default",
        "SELECT id, name, size FROM objects_in.products",
        data_dir=live.data_dir,
    )
    assert queried.returncode == 0, queried.stderr
    assert queried.stdout.splitlines()[-1:] == ["product_id\tNike Air Max 90\t11"], queried.stdout
    # Setting the object again updates its row: one row per id, the newest values.
    again = httpx.post(
        f"{live.url}/v1/functions/objects-in",
        json={"sku": "NK-90", "size": 12},
        headers=basic("WK_objects"),
    )
    assert again.status_code == 200
    wait_for(lambda: len(messages(live, "objects-in")) == 2, 30, "the second request to run")
    wait_for(lambda: drained(engine), 30, "the second request to run")
    synced = run_headwater(
        "warehouse", "sync", "default", "--url", live.url, data_dir=live.data_dir
    )
    assert synced.returncode == 0, synced.stdout + synced.stderr
    queried = run_headwater(
        "warehouse",
        "query",
        "default",
        "SELECT id, name, size FROM objects_in.products",
        data_dir=live.data_dir,
    )
    assert queried.returncode == 0, queried.stderr
    assert queried.stdout.splitlines()[1:] == ["product_id\tNike Air Max 90\t12"], queried.stdout


def test_emitted_calls_meet_the_tracking_apis_limits_and_the_code_sees_sorted_fields(
    live: LiveServer, engine: Engine
) -> None:
    """A function from headwater.yaml: its calls go through the Tracking API's checks (the
    32 KB limit with Segment's error, a track with no user, an uppercase collection); the good
    call is kept, the others are the invocation's error. The code got the JSON alphabetized."""
    response = httpx.post(
        f"{live.url}/v1/functions/limits-in",
        content=b'{"zebra": 1, "apple": {"z": 2, "b": 1}}',
        headers={**basic("WK_limits"), "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    found = wait_for(lambda: messages(live, "limits-in"), 30, "the small track")
    wait_for(lambda: drained(engine), 30, "the request to run")
    assert [(m["event"], m["userId"]) for m in found] == [("Small", "u-small")]
    (entry,) = FunctionLogs(WorkspaceStore(engine)).recent("limits-fn")
    assert entry.error == "Error"
    problems = entry.message.split("; ")
    assert problems[0] == (
        "failed calling Tracking API: the message is too large and over the maximum 32KB limit"
    )
    assert problems[1].startswith("failed calling Tracking API: ")
    assert "userId" in problems[1] or "anonymousId" in problems[1]
    assert problems[2] == "Segment.set: the collection 'Products' must be lowercase"
    assert entry.logs == [["log", '{"apple":{"b":1,"z":2},"zebra":1}']]
    with engine.connect() as conn:
        objects = conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.function_objects)
            .where(schema.function_objects.c.source_id == source_id(engine, "limits-in"))
        ).scalar_one()
    assert objects == 0


def test_hostile_requests_get_answers_never_a_500(
    live: LiveServer, functions: FunctionStore, engine: Engine
) -> None:
    """Bodies no honest client sends are taken (the code's request.json() meets them) and
    run to an end; broken headers, paths and keys are refused with a 4xx."""
    wait_for(lambda: functions.source_function("webhooks-in") is not None, 5, "the function")
    url = f"{live.url}/v1/functions/webhooks-in"
    json_headers = {**basic("WK_hooks"), "Content-Type": "application/json"}
    for body in [*(v.encode("utf-8", "surrogatepass") for v in VALUES), *RAW_BODIES]:
        response = httpx.post(url, content=body, headers=json_headers)
        assert response.status_code == 200, (body[:40], response.text)
    for body, encoding in ENCODED_BODIES:
        headers = {**json_headers, "Content-Encoding": encoding}
        response = httpx.post(url, content=body, headers=headers)
        assert response.status_code in (200, 400, 413), (encoding, body[:20], response.text)
    odd = [
        ("/v1/functions/", basic("WK_hooks")),
        ("/v1/functions/%ff%00..%2f", basic("WK_hooks")),
        ("/v1/functions/webhooks-in?b=" + "A" * 5000, {}),
        ("/v1/functions/webhooks-in?b=%ff%fe", {}),
        ("/v1/functions/webhooks-in", {"Authorization": "Basic ///"}),
        ("/v1/functions/webhooks-in", {"Authorization": "Bearer WK_hooks"}),
    ]
    for path, headers in odd:
        response = httpx.post(live.url + path, json={"a": 1}, headers=headers)
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text)
    wait_for(lambda: drained(engine), 60, "every hostile request to run")
    assert httpx.get(f"{live.url}/health").status_code == 200


def test_ac109_retry_error_six_attempts_on_a_moved_clock_then_dropped_to_the_errors_tab(
    live: LiveServer, functions: FunctionStore, engine: Engine
) -> None:
    """AC-109: RetryError every time → 6 attempts; the first retry 60–180 s later, each gap
    double the one before and never over 20 minutes; then dropped and shown in the Errors
    tab. Runs last in this module: it moves the server's clock."""
    function_id = deploy(functions, "retry-in", ALWAYS_RETRY)
    retry = source_id(engine, "retry-in")
    clock = OffsetClock(live.config.parent / "clock-offset")
    requests = FunctionRequests(engine)
    response = httpx.post(
        f"{live.url}/v1/functions/retry-in", json={"a": 1}, headers=basic("WK_retry")
    )
    assert (response.status_code, response.json()) == (200, {"success": True})
    (received,) = requests.pending(retry)
    due = [received.received_at]  # the first attempt is due at once
    logs = FunctionLogs(WorkspaceStore(engine))

    def failed(attempts: int) -> StoredRequest | None:
        return next((r for r in requests.pending(retry) if r.attempts == attempts), None)

    for attempt in range(1, 6):
        stored = wait_for(functools.partial(failed, attempt), 30, f"attempt {attempt} to fail")
        assert stored.first_gap is not None and 60 <= stored.first_gap <= 180
        gap = stored.next_attempt_at - due[-1]
        # The gap counts from when the attempt ran: a second or two after it was due.
        expected = retry_gap(stored.first_gap, attempt)
        assert expected <= gap <= expected + 15, (attempt, gap, expected)
        assert gap <= 20 * 60 + 15
        assert stored.last_error == "RetryError: upstream is down"
        # A retry is not in the Errors tab until the request is dropped.
        assert logs.recent(function_id) == []
        due.append(stored.next_attempt_at)
        clock.move(stored.next_attempt_at - clock() + 0.5)
    wait_for(lambda: drained(engine, retry), 30, "the sixth attempt")
    (entry,) = logs.recent(function_id)
    assert entry.error == "RetryError"
    assert entry.message == "upstream is down (dropped after 6 attempts)"
    assert entry.instance_id == retry
    assert entry.logs == [["log", "trying"]]
    gaps = [b - a for a, b in itertools.pairwise(due)]
    assert gaps == sorted(gaps)  # growing; capped at 20 minutes
