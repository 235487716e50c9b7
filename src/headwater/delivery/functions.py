"""Functions in the delivery path: destination functions (§11.3) and insert functions (§11.4).

The delivery engine hands a claim's messages here with the function's deployed code and the
instance's settings; the answer is, per message, what became of it. A destination function's
handler *is* the delivery: it returns (delivered) or throws, and ``contract.verdict`` turns
what it threw into Segment's code and retry rule (§11.5); ``onBatch`` answers for a batch at
once, or per item (``[{"status": 200}, {"status": 500, "errormessage": …}, …]``: only the
5xx and 429 items are retried, AC-104). An insert function returns the event to deliver in
place of the one that came (it is then rendered by the destination as usual), throws
``DropEvent`` (filtered at insert function), or fails like a destination function.

Calls of one claim go to the sandbox in one round trip (``invoke_many``), so a warm sandbox
is paid for once per claim, not once per event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from headwater import reasons
from headwater.delivery import retry
from headwater.delivery.redaction import Redactor
from headwater.destinations import functions as destination_functions
from headwater.destinations.definition import DestinationDefinition
from headwater.functions import contract
from headwater.functions.contract import BATCH_HANDLER, EVENT_HANDLERS, Code, Invocation
from headwater.functions.logs import FunctionLogs
from headwater.functions.sandbox import Runtime
from headwater.functions.store import FunctionStore
from headwater.functions.usage import FunctionUsage, Tally
from headwater.store.config_snapshot import ConfigSnapshot

DELIVERED = retry.Verdict(True, False, "200")


@dataclass(frozen=True)
class Deployed:
    """A function's deployed version, and the names of its secret settings."""

    code: Code
    secrets: frozenset[str] = frozenset()


class FunctionSource(Protocol):
    """What delivery needs of the functions' store: deployed code, and its error log."""

    def deployed(self, function: str) -> Deployed | None:
        """The deployed version of the function (by id or name), None if there is none."""
        ...

    def record(
        self,
        function: str,
        version: int,
        instance_id: str,
        invocation: Invocation,
        payload: Any,
        *,
        secrets: Iterable[str] = (),
    ) -> None:
        """Keep a failed invocation in the function's log (its Errors tab); ``secrets``: the
        instance's secret values, never written."""
        ...

    def count_usage(self, tallies: Mapping[str, Tally]) -> None:
        """Add a claim's invocations to the functions' monthly usage (§11.1)."""
        ...


class FunctionCatalog:
    """The functions' store as delivery and the destination catalog see it: deployed code
    with its secrets, the error log, and destination functions' definitions
    (``registry.use_functions(catalog)``), rebuilt when the configuration moves."""

    def __init__(
        self, store: FunctionStore, logs: FunctionLogs, usage: FunctionUsage | None = None
    ) -> None:
        self._store = store
        self._logs = logs
        self._usage = usage or FunctionUsage(store.workspace)
        workspace = store.workspace
        self._definitions: ConfigSnapshot[dict[str, DestinationDefinition]] = ConfigSnapshot(
            workspace.config_version, self._build, {}
        )

    def deployed(self, function: str) -> Deployed | None:
        code = self._store.deployed(function)
        if code is None:
            return None
        info = self._store.get(code.function)
        return Deployed(code, info.secrets if info is not None else frozenset())

    def record(
        self,
        function: str,
        version: int,
        instance_id: str,
        invocation: Invocation,
        payload: Any,
        *,
        secrets: Iterable[str] = (),
    ) -> None:
        self._logs.record(function, version, instance_id, invocation, payload, secrets=secrets)

    def count_usage(self, tallies: Mapping[str, Tally]) -> None:
        self._usage.add(tallies)

    def definition(self, name: str) -> DestinationDefinition | None:
        """A destination function's definition by its name (None: no such deployed function).
        Read for every routed event, so from memory; a name not known yet reloads once (a
        function created a moment ago, then an instance of it)."""
        found = self._definitions.get().get(name)
        if found is None:
            self._definitions.refresh(force=True)
            found = self._definitions.get().get(name)
        return found

    def definitions(self) -> list[DestinationDefinition]:
        """Every destination function's definition, by name."""
        return [found for _, found in sorted(self._definitions.get().items())]

    def _build(self) -> dict[str, DestinationDefinition]:
        workspace = self._store.workspace.workspace()
        workspace_name = workspace.name if workspace is not None else ""
        built = {}
        for info in self._store.list():
            if info.kind != "destination":
                continue
            code = self._store.deployed(info.id)
            built[info.name] = destination_functions.definition(
                destination_functions.FunctionDestination(
                    name=info.name,
                    workspace=workspace_name,
                    settings=[s.shown() for s in info.settings],
                    language=info.language,
                    code=code.source if code is not None else "",
                )
            )
        return built


