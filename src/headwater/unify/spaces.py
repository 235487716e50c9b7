"""Unify spaces in the state database: the sources connected to each, its Profile API access
tokens and its Profiles Sync setting.

``headwater apply`` and the REST API both write through ``SpaceStore``, so the rules hold
whichever door a change comes in by; every change bumps the workspace's config version in the
same transaction. A space is found by its id (``spa_…``) or its name, as the Profile API's
``/v1/spaces/<space_id>/…`` paths will find it. Its slug is made from the first name and never
changes (Segment's space slug cannot be modified); Profiles Sync's default schema is the slug.

Access tokens are kept as SHA-256 digests only: a generated token is returned once, by the call
that makes it, and never again. ``authenticate`` is what the Profile API calls with the token of
a request's Basic auth: it compares digests in constant time.

A space's identity settings (``headwater.unify.settings``) are one JSON value on its row, NULL
for Segment's defaults: they are read and written whole (the file's list and the API's PUT are
the complete set), and a ``Resolver`` takes them whole; a change applies to new events only.

A space's profile CSV upload source (``csv_upload.Uploads.upload_source``) is Unify's own: a
complete list of sources (the file's, a PATCH's) leaves it connected, and ``managed_sources``
names such sources for ``apply`` and ``export`` to leave alone.

A source may be connected to several spaces (Segment's onboarding connects the production
sources to the Dev space and to the Prod space); deleting a source disconnects it, deleting a
warehouse turns off the Profiles Sync of the spaces that used it.
"""

from __future__ import annotations

import builtins
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from headwater.errors import ConflictError, InvalidError, NotFoundError
from headwater.store import schema
from headwater.store.admin_token import hash_token
from headwater.store.workspace import (
    BASE62,
    UNSET,
    SourceInfo,
    Unset,
    WorkspaceStore,
    check_name,
    check_slug,
    is_unicode,
    slugify,
    unique_slug,
)
from headwater.unify import settings as identity_settings
from headwater.unify.settings import IdentitySettings

