"""The Python sandbox through ``SandboxRuntime``: real confined ``python_worker.py`` processes.

The runtime surface (handlers sync and async, Segment's error classes, fetch through the host,
segment.*, cache, print/console/logging, request) and escape attempts, each of which must fail
as the function's own error while the host and the other invocations carry on. The escape
attempts run with and without bubblewrap: the seccomp and rlimit layers hold on their own.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from headwater.functions.contract import (
    BATCH_HANDLER,
    DROP_EVENT,
    EVENT_HANDLERS,
    EVENT_NOT_SUPPORTED,
    INVALID_EVENT_PAYLOAD,
    LOAD_ERROR,
    MEMORY_LIMIT,
    OTHER_ERROR,
    REQUEST_HANDLER,
    RETRY_ERROR,
    TIMEOUT,
    VALIDATION_ERROR,
    Code,
    IncomingRequest,
    Invocation,
    python_name,
)
from headwater.functions.sandbox import policy, python
from headwater.functions.sandbox.runtime import SandboxRuntime
from tests.support.receiver import Answer, Receiver

T = TypeVar("T")
_versions = iter(range(1, 1_000_000))
TRACK = {"type": "track", "event": "Order Completed", "userId": "u1", "properties": {}}
LAYERS = [
    pytest.param(False, id="seccomp+rlimits"),
    pytest.param(
        True,
        id="bwrap",
        marks=pytest.mark.skipif(not policy.bwrap_works(), reason="bubblewrap does not work here"),
    ),
]


def code(source: str, function: str = "fn_py") -> Code:
    """A new version each time: its own process, nothing shared with another test."""
    return Code(function=function, version=next(_versions), language="python", source=source)


def run(
    scenario: Callable[[SandboxRuntime], Awaitable[T]], *, bwrap: bool | None = None, **kw: Any
) -> T:
    async def main() -> T:
        runtime = SandboxRuntime(commands={"python": lambda: python.command(bwrap=bwrap)}, **kw)
        try:
            return await scenario(runtime)
        finally:
            await runtime.close()

    return asyncio.run(main())


def invoke(
    source: str,
    handler: str,
    payload: Any,
    settings: Any = None,
    *,
    bwrap: bool | None = None,
    runtime_options: dict[str, Any] | None = None,
    **kw: Any,
) -> Invocation:
    async def scenario(runtime: SandboxRuntime) -> Invocation:
        return await runtime.invoke(code(source), handler, payload, settings or {}, **kw)

    return run(scenario, bwrap=bwrap, **(runtime_options or {}))


ALL_HANDLERS = [*EVENT_HANDLERS.values(), BATCH_HANDLER]


@pytest.mark.parametrize("flavour", ["def", "async def"])
def test_every_handler_runs_sync_or_async(flavour: str) -> None:
    source = "\n".join(
        f"{flavour} {python_name(h)}(event, settings):\n"
        f"    return {{'handler': {python_name(h)!r}, 'event': event, 'key': settings['key']}}"
        for h in ALL_HANDLERS
    )

    async def scenario(runtime: SandboxRuntime) -> list[Invocation]:
        calls = [(h, [TRACK] if h == BATCH_HANDLER else TRACK) for h in ALL_HANDLERS]
        return await runtime.invoke_many(code(source), calls, {"key": "k1"})

    for handler, result in zip(ALL_HANDLERS, run(scenario), strict=True):
        assert result.ok, result
        expected = [TRACK] if handler == BATCH_HANDLER else TRACK
        assert result.value == {"handler": python_name(handler), "event": expected, "key": "k1"}


def test_an_insert_function_enriches_the_event_and_may_take_only_the_event() -> None:
    source = (
        "def on_track(event):\n    event['properties']['message'] = 'Enriched'\n    return event"
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
async def on_track(event, settings):
    error = {thrown}('because ' + event['userId'])
    assert isinstance(error, Exception)
    raise error
"""
    result = invoke(source, "onTrack", TRACK)
    assert (result.error, result.message) == (thrown, "because u1")


