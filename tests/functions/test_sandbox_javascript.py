"""The JavaScript sandbox through ``SandboxRuntime``: real Node.js worker processes.

Segment's runtime surface (§11.1: handlers, error classes, fetch, cache, console, Segment.*)
and escape attempts, each of which must fail as the function's own error while the host and
the other invocations carry on.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from headwater.destinations.runtime.node import NodeNotFound
from headwater.functions.contract import (
    CRASHED,
    DROP_EVENT,
    EVENT_NOT_SUPPORTED,
    INVALID_EVENT_PAYLOAD,
    LOAD_ERROR,
    MEMORY_LIMIT,
    OTHER_ERROR,
    RETRY_ERROR,
    TIMEOUT,
    VALIDATION_ERROR,
    Code,
    IncomingRequest,
    Invocation,
    LogLine,
)
from headwater.functions.sandbox import javascript, libraries
from headwater.functions.sandbox.fetch import _PublicResolver
from headwater.functions.sandbox.policy import Confined
from headwater.functions.sandbox.runtime import SandboxRuntime
from tests.support.receiver import Answer, Receiver

T = TypeVar("T")
_versions = iter(range(1, 1_000_000))


def code(source: str, function: str = "fn_test") -> Code:
    """A new version each time: its own process, nothing shared with another test."""
    return Code(function=function, version=next(_versions), language="javascript", source=source)


def run(scenario: Callable[[SandboxRuntime], Awaitable[T]], **options: Any) -> T:
    async def main() -> T:
        runtime = SandboxRuntime(**options)
        try:
            return await scenario(runtime)
        finally:
            await runtime.close()

    return asyncio.run(main())


def invoke(source: str, handler: str, payload: Any, settings: Any = None, **kw: Any) -> Invocation:
    async def scenario(runtime: SandboxRuntime) -> Invocation:
        return await runtime.invoke(code(source), handler, payload, settings or {}, **kw)

    return run(scenario)


TRACK = {"type": "track", "event": "Order Completed", "userId": "u1", "properties": {}}


def test_an_insert_function_enriches_the_event() -> None:
    source = (
        "async function onTrack(event, settings) {\n"
        "  event.properties.message = 'Enriched'; return event }"
    )
    result = invoke(source, "onTrack", TRACK)
    assert result.ok, result
    assert result.value["properties"] == {"message": "Enriched"}
    assert result.duration_ms > 0


@pytest.mark.parametrize(
    "thrown",
    [EVENT_NOT_SUPPORTED, INVALID_EVENT_PAYLOAD, VALIDATION_ERROR, RETRY_ERROR, DROP_EVENT],
)
def test_each_error_class_is_reported_by_name(thrown: str) -> None:
    source = f"""
    async function onTrack(event) {{
      const error = new {thrown}('because ' + event.userId)
      if (!(error instanceof {thrown}) || !(error instanceof Error) || error.name !== '{thrown}')
        throw new Error('not a proper class')
      throw error
    }}"""
    result = invoke(source, "onTrack", TRACK)
    assert (result.error, result.message) == (thrown, "because u1")


def test_a_missing_handler_is_event_not_supported_and_others_are_errors() -> None:
    source = (
        "async function onTrack() { throw new TypeError('boom') }\n"
        "async function onPage() { throw 'a string' }"
    )

    async def scenario(runtime: SandboxRuntime) -> list[Invocation]:
        c = code(source)
        return [
            await runtime.invoke(c, "onIdentify", {}, {}),
            await runtime.invoke(c, "onTrack", {}, {}),
            await runtime.invoke(c, "onPage", {}, {}),
        ]

    missing, typed, text = run(scenario)
    assert (missing.error, missing.message) == (
        EVENT_NOT_SUPPORTED,
        "onIdentify is not implemented",
    )
    assert (typed.error, typed.message) == (OTHER_ERROR, "boom")
    assert (text.error, text.message) == (OTHER_ERROR, "a string")


def test_code_that_does_not_compile_is_a_load_error() -> None:
    result = invoke("async function onTrack( {", "onTrack", TRACK)
    assert result.error == LOAD_ERROR
    assert result.message.startswith("SyntaxError")


def test_an_infinite_loop_times_out_and_a_concurrent_call_still_answers() -> None:
    source = """
    async function onTrack(event) {
      if (event.event === 'loop') { while (true) {} }
      await new Promise((resolve) => setTimeout(resolve, 50))
      return 'fine'
    }"""

    async def scenario(runtime: SandboxRuntime) -> tuple[Invocation, Invocation, float]:
        c = code(source)
        started = time.monotonic()
        looping = asyncio.ensure_future(
            runtime.invoke(c, "onTrack", {"event": "loop"}, {}, timeout=2)
        )
        await asyncio.sleep(0.2)
        other = await runtime.invoke(c, "onTrack", {"event": "x"}, {}, timeout=2)
        return await looping, other, time.monotonic() - started

    looping, other, took = run(scenario)
    assert looping.error == TIMEOUT
    assert other.ok and other.value == "fine"
    assert took < 6


def test_invoke_many_answers_each_call_in_order() -> None:
    source = "async function onTrack(e) { if (e.n % 3 === 0) throw new DropEvent('x'); return e.n }"

    async def scenario(runtime: SandboxRuntime) -> list[Invocation]:
        return await runtime.invoke_many(
            code(source), [("onTrack", {"n": n}) for n in range(100)], {}
        )

    results = run(scenario)
    assert [r.value for r in results if r.ok] == [n for n in range(100) if n % 3]
    assert [r.error for r in results if not r.ok] == [DROP_EVENT] * 34


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


# ---- Segment's runtime surface ----


@pytest.mark.parametrize(
    "handler", ["onIdentify", "onTrack", "onPage", "onScreen", "onGroup", "onAlias", "onDelete"]
)
def test_every_event_handler_gets_its_event_and_the_settings(handler: str) -> None:
    source = f"async function {handler}(event, settings) {{ return [event.type, settings.apiKey] }}"
    result = invoke(source, handler, {"type": handler[2:].lower()}, {"apiKey": "k-1"})
    assert result.value == [handler[2:].lower(), "k-1"]


def test_on_batch_gets_the_list_and_returns_per_event_results() -> None:
    source = """
    async function onBatch(events, settings) {
      if (!Array.isArray(events) || !(events instanceof Array)) throw new Error('not an array')
      return events.map((e) => e.ok ? {status: 200} : {status: 500, errormessage: 'no'})
    }"""
    result = invoke(source, "onBatch", [{"ok": True}, {"ok": False}])
    assert result.value == [{"status": 200}, {"status": 500, "errormessage": "no"}]


def test_on_request_reads_the_request_and_emits_calls() -> None:
    source = """
    async function onRequest(request, settings) {
      const body = await request.json()
      Segment.track({event: 'Page Viewed', userId: 'user_id',
                     properties: {page_name: 'Summer Collection 2020', name: body.name}})
      Segment.identify({userId: 'user_id', traits: {plan: request.url.searchParams.get('plan')}})
      Segment.set({collection: 'products', id: 'product_id',
                   properties: {name: 'Nike Air Max 90', size: 11}})
      return [request.method, request.headers.get('X-Thing'), request.url.pathname,
              request.url instanceof URL, await request.text()]
    }"""
    request = IncomingRequest(
        method="POST",
        url="https://fn.example/hook?plan=pro",
        headers=(("content-type", "application/json"), ("x-thing", "yes")),
        body=b'{"name":"Jane"}',
    )
    result = invoke(source, "onRequest", request)
    assert result.value == ["POST", "yes", "/hook", True, '{"name":"Jane"}']
    assert result.emitted == [
        {
            "type": "track",
            "event": "Page Viewed",
            "userId": "user_id",
            "properties": {"page_name": "Summer Collection 2020", "name": "Jane"},
        },
        {"type": "identify", "userId": "user_id", "traits": {"plan": "pro"}},
        {
            "type": "set",
            "collection": "products",
            "id": "product_id",
            "properties": {"name": "Nike Air Max 90", "size": 11},
        },
    ]


def test_console_lines_are_captured_per_invocation_even_when_calls_interleave() -> None:
    source = """
    async function onTrack(event) {
      console.log('start', event.n, {deep: {a: 1}})
      await new Promise((resolve) => setTimeout(resolve, event.wait))
      console.info('info', event.n); console.warn('warn'); console.error('error'); console.debug('debug')
      return event.n
    }"""

    async def scenario(runtime: SandboxRuntime) -> list[Invocation]:
        c = code(source)
        return list(
            await asyncio.gather(
                runtime.invoke(c, "onTrack", {"n": 1, "wait": 80}, {}),
                runtime.invoke(c, "onTrack", {"n": 2, "wait": 10}, {}),
            )
        )

    first, second = run(scenario)
    for result, n in ((first, 1), (second, 2)):
        assert result.logs == [
            LogLine("log", f"start {n} {{ deep: {{ a: 1 }} }}"),
            LogLine("info", f"info {n}"),
            LogLine("warn", "warn"),
            LogLine("error", "error"),
            LogLine("debug", "debug"),
        ]


CACHE_COUNTER = """
let calls = 0
async function onTrack(event) {
  const value = await cache.load(event.key, event.ttl, async () => { calls += 1; return 'v' + calls })
  if (event.drop) cache.delete(event.key)
  return [value, calls]
}"""


def test_ac112_cache_load_runs_fn_once_then_ttl_minus_one_never_expires_and_delete_reloads() -> (
    None
):
    """AC-112: ``cache.load('k', 300000, fn)`` twice within 5 min → fn invoked once; ``ttl=-1``
    → no expiry; ``cache.delete('k')`` then load → fn invoked."""

    async def scenario(runtime: SandboxRuntime) -> list[Any]:
        c = code(CACHE_COUNTER)

        async def call(wait: bool = False, **event: Any) -> Any:
            if wait:
                await asyncio.sleep(0.15)
            result = await runtime.invoke(c, "onTrack", event, {})
            assert result.ok, result
            return result.value

        return [
            await call(key="k", ttl=300000),
            await call(key="k", ttl=300000),  # cached: fn not run again
            await call(key="forever", ttl=-1),
            await call(key="forever", ttl=-1),
            await call(key="short", ttl=50),
            await call(key="short", ttl=50, wait=True),  # expired: fn runs
            await call(key="k", ttl=300000, drop=True),  # still cached, then deleted
            await call(key="k", ttl=300000),  # deleted: fn runs
        ]

    values = run(scenario)
    assert values == [
        ["v1", 1],
        ["v1", 1],
        ["v2", 2],
        ["v2", 2],
        ["v3", 3],
        ["v4", 4],
        ["v1", 4],
        ["v5", 5],
    ]


def test_ac112_a_fresh_cache_is_empty_and_leaves_the_shared_one_alone() -> None:
    """AC-112: the cache is empty in the editor's test runs (``fresh_cache``)."""

    async def scenario(runtime: SandboxRuntime) -> list[Any]:
        c = code(CACHE_COUNTER)
        event = {"key": "k", "ttl": -1}
        shared = await runtime.invoke(c, "onTrack", event, {})
        fresh = await runtime.invoke(c, "onTrack", event, {}, fresh_cache=True)
        again = await runtime.invoke(c, "onTrack", event, {})
        return [shared.value, fresh.value, again.value]

    assert run(scenario) == [["v1", 1], ["v2", 2], ["v1", 2]]


