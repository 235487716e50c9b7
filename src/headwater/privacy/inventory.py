"""The Data Inventory (spec §9.6): fields a user classified, by path, for every source.

Adding a field classifies it everywhere: the path (``properties.card_number``) is the key,
whatever source or event sends it. A classification raises the configuration version, so the
privacy controls stage blocks a newly Red field on its next reload (§9.7: "immediately").
``masked`` remembers that a field was ever Red or Yellow: re-marking it Green keeps it masked
(§9.5).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from headwater.errors import InvalidError, NotFoundError
from headwater.privacy.matchers import CLASSIFICATIONS, Classification
from headwater.store import schema
from headwater.store.workspace import WorkspaceStore, is_unicode

MAX_PATH = 255
ROOTS = ("context", "traits", "properties")  # where the Portal looks (§9.1)


@dataclass(frozen=True)
class InventoryField:
    path: str
    classification: Classification
    masked: bool
    updated_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "classification": self.classification.upper(),
            "masked": self.masked,
            "updatedAt": self.updated_at,
        }


def check_path(path: object, field: str = "path") -> str:
    """A field path as the Inbox lists it: ``context.…``, ``traits.…`` or ``properties.…``."""
    if (
        not isinstance(path, str)
        or not path
        or len(path) > MAX_PATH
        or "\x00" in path
        or not is_unicode(path)
    ):
        raise InvalidError(f"must be a field path of at most {MAX_PATH} characters", field)
    root, dot, rest = path.partition(".")
    if root not in ROOTS or not dot or not rest or "" in rest.split("."):
        raise InvalidError("must start with context., traits. or properties.", field)
    return path


def check_classification(value: object, field: str = "classification") -> Classification:
    if not isinstance(value, str) or value.lower() not in CLASSIFICATIONS:
        raise InvalidError("must be one of RED, YELLOW, GREEN", field)
    found: Classification = value.lower()  # type: ignore[assignment]
    return found


class Inventory:
    def __init__(self, store: WorkspaceStore, clock: Callable[[], float] | None = None) -> None:
        self._store = store
        self._clock = clock

    def _now(self) -> int:
        return int(self._clock()) if self._clock is not None else self._store.now()

    def classify(self, path: object, classification: object) -> InventoryField:
        """Add the field to the Inventory (or change its class)."""
        field = check_path(path)
        chosen = check_classification(classification)
        t = schema.privacy_inventory
        now = self._now()
        with self._store.writing() as conn:
            row = conn.execute(sa.select(t).where(t.c.path == field)).first()
            masked = chosen != "green" or bool(row is not None and row.masked)
            values = {"classification": chosen, "masked": masked, "updated_at": now}
            if row is None:
                conn.execute(t.insert().values(path=field, **values))
            else:
                conn.execute(t.update().where(t.c.path == field).values(**values))
            self._store.bump(conn)
        return InventoryField(field, chosen, masked, now)

    def remove(self, path: str) -> None:
        t = schema.privacy_inventory
        with self._store.writing() as conn:
            if not conn.execute(t.delete().where(t.c.path == path)).rowcount:
                raise NotFoundError(f"{path!r} is not in the inventory", "path")
            self._store.bump(conn)

    def fields(self, classification: str | None = None) -> list[InventoryField]:
        t = schema.privacy_inventory
        query = sa.select(t).order_by(t.c.path)
        if classification is not None:
            query = query.where(t.c.classification == check_classification(classification))
        with self._store.reading() as conn:
            return [
                InventoryField(r.path, r.classification, bool(r.masked), int(r.updated_at))
                for r in conn.execute(query)
            ]

    def classes(self) -> dict[str, Classification]:
        return {f.path: f.classification for f in self.fields()}

    def csv(self) -> str:
        """The whole inventory (§9.6: whatever a UI filter shows), with where each field
        was seen."""
        inbox = schema.privacy_inbox
        sources = schema.sources
        seen: dict[str, tuple[set[str], set[str], int]] = {}
        with self._store.reading() as conn:
            rows = conn.execute(
                sa.select(inbox.c.path, inbox.c.events, inbox.c.last_seen, sources.c.name).join(
                    sources, sources.c.id == inbox.c.source_id
                )
            )
            for row in rows:
                names, events, last = seen.setdefault(row.path, (set(), set(), 0))
                names.add(row.name)
                events.update(e for e in row.events or [] if isinstance(e, str))
                seen[row.path] = (names, events, max(last, int(row.last_seen)))
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["Field", "Classification", "Sources", "Events", "Last Seen"])
        for item in self.fields():
            names, events, last = seen.get(item.path, (set(), set(), 0))
            writer.writerow(
                [
                    item.path,
                    item.classification.upper(),
                    _cell("; ".join(sorted(names))),
                    _cell("; ".join(sorted(events))),
                    last or "",
                ]
            )
        return out.getvalue()


def _cell(text: str) -> str:
    """A spreadsheet must not read a source's or event's name as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