def test_a_missing_handler_other_exceptions_and_code_that_does_not_load() -> None:
    source = (
        "def on_track(event, settings):\n    raise ValueError('boom')\non_page = 'not callable'"
    )

    async def scenario(runtime: SandboxRuntime) -> list[Invocation]:
        c = code(source)
        return [
            await runtime.invoke(c, "onIdentify", {}, {}),
            await runtime.invoke(c, "onTrack", {}, {}),
            await runtime.invoke(c, "onPage", {}, {}),
            await runtime.invoke(code("def on_track(event:\n  pass"), "onTrack", {}, {}),
            await runtime.invoke(code("raise RuntimeError('at load')"), "onTrack", {}, {}),
        ]

    missing, other, not_callable, syntax, raising = run(scenario)
    assert (missing.error, missing.message) == (
        EVENT_NOT_SUPPORTED,
        "onIdentify is not implemented",
    )
    assert (other.error, other.message) == (OTHER_ERROR, "ValueError: boom")
    assert not_callable.error == EVENT_NOT_SUPPORTED
    assert (syntax.error, syntax.message) == (
        LOAD_ERROR,
        "SyntaxError: '(' was never closed (line 1)",
    )
    assert (raising.error, raising.message) == (LOAD_ERROR, "RuntimeError: at load")


def test_print_console_and_logging_are_the_invocations_logs() -> None:
    source = """
import logging
def on_track(event, settings):
    print('hello', event['userId'])
    console.log('log', {'a': 1})
    console.warn('careful')
    console.error('bad')
    logging.getLogger('fn').warning('from logging')
    print('a', 'b', sep='-')
    return None
"""
    result = invoke(source, "onTrack", TRACK)
    assert result.ok, result
    assert [(line.level, line.text) for line in result.logs] == [
        ("log", "hello u1"),
        ("log", 'log {"a": 1}'),
        ("warn", "careful"),
        ("error", "bad"),
        ("warn", "from logging"),
        ("log", "a-b"),
    ]


def test_on_request_reads_the_request_and_emits_calls_and_objects() -> None:
    source = """
def on_request(request, settings):
    body = request.json()
    segment.track({'event': body['event'], 'userId': request.query['user']})
    Segment.set({'collection': 'products', 'id': 'p1', 'properties': {'size': 11}})
    return {
        'method': request.method,
        'signature': request.headers.get('x-signature'),
        'missing': request.headers.get('x-missing'),
        'text': request.text(),
        'url': request.url,
        'body': len(request.body),
    }
"""
    request = IncomingRequest(
        method="POST",
        url="https://fn.example/hook?user=u7&user=u8",
        headers=(("X-Signature", "abc"), ("Content-Type", "application/json")),
        body=b'{"event": "Signed Up"}',
    )
    result = invoke(source, REQUEST_HANDLER, request)
    assert result.ok, result
    assert result.value == {
        "method": "POST",
        "signature": "abc",
        "missing": None,
        "text": '{"event": "Signed Up"}',
        "url": "https://fn.example/hook?user=u7&user=u8",
        "body": 22,
    }
    assert result.emitted == [
        {"type": "track", "event": "Signed Up", "userId": "u7"},
        {"type": "set", "collection": "products", "id": "p1", "properties": {"size": 11}},
    ]


def test_on_request_reads_a_form() -> None:
    source = "def on_request(request, settings):\n    return request.form()"
    request = IncomingRequest("POST", "https://fn.example/", (), b"a=1&b=two+words&a=3")
    assert invoke(source, REQUEST_HANDLER, request).value == {"a": "1", "b": "two words"}


