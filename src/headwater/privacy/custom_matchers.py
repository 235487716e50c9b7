"""A workspace's custom matchers (spec §9.3), kept in ``privacy_matchers``: at most 100.

Every change raises the configuration version, so the Inbox and masking, which build their
``Matchers`` from a ``ConfigSnapshot``, classify with it from their next reload.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from headwater.errors import ConflictError, InvalidError, NotFoundError
from headwater.privacy.matchers import MAX_CUSTOM, Matcher, Matchers, check_matcher, words
from headwater.store import schema
from headwater.store.workspace import WorkspaceStore, new_id


class CustomMatchers:
    def __init__(self, store: WorkspaceStore) -> None:
        self._store = store

    def all(self) -> list[Matcher]:
        t = schema.privacy_matchers
        with self._store.reading() as conn:
            rows = conn.execute(sa.select(t).order_by(t.c.created_at, t.c.name)).all()
        return [check_matcher(row.definition, id=row.id) for row in rows]

    def matchers(self) -> Matchers:
        """The defaults with these, ready to classify."""
        return Matchers(self.all())

    def get(self, id_or_name: str) -> Matcher:
        for matcher in self.all():
            if id_or_name in (matcher.id, matcher.name):
                return matcher
        raise NotFoundError(f"no custom matcher has the id or name {id_or_name!r}", "matcher")

    def create(self, data: object) -> Matcher:
        matcher = check_matcher(data)
        t = schema.privacy_matchers
        with self._store.writing() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            if count >= MAX_CUSTOM:
                raise InvalidError(
                    f"a workspace has at most {MAX_CUSTOM} custom matchers", "matchers"
                )
            self._check_free(conn, matcher.name, "")
            matcher_id = "pm_" + new_id()
            conn.execute(
                t.insert().values(
                    id=matcher_id,
                    name=matcher.name,
                    definition=_definition(data, matcher),
                    created_at=self._store.now(),
                )
            )
            self._store.bump(conn)
        return check_matcher(_definition(data, matcher), id=matcher_id)

    def update(self, id_or_name: str, data: object) -> Matcher:
        current = self.get(id_or_name)
        matcher = check_matcher(data)
        t = schema.privacy_matchers
        with self._store.writing() as conn:
            self._check_free(conn, matcher.name, current.id)
            conn.execute(
                t.update()
                .where(t.c.id == current.id)
                .values(name=matcher.name, definition=_definition(data, matcher))
            )
            self._store.bump(conn)
        return check_matcher(_definition(data, matcher), id=current.id)

    def delete(self, id_or_name: str) -> None:
        current = self.get(id_or_name)
        t = schema.privacy_matchers
        with self._store.writing() as conn:
            conn.execute(t.delete().where(t.c.id == current.id))
            self._store.bump(conn)

    def replace_all(self, items: list[Any]) -> None:
        """headwater.yaml's complete set: these matchers and no others."""
        checked = [check_matcher(item) for item in items]
        if len(checked) > MAX_CUSTOM:
            raise InvalidError(f"a workspace has at most {MAX_CUSTOM} custom matchers", "matchers")
        names = [words(m.name) for m in checked]
        if len(set(names)) != len(names):
            raise ConflictError("two custom matchers have the same name", "matchers")
        t = schema.privacy_matchers
        with self._store.writing() as conn:
            conn.execute(t.delete())
            for item, matcher in zip(items, checked, strict=True):
                conn.execute(
                    t.insert().values(
                        id="pm_" + new_id(),
                        name=matcher.name,
                        definition=_definition(item, matcher),
                        created_at=self._store.now(),
                    )
                )
            self._store.bump(conn)

    def _check_free(self, conn: Any, name: str, own_id: str) -> None:
        t = schema.privacy_matchers
        for row in conn.execute(sa.select(t.c.id, t.c.name)):
            if row.id != own_id and words(row.name) == words(name):
                raise ConflictError(f"a custom matcher is already named {name!r}", "name")


def _definition(data: object, matcher: Matcher) -> dict[str, Any]:
    """The stored JSON: the checked fields only."""
    found = matcher.to_json()
    del found["id"], found["type"]
    return found
