"""The JavaScript sandbox through ``SandboxRuntime``: real Node.js worker processes.

Segment's runtime surface (§11.1: handlers, error classes, fetch, cache, console, Segment.*)
and escape attempts, each of which must fail as the function's own error while the host and
the other invocations carry on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from headwater.functions.contract import (
    DROP_EVENT,
    EVENT_NOT_SUPPORTED,
    INVALID_EVENT_PAYLOAD,
    LOAD_ERROR,
    OTHER_ERROR,
    RETRY_ERROR,
    TIMEOUT,
    VALIDATION_ERROR,
    Code,
    Invocation,
)
from headwater.functions.sandbox.runtime import SandboxRuntime

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
