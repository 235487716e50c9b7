"""Delivering to the package's Actions destinations: one claim's jobs as actions runtime calls.

Headwater has already chosen each job's mapping (the router evaluated the triggers); here the
jobs of a claim are grouped by mapping, and each event goes to the runtime with the instance's
settings and the mapping as saved, so actions-core maps the fields, validates them and runs the
destination's own ``perform`` (or ``performBatch`` when the mapping enables batching). What the
runtime reports becomes Segment's codes, so the engine's retry rules and Event Delivery treat
these destinations exactly as native ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from headwater import reasons
from headwater.delivery.queue import Job
from headwater.destinations.actions import ActionMapping, with_defaults
from headwater.destinations.definition import OAUTH_SETTING, DestinationDefinition
from headwater.destinations.runtime.pool import Call, Exchange, Outcome
from headwater.destinations.store import DestinationInfo

DEFAULT_BATCH_SIZE = 100  # when a batching mapping names no batch_size

# Segment's error types the runtime reports, and the code each becomes when it carries no HTTP
# status of its own that says more.
PAYLOAD_VALIDATION_FAILED = "PAYLOAD_VALIDATION_FAILED"
INVALID_AUTHENTICATION = "INVALID_AUTHENTICATION"
DESTINATION_ERROR = "DESTINATION_ERROR"  # the destination's code threw something unexpected

Execute = Callable[[Call], Awaitable[list[Outcome]]]
# Gets a new access token with the refresh token, stores it, and gives the new ``auth``.
Refresh = Callable[[Mapping[str, Any]], Awaitable[Mapping[str, Any]]]


@dataclass
class Executed:
    """Per position of the claim: the code of every call that carried it, and what was sent."""

    codes: list[list[str]]
    exchanges: list[list[Exchange]]
    details: dict[int, str] = field(default_factory=dict)
    called: bool = False  # at least one call reached the runtime


def split_settings(settings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The definition's own settings, and the ``auth`` actions-core takes, from the ``oauth``
    object as Segment stores it (``access_token``, ``refresh_token``, ``clientId`` …)."""
    own = {k: v for k, v in settings.items() if k != OAUTH_SETTING}
    oauth = settings.get(OAUTH_SETTING)
    if not isinstance(oauth, Mapping):
        return own, None
    auth = {
        "accessToken": oauth.get("access_token"),
        "refreshToken": oauth.get("refresh_token"),
        "refreshTokenUrl": oauth.get("refresh_token_url"),
        "clientId": oauth.get("clientId"),
        "clientSecret": oauth.get("clientSecret"),
    }
    return own, {k: v for k, v in auth.items() if v is not None}


def unauthorized(outcome: Outcome) -> bool:
    return outcome.error_type == "InvalidAuthenticationError" or outcome.status == 401


def code(outcome: Outcome) -> str:
    """The outcome as Event Delivery's code: an HTTP status where the destination's answer
    decides (so 429 and 5xx are retried, other 4xx are not), else Segment's error code."""
    kind = outcome.error_type
    status = outcome.status
    if kind is None:
        return str(status) if status is not None and status >= 200 else "200"
    if outcome.error_code in reasons.CONNECTION_ERRORS:
        return str(outcome.error_code)
    if kind == "Timeout":
        return reasons.ETIMEDOUT
    if kind in ("RetryableError", "RuntimeUnavailable"):
        return reasons.RETRY_REQUESTED
    if kind == "PayloadValidationError":
        return PAYLOAD_VALIDATION_FAILED
    if kind == "InvalidAuthenticationError":
        return INVALID_AUTHENTICATION
    if status is not None and status >= 400:
        retried = status == 429 or (status >= 500 and status not in (501, 505))
        if kind == "HTTPError" or retried or not outcome.error_code:
            return str(status)
        return str(outcome.error_code)
    return str(outcome.error_code or DESTINATION_ERROR)


async def execute(
    run: Execute,
    destination: DestinationInfo,
    definition: DestinationDefinition,
    saved: Mapping[str, Any],
    claimed: Sequence[Job],
    messages: Sequence[Mapping[str, Any]],
    gate: asyncio.Semaphore,
    refresh: Refresh | None = None,
    throttle: Callable[[], Awaitable[None]] | None = None,
) -> Executed:
    """Run every job of the claim through the runtime, at most ``gate`` calls at a time, with
    the instance's settings as saved (``saved``: defaults filled in, as Segment fills them). With
    ``refresh``, calls turned away for their access token are tried once more with a new one
    (one refresh per claim, however many calls met the 401)."""
    assert definition.package_directory is not None
    done = Executed([[] for _ in claimed], [[] for _ in claimed])
    settings, auth = split_settings(saved)
    refreshed: asyncio.Future[Mapping[str, Any]] | None = None

    async def new_auth(old: Mapping[str, Any]) -> Mapping[str, Any]:
        nonlocal refreshed
        assert refresh is not None
        if refreshed is None:
            refreshed = asyncio.ensure_future(refresh(old))
        return await refreshed

    enabled = {m.id: m for m in destination.mappings if m.enabled}
    groups: dict[str, list[int]] = {}
    for position, job in enumerate(claimed):
        if job.mapping_id not in enabled:
            done.codes[position].append(reasons.NO_MATCHING_MAPPING)
            done.details[position] = "the mapping was disabled or deleted after routing"
            continue
        groups.setdefault(job.mapping_id, []).append(position)

    async def call(
        mapping: ActionMapping, fields: dict[str, Any], batch: bool, at: list[int]
    ) -> None:
        request = Call(
            destination=definition.package_directory or "",
            action=mapping.action,
            settings=settings,
            mapping=fields,
            events=[messages[p] for p in at],
            batch=batch,
            auth=auth,
        )
        refresh_failed = ""
        async with gate:
            if throttle is not None:  # the instance's rate limit: a call is a request
                await throttle()
            done.called = True
            outcomes = await run(request)
            if auth is not None and refresh is not None and any(map(unauthorized, outcomes)):
                try:
                    fresh = await new_auth(auth)
                except Exception as exc:  # the refresh itself failed: keep the 401's outcome
                    refresh_failed = f"; refreshing the access token failed: {exc}"
                else:
                    outcomes = await run(replace(request, auth=fresh))
        for position, outcome in zip(at, outcomes, strict=True):
            done.codes[position].append(code(outcome))
            done.exchanges[position].extend(outcome.exchanges)
            if outcome.error_type is not None:
                done.details[position] = outcome.message + refresh_failed

    calls = []
    for mapping_id, positions in groups.items():
        mapping = enabled[mapping_id]
        action = definition.actions.get(mapping.action)
        if action is None:
            for position in positions:
                done.codes[position].append(reasons.NO_MATCHING_MAPPING)
                done.details[position] = f"the destination has no action {mapping.action!r}"
            continue
        fields = with_defaults(action, mapping.fields)
        if action.batches and fields.get("enable_batching") is True:
            size = _batch_size(fields.get("batch_size"))
            for start in range(0, len(positions), size):
                calls.append(call(mapping, fields, True, positions[start : start + size]))
        else:
            calls.extend(call(mapping, fields, False, [position]) for position in positions)
    await asyncio.gather(*calls)
    return done


def _batch_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return DEFAULT_BATCH_SIZE