def test_fetch_calls_an_explicitly_allowed_loopback_receiver(receiver: Receiver) -> None:
    receiver.answer(Answer(201, b'{"id":7}', {"Content-Type": "application/json", "X-A": "b"}))
    source = f"""
    async function onTrack(event, settings) {{
      const response = await fetch('{receiver.url}/v1/things?x=1', {{
        method: 'POST',
        headers: {{Authorization: 'Bearer ' + settings.token, 'Content-Type': 'application/json'}},
        body: JSON.stringify({{event: event.event}})
      }})
      const body = await response.json()
      return [response.status, response.ok, response.statusText, response.headers.get('x-a'),
              response.url, body.id, response instanceof Response, response.headers instanceof Headers]
    }}"""
    before = len(receiver.requests)
    result = run(
        lambda runtime: runtime.invoke(code(source), "onTrack", TRACK, {"token": "t-1"}),
        fetch_allow=["127.0.0.1"],
    )
    assert result.value == [
        201,
        True,
        "Created",
        "b",
        f"{receiver.url}/v1/things?x=1",
        7,
        True,
        True,
    ]
    got = receiver.requests[before]
    assert (got.method, got.path, got.query) == ("POST", "/v1/things", {"x": ["1"]})
    assert got.headers["authorization"] == "Bearer t-1"
    assert got.json() == {"event": "Order Completed"}
    [record] = result.requests
    assert (record.method, record.url, record.status, record.error) == (
        "POST",
        f"{receiver.url}/v1/things?x=1",
        201,
        None,
    )


