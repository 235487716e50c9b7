"""Engage's per-profile state rows (``engage_profiles``), read and written a pass at a time.

A pass reads the states of the profiles its events touch in one statement, writes those that
changed in one, and deletes those merges took away in one, whatever their number. On
PostgreSQL the ids and states travel as arrays in binary (``= ANY``, ``unnest``): one
Bind/Execute a row, or an IN list of bound parameters, costs the client and the server more
than Engage's evaluation of the event. On SQLite the ids go as one JSON array (``json_each``)
and the rows through the driver's ``executemany``, both without building a statement a call.

The statements go through ``exec_driver_sql``, not the driver's cursor, so the identity
graph's batch sends its unsent rows first (its ``before_cursor_execute`` hook).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from sqlalchemy.engine import Connection

# (profile id, state as ``encode_state`` gives it, due time in seconds or None)
Row = tuple[str, bytes, int | None]

_READ_PG = (
    "SELECT profile_id, state FROM engage_profiles "
    "WHERE space_id = %s AND profile_id = ANY(%b::text[])"
)
_READ_SQLITE = (
    "SELECT profile_id, state FROM engage_profiles "
    "WHERE space_id = ? AND profile_id IN (SELECT value FROM json_each(?))"
)
_CONFLICT = (
    "ON CONFLICT (space_id, profile_id) DO UPDATE SET state = excluded.state, "
    "due_at = excluded.due_at"
)
_WRITE_PG = (
    "INSERT INTO engage_profiles (space_id, profile_id, state, due_at) "
    "SELECT %s, u.profile_id, u.state, u.due_at "
    "FROM unnest(%b::text[], %b::bytea[], %b::bigint[]) AS u(profile_id, state, due_at) "
) + _CONFLICT
_WRITE_SQLITE = (
    "INSERT INTO engage_profiles (space_id, profile_id, state, due_at) VALUES (?, ?, ?, ?) "
) + _CONFLICT
_DELETE_PG = "DELETE FROM engage_profiles WHERE space_id = %s AND profile_id = ANY(%b::text[])"
_DELETE_SQLITE = (
    "DELETE FROM engage_profiles "
    "WHERE space_id = ? AND profile_id IN (SELECT value FROM json_each(?))"
)


def read(conn: Connection, space_id: str, profile_ids: Sequence[str]) -> dict[str, bytes]:
    """The stored states of those of ``profile_ids`` Engage has seen."""
    if not profile_ids:
        return {}
    if _pg(conn):
        rows = conn.exec_driver_sql(_READ_PG, (space_id, list(profile_ids)))
    else:
        rows = conn.exec_driver_sql(_READ_SQLITE, (space_id, _json_array(profile_ids)))
    return {profile_id: bytes(state) for profile_id, state in rows}


def write(conn: Connection, space_id: str, rows: Sequence[Row]) -> None:
    """Insert or replace the states of ``rows`` (each profile once)."""
    if not rows:
        return
    if _pg(conn):
        ids, states, due = (list(column) for column in zip(*rows, strict=True))
        conn.exec_driver_sql(_WRITE_PG, (space_id, ids, states, due))
    else:
        conn.exec_driver_sql(_WRITE_SQLITE, [(space_id, *row) for row in rows])


def delete(conn: Connection, space_id: str, profile_ids: Sequence[str]) -> None:
    if not profile_ids:
        return
    if _pg(conn):
        conn.exec_driver_sql(_DELETE_PG, (space_id, list(profile_ids)))
    else:
        conn.exec_driver_sql(_DELETE_SQLITE, (space_id, _json_array(profile_ids)))


def _pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _json_array(items: Sequence[str]) -> str:
    return msgspec.json.encode(list(items)).decode()