def test_fetch_reaches_an_allowed_loopback_receiver(receiver: Receiver) -> None:
    receiver.answer(Answer(status=201, body=b'{"id": 42}', headers={"X-Request-Id": "r1"}))
    source = f"""
async def on_track(event, settings):
    response = await fetch({receiver.url + "/v1/things"!r}, method='post',
                           headers={{'Authorization': 'Bearer ' + settings['apiKey']}},
                           body={{'name': event['event']}})
    plain = fetch({receiver.url + "/v1/plain"!r})
    return {{'status': response.status, 'ok': response.ok, 'json': response.json(),
            'request_id': response.headers.get('x-request-id'), 'plain': plain.text(),
            'url': response.url}}
"""
    result = invoke(
        source,
        "onTrack",
        TRACK,
        {"apiKey": "k"},
        runtime_options={"fetch_allow": ["127.0.0.1"]},
    )
    assert result.ok, result
    assert result.value["status"] == 201
    assert result.value["ok"] is True
    assert result.value["json"] == {"id": 42}
    assert result.value["request_id"] == "r1"
    assert result.value["plain"] == '{"ok":true}'
    first, second = receiver.wait_for(2)
    assert (first.method, first.path, first.json()) == (
        "POST",
        "/v1/things",
        {"name": "Order Completed"},
    )
    assert first.headers["authorization"] == "Bearer k"
    assert first.headers["content-type"] == "application/json"
    assert second.method == "GET"
    assert [(r.method, r.status) for r in result.requests] == [("POST", 201), ("GET", 200)]


def test_fetch_to_a_host_not_allowed_is_the_functions_error(receiver: Receiver) -> None:
    source = f"def on_track(event, settings):\n    return fetch({receiver.url!r}).status"
    result = invoke(source, "onTrack", TRACK, runtime_options={"fetch_allow": ["api.example.com"]})
    assert result.error == OTHER_ERROR
    assert result.message.startswith("FetchError")
    assert receiver.requests == []
    assert len(result.requests) == 1 and result.requests[0].status is None


def test_ac112_cache_load_runs_fn_once_within_ttl_and_after_delete() -> None:
    """AC-112: cache.load('k', 300000, fn) twice → fn once; ttl -1 → no expiry; delete → fn."""
    source = """
computed = []
def make(name):
    def fn():
        computed.append(name)
        return name + str(len(computed))
    return fn
async def slow(): return 'async value'
def on_track(event, settings):
    step = event['step']
    if step == 'delete':
        cache.delete('k')
        return None
    if step == 'forever':
        return cache.load('f', -1, make('f'))
    if step == 'short':
        return cache.load('s', 50, make('s'))
    if step == 'async':
        return cache.load('a', None, slow)
    return {'value': cache.load('k', 300000, make('k')), 'computed': list(computed)}
"""

    async def scenario(runtime: SandboxRuntime) -> list[Any]:
        c = code(source)

        async def step(name: str, fresh: bool = False) -> Any:
            result = await runtime.invoke(c, "onTrack", {"step": name}, {}, fresh_cache=fresh)
            assert result.ok, result
            return result.value

        values = [await step("k"), await step("k"), await step("delete"), await step("k")]
        values += [await step("forever"), await step("forever"), await step("short")]
        await asyncio.sleep(0.1)
        values += [await step("short"), await step("k", fresh=True), await step("async")]
        return values

    first, second, _, third, forever1, forever2, short1, short2, fresh, from_async = run(scenario)
    assert first == {"value": "k1", "computed": ["k"]}
    assert second == {"value": "k1", "computed": ["k"]}  # fn ran once
    assert third == {"value": "k2", "computed": ["k", "k"]}  # deleted: fn ran again
    assert forever1 == forever2 == "f3"
    assert (short1, short2) == ("s4", "s5")  # 50 ms passed: expired
    assert fresh["value"] == "k6"  # the test runner's empty cache
    assert from_async == "async value"


def test_only_the_pre_imported_standard_library_can_be_imported() -> None:
    source = """
import hashlib, hmac, base64, json, re, uuid, datetime, decimal, math, random, urllib.parse
def on_track(event, settings):
    out = {'sha': hashlib.sha256(b'a').hexdigest()[:8],
           'when': datetime.datetime.strptime('2026-12-07', '%Y-%m-%d').date().isoformat(),
           'idna': 'bücher.example'.encode('idna').decode()}
    for name in ('os', 'sys', 'subprocess', 'socket', 'ctypes', 'importlib', 'pickle'):
        try:
            __import__(name)
            out[name] = 'imported'
        except ImportError as error:
            out[name] = 'ImportError'
    return out
"""
    result = invoke(source, "onTrack", TRACK)
    assert result.ok, result
    assert result.value["sha"] == "ca978112"
    assert result.value["when"] == "2026-12-07"
    assert result.value["idna"] == "xn--bcher-kva.example"
    for name in ("os", "sys", "subprocess", "socket", "ctypes", "importlib", "pickle"):
        assert result.value[name] == "ImportError", name