def test_fetch_follows_request_redirects_and_the_redirect_modes(receiver: Receiver) -> None:
    vendor = "https://api.vendor.example"
    receiver.answer(
        Answer(302, b"", {"Location": "/moved"}),
        Answer(200, b"here", {}),
        Answer(302, b"", {"Location": "/moved"}),
        Answer(302, b"", {"Location": "/moved"}),
    )
    source = f"""
    async function onTrack() {{
      const followed = await fetch('{vendor}/start')
      const manual = await fetch('{vendor}/start', {{redirect: 'manual'}})
      let refused = null
      try {{ await fetch('{vendor}/start', {{redirect: 'error'}}) }} catch (e) {{ refused = e.name }}
      return [followed.status, await followed.text(), followed.url, followed.redirected,
              manual.status, manual.headers.get('location'), refused]
    }}"""
    result = run(
        lambda runtime: runtime.invoke(code(source), "onTrack", {}, {}),
        fetch_allow=["api.vendor.example"],
        redirects={vendor: receiver.url},
    )
    assert result.value == [
        200,
        "here",
        f"{vendor}/moved",
        True,
        302,
        f"{vendor}/moved",
        "FetchError",
    ]


@pytest.mark.parametrize(
    ("allow", "url", "reason"),
    [
        (["api.example.com"], "http://api.other.example/x", "not on the functions' allow list"),
        (["*"], "http://127.0.0.1:9/x", "non-public address"),
        (["*"], "http://169.254.169.254/latest/meta-data/", "non-public address"),
        (["*"], "http://[::1]:9/x", "non-public address"),
        (["*.internal.example"], "http://10.0.0.1/x", "not on the functions' allow list"),
        (["*"], "file:///etc/passwd", "Only absolute URLs are supported"),
    ],
)
def test_fetch_refuses_hosts_off_the_allow_list_and_private_addresses(
    allow: list[str], url: str, reason: str
) -> None:
    source = f"""
    async function onTrack() {{
      try {{ await fetch('{url}') }} catch (error) {{
        if (error.name === 'FetchError' || error instanceof TypeError) throw new RetryError(error.message)
      }}
      return 'reached'
    }}"""
    result = run(lambda runtime: runtime.invoke(code(source), "onTrack", {}, {}), fetch_allow=allow)
    assert result.error == RETRY_ERROR
    assert reason in result.message


