"""The actions runtime pool against real Node.js processes running Segment's published package,
with its requests redirected to a loopback receiver."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from headwater.destinations.runtime.node import Node
from headwater.destinations.runtime.pool import ActionsRuntime, Call, HookError, Outcome
from tests.destinations.runtime.conftest import preset_mapping
from tests.support.receiver import Answer, Receiver

CUSTOMERIO = "https://track.customer.io"
SETTINGS = {"siteId": "site-1", "apiKey": "key-1", "accountRegion": "US 🇺🇸"}
BASIC = "Basic " + base64.b64encode(b"site-1:key-1").decode()


def track(number: int, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "track",
        "event": "Order Completed",
        "userId": f"user-{number}",
        "messageId": f"message-{number}",
        "timestamp": "2026-12-06T10:00:00.000Z",
        "receivedAt": "2026-12-06T10:00:01.000Z",
        "properties": {"total": number},
    }
    event.update(overrides)
    return event


class Env:
    def __init__(self, node: Node, package_dir: Path, receiver: Receiver) -> None:
        self.node = node
        self.package_dir = package_dir
        self.receiver = receiver

    def runtime(self, **options: Any) -> ActionsRuntime:
        options.setdefault("redirects", {CUSTOMERIO: self.receiver.url})
        return ActionsRuntime(self.package_dir, node=self.node, **options)

    def call(self, events: list[dict[str, Any]], *, batch: bool = False) -> Call:
        mapping = preset_mapping(self.package_dir, "customerio", "trackEvent")
        return Call("customerio", "trackEvent", SETTINGS, mapping, events, batch=batch)

    def run(self, scenario: Callable[[ActionsRuntime], Awaitable[None]], **options: Any) -> None:
        async def main() -> None:
            runtime = self.runtime(**options)
            try:
                await scenario(runtime)
            finally:
                await runtime.close()

        if os.environ.get("HEADWATER_TEST_UVLOOP"):  # the delivery engine's loop
            import uvloop

            uvloop.run(main())
        else:
            asyncio.run(main())


@pytest.fixture
def env(node: Node, package_dir: Path, receiver: Receiver) -> Env:
    return Env(node, package_dir, receiver)


def test_track_event_preset_reaches_the_receiver(env: Env) -> None:
    outcomes: list[Outcome] = []

    async def scenario(runtime: ActionsRuntime) -> None:
        outcomes.extend(await runtime.execute(env.call([track(1)])))

    env.run(scenario)
    [request] = env.receiver.requests
    assert (request.method, request.path) == ("POST", "/api/v2/entity")
    assert request.headers["authorization"] == BASIC
    assert request.headers["host"] == env.receiver.url.removeprefix("http://")
    body = request.json()
    assert body["type"] == "person" and body["identifiers"] == {"id": "user-1"}
    assert body["action"] == "event" and body["name"] == "Order Completed"
    assert body["id"] == "message-1" and body["attributes"] == {"total": 1}
    [outcome] = outcomes
    assert (outcome.status, outcome.error_type, outcome.ok) == (200, None, True)
    [exchange] = outcome.exchanges
    assert exchange.request.method == "POST"
    assert exchange.request.url == f"{CUSTOMERIO}/api/v2/entity"
    assert exchange.called_url == f"{env.receiver.url}/api/v2/entity"
    assert exchange.request.headers["authorization"] == BASIC
    assert exchange.request.body is not None and b'"Order Completed"' in exchange.request.body
    assert exchange.response is not None and exchange.response.status == 200
    assert exchange.response.body == b'{"ok":true}'
    assert exchange.error is None


@pytest.mark.parametrize(
    ("status", "error_code"),
    [(500, "INTERNAL_SERVER_ERROR"), (400, "BAD_REQUEST"), (429, "TOO_MANY_REQUESTS")],
)
def test_http_errors_are_outcomes_with_the_exchange(env: Env, status: int, error_code: str) -> None:
    body = b'{"errors":[{"reason":"nope"}]}'
    env.receiver.answer(Answer(status=status, body=body))
    outcomes: list[Outcome] = []

    async def scenario(runtime: ActionsRuntime) -> None:
        outcomes.extend(await runtime.execute(env.call([track(1)])))

    env.run(scenario)
    [outcome] = outcomes
    assert outcome.status == status
    assert (outcome.error_type, outcome.error_code) == ("HTTPError", error_code)
    assert not outcome.ok
    [exchange] = outcome.exchanges
    assert exchange.response is not None
    assert (exchange.response.status, exchange.response.body) == (status, body)
    assert len(env.receiver.requests) == 1


def test_batch_gives_one_result_per_event(env: Env) -> None:
    events = [track(1), track(2, event=None), track(3)]  # the second has no name
    outcomes: list[Outcome] = []

    async def scenario(runtime: ActionsRuntime) -> None:
        outcomes.extend(await runtime.execute(env.call(events, batch=True)))

    env.run(scenario)
    [request] = env.receiver.requests
    assert (request.method, request.path) == ("POST", "/api/v2/batch")
    sent = request.json()["batch"]
    assert [item["identifiers"]["id"] for item in sent] == ["user-1", "user-3"]
    assert [o.status for o in outcomes] == [200, 400, 200]
    assert [o.error_type for o in outcomes] == [None, "PayloadValidationError", None]
    assert outcomes[1].error_code == "PAYLOAD_VALIDATION_FAILED"
    assert "name" in outcomes[1].message
    # the batch's one request, shared by its events
    assert [len(o.exchanges) for o in outcomes] == [1, 1, 1]
    assert outcomes[0].exchanges[0].request.url == f"{CUSTOMERIO}/api/v2/batch"


def test_a_failed_batch_request_applies_to_every_event(env: Env) -> None:
    env.receiver.answer(Answer(status=503, body=b"down"))
    outcomes: list[Outcome] = []

    async def scenario(runtime: ActionsRuntime) -> None:
        outcomes.extend(await runtime.execute(env.call([track(1), track(2)], batch=True)))

    env.run(scenario)
    assert [o.status for o in outcomes] == [503, 503]
    assert all(o.error_type is not None for o in outcomes)
    assert outcomes[0].exchanges[0].response is not None
    assert outcomes[0].exchanges[0].response.body == b"down"


def test_missing_required_field_is_a_payload_validation_error(env: Env) -> None:
    outcomes: list[Outcome] = []

    async def scenario(runtime: ActionsRuntime) -> None:
        outcomes.extend(await runtime.execute(env.call([track(1, event=None), track(2)])))

    env.run(scenario)
    assert [o.status for o in outcomes] == [400, 200]
    assert outcomes[0].error_type == "PayloadValidationError"
    assert outcomes[0].error_code == "PAYLOAD_VALIDATION_FAILED"
    assert outcomes[0].exchanges == ()
    assert [r.json()["identifiers"]["id"] for r in env.receiver.requests] == ["user-2"]


def test_a_refused_connection_is_recorded(env: Env) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    outcomes: list[Outcome] = []

    async def scenario(runtime: ActionsRuntime) -> None:
        outcomes.extend(await runtime.execute(env.call([track(1)])))

    env.run(scenario, redirects={CUSTOMERIO: f"http://127.0.0.1:{port}"})
    [outcome] = outcomes
    assert outcome.status is None and outcome.error_type is not None
    [exchange] = outcome.exchanges
    assert (exchange.response, exchange.error) == (None, "ECONNREFUSED")


def test_many_calls_in_flight(env: Env) -> None:
    results: list[list[Outcome]] = []
    received: list[dict[str, Any]] = []

    async def scenario(runtime: ActionsRuntime) -> None:
        # an asyncio receiver: the threaded one's listen backlog (5) drops 200 connections at once
        async def entity(request: web.Request) -> web.Response:
            received.append(await request.json())
            return web.json_response({})

        app = web.Application()
        app.router.add_post("/api/v2/entity", entity)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        runtime.redirects[CUSTOMERIO] = f"http://127.0.0.1:{port}"
        try:
            calls = [runtime.execute(env.call([track(n)])) for n in range(200)]
            results.extend(await asyncio.gather(*calls))
        finally:
            await runner.cleanup()

    env.run(scenario, processes=2)
    assert [[o.status for o in r] for r in results] == [[200]] * 200
    # each answer belongs to its own call
    for number, [outcome] in enumerate(results):
        assert outcome.exchanges[0].request.body is not None
        assert f'"user-{number}"'.encode() in outcome.exchanges[0].request.body
    assert sorted(body["id"] for body in received) == sorted(f"message-{n}" for n in range(200))


def test_a_call_past_its_timeout(env: Env) -> None:
    env.receiver.answer(Answer(delay=5.0))
    outcomes: list[Outcome] = []

    async def scenario(runtime: ActionsRuntime) -> None:
        outcomes.extend(await runtime.execute(env.call([track(1)])))
        # the process is still good for the next call
        outcomes.extend(await runtime.execute(env.call([track(2)])))

    env.run(scenario, call_timeout_seconds=1.0)
    assert (outcomes[0].status, outcomes[0].error_type) == (None, "Timeout")
    [exchange] = outcomes[0].exchanges  # what was under way when it timed out
    assert exchange.request.url == f"{CUSTOMERIO}/api/v2/entity"
    assert exchange.response is None
    assert outcomes[1].status == 200


def test_a_killed_process_is_replaced_and_its_call_sent_again(env: Env) -> None:
    env.receiver.answer(Answer(delay=3.0))  # the first request hangs until the process is gone
    outcomes: list[Outcome] = []
    pids: list[int | None] = []

    async def scenario(runtime: ActionsRuntime) -> None:
        await runtime.start()
        [first] = runtime.processes_info()
        call = asyncio.create_task(runtime.execute(env.call([track(1)])))
        await asyncio.to_thread(env.receiver.wait_for, 1)
        assert first.pid is not None
        os.kill(first.pid, signal.SIGKILL)
        outcomes.extend(await call)
        pids.extend([first.pid, *(p.pid for p in runtime.processes_info())])

    env.run(scenario)
    [outcome] = outcomes
    assert outcome.status == 200
    assert len(env.receiver.requests) == 2  # sent once more, by the replacement
    assert pids[1] is not None and pids[1] != pids[0]


def test_a_call_that_kills_every_process_is_runtime_unavailable(env: Env) -> None:
    answers: list[Any] = []

    async def scenario(runtime: ActionsRuntime) -> None:
        answers.append(await runtime._call({"op": "exit", "code": 3}, 1))
        # the pool is still there for the next call
        answers.append(await runtime.execute(env.call([track(1)])))

    env.run(scenario, environment={"HEADWATER_RUNTIME_TEST_OPS": "1"})
    assert answers[0]["failure"] == "RuntimeUnavailable"
    assert "exit 3" in answers[0]["message"]
    assert [o.status for o in answers[1]] == [200]


def test_a_hung_process_is_killed_and_replaced(env: Env) -> None:
    outcomes: list[Outcome] = []
    pids: list[int | None] = []

    async def scenario(runtime: ActionsRuntime) -> None:
        await runtime.start()
        [first] = runtime.processes_info()
        runtime._test_op(0, "spin", ms=120_000)  # the destination's code spins the event loop
        outcomes.extend(await runtime.execute(env.call([track(1)])))
        pids.extend([first.pid, *(p.pid for p in runtime.processes_info())])

    env.run(
        scenario,
        environment={"HEADWATER_RUNTIME_TEST_OPS": "1"},
        ping_interval_seconds=0.2,
        ping_timeout_seconds=1.0,
    )
    assert [o.status for o in outcomes] == [200]
    assert pids[1] != pids[0]
    assert pids[0] is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)


def test_calls_pass_over_a_stalled_process(env: Env) -> None:
    outcomes: list[Outcome] = []
    infos: list[Any] = []

    async def scenario(runtime: ActionsRuntime) -> None:
        await runtime.start()
        await runtime.execute(env.call([track(0)]))  # both processes up and pinged
        runtime._test_op(0, "spin", ms=60_000)  # slot 0's event loop is stuck for a minute
        while not runtime.processes_info()[0].stalled:
            await asyncio.sleep(0.05)
        infos.append(runtime.processes_info())
        # without passing over slot 0 these would time out behind the spin
        outcomes.extend(await runtime.execute(env.call([track(1)])))
        outcomes.extend(await runtime.execute(env.call([track(2)])))
        stuck = infos[0][0].pid
        assert stuck is not None
        os.kill(stuck, signal.SIGKILL)

    env.run(
        scenario,
        processes=2,
        environment={"HEADWATER_RUNTIME_TEST_OPS": "1"},
        ping_interval_seconds=0.2,
        ping_timeout_seconds=120.0,
        call_timeout_seconds=10.0,
    )
    assert [p.stalled for p in infos[0]] == [True, False]
    assert [o.status for o in outcomes] == [200, 200]


def test_a_process_over_its_memory_cap_is_drained_and_replaced(env: Env) -> None:
    env.receiver.answer(Answer(delay=1.5))
    outcomes: list[Outcome] = []
    seen: list[Any] = []

    async def scenario(runtime: ActionsRuntime) -> None:
        await runtime.start()
        [first] = runtime.processes_info()
        call = asyncio.create_task(runtime.execute(env.call([track(1)])))
        await asyncio.to_thread(env.receiver.wait_for, 1)
        grown = await runtime._test_op(0, "allocate", mb=200)
        assert grown["rss"] > 200 * 1024 * 1024
        for _ in range(50):
            if any(p.draining for p in runtime.processes_info()):
                break
            await asyncio.sleep(0.1)
        seen.append(runtime.processes_info())
        outcomes.extend(await call)  # the draining process answers what it has
        outcomes.extend(await runtime.execute(env.call([track(2)])))
        seen.append(first.pid)
        for _ in range(200):  # the drained process leaves once its call is answered
            if len(runtime.processes_info()) == 1:
                break
            await asyncio.sleep(0.05)
        seen.append(runtime.processes_info())

    env.run(
        scenario,
        environment={"HEADWATER_RUNTIME_TEST_OPS": "1"},
        max_memory_mb=200,
        ping_interval_seconds=0.2,
    )
    draining, old_pid, after = seen
    assert [(p.pid, p.draining) for p in draining if p.draining] == [(old_pid, True)]
    assert [o.status for o in outcomes] == [200, 200]
    assert len(env.receiver.requests) == 2  # the first call was not sent again
    assert [p.pid for p in after] != [old_pid]
    assert len(after) == 1
    with pytest.raises(ProcessLookupError):
        os.kill(old_pid, 0)


def test_validate_settings(env: Env) -> None:
    results: list[Any] = []

    async def scenario(runtime: ActionsRuntime) -> None:
        results.append(await runtime.hook("customerio", "validateSettings", SETTINGS))
        with pytest.raises(HookError) as failed:
            await runtime.hook("customerio", "validateSettings", {"siteId": "site-1"})
        results.append(failed.value.outcome)

    env.run(scenario)
    good, bad = results
    assert good is None
    assert (bad.status, bad.error_type) == (400, "PayloadValidationError")
    assert "apiKey" in bad.message


def test_unknown_destination_and_action(env: Env) -> None:
    results: list[list[Outcome]] = []

    async def scenario(runtime: ActionsRuntime) -> None:
        results.append(await runtime.execute(Call("no-such-thing", "x", {}, {}, [track(1)])))
        results.append(await runtime.execute(Call("customerio", "nope", SETTINGS, {}, [track(1)])))
        results.append(await runtime.execute(Call("../../x", "x", {}, {}, [track(1)])))
        # in the package's folder but not in its manifest: not released
        results.append(
            await runtime.execute(Call("bing-ads-audiences", "syncAudiences", {}, {}, [track(1)]))
        )

    env.run(scenario)
    assert [[o.error_type for o in r] for r in results] == [
        ["UnknownDestination"],
        ["UnknownAction"],
        ["UnknownDestination"],
        ["UnknownDestination"],
    ]
    assert env.receiver.requests == []


def test_test_authentication(env: Env) -> None:
    env.receiver.answer(Answer(status=200), Answer(status=401, body=b"bad key"))
    results: list[Any] = []

    async def scenario(runtime: ActionsRuntime) -> None:
        results.append(await runtime.hook("customerio", "testAuthentication", SETTINGS))
        with pytest.raises(HookError) as failed:
            await runtime.hook("customerio", "testAuthentication", SETTINGS)
        results.append(failed.value.outcome)

    env.run(scenario)
    good, bad = results
    assert good is None
    assert "Credentials are invalid: 401" in bad.message
    assert [(r.method, r.path) for r in env.receiver.requests] == [("GET", "/auth")] * 2
    assert all(r.headers["authorization"] == BASIC for r in env.receiver.requests)
    [exchange] = bad.exchanges
    assert exchange.response is not None and exchange.response.body == b"bad key"


def test_close_lets_calls_in_flight_finish(env: Env) -> None:
    env.receiver.answer(Answer(delay=1.0))
    outcomes: list[Outcome] = []

    async def scenario(runtime: ActionsRuntime) -> None:
        call = asyncio.create_task(runtime.execute(env.call([track(1)])))
        await asyncio.to_thread(env.receiver.wait_for, 1)
        [info] = runtime.processes_info()
        await runtime.close()
        outcomes.extend(await call)
        assert info.pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(info.pid, 0)
        assert runtime.processes_info() == []

    env.run(scenario)
    assert [o.status for o in outcomes] == [200]


def test_every_registered_destination_loads(env: Env) -> None:
    """validateSettings with no settings on each: no answer, or the settings' own error."""
    index = env.package_dir / "node_modules/@segment/action-destinations/dist/destinations/index.js"
    names = re.findall(r"register\('[^']+', '\./([^']+)'\)", index.read_text())
    assert len(names) >= 200
    failures: dict[str, str] = {}
    rss: list[int] = []

    async def scenario(runtime: ActionsRuntime) -> None:
        for name in names:
            try:
                await runtime.hook(name, "validateSettings", {})
            except HookError as error:
                if error.outcome.error_type != "PayloadValidationError":
                    failures[name] = f"{error.outcome.error_type}: {error.outcome.message}"
        info = await runtime._test_op(0, "ping")
        rss.append(info["rss"])

    env.run(scenario)
    assert failures == {}
    assert rss[0] < 300 * 2**20  # all of them fit in one process's budget