@dataclass
class Outcome:
    """What a function did to one message of a claim. ``event``: an insert function's
    returned event, to be rendered; ``verdict`` otherwise (delivered, failed, retried)."""

    verdict: retry.Verdict | None = None
    event: dict[str, Any] | None = None
    filtered: bool = False  # DropEvent: "Filtered at insert function"
    detail: str | None = None
    invocation: Invocation | None = None  # for Event Delivery's sample and the function's log


def handler_for(message: Mapping[str, Any]) -> str | None:
    kind = message.get("type")
    return EVENT_HANDLERS.get(kind) if isinstance(kind, str) else None


def failed(invocation: Invocation) -> Outcome:
    """A failed invocation as Segment shows it (§11.5); DropEvent as filtered."""
    found = contract.verdict(invocation)
    assert found is not None
    if found.dropped:
        return Outcome(filtered=True, detail=invocation.message or None, invocation=invocation)
    return Outcome(
        verdict=retry.Verdict(False, found.retry, found.code),
        detail=f"{invocation.error}: {invocation.message}" if invocation.message else None,
        invocation=invocation,
    )


def unsupported(message: Mapping[str, Any]) -> Outcome:
    return Outcome(
        verdict=retry.Verdict(False, False, reasons.UNSUPPORTED_EVENT_TYPE),
        detail=f"{message.get('type')!r} has no handler",
    )


async def run_destination(
    runtime: Runtime,
    code: Code,
    settings: Mapping[str, Any],
    messages: Sequence[dict[str, Any]],
    *,
    batch: bool,
    throttle: Callable[[], Awaitable[None]] | None = None,
) -> list[Outcome]:
    """A destination function delivers ``messages``: one ``onBatch`` call when ``batch``, else
    each message's handler. ``throttle``: the instance's rate limit, awaited before each
    invocation (the calls then go one at a time, as a rate-limited native destination's
    requests do)."""
    if batch:
        if throttle is not None:
            await throttle()
        [invocation] = await runtime.invoke_many(code, [(BATCH_HANDLER, list(messages))], settings)
        return batch_outcomes(invocation, len(messages))
    return await _each(runtime, code, settings, messages, delivered, throttle)


def delivered(invocation: Invocation) -> Outcome:
    if not invocation.ok:
        return failed(invocation)
    return Outcome(verdict=DELIVERED, invocation=invocation)


async def _each(
    runtime: Runtime,
    code: Code,
    settings: Mapping[str, Any],
    messages: Sequence[dict[str, Any]],
    outcome: Callable[[Invocation], Outcome],
    throttle: Callable[[], Awaitable[None]] | None = None,
) -> list[Outcome]:
    """Each message's handler, all in one round trip (one by one under ``throttle``); a
    message of a type without a handler name is unsupported without a call."""
    outcomes: list[Outcome | None] = [None] * len(messages)
    calls: list[tuple[str, Any]] = []
    positions: list[int] = []
    for position, message in enumerate(messages):
        handler = handler_for(message)
        if handler is None:
            outcomes[position] = unsupported(message)
            continue
        calls.append((handler, message))
        positions.append(position)
    if calls:
        invocations = await _invoke(runtime, code, calls, settings, throttle)
        for position, invocation in zip(positions, invocations, strict=True):
            outcomes[position] = outcome(invocation)
    return [o for o in outcomes if o is not None]


async def _invoke(
    runtime: Runtime,
    code: Code,
    calls: Sequence[tuple[str, Any]],
    settings: Mapping[str, Any],
    throttle: Callable[[], Awaitable[None]] | None,
) -> list[Invocation]:
    """The calls in one round trip; throttled, one by one after a token each."""
    if throttle is None:
        return await runtime.invoke_many(code, calls, settings)
    invocations: list[Invocation] = []
    for call in calls:
        await throttle()
        invocations.extend(await runtime.invoke_many(code, [call], settings))
    return invocations