# ---- escape attempts: each fails as the function's own error ----


ESCAPES = {
    "constructor_chain": "this.constructor.constructor('return process')().mainModule.require('fs')"
    ".readFileSync('/etc/passwd', 'utf8')",
    "host_function": "Buffer.constructor('return process')().mainModule.require('fs')"
    ".readFileSync('/etc/passwd', 'utf8')",
    "main_module": "process.mainModule.require('fs').readFileSync('/etc/passwd', 'utf8')",
    "require_fs": "require('fs').readFileSync('/etc/passwd', 'utf8')",
    "environment": "process.env",
    "child_process": "require('child_process').execSync('id').toString()",
    "spawn_binding": "process.binding('spawn_sync')",
    "net": "require('net').connect(22, '127.0.0.1')",
    "https": "require('https').get('https://example.com')",
    "eval": "eval('process')",
    "function": "new Function('return process')()",
    "import": "import('fs')",
    "wasm": "WebAssembly.compile(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]))",
}


@pytest.mark.parametrize("attempt", sorted(ESCAPES))
def test_escape_attempts_fail_as_the_functions_error(attempt: str) -> None:
    source = f"""
    async function onTrack() {{
      const got = await ({ESCAPES[attempt]})
      return typeof got === 'string' ? got : JSON.stringify(Object.keys(got || {{}}))
    }}
    async function onPage() {{ return 'still fine' }}"""

    async def scenario(runtime: SandboxRuntime) -> tuple[Invocation, Invocation]:
        c = code(source)
        escaped = await runtime.invoke(c, "onTrack", {}, {})
        return escaped, await runtime.invoke(c, "onPage", {}, {})

    escaped, after = run(scenario)
    assert escaped.error == OTHER_ERROR, escaped
    assert "root:" not in escaped.message
    assert after.value == "still fine"


def test_the_crypto_module_is_offered() -> None:
    source = """
    async function onTrack(event) {
      const crypto = require('crypto')
      return [crypto.createHmac('sha256', 'key').update(event.userId).digest('hex'),
              require('node:crypto').randomUUID().length]
    }"""
    result = invoke(source, "onTrack", TRACK)
    assert result.value == [hmac.new(b"key", b"u1", hashlib.sha256).hexdigest(), 36]


def test_the_host_environment_is_not_passed_to_the_process() -> None:
    os.environ["HEADWATER_TEST_SECRET"] = "s3cret"
    try:
        command = javascript.command()
    finally:
        del os.environ["HEADWATER_TEST_SECRET"]
    assert "HEADWATER_TEST_SECRET" not in command.env
    assert set(command.env) <= {"PATH", "LANG"}