SPACE_ID_PREFIX = "spa_"
SPACE_ID_LENGTH = 22  # Segment's ids: spa_w5akhv1XwnGj5j2HVT6NWX
GENERATED_TOKEN_LENGTH = 43
ENGAGE_SLUG_MAX = 190  # the Engage source's slug base: room for a ``_N`` within 200
MIN_TOKEN_LENGTH = 16
MAX_TOKEN_LENGTH = 200
# The warehouse kinds Profiles Sync loads (a data lake has no tables to materialize).
PROFILES_SYNC_WAREHOUSES = frozenset({"duckdb", "postgres"})
# A token is the user name of HTTP Basic auth: printable ASCII, no space and no ':'.
_TOKEN_RE = re.compile(r"[!-9;-~]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfilesSync:
    warehouse_id: str
    warehouse_name: str
    schema: str


@dataclass(frozen=True)
class SpaceInfo:
    id: str
    workspace_id: str
    name: str
    slug: str
    source_ids: tuple[str, ...]  # connected sources, by name
    profiles_sync: ProfilesSync | None
    created_at: int
    updated_at: int
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    engage_source_id: str | None = None  # Engage's messages, resolved into the space


@dataclass(frozen=True)
class AccessToken:
    """A token's name and when it was made: what may ever be shown of it."""

    name: str
    created_at: int
    pii_access: bool = True


# --- values ----------------------------------------------------------------------------------


def new_space_id() -> str:
    return SPACE_ID_PREFIX + "".join(secrets.choice(BASE62) for _ in range(SPACE_ID_LENGTH))


def new_access_token() -> str:
    # 256 bits as 43 letters and digits: nothing to escape in a header, a URL or a shell.
    return "".join(secrets.choice(BASE62) for _ in range(GENERATED_TOKEN_LENGTH))


def check_access_token(token: object, field: str = "token") -> str:
    if not isinstance(token, str) or not _TOKEN_RE.fullmatch(token):
        raise InvalidError(
            "must be printable ASCII without spaces or ':' (it is the user name of HTTP "
            "Basic auth)",
            field,
        )
    if not MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH:
        raise InvalidError(
            f"must be {MIN_TOKEN_LENGTH} to {MAX_TOKEN_LENGTH} characters long", field
        )
    return token


def space_slug(name: str) -> str:
    """The slug a space's name gives it: lowercase, runs of other characters as one ``_``."""
    return slugify(name, "space")


def _usable(reference: str) -> bool:
    """Whether a name or id given by a client can even be looked up (PostgreSQL refuses NUL
    and text that is not Unicode)."""
    return isinstance(reference, str) and is_unicode(reference) and not _CONTROL.search(reference)


# --- the store -------------------------------------------------------------------------------


class SpaceStore:
    """The workspace's Unify spaces, on the workspace store's transactions."""

    def __init__(self, workspace: WorkspaceStore) -> None:
        self._ws = workspace

    @property
    def workspace(self) -> WorkspaceStore:
        return self._ws

    # --- reading -----------------------------------------------------------------------------

    def list(self) -> list[SpaceInfo]:
        """Every space, by name."""
        sp = schema.spaces
        with self._ws.reading() as conn:
            rows = list(conn.execute(sa.select(sp).order_by(sp.c.name)))
            return self._spaces(conn, rows)

    def get(self, id_or_name: str) -> SpaceInfo | None:
        with self._ws.reading() as conn:
            row = self._find(conn, id_or_name)
            return self._spaces(conn, [row])[0] if row is not None else None

    def require(self, id_or_name: str) -> SpaceInfo:
        with self._ws.reading() as conn:
            return self._spaces(conn, [self._require(conn, id_or_name)])[0]

    def sources(self, id_or_name: str) -> builtins.list[SourceInfo]:
        """The space's connected sources, by name."""
        space = self.require(id_or_name)
        found = [self._ws.get_source(source_id) for source_id in space.source_ids]
        return [s for s in found if s is not None]

    def spaces_of_source(self, source_id: str) -> builtins.list[SpaceInfo]:
        """The spaces a source is connected to, by name."""
        ss, sp = schema.space_sources, schema.spaces
        with self._ws.reading() as conn:
            rows = list(
                conn.execute(
                    sa.select(sp)
                    .join(ss, ss.c.space_id == sp.c.id)
                    .where(ss.c.source_id == source_id)
                    .order_by(sp.c.name)
                )
            )
            return self._spaces(conn, rows)

    def managed_sources(self) -> dict[str, str]:
        """The sources Unify made for itself (a space's profile CSV upload source and its
        Engage source), by id, with their space: neither the file nor a complete source list
        manages them."""
        found: dict[str, str] = {}
        with self._ws.reading() as conn:
            for table in (schema.unify_upload_sources, schema.engage_sources):
                rows = conn.execute(sa.select(table.c.source_id, table.c.space_id))
                found.update({row.source_id: row.space_id for row in rows})
        return found

    def engage_source(self, id_or_name: str) -> SourceInfo:
        """The space's Engage source, ``<slug>-engage`` (slug ``engage_<slug>``, which its
        warehouse schema is named after, as Segment's), made if it is not there: Engage's
        messages enter the pipeline from it and its activation destinations hang off it.
        Identity resolution resolves its messages into the space (``SpaceInfo.engage_source_id``)
        without it being one of the space's connected sources."""
        es = schema.engage_sources
        with self._ws.reading() as conn:
            row = self._require(conn, id_or_name)
            known = conn.execute(
                sa.select(es.c.source_id).where(es.c.space_id == row.id)
            ).scalar_one_or_none()
        source = self._ws.get_source(known) if known is not None else None
        if source is None:
            sources = self._ws.all_sources()
            taken = {s.name for s in sources}
            base = name = f"{row.slug}-engage"
            n = 1
            while name in taken:
                n += 1
                name = f"{base}-{n}"
            # Its slug names its warehouse schema: ``engage_<space>``, Segment's (§11.3).
            slug = unique_slug(f"engage_{row.slug}"[:ENGAGE_SLUG_MAX], {s.slug for s in sources})
            source = self._ws.create_source(name, slug=slug)
            with self._ws.writing() as conn:
                conn.execute(es.delete().where(es.c.space_id == row.id))
                conn.execute(es.insert().values(space_id=row.id, source_id=source.id))
                self._ws.bump(conn)  # identity resolution resolves its messages from now on
        return source

    def access_tokens(self, id_or_name: str) -> builtins.list[AccessToken]:
        """The space's tokens by name: names and dates, never the tokens."""
        tokens = schema.space_access_tokens
        with self._ws.reading() as conn:
            row = self._require(conn, id_or_name)
            return [
                AccessToken(r.name, r.created_at, bool(r.pii_access))
                for r in conn.execute(
                    sa.select(tokens.c.name, tokens.c.created_at, tokens.c.pii_access)
                    .where(tokens.c.space_id == row.id)
                    .order_by(tokens.c.name)
                )
            ]

    def token_matches(self, id_or_name: str, name: str, token: str) -> bool:
        """Whether the space's token ``name`` is ``token`` (for ``apply``: unchanged or not)."""
        tokens = schema.space_access_tokens
        with self._ws.reading() as conn:
            row = self._require(conn, id_or_name)
            digest = conn.execute(
                sa.select(tokens.c.token_sha256).where(
                    tokens.c.space_id == row.id, tokens.c.name == name
                )
            ).scalar_one_or_none()
        return digest is not None and hmac.compare_digest(str(digest), hash_token(token))

    def authenticate(self, space_id_or_name: str, token: str) -> SpaceInfo | None:
        """The space, when ``token`` is one of its access tokens; else None."""
        found = self.authorize(space_id_or_name, token)
        return found[0] if found is not None else None

    def authorize(self, space_id_or_name: str, token: str) -> tuple[SpaceInfo, bool] | None:
        """The space and whether the token has PII Access, when ``token`` is one of the
        space's access tokens; else None.

        The token's digest is compared with every token of the space, in constant time each,
        so neither the answer's time nor a shared prefix tells a caller anything.
        """
        if not isinstance(token, str) or not token or not _usable(space_id_or_name):
            return None
        given = hash_token(token) if is_unicode(token) else ""
        tokens = schema.space_access_tokens
        with self._ws.reading() as conn:
            row = self._find(conn, space_id_or_name)
            if row is None:
                return None
            digests = conn.execute(
                sa.select(tokens.c.token_sha256, tokens.c.pii_access).where(
                    tokens.c.space_id == row.id
                )
            )
            matched = False
            pii_access = False
            for digest, access in digests:
                same = hmac.compare_digest(str(digest), given) and bool(given)
                matched |= same
                pii_access |= same and bool(access)
            return (self._spaces(conn, [row])[0], pii_access) if matched else None

    # --- spaces ------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        sources: Sequence[str] = (),
        profiles_sync: tuple[str, str | None] | None = None,
        identity: IdentitySettings | None = None,
    ) -> SpaceInfo:
        """A new space with these sources connected (ids or names), given ``(warehouse id
        or name, schema or None)``, Profiles Sync on, and these identity settings (None:
        Segment's defaults)."""
        check_name(name)
        with self._ws.atomic():  # the space and its Engage source, or neither
            return self._create(name, sources, profiles_sync, identity)

    def _create(
        self,
        name: str,
        sources: Sequence[str],
        profiles_sync: tuple[str, str | None] | None,
        identity: IdentitySettings | None,
    ) -> SpaceInfo:
        sp = schema.spaces
        with self._ws.writing() as conn:
            workspace_id = self._ws.workspace_id(conn, create=True)
            assert workspace_id is not None
            self._check_name_free(conn, workspace_id, name)
            taken = set(
                conn.execute(sa.select(sp.c.slug).where(sp.c.workspace_id == workspace_id))
                .scalars()
                .all()
            )
            slug = unique_slug(space_slug(name), taken)
            space_id = new_space_id()
            now = self._ws.now()
            conn.execute(
                sp.insert().values(
                    id=space_id,
                    workspace_id=workspace_id,
                    name=name,
                    slug=slug,
                    identity=_encoded(identity),
                    created_at=now,
                    updated_at=now,
                )
            )
            row = self._require(conn, space_id)
            self._set_sources(conn, row, sources)
            if profiles_sync is not None:
                self._set_profiles_sync(conn, row, profiles_sync)
            self._ws.bump(conn)
        self.engage_source(space_id)
        return self.require(space_id)

    def update(
        self,
        id_or_name: str,
        *,
        name: str | Unset = UNSET,
        sources: Sequence[str] | Unset = UNSET,
        profiles_sync: tuple[str, str | None] | Unset | None = UNSET,
        identity: IdentitySettings | Unset = UNSET,
    ) -> SpaceInfo:
        """Change what is given: a rename keeps the slug; ``sources`` is the complete set;
        ``profiles_sync`` None turns Profiles Sync off; ``identity`` as ``set_identity``."""
        sp = schema.spaces
        with self._ws.writing() as conn:
            row = self._require(conn, id_or_name)
            changed = False
            if not isinstance(name, Unset) and name != row.name:
                check_name(name)
                self._check_name_free(conn, row.workspace_id, name)
                conn.execute(sp.update().where(sp.c.id == row.id).values(name=name))
                changed = True
            if not isinstance(sources, Unset):
                changed |= self._set_sources(conn, row, sources)
            if not isinstance(profiles_sync, Unset):
                changed |= self._set_profiles_sync(conn, row, profiles_sync)
            if not isinstance(identity, Unset):
                changed |= self._set_identity(conn, row, identity, touch=False)
            if changed:
                conn.execute(sp.update().where(sp.c.id == row.id).values(updated_at=self._ws.now()))
                self._ws.bump(conn)
            return self._spaces(conn, [self._require(conn, row.id)])[0]

    def set_identity(self, id_or_name: str, settings: IdentitySettings) -> SpaceInfo:
        """Replace the space's identity settings; they apply to the events resolved from now
        on (A-UE-19). Setting what is stored changes nothing (not even the config version)."""
        with self._ws.writing() as conn:
            row = self._require(conn, id_or_name)
            self._set_identity(conn, row, settings)
            return self._spaces(conn, [self._require(conn, row.id)])[0]

    def import_identity(self, id_or_name: str, from_space: str) -> SpaceInfo:
        """Copy another space's identity settings to this one (§2.10): a copy, not a link."""
        with self._ws.writing() as conn:
            row = self._require(conn, id_or_name)
            source = self._find(conn, from_space) if isinstance(from_space, str) else None
            if source is None:
                raise NotFoundError(f"no space has the id or name {from_space!r}", "fromSpace")
            self._set_identity(conn, row, _decoded(source.identity))
            return self._spaces(conn, [self._require(conn, row.id)])[0]

    def delete(self, id_or_name: str) -> None:
        """Delete a space: its connections, tokens and Profiles Sync setting go with it, and
        everything Unify made of its events — the identity graph, profile data, Insights,
        uploads, subscription groups and states, SQL traits, and what Profiles Sync had not
        loaded yet. Its Engage source goes too (with the destinations on it): it was the
        space's own."""
        with self._ws.atomic():
            self._delete(id_or_name)

    def _delete(self, id_or_name: str) -> None:
        es = schema.engage_sources
        with self._ws.writing() as conn:
            space_id = self._require(conn, id_or_name).id
            engage = conn.execute(
                sa.select(es.c.source_id).where(es.c.space_id == space_id)
            ).scalar_one_or_none()
        if engage is not None and self._ws.get_source(engage) is not None:
            self._ws.delete_source(engage)
        with self._ws.writing() as conn:
            row = self._require(conn, space_id)
            profiles = sa.select(schema.unify_profiles.c.seq).where(
                schema.unify_profiles.c.space_id == row.id
            )
            links = schema.unify_links
            conn.execute(links.delete().where(links.c.user_profile.in_(profiles)))
            sql_traits = sa.select(schema.engage_sql_traits.c.id).where(
                schema.engage_sql_traits.c.space_id == row.id
            )
            for kept in (schema.engage_sql_trait_values, schema.engage_sql_trait_runs):
                conn.execute(kept.delete().where(kept.c.trait_id.in_(sql_traits)))
            for table in (
                schema.space_sources,
                schema.space_access_tokens,
                schema.space_profiles_sync,
                schema.unify_identities,
                schema.unify_merges,
                schema.unify_applied,
                schema.unify_profiles,
                schema.unify_profile_traits,
                schema.unify_profile_events,
                schema.unify_profile_metadata,
                schema.unify_insights,
                schema.unify_csv_uploads,
                schema.unify_upload_sources,
                schema.unify_sync_outbox,
                schema.unify_sync_profiles,
                schema.unify_sync_positions,
                schema.engage_sources,
                schema.engage_profiles,
                schema.engage_outbox,
                schema.engage_batch,
                schema.engage_vectors,
                schema.engage_batch_staged,
                schema.unify_subscriptions,
                schema.unify_subscription_groups,
                schema.unify_group_subscriptions,
                schema.unify_upload_errors,
                schema.engage_sql_traits,
            ):
                conn.execute(table.delete().where(table.c.space_id == row.id))
            # Engage's computations and journeys, with what hangs off them.
            computations = sa.select(schema.engage_computations.c.id).where(
                schema.engage_computations.c.space_id == row.id
            )
            ec = schema.engage_connections
            conn.execute(ec.delete().where(ec.c.computation_id.in_(computations)))
            journeys = sa.select(schema.engage_journeys.c.id).where(
                schema.engage_journeys.c.space_id == row.id
            )
            for table in (schema.engage_journey_versions, schema.engage_journey_log):
                conn.execute(table.delete().where(table.c.journey_id.in_(journeys)))
            for table in (
                schema.engage_journey_members,
                schema.engage_journeys,
                schema.engage_computations,
            ):
                conn.execute(table.delete().where(table.c.space_id == row.id))
            conn.execute(schema.spaces.delete().where(schema.spaces.c.id == row.id))
            self._ws.bump(conn)

    # --- sources -----------------------------------------------------------------------------

    def connect_source(self, id_or_name: str, source_id_or_name: str) -> SourceInfo:
        """Connect a source (connecting one already connected changes nothing)."""
        ss = schema.space_sources
        with self._ws.writing() as conn:
            row = self._require(conn, id_or_name)
            source = self._source(conn, source_id_or_name, "sourceId")
            present = conn.execute(
                sa.select(ss.c.source_id).where(
                    ss.c.space_id == row.id, ss.c.source_id == source.id
                )
            ).first()
            if present is None:
                conn.execute(
                    ss.insert().values(
                        space_id=row.id, source_id=source.id, connected_at=self._ws.now()
                    )
                )
                self._touch(conn, row.id)
        found = self._ws.get_source(source.id)
        if found is None:
            raise NotFoundError("the source was deleted meanwhile")
        return found

    def disconnect_source(self, id_or_name: str, source_id_or_name: str) -> None:
        ss = schema.space_sources
        with self._ws.writing() as conn:
            row = self._require(conn, id_or_name)
            source = self._source(conn, source_id_or_name, "sourceId")
            gone = conn.execute(
                ss.delete().where(ss.c.space_id == row.id, ss.c.source_id == source.id)
            ).rowcount
            if not gone:
                raise NotFoundError(
                    f"source {source.name!r} is not connected to space {row.name!r}", "sourceId"
                )
            self._touch(conn, row.id)

    # --- access tokens -----------------------------------------------------------------------

    def create_access_token(
        self, id_or_name: str, name: str, token: str | None = None, *, pii_access: bool = True
    ) -> tuple[str, AccessToken]:
        """A new token named ``name`` (the given one, or a generated one), returned this once;
        without ``pii_access`` the Profile API masks Red and Yellow values for it."""
        check_name(name)
        if token is not None:
            check_access_token(token)
        tokens = schema.space_access_tokens
        with self._ws.writing() as conn:
            row = self._require(conn, id_or_name)
            clash = conn.execute(
                sa.select(tokens.c.name).where(tokens.c.space_id == row.id, tokens.c.name == name)
            ).first()
            if clash is not None:
                raise ConflictError(
                    f"space {row.name!r} already has an access token named {name!r}; revoke "
                    "it first to replace it",
                    "name",
                )
            secret = token if token is not None else new_access_token()
            now = self._ws.now()
            conn.execute(
                tokens.insert().values(
                    space_id=row.id,
                    name=name,
                    token_sha256=hash_token(secret),
                    created_at=now,
                    pii_access=pii_access,
                )
            )
            self._ws.bump(conn)
        return secret, AccessToken(name, now, pii_access)

    def revoke_access_token(self, id_or_name: str, name: str) -> None:
        """The token stops working now."""
        tokens = schema.space_access_tokens
        with self._ws.writing() as conn:
            row = self._require(conn, id_or_name)
            gone = 0
            if _usable(name):
                gone = conn.execute(
                    tokens.delete().where(tokens.c.space_id == row.id, tokens.c.name == name)
                ).rowcount
            if not gone:
                raise NotFoundError(f"space {row.name!r} has no access token named {name!r}")
            self._ws.bump(conn)

    # --- internals ---------------------------------------------------------------------------

    def _find(self, conn: Connection, id_or_name: str) -> Row[Any] | None:
        if not _usable(id_or_name):
            return None
        sp = schema.spaces
        row = conn.execute(sa.select(sp).where(sp.c.id == id_or_name)).first()
        if row is not None:
            return row
        workspace_id = self._ws.workspace_id(conn)
        return conn.execute(
            sa.select(sp).where(sp.c.workspace_id == workspace_id, sp.c.name == id_or_name)
        ).first()

    def _require(self, conn: Connection, id_or_name: str) -> Row[Any]:
        row = self._find(conn, id_or_name)
        if row is None:
            raise NotFoundError(f"no space has the id or name {id_or_name!r}")
        return row

    def _check_name_free(self, conn: Connection, workspace_id: str, name: str) -> None:
        sp = schema.spaces
        clash = conn.execute(
            sa.select(sp.c.id).where(sp.c.workspace_id == workspace_id, sp.c.name == name)
        ).first()
        if clash is not None:
            raise ConflictError(f"another space is already named {name!r}", "name")

    def _source(self, conn: Connection, id_or_name: object, field: str) -> Row[Any]:
        if not isinstance(id_or_name, str) or not _usable(id_or_name):
            raise NotFoundError(f"no source has the id or name {id_or_name!r}", field)
        try:
            return self._ws.require(conn, id_or_name)
        except NotFoundError:
            raise NotFoundError(f"no source has the id or name {id_or_name!r}", field) from None

    def _warehouse(self, conn: Connection, id_or_name: object, field: str) -> Row[Any]:
        wh = schema.warehouses
        row = None
        if isinstance(id_or_name, str) and _usable(id_or_name):
            row = conn.execute(sa.select(wh).where(wh.c.id == id_or_name)).first()
            if row is None:
                workspace_id = self._ws.workspace_id(conn)
                row = conn.execute(
                    sa.select(wh).where(wh.c.workspace_id == workspace_id, wh.c.name == id_or_name)
                ).first()
        if row is None:
            raise NotFoundError(f"no warehouse has the id or name {id_or_name!r}", field)
        return row

    def _set_sources(self, conn: Connection, row: Row[Any], sources: Iterable[str]) -> bool:
        """Connect exactly these sources; whether anything changed."""
        ss = schema.space_sources
        if isinstance(sources, str) or not isinstance(sources, Iterable):
            raise InvalidError("must be a list of source ids or names", "sources")
        wanted: dict[str, None] = {}
        for i, ref in enumerate(sources):
            wanted[self._source(conn, ref, f"sources[{i}]").id] = None
        current = set(
            conn.execute(sa.select(ss.c.source_id).where(ss.c.space_id == row.id)).scalars()
        )
        # The space's own upload source stays connected: no list of sources names it.
        us = schema.unify_upload_sources
        own = set(conn.execute(sa.select(us.c.source_id).where(us.c.space_id == row.id)).scalars())
        gone = current - wanted.keys() - own
        new = [source_id for source_id in wanted if source_id not in current]
        if gone:
            conn.execute(ss.delete().where(ss.c.space_id == row.id, ss.c.source_id.in_(gone)))
        if new:
            now = self._ws.now()
            conn.execute(
                ss.insert(),
                [{"space_id": row.id, "source_id": s, "connected_at": now} for s in new],
            )
        return bool(gone or new)

    def _set_profiles_sync(
        self, conn: Connection, row: Row[Any], setting: tuple[str, str | None] | None
    ) -> bool:
        ps = schema.space_profiles_sync
        current = conn.execute(sa.select(ps).where(ps.c.space_id == row.id)).first()
        if setting is None:
            if current is None:
                return False
            conn.execute(ps.delete().where(ps.c.space_id == row.id))
            return True
        warehouse_ref, schema_name = setting
        warehouse = self._warehouse(conn, warehouse_ref, "profiles_sync.warehouse")
        if warehouse.type not in PROFILES_SYNC_WAREHOUSES:
            raise InvalidError(
                f"Profiles Sync loads tables; warehouse {warehouse.name!r} is a "
                f"{warehouse.type}: choose a DuckDB or PostgreSQL warehouse",
                "profiles_sync.warehouse",
            )
        if schema_name is None:
            schema_name = row.slug
        check_slug(schema_name, "profiles_sync.schema")
        if (
            current is not None
            and current.warehouse_id == warehouse.id
            and current.schema_name == schema_name
        ):
            return False
        values = {
            "warehouse_id": warehouse.id,
            "schema_name": schema_name,
            "updated_at": self._ws.now(),
        }
        if current is None:
            conn.execute(ps.insert().values(space_id=row.id, **values))
        else:
            conn.execute(ps.update().where(ps.c.space_id == row.id).values(**values))
        return True

    def _set_identity(
        self, conn: Connection, row: Row[Any], settings: IdentitySettings, *, touch: bool = True
    ) -> bool:
        """Store ``settings``; whether they differ from the stored ones."""
        if not isinstance(settings, IdentitySettings):
            raise InvalidError("must be identity settings", "identity")
        if _decoded(row.identity) == settings:
            return False
        sp = schema.spaces
        conn.execute(sp.update().where(sp.c.id == row.id).values(identity=_encoded(settings)))
        if touch:
            self._touch(conn, row.id)
        return True

    def _touch(self, conn: Connection, space_id: str) -> None:
        sp = schema.spaces
        conn.execute(sp.update().where(sp.c.id == space_id).values(updated_at=self._ws.now()))
        self._ws.bump(conn)

    def _spaces(self, conn: Connection, rows: Sequence[Row[Any]]) -> builtins.list[SpaceInfo]:
        if not rows:
            return []
        ids = [row.id for row in rows]
        ss, src = schema.space_sources, schema.sources
        ps, wh = schema.space_profiles_sync, schema.warehouses
        connected: dict[str, builtins.list[str]] = {}
        for link in conn.execute(
            sa.select(ss.c.space_id, ss.c.source_id)
            .join(src, src.c.id == ss.c.source_id)
            .where(ss.c.space_id.in_(ids))
            .order_by(src.c.name)
        ):
            connected.setdefault(link.space_id, []).append(link.source_id)
        es = schema.engage_sources
        engage = dict(
            conn.execute(sa.select(es.c.space_id, es.c.source_id).where(es.c.space_id.in_(ids)))
            .tuples()
            .all()
        )
        syncs = {
            r.space_id: ProfilesSync(r.warehouse_id, r.name, r.schema_name)
            for r in conn.execute(
                sa.select(ps.c.space_id, ps.c.warehouse_id, ps.c.schema_name, wh.c.name)
                .join(wh, wh.c.id == ps.c.warehouse_id)
                .where(ps.c.space_id.in_(ids))
            )
        }
        return [
            SpaceInfo(
                id=row.id,
                workspace_id=row.workspace_id,
                name=row.name,
                slug=row.slug,
                source_ids=tuple(connected.get(row.id, ())),
                profiles_sync=syncs.get(row.id),
                created_at=row.created_at,
                updated_at=row.updated_at,
                identity=_decoded(row.identity),
                engage_source_id=engage.get(row.id),
            )
            for row in rows
        ]


def _encoded(settings: IdentitySettings | None) -> dict[str, Any] | None:
    return None if settings is None else identity_settings.encode(settings)


def _decoded(data: object) -> IdentitySettings:
    return identity_settings.decode(data)