def test_console_output_goes_to_the_log(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    outcomes: list[Outcome] = []

    async def scenario(runtime: ActionsRuntime) -> None:
        await runtime._call({"op": "log", "text": "hello from a destination"}, 1)
        outcomes.extend(await runtime.execute(env.call([track(1)])))  # frames still intact
        for _ in range(100):
            if "hello from a destination" in caplog.text:
                break
            await asyncio.sleep(0.05)

    with caplog.at_level(logging.WARNING, logger="headwater.destinations.runtime.pool"):
        env.run(scenario, environment={"HEADWATER_RUNTIME_TEST_OPS": "1"})
    [record] = [r for r in caplog.records if "hello from a destination" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert [o.status for o in outcomes] == [200]


def test_refresh_access_token(env: Env) -> None:
    env.receiver.answer(Answer(body=b'{"access_token":"token-2","expires_in":3599}'))
    auth = {
        "accessToken": "token-1",
        "refreshToken": "refresh-1",
        "clientId": "client-1",
        "clientSecret": "secret-1",
    }
    results: list[Any] = []

    async def scenario(runtime: ActionsRuntime) -> None:
        results.append(
            await runtime.hook(
                "google-enhanced-conversions",
                "refreshAccessToken",
                {"customerId": "123"},
                auth=auth,
            )
        )

    env.run(scenario, redirects={"https://www.googleapis.com": env.receiver.url})
    assert results == [{"accessToken": "token-2"}]
    [request] = env.receiver.requests
    assert (request.method, request.path) == ("POST", "/oauth2/v4/token")
    assert request.form() == {
        "refresh_token": ["refresh-1"],
        "client_id": ["client-1"],
        "client_secret": ["secret-1"],
        "grant_type": ["refresh_token"],
    }


def test_a_destinations_own_multistatus_answer(env: Env) -> None:
    """Braze's batch reads per-item errors from the API's answer: one result per event."""
    env.receiver.answer(
        Answer(status=201, body=b'{"message":"success","errors":[{"type":"bad event","index":1}]}')
    )
    settings = {
        "api_key": "braze-key",
        "app_id": "app-1",
        "endpoint": "https://rest.iad-01.braze.com",
    }
    mapping = preset_mapping(env.package_dir, "braze", "trackEvent")
    events = [track(1), track(2), track(3)]
    outcomes: list[Outcome] = []

    async def scenario(runtime: ActionsRuntime) -> None:
        call = Call("braze", "trackEvent", settings, mapping, events, batch=True)
        outcomes.extend(await runtime.execute(call))

    env.run(scenario, redirects={"https://rest.iad-01.braze.com": env.receiver.url})
    [request] = env.receiver.requests
    assert (request.method, request.path) == ("POST", "/users/track")
    assert request.headers["authorization"] == "Bearer braze-key"
    assert [e["external_id"] for e in request.json()["events"]] == ["user-1", "user-2", "user-3"]
    assert [o.status for o in outcomes] == [200, 400, 200]
    assert [o.error_code for o in outcomes] == [None, "BAD_REQUEST", None]
    assert outcomes[1].error_type == "HTTPError"  # BAD_REQUEST only names the status
    assert outcomes[1].message == "bad event"


def test_audience_and_deletion_hooks(env: Env) -> None:
    """The hooks Engage and privacy requests use: createAudience and getAudience of an
    audience destination, onDelete of Customer.io, each through the destination's own code."""
    hooks = "https://hooks.acme.example"
    settings = {
        "createAudienceUrl": f"{hooks}/audiences/create",
        "getAudienceUrl": f"{hooks}/audiences/get",
    }
    env.receiver.answer(
        Answer(status=200, body=b'{"externalId": "aud-42"}'),
        Answer(status=200, body=b'{"externalId": "aud-42"}'),
        Answer(status=200, body=b"{}"),
    )
    results: list[Any] = []

    async def scenario(runtime: ActionsRuntime) -> None:
        results.append(
            await runtime.hook(
                "webhook-audiences",
                "createAudience",
                settings,
                {"audienceName": "Big spenders", "audienceSettings": {"extras": '{"team": 7}'}},
            )
        )
        results.append(
            await runtime.hook(
                "webhook-audiences", "getAudience", settings, {"externalId": "aud-42"}
            )
        )
        results.append(await runtime.hook("customerio", "onDelete", SETTINGS, {"userId": "user-7"}))

    env.run(scenario, redirects={CUSTOMERIO: env.receiver.url, hooks: env.receiver.url})
    created, found, _deleted = results
    assert created == {"externalId": "aud-42"} and found == {"externalId": "aud-42"}
    create, get, delete = env.receiver.requests
    assert (create.method, create.path) == ("POST", "/audiences/create")
    assert create.json() == {"team": 7, "audienceName": "Big spenders"}
    assert (get.method, get.path, get.json()) == (
        "POST",
        "/audiences/get",
        {"externalId": "aud-42"},
    )
    assert (delete.method, delete.path) == ("DELETE", "/api/v1/customers/user-7")
    assert delete.headers["authorization"] == BASIC


def test_hooks_of_an_oauth_destination_get_its_token(env: Env) -> None:
    """A hook reads the token where actions-core reads it (settings.oauth): HubSpot's
    testAuthentication sends it as its Bearer header."""

    async def scenario(runtime: ActionsRuntime) -> None:
        await runtime.hook("hubspot", "testAuthentication", {}, auth={"accessToken": "tok-1"})

    env.run(scenario, redirects={"https://api.hubapi.com": env.receiver.url})
    [request] = env.receiver.requests
    assert request.path.endswith("/objects/contacts")
    assert request.headers["authorization"] == "Bearer tok-1"
