"""The workspace's consent categories (spec/protocols-privacy-api.md §12.1).

A category has a ``categoryId`` (the key a CMP puts in ``context.consent.categoryPreferences``:
case-sensitive, not starting with a digit, fewer than 35 characters), a ``name`` (at most 20
characters, Reverse ETL's limit) and the destination types mapped to it. A mapping names a
destination *type* (the catalog id, ``amplitude``, ``actions:…``), so it covers every instance
of that destination, as Segment's does. A disabled category stops enforcing.

``headwater apply`` and the REST API both write through ``ConsentCategories``; every change bumps
the workspace's config version, and ``ConsentCache`` compiles the enabled categories into the
map the router reads per event: destination type → the categoryIds it needs.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from headwater.errors import ConflictError, InvalidError, NotFoundError
from headwater.store import schema
from headwater.store.config_snapshot import ConfigSnapshot
from headwater.store.workspace import UNSET, Unset, WorkspaceStore, is_unicode

MAX_CATEGORY_ID: Final = 34  # "fewer than 35 characters"
MAX_NAME: Final = 20  # Reverse ETL's limit, kept for every category
MAX_DESTINATIONS: Final = 1000

# destination type -> the categoryIds every one of which must be true for it
ConsentMap = Mapping[str, frozenset[str]]


@dataclass(frozen=True)
class ConsentCategory:
    category_id: str
    name: str
    destinations: tuple[str, ...]  # destination types, sorted
    enabled: bool
    created_at: int
    updated_at: int


def check_category_id(value: object, field: str = "categoryId") -> str:
    if not isinstance(value, str) or not value:
        raise InvalidError("must be a non-empty string", field)
    if len(value) > MAX_CATEGORY_ID:
        raise InvalidError(f"must be fewer than {MAX_CATEGORY_ID + 1} characters", field)
    if value[0].isdigit():
        raise InvalidError("must not start with a number", field)
    if not is_unicode(value) or any(c.isspace() or not c.isprintable() for c in value):
        raise InvalidError("must not contain spaces or control characters", field)
    return value


def check_name(value: object, field: str = "name") -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidError("must be a non-empty string", field)
    if len(value) > MAX_NAME:
        raise InvalidError(f"at most {MAX_NAME} characters", field)
    if not is_unicode(value) or any(not c.isprintable() for c in value):
        raise InvalidError("must not contain control characters or invalid Unicode", field)
    return value


def check_destinations(value: object, field: str = "destinations") -> tuple[str, ...]:
    """A list of destination types; whether each type exists is the caller's check (the
    catalog sits beside this package)."""
    if not isinstance(value, list | tuple) or len(value) > MAX_DESTINATIONS:
        raise InvalidError(f"must be a list of at most {MAX_DESTINATIONS} destination types", field)
    if not all(isinstance(t, str) and t and is_unicode(t) and len(t) <= 200 for t in value):
        raise InvalidError("each destination must be a destination type", field)
    return tuple(sorted(set(value)))


def compile_map(categories: Iterable[ConsentCategory]) -> dict[str, frozenset[str]]:
    """The enabled categories as destination type → categoryIds (disabled ones enforce
    nothing, §12.1)."""
    found: dict[str, set[str]] = {}
    for category in categories:
        if category.enabled:
            for destination_type in category.destinations:
                found.setdefault(destination_type, set()).add(category.category_id)
    return {t: frozenset(ids) for t, ids in found.items()}


def _category(row: Row[Any]) -> ConsentCategory:
    destinations = row.destinations if isinstance(row.destinations, list) else []
    return ConsentCategory(
        category_id=row.category_id,
        name=row.name,
        destinations=tuple(destinations),
        enabled=bool(row.enabled),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def load_categories(conn: Connection) -> builtins.list[ConsentCategory]:
    t = schema.consent_categories
    return [_category(r) for r in conn.execute(sa.select(t).order_by(t.c.category_id))]


class ConsentCategories:
    """The workspace's consent categories, on the workspace store's transactions.

    ``on_first`` runs in the transaction that creates the workspace's first category (Protocols
    adds ``Segment Consent Preference Updated`` to every plan then, §12.4)."""

    def __init__(
        self,
        workspace: WorkspaceStore,
        on_first: Callable[[Connection, int], None] | None = None,
    ) -> None:
        self._ws = workspace
        self._on_first = on_first

    def list(self) -> builtins.list[ConsentCategory]:
        with self._ws.reading() as conn:
            return load_categories(conn)

    def get(self, category_id: str) -> ConsentCategory | None:
        t = schema.consent_categories
        with self._ws.reading() as conn:
            row = conn.execute(sa.select(t).where(t.c.category_id == category_id)).first()
            return _category(row) if row is not None else None

    def require(self, category_id: str) -> ConsentCategory:
        found = self.get(category_id)
        if found is None:
            raise NotFoundError(f"no consent category {category_id!r}")
        return found

    def create(
        self,
        category_id: str,
        name: str,
        destinations: Iterable[str] = (),
        *,
        enabled: bool = True,
    ) -> ConsentCategory:
        check_category_id(category_id)
        check_name(name)
        types = check_destinations(list(destinations))
        t = schema.consent_categories
        with self._ws.writing() as conn:
            existing = conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            taken = conn.execute(sa.select(t.c.category_id).where(t.c.category_id == category_id))
            if taken.first() is not None:
                raise ConflictError(f"a consent category {category_id!r} exists", "categoryId")
            now = self._ws.now()
            conn.execute(
                t.insert().values(
                    category_id=category_id,
                    name=name,
                    destinations=list(types),
                    enabled=bool(enabled),
                    created_at=now,
                    updated_at=now,
                )
            )
            if existing == 0 and self._on_first is not None:
                self._on_first(conn, now)
            self._ws.bump(conn)
        return self.require(category_id)

    def update(
        self,
        category_id: str,
        *,
        name: str | Unset = UNSET,
        destinations: Iterable[str] | Unset = UNSET,
        enabled: bool | Unset = UNSET,
    ) -> ConsentCategory:
        values: dict[str, Any] = {}
        if not isinstance(name, Unset):
            values["name"] = check_name(name)
        if not isinstance(destinations, Unset):
            values["destinations"] = list(check_destinations(list(destinations)))
        if not isinstance(enabled, Unset):
            if not isinstance(enabled, bool):
                raise InvalidError("must be true or false", "enabled")
            values["enabled"] = enabled
        t = schema.consent_categories
        with self._ws.writing() as conn:
            row = conn.execute(sa.select(t).where(t.c.category_id == category_id)).first()
            if row is None:
                raise NotFoundError(f"no consent category {category_id!r}")
            if values:
                values["updated_at"] = self._ws.now()
                conn.execute(t.update().where(t.c.category_id == category_id).values(**values))
                self._ws.bump(conn)
        return self.require(category_id)

    def delete(self, category_id: str) -> None:
        t = schema.consent_categories
        with self._ws.writing() as conn:
            gone = conn.execute(t.delete().where(t.c.category_id == category_id)).rowcount
            if not gone:
                raise NotFoundError(f"no consent category {category_id!r}")
            self._ws.bump(conn)


class ConsentCache:
    """The compiled consent map, rebuilt when the configuration version moves (checked at most
    once a second, like the destination cache)."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.monotonic) -> None:
        workspace = WorkspaceStore(engine)

        def build() -> dict[str, frozenset[str]]:
            with workspace.reading() as conn:
                return compile_map(load_categories(conn))

        self._snapshot: ConfigSnapshot[dict[str, frozenset[str]]] = ConfigSnapshot(
            workspace.config_version, build, {}, clock=clock
        )

    def current(self) -> ConsentMap:
        return self._snapshot.get()
