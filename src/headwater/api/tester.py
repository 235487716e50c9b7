"""``POST /api/v1/destinations/{idOrName}/tester``: Segment's Event Tester over HTTP.

The event is checked and enriched by the Tracking API's own rules first, so a test event the
Tracking API would drop is refused here with the same reason, and the destination gets what a
real event would carry (messageId, timestamps, version). Sending needs the server's delivery
engine (its request redirects and actions runtime): ``use_delivery`` hands it over.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, StrictStr

from headwater.api.auth import require_access
from headwater.api.destinations import IdOrName
from headwater.api.errors import ApiError
from headwater.delivery.engine import DeliveryEngine
from headwater.delivery.tester import send_test_event
from headwater.destinations.store import DestinationStore
from headwater.errors import BodyError
from headwater.ingest.body import decode_json
from headwater.ingest.normalize import Discard, RequestInfo, normalize
from headwater.store.workspace import WorkspaceStore
from headwater.timestamps import format_timestamp

router = APIRouter(tags=["destinations"], dependencies=[Depends(require_access)])


class EventTesterBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: Any = None  # a Segment message; checked below, so its problems get clear 400s
    mappingId: StrictStr | None = None  # Segment's spelling; Actions destinations only


def use_delivery(app: FastAPI, delivery: DeliveryEngine) -> None:
    """Give the tester route the server's delivery engine."""
    app.state.delivery = delivery


@router.post(
    "/destinations/{idOrName}/tester",
    response_model=None,
    summary="Send one test event straight to the destination (Segment's Event Tester)",
)
async def send_to_tester(
    body: EventTesterBody, id_or_name: IdOrName, request: Request
) -> dict[str, Any]:
    """Bypasses destination filters, transformations and the integrations object; nothing is
    queued, retried or counted in Event Delivery. A disabled destination can be tested."""
    delivery: DeliveryEngine | None = getattr(request.app.state, "delivery", None)
    if delivery is None:
        raise ApiError(503, "unavailable", "this process cannot send to destinations")
    store: WorkspaceStore = request.app.state.workspace_store
    destination = await asyncio.to_thread(DestinationStore(store).require, id_or_name)
    message = _message(body.event, time.time())
    return {"data": await send_test_event(delivery, destination, message, body.mappingId)}


def _message(event: Any, now: float) -> dict[str, Any]:
    """The event as the Tracking API would store it, or a 400 saying why it would drop it.

    It goes through the Tracking API's own decoder (as JSON again: FastAPI's parser lets
    through what that one refuses, such as lone surrogates, NaN and 1e999) and then its
    normalisation."""
    if not isinstance(event, dict):
        raise ApiError(
            400, "bad_request", "event: required, a Segment message (a JSON object)", "event"
        )
    try:
        raw = json.dumps(event, ensure_ascii=False, allow_nan=False).encode()
        decoded = decode_json(raw)
    except UnicodeError:
        raise ApiError(
            400, "bad_request", "event: text that is not valid Unicode (a lone surrogate)", "event"
        ) from None
    except BodyError as exc:
        raise ApiError(400, "bad_request", f"event: {exc.message}", "event") from None
    except ValueError:  # NaN or an infinity (1e999)
        raise ApiError(
            400, "bad_request", "event: NaN and infinite numbers are not JSON", "event"
        ) from None
    received_at = datetime.fromtimestamp(now, UTC)
    info = RequestInfo(received_at, format_timestamp(received_at), client_ip=None)
    result = normalize(decoded, info, route_type=None, sent_size=len(raw))
    if isinstance(result, Discard):
        raise ApiError(400, "bad_request", f"event: {result.detail} ({result.code})", "event")
    return result
