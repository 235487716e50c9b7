"""``/api/v1/functions``: source, destination and insert functions, their versions, logs and
the test runner.

Same conventions as the destinations API: camelCase bodies, ``{"data": …}``, functions
addressed by id or name. Every save of code is a new version; ``deploy: true`` on a save (or
``POST …/deploy``) moves the DEPLOYED label, which is what instances run. ``POST …/test`` runs
LATEST once on a sample event, events (``onBatch``) or request, with an empty cache, and
answers what the code did: its output, the calls it emitted, its outgoing requests, its console
output (≤ 4 KB, as Segment's test console) and its error. Nothing it does is delivered or
logged. Secret settings never come back: declared secrets' values are ``[redacted]`` wherever
the test's output would show them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from pydantic.alias_generators import to_camel

from headwater.api.auth import ReadableFunctions
from headwater.api.changes import NoNulls
from headwater.api.errors import ApiError
from headwater.api.sources import iso
from headwater.errors import InvalidError, NotFoundError
from headwater.functions.contract import (
    BATCH_HANDLER,
    EVENT_HANDLERS,
    REQUEST_HANDLER,
    Code,
    IncomingRequest,
    Invocation,
    verdict,
)
from headwater.functions.logs import KEEP, FunctionLogs, LogEntry, console_lines
from headwater.functions.sandbox import Runtime
from headwater.functions.sandbox.runtime import SandboxRuntime
from headwater.functions.store import (
    DEFAULT_LIMIT,
    MAX_VERSION,
    REDACTED,
    Attached,
    FunctionInfo,
    FunctionStore,
    FunctionVersion,
    check_instance_settings,
)
from headwater.functions.usage import FunctionUsage
from headwater.store.workspace import UNSET, WorkspaceStore

router = APIRouter(tags=["functions"])
IdOrName = Annotated[str, Path(alias="idOrName", description="The function's id or name.")]
VersionNumber = Annotated[
    int, Path(ge=1, le=MAX_VERSION, description="A version of the function (1, 2, …).")
]
MAX_TEST_EVENTS = 400  # §11.3: the largest batch an ``onBatch`` gets


def use_functions(
    app: FastAPI,
    *,
    limit: int = DEFAULT_LIMIT,
    base_url: str | None = None,
    runtime: Callable[[], Runtime] | None = None,
) -> None:
    """Give the functions routes the server's limit, its public URL (a source function may not
    call its own endpoint) and how to make the test runner's sandbox runtime."""
    app.state.functions_limit = limit
    app.state.functions_base_url = base_url
    if runtime is not None:
        app.state.function_runtime_factory = runtime


def functions_of(request: Request) -> FunctionStore:
    workspace: WorkspaceStore = request.app.state.workspace_store
    state = request.app.state
    return FunctionStore(
        workspace,
        limit=getattr(state, "functions_limit", DEFAULT_LIMIT),
        base_url=getattr(state, "functions_base_url", None),
    )


Store = Annotated[FunctionStore, Depends(functions_of)]


# --- shapes ----------------------------------------------------------------------------------


def function_json(function: FunctionInfo, code: str | None = None) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": function.id,
        "name": function.name,
        "kind": function.kind,
        "language": function.language,
        "description": function.description,
        "settings": [s.shown() for s in function.settings],
        "latestVersion": function.latest_version,
        "deployedVersion": function.deployed_version,
        "createdAt": iso(function.created_at),
        "updatedAt": iso(function.updated_at),
    }
    if function.kind == "destination":
        shown["destinationType"] = function.destination_type
    if code is not None:
        shown["code"] = code
    return shown


def version_json(
    function: FunctionInfo, version: FunctionVersion, *, with_code: bool
) -> dict[str, Any]:
    labels = []
    if version.version == function.latest_version:
        labels.append("LATEST")
    if version.version == function.deployed_version:
        labels.append("DEPLOYED")
    shown: dict[str, Any] = {
        "version": version.version,
        "labels": labels,
        "createdAt": iso(version.created_at),
    }
    if with_code:
        shown["code"] = version.code
    return shown


def log_json(entry: LogEntry) -> dict[str, Any]:
    shown = entry.shown()
    shown["at"] = iso(int(entry.at))
    return shown


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=False)


class CreateFunctionBody(_Body):
    name: StrictStr
    kind: StrictStr  # source | destination | insert
    language: StrictStr = "javascript"
    code: StrictStr
    description: StrictStr = ""
    settings: list[Any] = []


class UpdateFunctionBody(_Body, NoNulls):
    name: StrictStr | None = None
    description: StrictStr | None = None
    settings: list[Any] | None = None
    code: StrictStr | None = None  # a new version when it differs from LATEST
    deploy: StrictBool = False  # "Save & Deploy": DEPLOYED moves to LATEST