ESCAPED = r"""
// What code that escaped the vm context would try: the process's own layers must hold.
const results = {}
const attempt = (name, fn) => { try { results[name] = 'ALLOWED: ' + String(fn()).slice(0, 40) } catch (e) { results[name] = 'denied: ' + (e.code || e.message) } }
attempt('read /etc/passwd', () => require('fs').readFileSync('/etc/passwd', 'utf8'))
attempt('spawn', () => require('child_process').spawnSync('/bin/sh', ['-c', 'id']).error.code)
attempt('worker thread', () => new (require('worker_threads').Worker)('1', {eval: true}))
attempt('write a file', () => require('fs').writeFileSync('/tmp/headwater-escape', 'x'))
attempt('environment', () => { if (process.env.HEADWATER_TEST_SECRET) return 'seen'; throw Object.assign(new Error(), {code: 'empty'}) })
const net = require('net')
const socket = net.connect(Number(process.argv[2]), '127.0.0.1')
socket.on('connect', () => { results.socket = 'ALLOWED'; done() })
socket.on('error', (e) => { results.socket = 'denied: ' + e.code; done() })
function done () { process.stdout.write(JSON.stringify(results)); process.exit(0) }
"""


@pytest.mark.parametrize("bwrap", [False, None], ids=["seccomp", "bubblewrap-when-present"])
def test_code_that_escaped_the_context_still_cannot_read_spawn_or_connect(
    receiver: Receiver, bwrap: bool | None
) -> None:
    """The layers under the vm context: Node's permission model, the clean environment and
    policy.confine's seccomp and rlimits (and bubblewrap when present) hold on their own."""
    # not under /tmp: bubblewrap mounts an empty /tmp over it
    with tempfile.TemporaryDirectory(dir="/var/tmp") as directory:
        script = Path(directory) / "escaped.js"
        script.write_text(ESCAPED)
        results = _run_escaped(script, receiver, bwrap)
    assert all(value.startswith("denied") for value in results.values()), results
    assert len(results) == 6


def _run_escaped(script: Path, receiver: Receiver, bwrap: bool | None) -> dict[str, str]:
    command = javascript.command(bwrap=bwrap, script=script)
    port = receiver.url.rsplit(":", 1)[1]
    os.environ["HEADWATER_TEST_SECRET"] = "s3cret"
    try:
        done = subprocess.run(
            [*command.argv[:-1], port],
            env=command.env,
            cwd=command.cwd,
            preexec_fn=command.preexec_fn,
            capture_output=True,
            timeout=30,
        )
    finally:
        del os.environ["HEADWATER_TEST_SECRET"]
    results: dict[str, str] = json.loads(done.stdout)
    return results


def test_an_infinite_loop_times_out_at_five_seconds_the_others_still_answer() -> None:
    source = """
    async function onTrack(event) {
      if (event.event === 'loop') { while (true) {} }
      return 'answered ' + event.event
    }"""

    async def scenario(runtime: SandboxRuntime) -> tuple[Invocation, list[Invocation], float]:
        c = code(source)
        started = time.monotonic()
        looping = asyncio.ensure_future(runtime.invoke(c, "onTrack", {"event": "loop"}, {}))
        await asyncio.sleep(0.3)
        others = [runtime.invoke(c, "onTrack", {"event": str(n)}, {}) for n in range(3)]
        answered = await asyncio.gather(*others)
        return await looping, list(answered), time.monotonic() - started

    looping, others, took = run(scenario)
    assert looping.error == TIMEOUT
    assert 4.9 < looping.duration_ms / 1000 < 6
    assert [o.value for o in others] == ["answered 0", "answered 1", "answered 2"]
    assert took < 7


@pytest.mark.parametrize(
    "allocation",
    ["new Array(5e8).fill(1)", "Buffer.alloc(2 ** 31)", "'x'.repeat(2 ** 28).split('')"],
)
def test_a_huge_allocation_is_a_memory_limit_and_spares_a_concurrent_call(allocation: str) -> None:
    source = f"""
    async function onTrack(event) {{
      if (event.event === 'bomb') {{ const big = {allocation}; return big.length }}
      await new Promise((resolve) => setTimeout(resolve, 200))
      return 'fine'
    }}"""

    async def scenario(runtime: SandboxRuntime) -> tuple[Invocation, Invocation]:
        c = code(source)
        bomb = runtime.invoke(c, "onTrack", {"event": "bomb"}, {})
        other = runtime.invoke(c, "onTrack", {"event": "x"}, {})
        bombed, fine = await asyncio.gather(bomb, other)
        return bombed, fine

    bombed, fine = run(scenario)
    assert bombed.error == MEMORY_LIMIT, bombed
    assert fine.value == "fine"


