"""Engage's part of erasing a subject's profiles: their real-time state (buckets, computed
values, audience memberships), batch results waiting for the identity pass, undelivered
audience and trait messages, SQL traits' last values, and journey instances with their step log.

It follows ``unify.erasure.ProfilesEraser`` in its transaction and its turn as the graph's
writer, so the identity pass never sees half of it. Rows are deleted, not evaluated: leaving an
audience this way emits no "Audience Exited" message (the data is gone; destinations that take
deletions get the regulation's own request).
"""

from __future__ import annotations

from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater.privacy.erasure import Subjects
from headwater.store import schema
from headwater.unify.erasure import (
    Found,
    Mentions,
    ProfilesEraser,
    chunks,
    decoded,
    delete_mentioning,
)


class EngageErasure:
    """``unify.erasure.Follower`` for Engage's tables."""

    def erase(self, conn: Connection, found: Found, subjects: Subjects) -> None:
        space_id, profile_ids = found.space_id, found.profile_ids
        for table in (
            schema.engage_profiles,
            schema.engage_batch_staged,
            schema.engage_journey_members,
        ):
            for part in chunks(profile_ids):
                conn.execute(
                    sa.delete(table).where(
                        table.c.space_id == space_id, table.c.profile_id.in_(part)
                    )
                )
        _erase_journey_log(conn, space_id, profile_ids)
        mentions = Mentions(subjects, found)
        if not mentions:
            return
        box = schema.engage_outbox
        delete_mentioning(conn, box.c.seq, [box.c.body], mentions, box.c.space_id == space_id)
        _erase_sql_trait_values(conn, space_id, mentions)


def _erase_journey_log(conn: Connection, space_id: str, profile_ids: Collection[str]) -> None:
    journeys, log = schema.engage_journeys, schema.engage_journey_log
    mine = sa.select(journeys.c.id).where(journeys.c.space_id == space_id).scalar_subquery()
    for part in chunks(profile_ids):
        conn.execute(sa.delete(log).where(log.c.journey_id.in_(mine), log.c.profile_id.in_(part)))


def _erase_sql_trait_values(conn: Connection, space_id: str, mentions: Mentions) -> None:
    """A SQL trait's last value per identifier: the subject's identifiers' rows, and an
    account's rows that name the subject as its user."""
    traits, values = schema.engage_sql_traits, schema.engage_sql_trait_values
    rows = conn.execute(
        sa.select(traits.c.id, traits.c.level).where(traits.c.space_id == space_id)
    ).all()
    by_type: dict[str, set[str]] = {}
    for type_, value in mentions.typed:
        by_type.setdefault(type_, set()).add(value)
    for trait_id, level in rows:
        for type_, wanted in sorted(by_type.items()):
            for part in chunks(wanted):
                conn.execute(
                    sa.delete(values).where(
                        values.c.trait_id == trait_id,
                        values.c.id_type == type_,
                        values.c.id_value.in_(part),
                    )
                )
        if level == "accounts":
            _erase_account_rows(conn, trait_id, mentions)


def _erase_account_rows(conn: Connection, trait_id: str, mentions: Mentions) -> None:
    values = schema.engage_sql_trait_values
    gone: list[tuple[str, str]] = []
    found = conn.execute(
        sa.select(values.c.id_type, values.c.id_value, values.c.row).where(
            values.c.trait_id == trait_id
        )
    )
    for id_type, id_value, row in found:
        if mentions(decoded(row)):
            gone.append((id_type, id_value))
    for id_type, id_value in gone:
        conn.execute(
            sa.delete(values).where(
                values.c.trait_id == trait_id,
                values.c.id_type == id_type,
                values.c.id_value == id_value,
            )
        )


def profiles_eraser(engine: Engine) -> ProfilesEraser:
    """The ``profiles`` eraser as the regulations runner uses it: the graph and Engage."""
    return ProfilesEraser(engine, followers=[EngageErasure()])