class DeployBody(_Body):
    version: StrictInt | None = Field(default=None, ge=1, le=MAX_VERSION)  # None: LATEST


class RestoreBody(_Body):
    deploy: StrictBool = False


class TestRequestBody(_Body):
    method: StrictStr = "POST"
    url: StrictStr | None = None
    headers: dict[StrictStr, StrictStr] | list[tuple[StrictStr, StrictStr]] = {}
    body: Any = None  # a JSON value (sent as JSON) or a string (sent as it is)


class TestBody(_Body):
    event: dict[str, Any] | None = None
    events: list[dict[str, Any]] | None = None
    request: TestRequestBody | None = None
    settings: dict[str, Any] = {}


# --- functions -------------------------------------------------------------------------------


@router.get("/functions", response_model=None)
def list_functions(store: Store, only: ReadableFunctions) -> dict[str, Any]:
    found = [f for f in store.list() if only is None or f.id in only]
    return {
        "data": {
            "functions": [function_json(f) for f in found],
            "pagination": {"current": "", "totalEntries": len(found)},
            "limit": store.limit,
        }
    }


@router.post("/functions", status_code=201, response_model=None)
def create_function(body: CreateFunctionBody, store: Store) -> dict[str, Any]:
    """A new function; its code is version 1, deployed (nothing runs it yet)."""
    created = store.create(
        body.name,
        body.kind,
        body.language,
        body.code,
        description=body.description,
        settings=body.settings,
    )
    return {"data": {"function": function_json(created, body.code)}}


@router.get("/functions/{idOrName}", response_model=None)
def get_function(id_or_name: IdOrName, store: Store) -> dict[str, Any]:
    """The function with LATEST's code."""
    function = store.require(id_or_name)
    latest = store.version(function.id, function.latest_version)
    shown = function_json(function, latest.code)
    shown["usedBy"] = store.users(function.id)
    return {"data": {"function": shown}}


@router.patch("/functions/{idOrName}", response_model=None)
def update_function(id_or_name: IdOrName, body: UpdateFunctionBody, store: Store) -> dict[str, Any]:
    """Change what is given; ``code`` is saved as a new version ("Save"), and ``deploy``
    deploys LATEST ("Save & Deploy")."""
    updated = store.update(
        id_or_name,
        name=UNSET if body.name is None else body.name,
        description=UNSET if body.description is None else body.description,
        settings=UNSET if body.settings is None else body.settings,
        code=UNSET if body.code is None else body.code,
        deploy=body.deploy,
    )
    return {"data": {"function": function_json(updated)}}


@router.delete("/functions/{idOrName}", response_model=None)
def delete_function(id_or_name: IdOrName, store: Store) -> dict[str, Any]:
    """Refused (409) while a source or destination runs it."""
    store.delete(id_or_name)
    return {"data": {"status": "SUCCESS"}}


@router.post("/functions/{idOrName}/deploy", response_model=None)
def deploy_function(
    id_or_name: IdOrName, store: Store, body: Annotated[DeployBody | None, Body()] = None
) -> dict[str, Any]:
    """Every instance runs ``version`` (LATEST when left out) from now on."""
    deployed = store.deploy(id_or_name, body.version if body else None)
    return {"data": {"function": function_json(deployed)}}


# --- versions --------------------------------------------------------------------------------


@router.get("/functions/{idOrName}/versions", response_model=None)
def list_versions(id_or_name: IdOrName, store: Store) -> dict[str, Any]:
    """Every version, newest first, with its labels (LATEST, DEPLOYED); without the code."""
    function = store.require(id_or_name)
    versions = store.versions(function.id)
    return {"data": {"versions": [version_json(function, v, with_code=False) for v in versions]}}


@router.get("/functions/{idOrName}/versions/{version}", response_model=None)
def get_version(id_or_name: IdOrName, version: VersionNumber, store: Store) -> dict[str, Any]:
    function = store.require(id_or_name)
    found = store.version(function.id, version)
    return {"data": {"version": version_json(function, found, with_code=True)}}


@router.post("/functions/{idOrName}/versions/{version}/restore", response_model=None)
def restore_version(
    id_or_name: IdOrName,
    version: VersionNumber,
    store: Store,
    body: Annotated[RestoreBody | None, Body()] = None,
) -> dict[str, Any]:
    """A new version with ``version``'s code (deployed when ``deploy`` is true)."""
    restored = store.restore(id_or_name, version, deploy=bool(body and body.deploy))
    return {"data": {"function": function_json(restored)}}


