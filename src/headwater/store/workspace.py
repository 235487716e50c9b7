"""The workspace model: the workspace, its sources and their write keys.

Both ``headwater apply`` and the REST API write through this one class, so the rules (unique
names, slugs and keys, at least one write key per source, rotation with a grace period) hold
whichever door a change comes in by. Every change bumps ``config_version`` in ``meta`` inside
the same transaction: ingest processes poll that one row to know when to reload their
write-key map, instead of re-reading every source every second.

One workspace per deployment is the supported shape; the tables allow several, and reads that
need "the" workspace take the oldest.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
import secrets
import string
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from headwater.errors import ConflictError, InvalidError, NotFoundError
from headwater.store import schema
from headwater.store.transactions import Transactions

BASE62 = string.ascii_letters + string.digits
ID_LENGTH = 10
WRITE_KEY_LENGTH = 32
MAX_NAME_LENGTH = 200
MAX_WRITE_KEY_LENGTH = 200
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
CONFIG_VERSION_KEY = "config_version"
DEFAULT_WORKSPACE_NAME = "default"
# Settings are configuration, not event data: a few levels are plenty, and every reader
# (redaction, YAML export, destination definitions) walks them recursively.
MAX_SETTINGS_DEPTH = 32

# Write keys travel as the HTTP Basic user name (no ':') and in URLs (pixel API), so keep them
# to characters that need no escaping anywhere.
_WRITE_KEY_RE = re.compile(r"[A-Za-z0-9_.~-]+")
_SLUG_RE = re.compile(r"[a-z0-9][a-z0-9_]*")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# --- errors ----------------------------------------------------------------------------------


# --- records ---------------------------------------------------------------------------------


HIPAA_ELIGIBLE: Final = "hipaaEligible"  # the workspace setting's key


@dataclass(frozen=True)
class Workspace:
    id: str
    name: str
    slug: str
    settings: Mapping[str, Any]
    created_at: int

    @property
    def hipaa_eligible(self) -> bool:
        """Segment's HIPAA-eligible workspace flag (§13): its members' sessions end after 15
        idle minutes."""
        return bool(self.settings.get(HIPAA_ELIGIBLE))


@dataclass(frozen=True)
class SourceInfo:
    id: str
    workspace_id: str
    name: str
    slug: str
    enabled: bool
    settings: Mapping[str, Any]
    # Active keys only; the current key first, keys in their grace period after it.
    write_keys: tuple[str, ...]
    created_at: int
    updated_at: int
    # The source function it runs (functions.store.FunctionStore.attach_source) and its
    # settings for it, secrets included: for running it only, never for display.
    function_id: str | None = None
    function_settings: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class WriteKey:
    key: str
    source_id: str
    created_at: int
    expires_at: int | None


class SourcePage(NamedTuple):
    sources: list[SourceInfo]
    next_cursor: str | None
    total: int


class Unset(enum.Enum):
    UNSET = 0


UNSET = Unset.UNSET
"""Marks an ``update_source`` argument that was not given (``None`` can be a value)."""


# --- values ----------------------------------------------------------------------------------


def new_id() -> str:
    return "".join(secrets.choice(BASE62) for _ in range(ID_LENGTH))


def new_write_key() -> str:
    return "".join(secrets.choice(BASE62) for _ in range(WRITE_KEY_LENGTH))


def slugify(name: str, fallback: str = "source") -> str:
    """The slug a name gets by default: lowercase, runs of other characters as one ``_``."""
    slug = _NOT_ALNUM.sub("_", name.lower()).strip("_")
    return slug[:MAX_NAME_LENGTH] or fallback


def check_name(name: object, field: str = "name") -> str:
    if not isinstance(name, str):
        raise InvalidError("must be a string", field)
    if not name.strip():
        raise InvalidError("must not be empty", field)
    if name != name.strip():
        raise InvalidError("must not start or end with whitespace", field)
    if _CONTROL.search(name):
        raise InvalidError("must not contain control characters", field)
    if not is_unicode(name):
        raise InvalidError(_NOT_UNICODE, field)
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidError(f"must be at most {MAX_NAME_LENGTH} characters", field)
    return name


def check_slug(slug: object, field: str = "slug") -> str:
    if not isinstance(slug, str) or not _SLUG_RE.fullmatch(slug):
        raise InvalidError(
            "must be lowercase letters, digits and '_', starting with a letter or digit", field
        )
    if len(slug) > MAX_NAME_LENGTH:
        raise InvalidError(f"must be at most {MAX_NAME_LENGTH} characters", field)
    return slug


def check_write_key(key: object, field: str = "write_key") -> str:
    if not isinstance(key, str) or not _WRITE_KEY_RE.fullmatch(key):
        raise InvalidError("must be letters, digits, '_', '-', '.' or '~'", field)
    if len(key) > MAX_WRITE_KEY_LENGTH:
        raise InvalidError(f"must be at most {MAX_WRITE_KEY_LENGTH} characters", field)
    return key


_NOT_UNICODE = "must be valid Unicode text (no lone UTF-16 surrogates such as \\ud800)"


def is_unicode(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8: JSON's ``\\ud800`` escape gives one that cannot."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def non_unicode_path(value: object) -> str | None:
    """Where in a decoded JSON value a string (or key) is not valid Unicode, or None."""
    stack: list[tuple[object, str]] = [(value, "")]
    while stack:
        current, path = stack.pop()
        if isinstance(current, str):
            if not is_unicode(current):
                return path or "(the value itself)"
        elif isinstance(current, Mapping):
            for key, child in current.items():
                child_path = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and not is_unicode(key):
                    return child_path.encode("utf-8", "backslashreplace").decode()
                stack.append((child, child_path))
        elif isinstance(current, list | tuple):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(current))
    return None


def check_settings(settings: object, field: str = "settings") -> dict[str, Any]:
    if not isinstance(settings, Mapping):
        raise InvalidError("must be an object", field)
    depth = too_deep_at(settings, MAX_SETTINGS_DEPTH)
    if depth:
        raise InvalidError(
            f"must nest at most {MAX_SETTINGS_DEPTH} levels of objects and "
            f"arrays (found more at {depth})",
            field,
        )
    try:
        # A round trip through JSON both checks the value and takes a private copy.
        text = json.dumps(dict(settings), allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidError(_NOT_UNICODE, field) from None
    except (TypeError, ValueError) as exc:
        raise InvalidError(f"must be JSON: {exc}", field) from exc
    copy: dict[str, Any] = json.loads(text)
    return copy


def too_deep_at(value: object, limit: int) -> str | None:
    """The dotted path of the first value nested past ``limit`` levels, or None.

    Iterative, so a value nested deeper than Python's recursion limit is measured too.
    """
    stack: list[tuple[object, int, str]] = [(value, 1, "")]
    while stack:
        current, depth, path = stack.pop()
        if isinstance(current, Mapping):
            children: Iterator[tuple[str, object]] = (
                (f"{path}.{key}" if path else str(key), child) for key, child in current.items()
            )
        elif isinstance(current, list | tuple):
            children = ((f"{path}[{i}]", child) for i, child in enumerate(current))
        else:
            continue
        if depth > limit:
            return path[:200] + ("…" if len(path) > 200 else "")
        stack.extend((child, depth + 1, child_path) for child_path, child in children)
    return None


def _encode_cursor(after: str | None) -> str:
    raw = json.dumps({"after": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        after = json.loads(raw)["after"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise InvalidError("is not a cursor this server gave out", "cursor") from exc
    if after is not None and not isinstance(after, str):
        raise InvalidError("is not a cursor this server gave out", "cursor")
    return after


FIRST_PAGE = _encode_cursor(None)
"""The cursor of the first page (what ``pagination.current`` shows when none was given)."""


def _key_order(key: WriteKey) -> tuple[int, int, int, str]:
    # Keys without expiry (the current ones) first, then the longest-lived, newest first.
    return (
        0 if key.expires_at is None else 1,
        -(key.expires_at or 0),
        -key.created_at,
        key.key,
    )


# --- the store -------------------------------------------------------------------------------


class WorkspaceStore:
    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock
        self._transactions = Transactions(engine)

    @property
    def engine(self) -> Engine:
        return self._engine

    def now(self) -> int:
        """The store's clock in whole seconds (key expiry is decided on this)."""
        return int(self._clock())

    # --- transactions (store/transactions.py) ---------------------------------------------------

    def atomic(self) -> AbstractContextManager[None]:
        """Run several changes in one transaction: all of them happen, or none."""
        return self._transactions.atomic()

    def writing(self) -> AbstractContextManager[Connection]:
        """The current ``atomic`` transaction, or a new write transaction."""
        return self._transactions.writing()

    def reading(self) -> AbstractContextManager[Connection]:
        """The current ``atomic`` transaction, or a connection for reading."""
        return self._transactions.reading()

    # --- meta and the config version -----------------------------------------------------------

    def set_setting(self, key: str, value: Any) -> None:
        """One of the workspace's settings (its ``settings`` JSON), creating the workspace if
        there is none yet."""
        with self.writing() as conn:
            self.workspace_id(conn, create=True)
            ws = schema.workspaces
            row = conn.execute(
                sa.select(ws.c.id, ws.c.settings).order_by(ws.c.created_at, ws.c.id).limit(1)
            ).one()
            settings: dict[str, Any] = dict(row.settings or {})
            if key in settings and settings[key] == value:
                return
            settings[key] = value
            conn.execute(ws.update().where(ws.c.id == row.id).values(settings=settings))
            self.bump(conn)

    def get_meta(self, key: str) -> str | None:
        with self.reading() as conn:
            value: str | None = conn.execute(
                sa.select(schema.meta.c.value).where(schema.meta.c.key == key)
            ).scalar_one_or_none()
            return value

    def set_meta(self, key: str, value: str) -> None:
        with self.writing() as conn:
            insert = self._insert(schema.meta).values(key=key, value=value)
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=[schema.meta.c.key], set_={"value": insert.excluded.value}
                )
            )

    def delete_meta(self, key: str) -> None:
        with self.writing() as conn:
            conn.execute(schema.meta.delete().where(schema.meta.c.key == key))

    def config_version(self) -> int:
        value = self.get_meta(CONFIG_VERSION_KEY)
        return int(value) if value else 0

    def _insert(self, table: sa.Table) -> Any:
        return self._transactions.insert(table)

    def bump(self, conn: Connection) -> None:
        """Raise the config version: processes caching the configuration reload it."""
        # One atomic upsert, so concurrent writers on PostgreSQL never lose a bump.
        value = schema.meta.c.value
        conn.execute(
            self._insert(schema.meta)
            .values(key=CONFIG_VERSION_KEY, value="1")
            .on_conflict_do_update(
                index_elements=[schema.meta.c.key],
                set_={"value": sa.cast(sa.cast(value, sa.BigInteger) + 1, sa.Text)},
            )
        )

    # --- the workspace -------------------------------------------------------------------------

    def workspace(self) -> Workspace | None:
        with self.reading() as conn:
            row = self._workspace_row(conn)
        return _workspace(row) if row is not None else None

    def ensure_workspace(self, name: str) -> Workspace:
        """Create the workspace, or rename it; its id and slug never change."""
        check_name(name, "workspace")
        with self.writing() as conn:
            row = self._workspace_row(conn)
            if row is None:
                self._create_workspace(conn, name)
            elif row.name != name:
                conn.execute(
                    schema.workspaces.update()
                    .where(schema.workspaces.c.id == row.id)
                    .values(name=name)
                )
                self.bump(conn)
            new_row = self._workspace_row(conn)
        assert new_row is not None
        return _workspace(new_row)

    def _workspace_row(self, conn: Connection) -> Row[Any] | None:
        ws = schema.workspaces
        return conn.execute(sa.select(ws).order_by(ws.c.created_at, ws.c.id).limit(1)).first()

    def _create_workspace(self, conn: Connection, name: str) -> str:
        ws = schema.workspaces
        taken = set(conn.execute(sa.select(ws.c.slug)).scalars())
        workspace_id = new_id()
        conn.execute(
            ws.insert().values(
                id=workspace_id,
                name=name,
                slug=unique_slug(slugify(name), taken),
                settings={},
                created_at=self.now(),
            )
        )
        self.bump(conn)
        return workspace_id

    def workspace_id(self, conn: Connection, *, create: bool = False) -> str | None:
        row = self._workspace_row(conn)
        if row is not None:
            return str(row.id)
        # A source needs a workspace; the first one made implicitly is called "default".
        return self._create_workspace(conn, DEFAULT_WORKSPACE_NAME) if create else None

    # --- reading sources -----------------------------------------------------------------------

    def get_source(self, id_or_name: str) -> SourceInfo | None:
        with self.reading() as conn:
            row = self._find(conn, id_or_name)
            return self._sources(conn, [row])[0] if row is not None else None

    def list_sources(
        self,
        *,
        cursor: str | None = None,
        count: int = DEFAULT_PAGE_SIZE,
        only: Collection[str] | None = None,
    ) -> SourcePage:
        """One page of the workspace's sources by name (of those whose ids are in ``only``, if
        given); cursors are opaque and stable."""
        _check_count(count)
        after = _decode_cursor(cursor) if cursor else None
        src = schema.sources
        with self.reading() as conn:
            workspace_id = self.workspace_id(conn)
            if workspace_id is None:
                return SourcePage([], None, 0)
            where = [src.c.workspace_id == workspace_id]
            if only is not None:
                where.append(src.c.id.in_(list(only)))
            query = sa.select(src).where(*where)
            if after is not None:
                query = query.where(src.c.name > after)
            rows = list(conn.execute(query.order_by(src.c.name).limit(count + 1)))
            total = conn.execute(
                sa.select(sa.func.count()).select_from(src).where(*where)
            ).scalar_one()
            page = self._sources(conn, rows[:count])
        next_cursor = _encode_cursor(rows[count - 1].name) if len(rows) > count else None
        return SourcePage(page, next_cursor, int(total))

    def all_sources(self) -> list[SourceInfo]:
        """Every source of the workspace, by name (``list_sources`` page after page)."""
        found: list[SourceInfo] = []
        cursor: str | None = None
        while True:
            page = self.list_sources(cursor=cursor, count=MAX_PAGE_SIZE)
            found += page.sources
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor

    def previous_cursor(
        self,
        cursor: str | None,
        count: int = DEFAULT_PAGE_SIZE,
        only: Collection[str] | None = None,
    ) -> str | None:
        """The cursor of the page before ``cursor``'s (None on the first page)."""
        _check_count(count)
        after = _decode_cursor(cursor) if cursor else None
        if after is None:
            return None
        src = schema.sources
        with self.reading() as conn:
            workspace_id = self.workspace_id(conn)
            where = [src.c.workspace_id == workspace_id, src.c.name <= after]
            if only is not None:
                where.append(src.c.id.in_(list(only)))
            names = list(
                conn.execute(
                    sa.select(src.c.name).where(*where).order_by(src.c.name.desc()).limit(count + 1)
                ).scalars()
            )
        return _encode_cursor(names[count]) if len(names) > count else FIRST_PAGE

    def write_keys(self, id_or_name: str) -> list[WriteKey]:
        """A source's active write keys with their expiry (None: no expiry)."""
        with self.reading() as conn:
            source_id = self.require(conn, id_or_name).id
            return self._active_keys(conn, [source_id]).get(source_id, [])

    def write_key_index(self) -> dict[str, SourceInfo]:
        """Every active write key → its source, in two queries (the Tracking API's cache)."""
        with self.reading() as conn:
            rows = list(conn.execute(sa.select(schema.sources)))
            sources = self._sources(conn, rows, all_keys=True)
        return {key: source for source in sources for key in source.write_keys}

    def _find(self, conn: Connection, id_or_name: str) -> Row[Any] | None:
        src = schema.sources
        row = conn.execute(sa.select(src).where(src.c.id == id_or_name)).first()
        if row is not None:
            return row
        workspace_id = self.workspace_id(conn)
        if workspace_id is None:
            return None
        return conn.execute(
            sa.select(src).where(src.c.workspace_id == workspace_id, src.c.name == id_or_name)
        ).first()

    def require(self, conn: Connection, id_or_name: str) -> Row[Any]:
        """The source's row, by id or name; NotFoundError when there is none."""
        row = self._find(conn, id_or_name)
        if row is None:
            raise NotFoundError(f"no source has the id or name {id_or_name!r}")
        return row

    def _active_keys(
        self, conn: Connection, source_ids: Sequence[str] | None
    ) -> dict[str, list[WriteKey]]:
        wk = schema.write_keys
        query = sa.select(wk).where(sa.or_(wk.c.expires_at.is_(None), wk.c.expires_at > self.now()))
        if source_ids is not None:
            query = query.where(wk.c.source_id.in_(source_ids))
        keys: dict[str, list[WriteKey]] = {}
        for row in conn.execute(query):
            keys.setdefault(row.source_id, []).append(
                WriteKey(row.key, row.source_id, row.created_at, row.expires_at)
            )
        for group in keys.values():
            group.sort(key=_key_order)
        return keys

    def _sources(
        self, conn: Connection, rows: Sequence[Row[Any]], *, all_keys: bool = False
    ) -> list[SourceInfo]:
        if not rows:
            return []
        keys = self._active_keys(conn, None if all_keys else [row.id for row in rows])
        return [
            SourceInfo(
                id=row.id,
                workspace_id=row.workspace_id,
                name=row.name,
                slug=row.slug,
                enabled=bool(row.enabled),
                settings=dict(row.settings or {}),
                write_keys=tuple(key.key for key in keys.get(row.id, [])),
                created_at=row.created_at,
                updated_at=row.updated_at,
                function_id=row.function_id,
                function_settings=dict(row.function_settings or {}),
            )
            for row in rows
        ]

    def _reload(self, conn: Connection, source_id: str) -> SourceInfo:
        return self._sources(conn, [self.require(conn, source_id)])[0]

    # --- changing sources ----------------------------------------------------------------------

    def create_source(
        self,
        name: str,
        *,
        slug: str | None = None,
        write_key: str | None = None,
        enabled: bool = True,
        settings: Mapping[str, Any] | None = None,
    ) -> SourceInfo:
        """A new, enabled source with one write key (generated unless given)."""
        check_name(name)
        if slug is not None:
            check_slug(slug)
        if write_key is not None:
            check_write_key(write_key)
        clean_settings = check_settings(settings if settings is not None else {})
        src = schema.sources
        with self.writing() as conn:
            workspace_id = self.workspace_id(conn, create=True)
            assert workspace_id is not None
            self._check_name_free(conn, workspace_id, name)
            taken = self._slugs(conn, workspace_id)
            if slug is None:
                slug = unique_slug(slugify(name), taken)
            elif slug in taken:
                raise ConflictError(f"another source already has the slug {slug!r}", "slug")
            source_id = new_id()
            now = self.now()
            conn.execute(
                src.insert().values(
                    id=source_id,
                    workspace_id=workspace_id,
                    name=name,
                    slug=slug,
                    enabled=bool(enabled),
                    settings=clean_settings,
                    created_at=now,
                    updated_at=now,
                )
            )
            self._insert_key(conn, source_id, write_key or new_write_key(), None)
            self.bump(conn)
            return self._reload(conn, source_id)

    def update_source(
        self,
        id_or_name: str,
        *,
        name: str | Unset = UNSET,
        slug: str | Unset = UNSET,
        enabled: bool | Unset = UNSET,
        settings: Mapping[str, Any] | Unset = UNSET,
    ) -> SourceInfo:
        """Change what is given; a rename keeps the slug (warehouse schemas are named by it)."""
        values: dict[str, Any] = {}
        if name is not UNSET:
            values["name"] = check_name(name)
        if slug is not UNSET:
            values["slug"] = check_slug(slug)
        if enabled is not UNSET:
            if not isinstance(enabled, bool):
                raise InvalidError("must be true or false", "enabled")
            values["enabled"] = enabled
        if settings is not UNSET:
            values["settings"] = check_settings(settings)
        src = schema.sources
        with self.writing() as conn:
            row = self.require(conn, id_or_name)
            changed = {k: v for k, v in values.items() if _differs(getattr(row, k), v)}
            if not changed:
                return self._sources(conn, [row])[0]
            if "name" in changed:
                self._check_name_free(conn, row.workspace_id, changed["name"])
            if "slug" in changed and changed["slug"] in self._slugs(conn, row.workspace_id):
                raise ConflictError(
                    f"another source already has the slug {changed['slug']!r}", "slug"
                )
            conn.execute(
                src.update().where(src.c.id == row.id).values(**changed, updated_at=self.now())
            )
            self.bump(conn)
            return self._reload(conn, row.id)

    def delete_source(self, id_or_name: str) -> None:
        with self.writing() as conn:
            row = self.require(conn, id_or_name)
            conn.execute(schema.write_keys.delete().where(schema.write_keys.c.source_id == row.id))
            conn.execute(schema.sources.delete().where(schema.sources.c.id == row.id))
            self.bump(conn)

    def _check_name_free(self, conn: Connection, workspace_id: str, name: str) -> None:
        src = schema.sources
        clash = conn.execute(
            sa.select(src.c.id).where(src.c.workspace_id == workspace_id, src.c.name == name)
        ).first()
        if clash is not None:
            raise ConflictError(f"another source is already named {name!r}", "name")

    def _slugs(self, conn: Connection, workspace_id: str) -> set[str]:
        src = schema.sources
        return set(
            conn.execute(sa.select(src.c.slug).where(src.c.workspace_id == workspace_id)).scalars()
        )

    # --- write keys ----------------------------------------------------------------------------

    def add_write_key(
        self, id_or_name: str, key: str | None = None, *, expires_at: int | None = None
    ) -> tuple[str, SourceInfo]:
        """Give a source one more active key (a given one, or a generated one)."""
        if key is not None:
            check_write_key(key)
        with self.writing() as conn:
            row = self.require(conn, id_or_name)
            new_key = key or new_write_key()
            self._insert_key(conn, row.id, new_key, expires_at)
            self.bump(conn)
            return new_key, self._reload(conn, row.id)

    def rotate_write_key(
        self, id_or_name: str, grace_seconds: int = 86400, *, new_key: str | None = None
    ) -> tuple[str, SourceInfo]:
        """Add a key; the old ones keep working for ``grace_seconds`` (0: stop at once).

        A key already expiring sooner keeps its earlier expiry: rotating twice never extends
        the life of a key that was meant to go.
        """
        if not isinstance(grace_seconds, int) or grace_seconds < 0:
            raise InvalidError("must be a whole number of seconds, 0 or more", "grace_seconds")
        if new_key is not None:
            check_write_key(new_key)
        wk = schema.write_keys
        with self.writing() as conn:
            row = self.require(conn, id_or_name)
            expires_at = self.now() + grace_seconds
            for old in self._active_keys(conn, [row.id]).get(row.id, []):
                if old.expires_at is None or old.expires_at > expires_at:
                    conn.execute(
                        wk.update().where(wk.c.key == old.key).values(expires_at=expires_at)
                    )
            key = new_key or new_write_key()
            self._insert_key(conn, row.id, key, None)
            self.bump(conn)
            return key, self._reload(conn, row.id)

    def revoke_write_key(self, id_or_name: str, key: str, *, keep_one: bool = True) -> SourceInfo:
        """Stop a key now. A source keeps at least one key unless ``keep_one`` is False
        (``apply`` removes and adds keys in one transaction, so it may pass through zero)."""
        wk = schema.write_keys
        with self.writing() as conn:
            row = self.require(conn, id_or_name)
            active = self._active_keys(conn, [row.id]).get(row.id, [])
            if key not in {k.key for k in active}:
                raise NotFoundError(f"source {row.name!r} has no active write key {key!r}", "key")
            if keep_one and len(active) == 1:
                raise ConflictError(
                    f"{key!r} is the last write key of source {row.name!r}; rotate it instead",
                    "key",
                )
            conn.execute(wk.delete().where(wk.c.key == key))
            self.bump(conn)
            return self._reload(conn, row.id)

    def set_write_key_expiry(self, id_or_name: str, key: str, expires_at: int | None) -> SourceInfo:
        """Change when an active key stops working (None: never)."""
        wk = schema.write_keys
        with self.writing() as conn:
            row = self.require(conn, id_or_name)
            active = self._active_keys(conn, [row.id]).get(row.id, [])
            if key not in {k.key for k in active}:
                raise NotFoundError(f"source {row.name!r} has no active write key {key!r}", "key")
            conn.execute(wk.update().where(wk.c.key == key).values(expires_at=expires_at))
            self.bump(conn)
            return self._reload(conn, row.id)

    def _insert_key(
        self, conn: Connection, source_id: str, key: str, expires_at: int | None
    ) -> None:
        wk = schema.write_keys
        now = self.now()
        # Expired keys are only history; dropping them lets a key be given out again.
        conn.execute(wk.delete().where(wk.c.expires_at.is_not(None), wk.c.expires_at <= now))
        owner = conn.execute(
            sa.select(schema.sources.c.name)
            .select_from(wk.join(schema.sources))
            .where(wk.c.key == key)
        ).scalar_one_or_none()
        if owner is not None:
            raise ConflictError(
                f"the write key {key!r} already belongs to source {owner!r}", "write_key"
            )
        conn.execute(
            wk.insert().values(key=key, source_id=source_id, created_at=now, expires_at=expires_at)
        )


# --- helpers ---------------------------------------------------------------------------------


def _workspace(row: Row[Any]) -> Workspace:
    return Workspace(row.id, row.name, row.slug, dict(row.settings or {}), row.created_at)


def unique_slug(base: str, taken: set[str]) -> str:
    """``base``, or ``base_2``, ``base_3``… the first one not taken."""
    if base not in taken:
        return base
    n = 2
    while f"{base}_{n}" in taken:
        n += 1
    return f"{base}_{n}"


def _differs(old: Any, new: Any) -> bool:
    if isinstance(new, bool):
        return bool(old) is not new
    return bool(old != new)


def _check_count(count: object) -> None:
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_PAGE_SIZE:
        raise InvalidError(f"must be a whole number from 1 to {MAX_PAGE_SIZE}", "count")
