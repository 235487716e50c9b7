"""The Privacy Portal over HTTP (§9): the Inbox, the Inventory and its CSV, custom matchers,
privacy controls and alerts, under ``/api/v1/privacy``.

Segment's Public API has no Portal endpoints, so the shapes are plain, in its style (a
``{"data": …}`` envelope, camelCase, classes in capitals). Only the admin token reaches them:
§9.1 gives the Portal to Workspace Owners alone (a 403 for other members once roles exist).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Body, Depends, FastAPI, Path, Request, Response

from headwater.api.auth import pii_access, require_access
from headwater.api.errors import ApiError
from headwater.privacy.alerts import Alerts
from headwater.privacy.controls import Controls
from headwater.privacy.custom_matchers import CustomMatchers
from headwater.privacy.inbox import inbox
from headwater.privacy.inventory import Inventory
from headwater.privacy.masking import MASK, Masker, load_masker
from headwater.privacy.matchers import DEFAULT_MATCHERS
from headwater.store.workspace import WorkspaceStore

router = APIRouter(tags=["privacy"], dependencies=[Depends(require_access)])

MAX_INBOX = 1000
JsonBody = Annotated[Any, Body()]


def use_masker(app: FastAPI, masker: Callable[[], Masker]) -> None:
    """Give the API the workspace's masker (the server's, rebuilt on configuration changes)."""
    app.state.privacy_masker = masker


def masker_for(request: Request) -> Masker | None:
    """The masker for a reader without PII Access; None for one with it."""
    if pii_access(request):
        return None
    lookup: Callable[[], Masker] | None = getattr(request.app.state, "privacy_masker", None)
    return lookup() if lookup is not None else load_masker(_store(request))


def masked_delivery(data: dict[str, Any], masker: Masker) -> dict[str, Any]:
    """Event Delivery's samples as a reader without PII Access sees them: what was sent masked
    field by field, the request's and response's bodies masked where they are JSON, else
    whole."""
    errors = []
    for error in data.get("errors", []):
        samples = []
        for sample in error.get("samples", []):
            samples.append(
                {
                    **sample,
                    "youSent": masker.event(sample.get("youSent")),
                    "requestToDestination": _masked_exchange(
                        sample.get("requestToDestination"), masker
                    ),
                    "responseFromDestination": _masked_exchange(
                        sample.get("responseFromDestination"), masker
                    ),
                }
            )
        errors.append({**error, "samples": samples})
    return {**data, "errors": errors}


def _masked_exchange(exchange: Any, masker: Masker) -> Any:
    if not isinstance(exchange, dict) or not exchange.get("body"):
        return exchange
    body = exchange["body"]
    try:
        parsed = msgspec.json.decode(body) if isinstance(body, str | bytes) else body
    except msgspec.DecodeError:
        return {**exchange, "body": MASK}
    if isinstance(parsed, dict | list):
        masked = masker.values({"body": parsed}, "properties")["body"]
        return {**exchange, "body": masker.event(masked) if isinstance(masked, dict) else masked}
    return {**exchange, "body": MASK}


def _store(request: Request) -> WorkspaceStore:
    store: WorkspaceStore = request.app.state.workspace_store
    return store


def _source_id(store: WorkspaceStore, id_or_name: str) -> str:
    found = store.get_source(id_or_name)
    if found is None:
        raise ApiError(404, "not_found", f"no source has the id or name {id_or_name!r}")
    return found.id


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "validation", "the body must be a JSON object")
    return body


# --- the Inbox -------------------------------------------------------------------------------


@router.get("/privacy/inbox", summary="Fields seen in the last 7 days, pre-classified")
def list_inbox(
    request: Request, sourceId: str | None = None, limit: int = MAX_INBOX
) -> dict[str, Any]:
    store = _store(request)
    if not 1 <= limit <= MAX_INBOX:
        raise ApiError(400, "validation", f"limit: 1 to {MAX_INBOX}", "limit")
    source = _source_id(store, sourceId) if sourceId else None
    found = inbox(store.engine, store.now(), source, limit)
    return {"data": {"fields": [f.to_json() for f in found]}}


# --- the Inventory ---------------------------------------------------------------------------


@router.get("/privacy/inventory", summary="The fields classified by a user")
def list_inventory(request: Request, classification: str | None = None) -> dict[str, Any]:
    found = Inventory(_store(request)).fields(classification)
    return {"data": {"fields": [f.to_json() for f in found]}}


@router.post(
    "/privacy/inventory",
    summary="Classify a field (add it to the Inventory)",
    status_code=201,
)
def classify_field(request: Request, body: JsonBody) -> dict[str, Any]:
    data = _object(body)
    added = Inventory(_store(request)).classify(data.get("path"), data.get("classification"))
    return {"data": {"field": added.to_json()}}


@router.get("/privacy/inventory/download", summary="The whole Inventory as CSV")
def download_inventory(request: Request) -> Response:
    return Response(
        Inventory(_store(request)).csv(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="inventory.csv"'},
    )


@router.delete("/privacy/inventory/{path}", summary="Take a field out of the Inventory")
def remove_field(request: Request, path: Annotated[str, Path()]) -> dict[str, Any]:
    Inventory(_store(request)).remove(path)
    return {"data": {}}


# --- matchers --------------------------------------------------------------------------------


@router.get("/privacy/matchers", summary="The default and custom matchers")
def list_matchers(request: Request) -> dict[str, Any]:
    custom = CustomMatchers(_store(request)).all()
    return {
        "data": {
            "matchers": [m.to_json() for m in DEFAULT_MATCHERS] + [m.to_json() for m in custom]
        }
    }


@router.post("/privacy/matchers", summary="Create a custom matcher", status_code=201)
def create_matcher(request: Request, body: JsonBody) -> dict[str, Any]:
    made = CustomMatchers(_store(request)).create(_object(body))
    return {"data": {"matcher": made.to_json()}}


@router.get("/privacy/matchers/{matcherId}", summary="A custom matcher")
def get_matcher(
    request: Request, matcher: Annotated[str, Path(alias="matcherId")]
) -> dict[str, Any]:
    return {"data": {"matcher": CustomMatchers(_store(request)).get(matcher).to_json()}}


@router.put("/privacy/matchers/{matcherId}", summary="Replace a custom matcher")
def update_matcher(
    request: Request, matcher: Annotated[str, Path(alias="matcherId")], body: JsonBody
) -> dict[str, Any]:
    changed = CustomMatchers(_store(request)).update(matcher, _object(body))
    return {"data": {"matcher": changed.to_json()}}


@router.delete("/privacy/matchers/{matcherId}", summary="Delete a custom matcher")
def delete_matcher(
    request: Request, matcher: Annotated[str, Path(alias="matcherId")]
) -> dict[str, Any]:
    CustomMatchers(_store(request)).delete(matcher)
    return {"data": {}}


# --- controls --------------------------------------------------------------------------------


@router.get("/privacy/controls", summary="Every source's privacy controls")
def list_controls(request: Request) -> dict[str, Any]:
    found = Controls(_store(request)).all()
    return {"data": {"controls": [c.to_json() for c in found.values()]}}


@router.put("/privacy/controls/{sourceId}", summary="Block Red and/or Yellow fields at a source")
def set_control(
    request: Request, source: Annotated[str, Path(alias="sourceId")], body: JsonBody
) -> dict[str, Any]:
    store = _store(request)
    data = _object(body)
    control = Controls(store).set(
        _source_id(store, source),
        block_red=data.get("blockRed", False),
        block_yellow=data.get("blockYellow", False),
    )
    return {"data": {"control": control.to_json()}}


# --- alerts ----------------------------------------------------------------------------------


@router.get("/privacy/alerts", summary="The Slack and source alert settings")
def list_alerts(request: Request) -> dict[str, Any]:
    found = Alerts(_store(request)).settings()
    return {"data": {"alerts": [a.to_json() for a in found]}}


@router.put("/privacy/alerts/{channel}", summary="Set the SLACK or SOURCE alert")
def set_alert(request: Request, channel: Annotated[str, Path()], body: JsonBody) -> dict[str, Any]:
    found = Alerts(_store(request)).configure(channel, _object(body))
    return {"data": {"alert": found.to_json()}}
