"""CSV downloads of an audience's members or a computed trait's values (§5.6, §13.9, A-UE-47).

A snapshot of the values on the profiles when it is asked for (the last computation's, as
Segment says), one row per profile:

- ``unformatted``: ``key,value,external_ids`` for a computed trait and ``key,external_ids,
  traits`` for an audience; ``external_ids`` is JSON ``{type: [values]}``, ``traits`` JSON of the
  traits asked for;
- ``indexed`` (a trait) / ``formatted`` (an audience): the same first columns, then one column
  per identifier type the rows hold, several values as ``email``, ``email_1``, …; an audience's
  asked-for traits as columns after them;
- ``rows`` (a trait): one column per identifier type, extra values on extra rows that repeat
  the first three columns.

One download per computation every 5 minutes (``Throttled``), as Segment allows one
generation per 5 minutes.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.engage.computations import ComputationInfo
from headwater.errors import ConflictError, InvalidError
from headwater.store import schema

Format = Literal["unformatted", "indexed", "rows", "formatted"]
FORMATS: dict[str, tuple[str, ...]] = {
    "trait": ("unformatted", "indexed", "rows"),
    "audience": ("unformatted", "formatted"),
}
EVERY = 300.0  # seconds between two downloads of one computation
CHUNK = 1_000  # profiles per identifier query


class Throttled(ConflictError):
    """A second download of one computation within 5 minutes."""


class Downloads:
    """Remembers when each computation was last downloaded (in this process)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def claim(self, computation_id: str) -> None:
        now = self._clock()
        with self._lock:
            last = self._last.get(computation_id)
            if last is not None and now - last < EVERY:
                wait = int(EVERY - (now - last)) + 1
                raise Throttled(
                    "one CSV of a computation can be generated every 5 minutes; "
                    f"try again in {wait} s",
                    "download",
                )
            self._last[computation_id] = now


def csv_rows(
    engine: Engine,
    info: ComputationInfo,
    fmt: str,
    traits: Sequence[str] = (),
) -> Iterator[str]:
    """The CSV text, a chunk at a time."""
    if fmt not in FORMATS[info.kind]:
        raise InvalidError(
            f"format must be one of {', '.join(FORMATS[info.kind])} for a "
            f"{'computed trait' if info.kind == 'trait' else 'audience'}",
            "format",
        )
    members = list(_members(engine, info))
    ids = _identifiers(engine, info.space_id, [p for p, _ in members])
    extra = _traits(engine, info.space_id, [p for p, _ in members], traits) if traits else {}
    types = sorted({t for found in ids.values() for t in found})
    widths = {t: max(len(found.get(t, ())) for found in ids.values()) for t in types}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    if info.kind == "trait":
        head = ["key", "value", "external_ids"]
        if fmt == "indexed":
            head += [_indexed(t, n) for t in types for n in range(widths[t])]
        elif fmt == "rows":
            head += types
    else:
        head = ["key", "external_ids"] + (["traits"] if fmt == "unformatted" else [])
        if fmt == "formatted":
            head += [_indexed(t, n) for t in types for n in range(widths[t])] + list(traits)
    writer.writerow(head)
    for profile_id, value in members:
        found = ids.get(profile_id, {})
        external = json.dumps(found, separators=(",", ":"), ensure_ascii=False)
        if info.kind == "trait":
            first = [profile_id, _cell(value), external]
            if fmt == "unformatted":
                writer.writerow(first)
            elif fmt == "indexed":
                writer.writerow(first + _spread(found, types, widths))
            else:
                depth = max((len(found.get(t, ())) for t in types), default=1) or 1
                for n in range(depth):
                    writer.writerow(
                        first + [found[t][n] if n < len(found.get(t, ())) else "" for t in types]
                    )
        else:
            own = extra.get(profile_id, {})
            if fmt == "unformatted":
                shown = json.dumps(own, separators=(",", ":"), ensure_ascii=False)
                writer.writerow([profile_id, external, shown])
            else:
                writer.writerow(
                    [profile_id, external]
                    + _spread(found, types, widths)
                    + [_cell(own.get(t)) for t in traits]
                )
        if buffer.tell() > 64_000:
            yield flush()
    yield flush()


def _members(engine: Engine, info: ComputationInfo) -> Iterator[tuple[str, Any]]:
    """(profile, value) of every profile holding the computation's value (an audience: its
    members)."""
    table = schema.unify_profile_traits
    query = (
        sa.select(table.c.profile_id, table.c.value)
        .where(
            table.c.space_id == info.space_id,
            table.c.key == info.key,
            table.c.present.is_(True),
            table.c.trait_class == ("audience" if info.kind == "audience" else "computed_trait"),
        )
        .order_by(table.c.profile_id)
    )
    with engine.connect() as conn:
        for profile_id, value in conn.execute(query):  # JSON: decoded by the column type
            if info.kind == "audience" and value is not True:
                continue
            yield profile_id, value


def _identifiers(
    engine: Engine, space_id: str, profile_ids: Sequence[str]
) -> dict[str, dict[str, list[str]]]:
    profiles, identities = schema.unify_profiles, schema.unify_identities
    found: dict[str, dict[str, list[str]]] = {}
    with engine.connect() as conn:
        for start in range(0, len(profile_ids), CHUNK):
            chunk = profile_ids[start : start + CHUNK]
            rows = conn.execute(
                sa.select(profiles.c.segment_id, identities.c.type, identities.c.value)
                .join(identities, identities.c.profile == profiles.c.seq)
                .where(profiles.c.space_id == space_id, profiles.c.segment_id.in_(chunk))
                .order_by(profiles.c.segment_id, identities.c.type, identities.c.seq)
            )
            for segment_id, type_, value in rows:
                found.setdefault(segment_id, {}).setdefault(type_, []).append(value)
    return found


def _traits(
    engine: Engine, space_id: str, profile_ids: Sequence[str], keys: Sequence[str]
) -> dict[str, dict[str, Any]]:
    table = schema.unify_profile_traits
    found: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        for start in range(0, len(profile_ids), CHUNK):
            chunk = profile_ids[start : start + CHUNK]
            rows = conn.execute(
                sa.select(table.c.profile_id, table.c.key, table.c.value).where(
                    table.c.space_id == space_id,
                    table.c.profile_id.in_(chunk),
                    table.c.key.in_(list(keys)),
                    table.c.present.is_(True),
                )
            )
            for profile_id, key, value in rows:
                found.setdefault(profile_id, {})[key] = value
    return found


def _indexed(type_: str, n: int) -> str:
    return type_ if n == 0 else f"{type_}_{n}"


def _spread(found: dict[str, list[str]], types: Sequence[str], widths: dict[str, int]) -> list[str]:
    return [
        found[t][n] if n < len(found.get(t, ())) else "" for t in types for n in range(widths[t])
    ]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