# --- logs ------------------------------------------------------------------------------------


@router.get("/functions/{idOrName}/logs", response_model=None)
def function_logs(
    id_or_name: IdOrName,
    request: Request,
    store: Store,
    count: Annotated[int, Query(ge=1, le=KEEP)] = KEEP,
) -> dict[str, Any]:
    """The most recent errors and logs (at most 100, the last 30 days), newest first."""
    function = store.require(id_or_name)
    logs = FunctionLogs(store.workspace, clock=request.app.state.clock)
    return {"data": {"logs": [log_json(e) for e in logs.recent(function.id, count)]}}


# --- usage -----------------------------------------------------------------------------------


@router.get("/functions/{idOrName}/usage", response_model=None)
def function_usage(id_or_name: IdOrName, request: Request, store: Store) -> dict[str, Any]:
    """Invocations, execution time (ms, billed in millisecond increments) and errors by month,
    the most recent first; every invocation counts, retries included, not the test runner's."""
    function = store.require(id_or_name)
    usage = FunctionUsage(store.workspace, clock=request.app.state.clock)
    return {"data": {"usage": [m.shown() for m in usage.months(function.id)]}}


# --- the test runner -------------------------------------------------------------------------


@router.post("/functions/{idOrName}/test", response_model=None)
async def test_function(
    id_or_name: IdOrName, body: TestBody, request: Request, store: Store
) -> dict[str, Any]:
    """Run LATEST once on ``event`` (its type's handler), ``events`` (``onBatch``) or, for a
    source function, ``request`` (``onRequest``), with ``settings`` and an empty cache."""
    function, code = await asyncio.to_thread(_latest, store, id_or_name)
    given = [name for name in ("event", "events", "request") if getattr(body, name) is not None]
    if len(given) != 1:
        raise ApiError(
            422, "validation", "give one of event, events or request", given[1] if given else None
        )
    settings = check_instance_settings(function, body.settings, {}, field="settings")
    handler, payload = _call(function, body, request)
    runtime = _runtime(request.app)
    invocation = await runtime.invoke(code, handler, payload, settings, fresh_cache=True)
    secrets = [v for k, v in settings.items() if k in function.secrets and isinstance(v, str) and v]
    return {"data": _test_result(function, code, handler, invocation, secrets)}


def _latest(store: FunctionStore, id_or_name: str) -> tuple[FunctionInfo, Code]:
    function = store.require(id_or_name)
    return function, store.latest(function.id)


def _call(function: FunctionInfo, body: TestBody, request: Request) -> tuple[str, Any]:
    if function.kind == "source":
        if body.request is None:
            raise InvalidError("a source function is tested with a request", "request")
        return REQUEST_HANDLER, _incoming(function, body.request, request)
    if body.request is not None:
        raise InvalidError(
            f"a {function.kind} function is tested with an event or events", "request"
        )
    if body.events is not None:
        if not body.events or len(body.events) > MAX_TEST_EVENTS:
            raise InvalidError(f"must hold 1 to {MAX_TEST_EVENTS} events", "events")
        return BATCH_HANDLER, body.events
    event = body.event or {}
    handler = EVENT_HANDLERS.get(str(event.get("type")))
    if handler is None:
        raise InvalidError(f"event.type must be one of {', '.join(EVENT_HANDLERS)}", "event.type")
    return handler, event


def _incoming(function: FunctionInfo, sent: TestRequestBody, request: Request) -> IncomingRequest:
    headers = list(sent.headers.items()) if isinstance(sent.headers, dict) else sent.headers
    if isinstance(sent.body, str):
        data = sent.body.encode("utf-8")
    elif sent.body is None:
        data = b""
    else:
        data = json.dumps(sent.body).encode("utf-8")
        if not any(name.lower() == "content-type" for name, _ in headers):
            headers = [*headers, ("Content-Type", "application/json")]
    base = getattr(request.app.state, "functions_base_url", None) or str(request.base_url)
    url = sent.url or f"{base.rstrip('/')}/v1/functions/{function.name}"
    return IncomingRequest(sent.method.upper(), url, tuple(headers), data)


def _runtime(app: FastAPI) -> Runtime:
    """The API process's sandbox runtime, started on the first test."""
    runtime: Runtime | None = getattr(app.state, "function_runtime", None)
    if runtime is None:
        factory: Callable[[], Runtime] = getattr(
            app.state, "function_runtime_factory", SandboxRuntime
        )
        runtime = factory()
        app.state.function_runtime = runtime
    return runtime


async def close_runtime(app: FastAPI) -> None:
    """Stop the test runner's sandbox processes (the server's shutdown)."""
    runtime: Runtime | None = getattr(app.state, "function_runtime", None)
    if runtime is not None:
        app.state.function_runtime = None
        await runtime.close()