def test_prototype_pollution_stays_inside_the_function() -> None:
    polluter = """
    async function onTrack(event) {
      Object.prototype.polluted = 'yes'; Array.prototype.push = () => 0; JSON.stringify = () => 'x'
      return {own: 1}
    }"""
    other = "async function onTrack(event) { return [({}).polluted === undefined, [1].concat(2)] }"

    async def scenario(runtime: SandboxRuntime) -> list[Invocation]:
        p = code(polluter, function="polluter")
        o = code(other, function="other")
        return [
            await runtime.invoke(p, "onTrack", {}, {}),
            await runtime.invoke(p, "onTrack", {"again": True}, {}),
            await runtime.invoke(o, "onTrack", {}, {}),
        ]

    first, second, neighbour = run(scenario)
    # the host's serialisation is its own: the answers are intact
    assert first.value == {"own": 1} and second.value == {"own": 1}
    assert neighbour.value == [True, [1, 2]]


def test_forget_stops_a_functions_processes_and_idle_ones_stop_by_themselves() -> None:
    source = "async function onTrack() { return 1 }"

    async def scenario(runtime: SandboxRuntime) -> tuple[list[int], list[int], list[int]]:
        forgotten, idle = code(source, function="forgotten"), code(source, function="idle")
        await runtime.invoke(forgotten, "onTrack", {}, {})
        await runtime.invoke(idle, "onTrack", {}, {})
        pids = runtime.processes(forgotten) + runtime.processes(idle)
        await runtime.forget("forgotten")
        after_forget = runtime.processes(forgotten)
        await asyncio.sleep(2.0)  # idle_seconds=1
        return pids, after_forget, runtime.processes(idle)

    pids, after_forget, after_idle = run(scenario, idle_seconds=1.0)
    assert len(pids) == 2 and after_forget == [] and after_idle == []
    time.sleep(0.3)
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )


@pytest.fixture(scope="module")
def libraries_dir() -> Path:
    """The shared install of the functions' libraries: made ahead of time, never on first use."""
    found = os.environ.get(libraries.ENVIRONMENT)
    if not found or not libraries.installed(Path(found)):
        pytest.fail(
            f"the functions' JavaScript libraries are not installed in {found}: run "
            "scripts/test.sh, or `python -m headwater.functions.sandbox.libraries --dir DIR` "
            f"and set {libraries.ENVIRONMENT}=DIR"
        )
    return Path(found)


def test_the_pre_installed_libraries_are_globals_of_the_context(libraries_dir: Path) -> None:
    source = """
    async function onTrack(event) {
      const parsed = await new xml2js.Parser().parseStringPromise('<a>1</a>')
      const phone = libphonenumberjslib.libphonenumberjs.parsePhoneNumber('+12133734253')
      return [
        _.get(event, 'properties.total'), _.isArray([]) && [] instanceof Array,
        moment.tz('2020-01-01T00:00:00Z', 'America/New_York').format(),
        uuidv5('headwater', uuidv5.URL),
        jsonwebtoken.verify(jsonwebtoken.sign({a: 1}, 's'), 's').a,
        xml({a: 'b'}), parsed, phone.country,
        typeof fetchretrylib.fetchretry(fetch), zlib.gunzipSync(zlib.gzipSync('z')).toString(),
      ]
    }"""
    result = run(
        lambda runtime: runtime.invoke(code(source), "onTrack", {"properties": {"total": 5}}, {}),
        libraries=libraries_dir,
    )
    assert result.value == [
        5,
        True,
        "2019-12-31T19:00:00-05:00",
        str(uuid.uuid5(uuid.NAMESPACE_URL, "headwater")),
        1,
        "<a>b</a>",
        {"a": "1"},
        "US",
        "function",
        "z",
    ]


def test_a_function_that_uses_no_library_loads_none(libraries_dir: Path) -> None:
    source = """
    async function onTrack() {
      return Object.getOwnPropertyDescriptor(globalThis, '_').get !== undefined
    }"""
    result = run(
        lambda runtime: runtime.invoke(code(source), "onTrack", {}, {}), libraries=libraries_dir
    )
    assert result.value is True  # still the lazy getter: lodash was never evaluated


