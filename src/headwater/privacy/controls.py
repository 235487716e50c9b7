"""Privacy standard controls (spec §9.7, §24 step 3): Inventory fields removed at the source.

A control is per source (§9.7: "at the source level"; A-PR-5 sets one on an Android source and
not on an iOS one): block Red and/or Yellow. The stage runs after suppression and before
Protocols, so the removed field never reaches validation, the archive, the debugger, a
destination or a warehouse, and cannot be replayed. The rest of the event goes on. Only fields
in the Inventory are blocked; a matcher's guess never removes data.

The stage keeps, per source, the paths it blocks, rebuilt when the configuration version moves
(a classification bumps it), so a newly Red field is blocked from the next reload on. A source
without a control costs one dict probe a record; an event is decoded only when its raw bytes
hold one of the blocked keys.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater.errors import InvalidError
from headwater.privacy.matchers import last_key
from headwater.store import schema
from headwater.store.config_snapshot import ConfigSnapshot
from headwater.store.record import LogRecord
from headwater.store.workspace import WorkspaceStore

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class Control:
    source_id: str
    block_red: bool = False
    block_yellow: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "sourceId": self.source_id,
            "blockRed": self.block_red,
            "blockYellow": self.block_yellow,
        }


class Controls:
    """The controls of every source, kept in ``privacy_controls``."""

    def __init__(self, store: WorkspaceStore) -> None:
        self._store = store

    def set(self, source_id: str, *, block_red: object, block_yellow: object) -> Control:
        for name, value in (("blockRed", block_red), ("blockYellow", block_yellow)):
            if not isinstance(value, bool):
                raise InvalidError("must be true or false", name)
        t = schema.privacy_controls
        with self._store.writing() as conn:
            conn.execute(t.delete().where(t.c.source_id == source_id))
            if block_red or block_yellow:
                conn.execute(
                    t.insert().values(
                        source_id=source_id, block_red=block_red, block_yellow=block_yellow
                    )
                )
            self._store.bump(conn)
        return Control(source_id, bool(block_red), bool(block_yellow))

    def get(self, source_id: str) -> Control:
        return self.all().get(source_id, Control(source_id))

    def all(self) -> dict[str, Control]:
        t = schema.privacy_controls
        with self._store.reading() as conn:
            return {
                r.source_id: Control(r.source_id, bool(r.block_red), bool(r.block_yellow))
                for r in conn.execute(sa.select(t))
            }


@dataclass(frozen=True)
class Blocked:
    """What one source blocks: the paths as a tree (``{"properties": {"card_number": {}}}``,
    an empty dict being a leaf) and the keys as JSON bytes for the quick check."""

    tree: Mapping[str, Any]
    needles: re.Pattern[bytes]  # any of the blocked keys as a JSON string


def blocked_paths(engine: Engine) -> dict[str, Blocked]:
    """Per source with a control, the Inventory paths of the classes it blocks."""
    controls = schema.privacy_controls
    inventory = schema.privacy_inventory
    with engine.connect() as conn:
        rows = list(conn.execute(sa.select(controls)))
        if not rows:
            return {}
        classes = {r.path: r.classification for r in conn.execute(sa.select(inventory))}
    found: dict[str, Blocked] = {}
    for row in rows:
        paths = [
            path
            for path, chosen in classes.items()
            if (chosen == "red" and row.block_red) or (chosen == "yellow" and row.block_yellow)
        ]
        if paths:
            found[row.source_id] = compile_blocked(paths)
    return found


def compile_blocked(paths: list[str]) -> Blocked:
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        for part in path.split("."):
            node = node.setdefault(part, {})
        node.clear()  # a blocked parent takes its children with it
        node["\x00leaf"] = True
    keys = sorted({_encode(last_key(p)) for p in paths})
    return Blocked(tree, re.compile(b"|".join(re.escape(k) for k in keys)))


def strip(event: dict[str, Any], tree: Mapping[str, Any]) -> dict[str, Any] | None:
    """A copy of the event without the tree's paths (``$`` steps into every array item);
    None when none of them is there."""
    out: dict[str, Any] | None = _strip(event, tree)
    return out


def _strip(value: Any, tree: Mapping[str, Any]) -> Any:
    """The value without the tree's paths, or None when nothing is removed."""
    if isinstance(value, dict):
        out: dict[str, Any] | None = None
        for key, below in tree.items():
            if key not in value:
                continue
            if "\x00leaf" in below:
                if out is None:
                    out = dict(value)
                del out[key]
                continue
            inner = _strip(value[key], below)
            if inner is not None:
                if out is None:
                    out = dict(value)
                out[key] = inner
        return out
    if isinstance(value, list) and "$" in tree:
        below = tree["$"]
        changed = False
        items = []
        for item in value:
            if "\x00leaf" in below:
                changed = True  # `a.$` blocks the array's items: the array goes empty
                continue
            inner = _strip(item, below)
            changed = changed or inner is not None
            items.append(item if inner is None else inner)
        return items if changed else None
    return None


class PrivacyControlsStage:
    name = "privacy-controls"

    def __init__(
        self,
        engine: Engine,
        *,
        config_version: Callable[[], int],
        clock: Callable[[], float],
        refresh_interval: float = 1.0,
    ) -> None:
        empty: dict[str, Blocked] = {}
        self._blocked = ConfigSnapshot(
            config_version,
            lambda: blocked_paths(engine),
            empty,
            clock=clock,
            interval=refresh_interval,
        )
        self.removed = 0  # fields removed since start, for the benchmark and the log

    def refresh(self) -> None:
        self._blocked.refresh(force=True)

    def acquire(self, partition: int) -> None:
        """Nothing per partition: the stage keeps no state."""

    def release(self, partition: int) -> None:
        """Nothing per partition: the stage keeps no state."""

    def process(self, partition: int, records: list[LogRecord]) -> None:
        blocked = self._blocked.get()
        if not blocked:
            return
        find = blocked.get
        for record in records:
            found = find(record.source_id)
            if found is not None:
                self._apply(found, record)

    def _apply(self, blocked: Blocked, record: LogRecord) -> None:
        kept = []
        changed = False
        search = blocked.needles.search
        for raw in record.events:
            if search(memoryview(raw)) is None:
                kept.append(raw)
                continue
            event = _decode(raw)
            out = strip(event, blocked.tree) if isinstance(event, dict) else None
            if out is None:
                kept.append(raw)
                continue
            kept.append(msgspec.Raw(_encode(out)))
            changed = True
            self.removed += 1
        if changed:
            record.events = kept

    def commit_in(self, conn: Connection) -> None:
        """Nothing to write: a removed field leaves no trace (§9.7)."""

    def committed(self) -> None:
        """Nothing kept between passes."""

    def abandoned(self) -> None:
        """Nothing kept between passes."""