def _test_result(
    function: FunctionInfo, code: Code, handler: str, invocation: Invocation, secrets: list[str]
) -> dict[str, Any]:
    hidden = sorted(set(secrets), key=len, reverse=True)

    def scrub(text: str) -> str:
        for value in hidden:
            text = text.replace(value, REDACTED)
        return text

    def scrubbed(value: Any) -> Any:
        return json.loads(scrub(json.dumps(value, default=str))) if hidden else value

    found = verdict(invocation)
    return {
        "function": function.id,
        "version": code.version,
        "handler": handler,
        "output": scrubbed(invocation.value),
        "emitted": scrubbed(invocation.emitted),
        "error": None
        if invocation.ok
        else {
            "type": invocation.error,
            "message": scrub(invocation.message),
            "code": found.code if found else None,
            "retry": found.retry if found else False,
        },
        "logs": console_lines([(line.level, scrub(line.text)) for line in invocation.logs]),
        "requests": [
            {
                "method": r.method,
                "url": scrub(r.url),
                "status": r.status,
                "error": scrub(r.error) if r.error else None,
                "durationMs": r.duration_ms,
            }
            for r in invocation.requests
        ],
        "durationMs": invocation.duration_ms,
    }


# --- instances: a source's source function, a destination's insert function ----------------


class AttachBody(_Body):
    function: StrictStr  # the function's id or name
    settings: dict[str, Any] = {}  # secrets left out or "[redacted]" keep their stored value


class InsertBody(AttachBody):
    enabled: StrictBool = True  # the Enable Function toggle (off: events pass unmodified)


def attached_json(attached: Attached | None, *, toggle: bool = False) -> dict[str, Any] | None:
    """``toggle``: an insert function's, with its Enable Function toggle."""
    if attached is None:
        return None
    function = attached.function
    shown: dict[str, Any] = {
        "function": {"id": function.id, "name": function.name, "kind": function.kind},
        "settings": function.redact(attached.settings),
    }
    if toggle:
        shown["enabled"] = attached.enabled
    return shown


SourceIdOrName = Annotated[str, Path(alias="idOrName", description="The source's id or name.")]
DestinationIdOrName = Annotated[
    str, Path(alias="idOrName", description="The destination's id or name.")
]


@router.get("/sources/{idOrName}/function", response_model=None)
def source_function(id_or_name: SourceIdOrName, store: Store) -> dict[str, Any]:
    """The source function this source runs (null: none), with its settings redacted."""
    return {"data": {"function": attached_json(_source_function(store, id_or_name))}}


@router.put("/sources/{idOrName}/function", response_model=None)
def attach_source_function(
    id_or_name: SourceIdOrName, body: AttachBody, store: Store
) -> dict[str, Any]:
    """Make the source run a source function (its endpoint: ``POST /v1/functions/<source>``)."""
    attached = store.attach_source(id_or_name, body.function, body.settings)
    return {"data": {"function": attached_json(attached)}}


@router.delete("/sources/{idOrName}/function", response_model=None)
def detach_source_function(id_or_name: SourceIdOrName, store: Store) -> dict[str, Any]:
    store.attach_source(id_or_name, None)
    return {"data": {"status": "SUCCESS"}}


@router.get("/destinations/{idOrName}/insert-function", response_model=None)
def insert_function(id_or_name: DestinationIdOrName, store: Store) -> dict[str, Any]:
    """The insert function this destination instance runs (null: none)."""
    return {"data": {"function": attached_json(store.insert_function(id_or_name), toggle=True)}}


@router.put("/destinations/{idOrName}/insert-function", response_model=None)
def attach_insert_function(
    id_or_name: DestinationIdOrName, body: InsertBody, store: Store
) -> dict[str, Any]:
    """Run an insert function before this instance's delivery (one per instance); it
    processes data only while ``enabled`` (Segment's Enable Function toggle, §11.4)."""
    attached = store.attach_insert(id_or_name, body.function, body.settings, enabled=body.enabled)
    return {"data": {"function": attached_json(attached, toggle=True)}}


@router.delete("/destinations/{idOrName}/insert-function", response_model=None)
def detach_insert_function(id_or_name: DestinationIdOrName, store: Store) -> dict[str, Any]:
    store.attach_insert(id_or_name, None)
    return {"data": {"status": "SUCCESS"}}


def _source_function(store: FunctionStore, id_or_name: str) -> Attached | None:
    try:
        return store.source_function(id_or_name)
    except NotFoundError as exc:
        raise NotFoundError(exc.message, "source") from None