def test_ac103_a_call_that_only_waits_past_its_deadline_times_out_and_the_process_lives_on() -> (
    None
):
    """AC-103 (the sandbox's part): a handler running 6 s answers Timeout at 5 s. It was
    waiting, not spinning, so its process keeps its warm cache and its other calls."""
    source = """
    let counter = 0
    async function onTrack(event) {
      const value = await cache.load('k', -1, async () => ++counter)
      if (event.event === 'slow') await new Promise((resolve) => setTimeout(resolve, 6000))
      else await new Promise((resolve) => setTimeout(resolve, 5300))
      return value
    }
    async function onPage() { return counter }"""

    async def scenario(
        runtime: SandboxRuntime,
    ) -> tuple[Invocation, Invocation, Invocation, list[int]]:
        c = code(source)
        slow = runtime.invoke(c, "onTrack", {"event": "slow"}, {})
        await asyncio.sleep(0.2)
        other = runtime.invoke(c, "onTrack", {"event": "other"}, {}, timeout=7)
        pids = runtime.processes(c)
        late, answered = await asyncio.gather(slow, other)
        return (
            late,
            answered,
            await runtime.invoke(c, "onPage", {}, {}),
            pids + runtime.processes(c),
        )

    late, answered, count, pids = run(scenario)
    assert late.error == TIMEOUT
    assert 4.9 < late.duration_ms / 1000 < 5.6
    assert answered.value == 1  # not run again: its process was not killed
    assert count.value == 1  # the same warm process: the cache held
    assert len(set(pids)) == 1


def test_a_floating_rejection_or_a_throw_in_a_timer_does_not_end_the_process() -> None:
    source = """
    async function onTrack(event) {
      Promise.reject(new Error('nobody awaits me'))
      setTimeout(() => { throw new Error('thrown in a timer') }, 0)
      await new Promise((resolve) => setTimeout(resolve, 50))
      return 'done'
    }"""

    async def scenario(runtime: SandboxRuntime) -> tuple[Invocation, Invocation, list[int]]:
        c = code(source)
        first = await runtime.invoke(c, "onTrack", {}, {})
        pids = runtime.processes(c)
        second = await runtime.invoke(c, "onTrack", {}, {})
        return first, second, pids + runtime.processes(c)

    first, second, pids = run(scenario)
    assert first.value == second.value == "done"
    assert len(pids) == 2 and len(set(pids)) == 1


def test_an_answer_too_big_to_send_is_the_functions_error() -> None:
    result = invoke(
        "async function onTrack() { return 'x'.repeat(20 * 1024 * 1024) }", "onTrack", {}
    )
    assert result.error == OTHER_ERROR
    assert "cannot be sent" in result.message


def test_the_pool_grows_under_load_up_to_its_maximum() -> None:
    source = (
        "async function onTrack(e) { await new Promise((r) => setTimeout(r, 300)); return e.n }"
    )

    async def scenario(runtime: SandboxRuntime) -> tuple[list[Invocation], int]:
        c = code(source)
        await runtime.invoke(c, "onTrack", {"n": 0}, {})  # one warm process
        batches = [
            asyncio.ensure_future(
                runtime.invoke_many(c, [("onTrack", {"n": n}) for n in range(40)], {})
            )
            for _ in range(3)
        ]
        await asyncio.sleep(0.2)
        busy = len(runtime.processes(c))
        results = [r for batch in await asyncio.gather(*batches) for r in batch]
        return results, busy

    results, busy = run(scenario, max_processes=2)
    assert busy == 2  # a second process once the first had 40 in flight; not a third
    assert [r.value for r in results] == list(range(40)) * 3


def test_fetch_sends_form_data_and_url_search_params(receiver: Receiver) -> None:
    source = f"""
    async function onTrack() {{
      const form = new FormData()
      form.append('name', 'Jane')
      await fetch('{receiver.url}/form', {{method: 'POST', body: form}})
      await fetch('{receiver.url}/params', {{method: 'POST', body: new URLSearchParams({{a: '1 2'}})}})
      return 'sent'
    }}"""
    before = len(receiver.requests)
    result = run(
        lambda runtime: runtime.invoke(code(source), "onTrack", {}, {}), fetch_allow=["127.0.0.1"]
    )
    assert result.value == "sent", result
    form, params = receiver.requests[before : before + 2]
    assert form.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert b'name="name"\r\n\r\nJane\r\n' in form.body
    assert params.headers["content-type"] == "application/x-www-form-urlencoded;charset=UTF-8"
    assert params.body == b"a=1+2"


