"""List destinations' audiences (Segment §14.1): the audience made at the destination.

An audience connected to an Actions destination whose definition has an audience hook
(``audienceConfig.createAudience``: Facebook Custom Audiences, Iterable Lists, DV360, …) is
created there once, through the destination's own ``createAudience`` (or, when the
connection's ``audience_settings`` name an existing one as ``external_audience_id``, checked
with ``getAudience``). The id the destination gives is kept with the connection; every message
for the connection then carries it in ``context.personas.external_audience_id`` with the
connection's ``audience_settings``, which the destination's sync action reads to add and
remove members. Creating it queues the initial upload: one entry message per current member
(the connection's backfill, so batch runs send it none of their own).

A hook that fails leaves the connection without an id, its error kept and shown, and the
worker tries again every ``RETRY_SECONDS``. Nothing is sent to the connection meanwhile; the
initial upload, when the hook works, carries the members as they are then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection as DbConnection

from headwater.destinations.runtime.pool import HookError
from headwater.engage import activation, outbox
from headwater.engage.activation import Identity
from headwater.engage.computations import ComputationStore, connections, creates_audiences
from headwater.store import schema
from headwater.store.workspace import WorkspaceStore

logger = logging.getLogger(__name__)

RETRY_SECONDS = 60  # a failed createAudience is tried again after this long
CLAIM_SECONDS = 120  # a process calling the hook holds the connection this long
EXTERNAL_ID = "external_audience_id"  # a connection's setting: an audience that exists already


class AudienceHook(Protocol):
    """Runs a destination instance's ``createAudience`` / ``getAudience`` (the delivery
    engine's actions runtime) and gives its result; raises when the hook fails."""

    def __call__(
        self, destination_id: str, hook: str, payload: Mapping[str, Any]
    ) -> Awaitable[Any]: ...


@dataclass(frozen=True)
class ListFailure:
    """A hook that failed: what the destination's code (or the runtime) said."""

    computation_id: str
    destination_id: str
    destination: str  # the instance's name
    message: str


@dataclass(frozen=True)
class _Pending:
    space_id: str
    computation_id: str
    destination_id: str
    destination: str