def batch_outcomes(invocation: Invocation, count: int) -> list[Outcome]:
    """``onBatch``'s answer per event: a throw (or timeout) is the whole batch's (a retry
    retries it whole, §11.3); an array of ``{"status", "errormessage"}`` aligned with the
    events says each one's; anything else delivered them all."""
    if not invocation.ok:
        whole = failed(invocation)
        return [whole for _ in range(count)]
    value = invocation.value
    if not isinstance(value, list):
        return [Outcome(verdict=DELIVERED, invocation=invocation) for _ in range(count)]
    outcomes = []
    for position in range(count):
        item = value[position] if position < len(value) else None
        status = item.get("status") if isinstance(item, dict) else None
        if not isinstance(status, int) or isinstance(status, bool):
            outcomes.append(Outcome(verdict=DELIVERED, invocation=invocation))
            continue
        verdict = retry.judge(str(status))
        message = item.get("errormessage") if isinstance(item, dict) else None
        outcomes.append(
            Outcome(
                verdict=verdict,
                detail=None if verdict.delivered else str(message or f"status {status}"),
                invocation=invocation,
            )
        )
    return outcomes


async def run_insert(
    runtime: Runtime,
    code: Code,
    settings: Mapping[str, Any],
    messages: Sequence[dict[str, Any]],
    *,
    batch: bool,
) -> list[Outcome]:
    """An insert function on ``messages``: each comes back as the event to render, filtered,
    or failed. ``batch``: one ``onBatch`` call, whose returned array holds the events to keep."""
    if batch:
        [invocation] = await runtime.invoke_many(code, [(BATCH_HANDLER, list(messages))], settings)
        return inserted_batch(invocation, messages)
    return await _each(runtime, code, settings, messages, inserted)


def inserted(invocation: Invocation) -> Outcome:
    if not invocation.ok:
        return failed(invocation)
    if not isinstance(invocation.value, dict):
        return Outcome(
            verdict=retry.Verdict(False, False, reasons.MESSAGE_REJECTED),
            detail="the insert function returned no event (it must `return event`)",
            invocation=invocation,
        )
    return Outcome(event=invocation.value, invocation=invocation)


def inserted_batch(invocation: Invocation, messages: Sequence[dict[str, Any]]) -> list[Outcome]:
    """``onBatch`` of an insert function returns the events to keep (§11.4): matched to what
    came by ``messageId`` (by position when it returned every event without ids); an event
    not returned was filtered at the insert function."""
    if not invocation.ok:
        whole = failed(invocation)
        return [whole for _ in messages]
    value = invocation.value
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        rejected = Outcome(
            verdict=retry.Verdict(False, False, reasons.MESSAGE_REJECTED),
            detail="onBatch of an insert function must return an array of events",
            invocation=invocation,
        )
        return [rejected for _ in messages]
    by_id = {v.get("messageId"): v for v in value if v.get("messageId") is not None}
    positional = len(value) == len(messages) and not by_id
    outcomes = []
    for position, message in enumerate(messages):
        found = value[position] if positional else by_id.get(message.get("messageId"))
        if found is None:
            outcomes.append(Outcome(filtered=True, invocation=invocation))
        else:
            outcomes.append(Outcome(event=found, invocation=invocation))
    return outcomes


def sample(invocation: Invocation, redactor: Redactor) -> dict[str, Any]:
    """What the function did, for Event Delivery's sample: the error, its console lines and
    outgoing requests (Segment shows console logs with failed payloads), secrets out."""
    return {
        "error": invocation.error,
        "message": redactor.text(invocation.message),
        "logs": [[line.level, redactor.text(line.text)] for line in invocation.logs],
        "requests": [
            {
                "method": r.method,
                "url": redactor.url(r.url),
                "status": r.status,
                **({"error": redactor.text(r.error)} if r.error else {}),
            }
            for r in invocation.requests
        ],
        "durationMs": round(invocation.duration_ms, 1),
    }


RuntimeFactory = Callable[[], Runtime]