def test_the_connection_resolver_keeps_only_public_addresses() -> None:
    """A name the allow check saw public cannot rebind to a private address before the
    connection: the connection's own resolution drops non-public addresses."""

    async def scenario() -> tuple[str, int]:
        strict = _PublicResolver(set())
        try:
            await strict.resolve("localhost", 80)
            refused = "resolved"
        except OSError as error:
            refused = str(error)
        listed = await _PublicResolver({"localhost"}).resolve("localhost", 80)
        return refused, len(listed)

    refused, listed = asyncio.run(scenario())
    assert "non-public" in refused
    assert listed >= 1


def test_a_worker_that_cannot_start_answers_crashed_and_does_not_hang() -> None:
    def broken() -> Confined:
        raise NodeNotFound("no node here")

    result = run(
        lambda runtime: runtime.invoke(code("async function onTrack() {}"), "onTrack", {}, {}),
        commands={"javascript": broken},
    )
    assert result.error == CRASHED
    assert "no node here" in result.message


def test_a_calls_timers_end_with_it() -> None:
    source = """
    let ticks = 0
    async function onTrack() {
      setInterval(() => { ticks += 1 }, 10)
      setTimeout(() => { ticks += 1000 }, 100)
      await new Promise((resolve) => setTimeout(resolve, 55))
      return ticks
    }
    async function onPage() { await new Promise((resolve) => setTimeout(resolve, 200)); return ticks }"""

    async def scenario(runtime: SandboxRuntime) -> tuple[Any, Any]:
        c = code(source)
        during = await runtime.invoke(c, "onTrack", {}, {})
        after = await runtime.invoke(c, "onPage", {}, {})
        return during.value, after.value

    during, after = run(scenario)
    assert 2 <= during <= 6
    assert after == during  # the interval stopped with its call; the later timeout never fired


def test_a_cached_value_left_unmade_by_a_timed_out_call_is_made_again() -> None:
    source = """
    let made = 0
    async function onTrack(event) {
      return cache.load('k', -1, async () => {
        made += 1
        await new Promise((resolve) => setTimeout(resolve, event.wait))
        return 'made ' + made
      })
    }"""

    async def scenario(runtime: SandboxRuntime) -> list[Invocation]:
        c = code(source)
        cut = await runtime.invoke(c, "onTrack", {"wait": 3000}, {}, timeout=0.5)
        return [cut, await runtime.invoke(c, "onTrack", {"wait": 10}, {}, timeout=2)]

    cut, again = run(scenario)
    assert cut.error == TIMEOUT
    assert again.value == "made 2"


def test_a_batch_with_one_looping_call_blames_that_call_only() -> None:
    source = """
    async function onTrack(event) {
      if (event.n === 2) { while (true) {} }
      return event.n
    }"""

    async def scenario(runtime: SandboxRuntime) -> list[Invocation]:
        calls = [("onTrack", {"n": n}) for n in range(5)]
        return await runtime.invoke_many(code(source), calls, {}, timeout=1)

    results = run(scenario)
    assert [r.error for r in results] == [None, None, TIMEOUT, None, None]
    assert [r.value for r in results if r.ok] == [0, 1, 3, 4]


def test_fetch_refuses_a_response_body_over_the_cap(receiver: Receiver) -> None:
    receiver.answer(Answer(200, b"x" * (10 * 1024 * 1024 + 1), {}))
    source = f"""
    async function onTrack() {{
      try {{ await fetch('{receiver.url}/big') }} catch (error) {{ return [error.name, error.message] }}
    }}"""
    result = run(
        lambda runtime: runtime.invoke(code(source), "onTrack", {}, {}), fetch_allow=["127.0.0.1"]
    )
    assert result.value[0] == "FetchError"
    assert "over limit" in result.value[1]
    assert result.requests[0].error is not None and "over limit" in result.requests[0].error


def test_server_functions_fetch_allow_takes_host_patterns_only() -> None:
    from pydantic import ValidationError as Invalid

    from headwater.config.model import ServerConfig

    allowed = ["*", "*.stripe.com", "api.example.com", "127.0.0.1", "[::1]"]
    assert ServerConfig(functions_fetch_allow=allowed).functions_fetch_allow == allowed
    for wrong in ("https://api.example.com", "api.example.com/path", "*stripe.com", ""):
        with pytest.raises(Invalid, match="is not a host pattern"):
            ServerConfig(functions_fetch_allow=[wrong])