# Reaches the os module whatever the language layer hides: the process layers must hold.
REACH_OS = """
class Namespace:
    def __init__(self, names):
        self.__dict__.update(names)
def find_os():
    for cls in ().__class__.__base__.__subclasses__():
        if cls.__name__ == '_wrap_close':  # os.popen's helper: its globals are os's
            return Namespace(cls.__init__.__globals__)
    raise AssertionError('no way to os')
def attempt(f):
    try:
        return 'ok: ' + repr(f())[:60]
    except BaseException as e:
        return type(e).__name__ + ': ' + str(e)
def subclass(module, name):
    for cls in object.__subclasses__():
        if cls.__module__ == module and cls.__name__ == name:
            return cls
    def walk(c):
        for s in c.__subclasses__():
            if s.__module__ == module and s.__name__ == name:
                return s
            found = walk(s)
            if found is not None:
                return found
    return walk(object)
"""


@pytest.mark.parametrize("bwrap", LAYERS)
def test_escape_attempts_fail_as_the_functions_own_errors(
    bwrap: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEADWATER_TEST_SECRET", "s3cr3t-host-value")
    source = (
        REACH_OS
        + """
def on_track(event, settings):
    os = find_os()
    CDLL = subclass('ctypes', 'CDLL')
    libc = CDLL(None)
    sock = subclass('_socket', 'socket')
    return {
        'environ': dict(os.environ),
        'passwd': attempt(lambda: open('/etc/passwd').read()),
        'os.open': attempt(lambda: os.open('/etc/passwd', 0)),
        'listdir': attempt(lambda: os.listdir('/')),
        'fork': attempt(os.fork),
        'system': attempt(lambda: os.system('id')),
        'spawn': attempt(lambda: os.posix_spawn('/bin/true', ['true'], {})),
        'exec': attempt(lambda: os.execv('/bin/sh', ['sh', '-c', 'exit 7'])),
        'socket': attempt(lambda: sock(2, 1)),
        'unix': attempt(lambda: sock(1, 1)),
        'ctypes.socket': libc.socket(2, 1, 0),
        'ctypes.fork': libc.fork(),
        'ctypes.open': libc.open(b'/etc/passwd', 0),
        'write fd 1': os.write(1, b'{"op":"done","id":999999}\\n'),
    }
"""
    )
    result = invoke(source, "onTrack", TRACK, bwrap=bwrap)
    assert result.ok, result
    seen = result.value
    assert set(seen["environ"]) <= {"PATH", "LANG", "PWD"}
    assert "s3cr3t-host-value" not in json.dumps(seen)
    denied = "PermissionError: [Errno 1] Operation not permitted"
    assert seen["passwd"] == "PermissionError: functions cannot open files"
    for name in ("os.open", "listdir", "fork", "spawn", "exec", "socket", "unix"):
        assert seen[name].startswith(denied), (name, seen[name])
    assert seen["system"] in ("ok: 32512", "ok: -1"), seen["system"]  # no shell ever ran
    assert seen["ctypes.socket"] == seen["ctypes.fork"] == seen["ctypes.open"] == -1


@pytest.mark.parametrize("bwrap", LAYERS)
def test_an_infinite_loop_times_out_and_a_concurrent_call_still_answers(bwrap: bool) -> None:
    source = """
def on_track(event, settings):
    if event['event'] == 'loop':
        while True:
            pass
    return 'answered'
"""

    async def scenario(runtime: SandboxRuntime) -> tuple[Invocation, Invocation, float]:
        c = code(source)
        await runtime.invoke(c, "onTrack", {"event": "warm"}, {})  # the process is up
        started = time.monotonic()
        loop, other = await asyncio.gather(
            runtime.invoke(c, "onTrack", {"event": "loop"}, {}, timeout=1.0),
            runtime.invoke(c, "onTrack", {"event": "other"}, {}, timeout=3.0),
        )
        return loop, other, time.monotonic() - started

    loop, other, took = run(scenario, bwrap=bwrap)
    assert loop.error == TIMEOUT
    assert other.ok and other.value == "answered", other
    assert took < 5


@pytest.mark.parametrize("bwrap", LAYERS)
def test_an_allocation_bomb_is_a_memory_limit_and_the_process_lives_on(bwrap: bool) -> None:
    source = """
def on_track(event, settings):
    if event['event'] == 'bomb':
        return len(b'x' * 2**31)
    return 'still here'
"""

    async def scenario(runtime: SandboxRuntime) -> list[Invocation]:
        c = code(source)
        return [
            await runtime.invoke(c, "onTrack", {"event": "bomb"}, {}),
            await runtime.invoke(c, "onTrack", {"event": "next"}, {}),
        ]

    bomb, after = run(scenario, bwrap=bwrap)
    assert (bomb.error, bomb.message) == (MEMORY_LIMIT, "the function ran out of memory")
    assert after.value == "still here"


def test_a_value_json_cannot_carry_is_the_functions_error() -> None:
    result = invoke("def on_track(event, settings):\n    return object()", "onTrack", TRACK)
    assert result.error == OTHER_ERROR
    assert "cannot be sent" in result.message


def test_batches_are_answered_in_one_round_trip() -> None:
    """invoke_many writes every call at once; the worker answers them with one write."""
    source = "def on_track(event, settings):\n    return event['n'] * 2"

    async def scenario(runtime: SandboxRuntime) -> list[Invocation]:
        return await runtime.invoke_many(
            code(source), [("onTrack", {"n": n}) for n in range(500)], {}
        )

    results = run(scenario)
    assert [r.value for r in results] == [n * 2 for n in range(500)]


def test_request_bodies_travel_as_base64() -> None:
    body = bytes(range(256))
    source = "import base64\ndef on_request(request, settings):\n    return base64.b64encode(request.body).decode()"
    result = invoke(source, REQUEST_HANDLER, IncomingRequest("POST", "https://x/", (), body))
    assert base64.b64decode(result.value) == body


def test_async_handlers_waiting_on_fetch_overlap(receiver: Receiver) -> None:
    """An ``async def`` handler's ``await fetch`` lets the worker run the next call meanwhile;
    a plain handler's ``fetch`` is a blocking round trip (and still works)."""
    receiver.default = Answer(delay=0.6)
    source = f"""
async def on_track(event, settings):
    response = await fetch({receiver.url!r} + '/' + event['n'])
    console.log('call', event['n'])
    return response.status
def on_page(event, settings):
    return fetch({receiver.url!r} + '/page').json()
"""

    async def scenario(runtime: SandboxRuntime) -> tuple[list[Invocation], Invocation, float]:
        c = code(source)
        await runtime.invoke(c, "onIdentify", {}, {})  # the process is up
        started = time.monotonic()
        tracks = await runtime.invoke_many(c, [("onTrack", {"n": str(n)}) for n in range(4)], {})
        took = time.monotonic() - started
        page = await runtime.invoke(c, "onPage", {}, {})
        return tracks, page, took

    tracks, page, took = run(scenario, fetch_allow=["127.0.0.1"])
    assert [t.value for t in tracks] == [200] * 4, tracks
    assert [t.logs[0].text for t in tracks] == [f"call {n}" for n in range(4)]  # each its own
    assert took < 4 * 0.6  # overlapped, not one after another
    assert page.value == {"ok": True}


def test_cache_load_with_an_async_fn_is_awaited_in_an_async_handler() -> None:
    source = """
import asyncio
runs = []
async def token():
    await asyncio.sleep(0.01)
    runs.append(1)
    return 'token-' + str(len(runs))
async def on_track(event, settings):
    first = await cache.load('token', 300000, token)
    second = await cache.load('token', 300000, token)
    return [first, second, len(runs)]
"""
    result = invoke(source, "onTrack", TRACK)
    assert result.value == ["token-1", "token-1", 1], result