class ListAudiences:
    def __init__(self, workspace: WorkspaceStore, *, retry_seconds: int = RETRY_SECONDS) -> None:
        self._ws = workspace
        self._computations = ComputationStore(workspace)
        self._retry = retry_seconds

    def pending(self, computation_id: str | None = None) -> list[_Pending]:
        """Connections of audiences to list destinations still without an external id whose
        (retry) time has come."""
        table, comp, dest = (
            schema.engage_connections,
            schema.engage_computations,
            schema.destinations,
        )
        query = (
            sa.select(
                comp.c.space_id,
                table.c.computation_id,
                table.c.destination_id,
                dest.c.name,
                dest.c.type,
            )
            .join(comp, comp.c.id == table.c.computation_id)
            .join(dest, dest.c.id == table.c.destination_id)
            .where(
                table.c.external_audience_id.is_(None),
                comp.c.deleted_at.is_(None),
                comp.c.kind == "audience",
                dest.c.type.like("actions:%"),  # only the package's have audience hooks
            )
            .order_by(table.c.created_at, table.c.computation_id, table.c.destination_id)
        )
        if computation_id is not None:
            query = query.where(table.c.computation_id == computation_id)
        query = query.where(_due(table, self._ws.now()))
        with self._ws.reading() as conn:
            rows = conn.execute(query).all()
        return [
            _Pending(row.space_id, row.computation_id, row.destination_id, row.name)
            for row in rows
            if creates_audiences(row.type)
        ]

    async def create(
        self, hook: AudienceHook, computation_id: str | None = None
    ) -> list[ListFailure]:
        """Create (or find) the external audience of every pending connection; the failures.
        Each connection is claimed first, so two processes never both create one."""
        failures = []
        for pending in await asyncio.to_thread(self.pending, computation_id):
            if not await asyncio.to_thread(self._claim, pending):
                continue
            info = await asyncio.to_thread(
                self._computations.get, pending.space_id, pending.computation_id
            )
            [settings] = [
                d for d in info.destinations if d.destination_id == pending.destination_id
            ]
            audience_settings = dict(settings.audience_settings or {})
            given = audience_settings.pop(EXTERNAL_ID, None)
            if given is not None:
                name = "getAudience"
                payload: dict[str, Any] = {
                    "externalId": str(given),
                    "audienceSettings": audience_settings,
                }
            else:
                name = "createAudience"
                payload = {
                    "audienceName": info.name,
                    "audienceSettings": audience_settings,
                    "personas": {
                        "computation_id": info.id,
                        "computation_key": info.key,
                        "namespace": info.space_id,
                    },
                }
            try:
                result = await hook(pending.destination_id, name, payload)
                external = result.get("externalId") if isinstance(result, Mapping) else None
                if isinstance(external, bool) or not isinstance(external, str | int):
                    raise ValueError(f"{name} gave no externalId (it gave {result!r})")
            except Exception as exc:  # the destination's code: any failure is the hook's
                status = exc.outcome.status if isinstance(exc, HookError) else None
                message = f"{name} failed at {pending.destination!r}: {exc}" + (
                    f" (HTTP {status})" if status else ""
                )
                logger.warning("Engage: %s", message)
                await asyncio.to_thread(self._failed, pending, message)
                failures.append(
                    ListFailure(
                        pending.computation_id, pending.destination_id, pending.destination, message
                    )
                )
                continue
            await asyncio.to_thread(self._created, pending, str(external))
        return failures

    def _claim(self, pending: _Pending) -> bool:
        table = schema.engage_connections
        now = self._ws.now()
        with self._ws.writing() as conn:
            done = conn.execute(
                _row(table, pending)
                .where(table.c.external_audience_id.is_(None), _due(table, now))
                .values(audience_retry_at=now + CLAIM_SECONDS)
            )
            return done.rowcount == 1

    def _failed(self, pending: _Pending, message: str) -> None:
        table = schema.engage_connections
        with self._ws.writing() as conn:
            conn.execute(
                _row(table, pending)
                .where(table.c.external_audience_id.is_(None))
                .values(
                    audience_error=message[:2000], audience_retry_at=self._ws.now() + self._retry
                )
            )

    def _created(self, pending: _Pending, external_id: str) -> None:
        """Keep the id, and queue the initial upload: an entry for each current member."""
        table = schema.engage_connections
        info = self._computations.get(pending.space_id, pending.computation_id)
        [connection] = [
            replace(c, external_audience_id=external_id)
            for c, d in zip(connections(info), info.destinations, strict=True)
            if d.destination_id == pending.destination_id
        ]
        computation = info.computation()
        now = self._ws.now()
        with self._ws.writing() as conn:
            done = conn.execute(
                _row(table, pending)
                .where(table.c.external_audience_id.is_(None))
                .values(
                    external_audience_id=external_id,
                    audience_error=None,
                    audience_retry_at=None,
                    # this upload is the connection's backfill: batch runs send it no other
                    synced_at=now,
                )
            )
            if done.rowcount != 1:  # another process made it, or it was disconnected
                return
            messages = []
            for profile_id, identity in _members(conn, pending.space_id, info.key):
                messages += activation.messages(
                    pending.space_id,
                    computation,
                    True,
                    identity,
                    [connection],
                    at=now,
                    cause=f"list:{external_id}:{profile_id}",
                )
            outbox.add(conn, pending.space_id, messages, now)
            self._ws.bump(conn)  # the engine's connections now carry the id


def _due(table: sa.Table, now: int) -> sa.ColumnElement[bool]:
    return sa.or_(table.c.audience_retry_at.is_(None), table.c.audience_retry_at <= now)


def _row(table: sa.Table, pending: _Pending) -> sa.Update:
    return table.update().where(
        table.c.computation_id == pending.computation_id,
        table.c.destination_id == pending.destination_id,
    )


def _members(conn: DbConnection, space_id: str, key: str) -> list[tuple[str, Identity]]:
    """The audience's members now (the profiles whose audience trait is true), with their
    identifiers as activation keys them."""
    traits, profiles, identities = (
        schema.unify_profile_traits,
        schema.unify_profiles,
        schema.unify_identities,
    )
    members = [
        profile_id
        for profile_id, value in conn.execute(
            sa.select(traits.c.profile_id, traits.c.value).where(
                traits.c.space_id == space_id,
                traits.c.key == key,
                traits.c.trait_class == "audience",
                traits.c.present.is_(True),
            )
        )
        if value is True
    ]
    found: list[tuple[str, Identity]] = []
    for start in range(0, len(members), 500):
        chunk: Sequence[str] = members[start : start + 500]
        values: dict[str, dict[str, list[str]]] = {p: {} for p in chunk}
        for segment_id, kind, value in conn.execute(
            sa.select(profiles.c.segment_id, identities.c.type, identities.c.value)
            .join(identities, identities.c.profile == profiles.c.seq)
            .where(
                profiles.c.space_id == space_id,
                profiles.c.segment_id.in_(chunk),
                profiles.c.canonical.is_(None),
            )
            .order_by(identities.c.seq)
        ):
            values[segment_id].setdefault(kind, []).append(value)
        for profile_id in chunk:
            by_type = values[profile_id]
            if not by_type:
                continue
            users = by_type.get("user_id", [])
            found.append(
                (
                    profile_id,
                    Identity(
                        user_id=users[-1] if users else None,
                        emails=by_type.get("email", []),
                        anonymous_ids=by_type.get("anonymous_id", []),
                        values=by_type,
                    ),
                )
            )
    return found
