"""A deletion in the identity graph: the subject's profiles, found and erased in every space.

``GraphExpander`` widens a subject (``privacy.erasure.Expander``) to every identifier on the
profiles its ids resolve to, in each space of the workspace, so stores that know only events
(the archive, warehouses) delete by the subject's other ids too. ``ProfilesEraser`` deletes
those profiles: the graph's rows, their traits, timeline and metadata, their Profiles Sync and
Insights rows, the subscription states of their emails and phone numbers, and (through its
``Follower``s: ``engage.erasure.profiles_eraser`` builds it with Engage's) Engage's state of
them. The graph's applied ``messageId``s (``unify_applied``) stay: they name no one, expire in
two days, and keep a late replay of the deleted events from building the profile again.

Identity resolution is the only writer of profile state, so the eraser runs in its turn: it
takes the same row lock a pass takes (``stage.take_turn``) and counts itself there
(``stage.erased``), which makes the resolving process drop its caches before its next pass
rather than write a deleted profile back. Nothing is emitted for what is deleted: an audience
the profile leaves this way sends no "exited" event (the destinations get their own deletion
request).

Within a space the eraser finds profiles again, in its own transaction, by the subject's user
ids, anonymous ids and profile ids (the expander's, so new events since are covered); it never
looks profiles up by another identifier (an email), which another space may hold for someone
else.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater.errors import InvalidError
from headwater.privacy.erasure import Erasure, Progress, Subjects, Target
from headwater.store import schema
from headwater.store.database import write_transaction
from headwater.unify.stage import erased, take_turn
from headwater.unify.subscriptions import CONTACT_TYPES, contact_key

USERS = "users"  # a subject is a person: accounts (group calls) are not erased
CHUNK = 500  # values per IN list
PAGE = 1_000  # rows read per query when a table must be scanned (blobs)
CONTACT_TRAITS = ("email", "phone")  # traits that name a contact, as the identifiers do
# Keys whose string value names a person in a stored message or row.
_NAMING_KEYS = frozenset(
    {"userId", "anonymousId", "previousId", "user_id", "anonymous_id", "email", "phone", "id_value"}
)


@dataclass(frozen=True)
class Found:
    """A subject's profiles in one space: what every part of the erasure deletes by."""

    space_id: str
    seqs: frozenset[int]  # unify_profiles.seq, merged-away profiles included
    profile_ids: frozenset[str]  # their use_ ids
    identifiers: frozenset[tuple[str, str]]  # (type, value) on them
    contacts: frozenset[tuple[str, str]]  # (channel, key) of their emails and phone numbers

    def subjects(self) -> Subjects:
        return Subjects(
            user_ids=frozenset(v for t, v in self.identifiers if t == "user_id"),
            anonymous_ids=frozenset(v for t, v in self.identifiers if t == "anonymous_id"),
            profile_ids=self.profile_ids,
            external_ids=frozenset(
                (t, v) for t, v in self.identifiers if t not in ("user_id", "anonymous_id")
            ),
        )


class Follower(Protocol):
    """Another package's state of profiles (Engage), erased in the same transaction."""

    def erase(self, conn: Connection, found: Found, subjects: Subjects) -> None: ...


class Mentions:
    """Whether a stored message or row (decoded JSON) names the subject: a profile id
    anywhere, one of its ids under a key that names a person (``userId``, ``email``, …), an
    ``{id, type}`` external id, or a ``[collection, type, value]`` identifier."""

    def __init__(self, subjects: Subjects, found: Found | None = None) -> None:
        typed = {("user_id", v) for v in subjects.user_ids}
        typed |= {("anonymous_id", v) for v in subjects.anonymous_ids}
        typed |= set(subjects.external_ids)
        profile_ids = set(subjects.profile_ids)
        if found is not None:
            typed |= found.identifiers
            profile_ids |= found.profile_ids
        self.typed = frozenset(typed)
        self.values = frozenset(v for _, v in typed)
        self.keys = _NAMING_KEYS | {t for t, _ in typed}
        self.profile_ids = frozenset(profile_ids)

    def __bool__(self) -> bool:
        return bool(self.values or self.profile_ids)

    def __call__(self, node: Any) -> bool:
        if isinstance(node, str):
            return node in self.profile_ids
        if isinstance(node, list | tuple):
            if (
                len(node) == 3
                and isinstance(node[1], str)
                and isinstance(node[2], str)
                and (node[1], node[2]) in self.typed
            ):
                return True
            return any(self(item) for item in node)
        if isinstance(node, Mapping):
            kind, value = node.get("type"), node.get("id")
            if isinstance(kind, str) and isinstance(value, str) and (kind, value) in self.typed:
                return True
            for key, item in node.items():
                if isinstance(item, str):
                    if item in self.profile_ids or (key in self.keys and item in self.values):
                        return True
                elif self(item):
                    return True
        return False


def decoded(body: Any) -> Any:
    """A stored message or row as Python: bytes and text holding a JSON object or array are
    parsed (a JSON column's own values arrive decoded; a plain string stays a string)."""
    if isinstance(body, bytes | bytearray | memoryview):
        body = bytes(body).decode("utf-8", "replace")
    if isinstance(body, str) and body[:1] in ("{", "["):
        try:
            return json.loads(body)
        except ValueError:
            return body
    return body


def chunks(values: Collection[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    ordered = sorted(values)
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


def spaces_of(conn: Connection, workspace_id: str) -> list[str]:
    sp = schema.spaces
    return list(
        conn.execute(
            sa.select(sp.c.id).where(sp.c.workspace_id == workspace_id).order_by(sp.c.id)
        ).scalars()
    )


def find(
    conn: Connection,
    space_id: str,
    identifiers: Iterable[tuple[str, str]],
    profile_ids: Collection[str] = (),
) -> Found:
    """The user profiles ``identifiers`` and ``profile_ids`` resolve to in a space, with every
    profile merged into them, and what they hold."""
    ids, prof = schema.unify_identities, schema.unify_profiles
    by_type: dict[str, set[str]] = {}
    for type_, value in identifiers:
        by_type.setdefault(type_, set()).add(value)
    canonical: set[int] = set()
    for type_, values in sorted(by_type.items()):
        for part in chunks(values):
            canonical.update(
                conn.execute(
                    sa.select(ids.c.profile).where(
                        ids.c.space_id == space_id,
                        ids.c.collection == USERS,
                        ids.c.type == type_,
                        ids.c.value.in_(part),
                    )
                ).scalars()
            )
    for part in chunks(profile_ids):
        for seq, into in conn.execute(
            sa.select(prof.c.seq, prof.c.canonical).where(
                prof.c.space_id == space_id,
                prof.c.collection == USERS,
                prof.c.segment_id.in_(part),
            )
        ):
            canonical.add(into if into is not None else seq)
    if not canonical:
        return Found(space_id, frozenset(), frozenset(), frozenset(), frozenset())
    seqs: dict[int, str] = {}
    for part in chunks(canonical):
        # A merge re-points what pointed at the merged profile: one hop finds them all.
        for seq, segment_id in conn.execute(
            sa.select(prof.c.seq, prof.c.segment_id).where(
                prof.c.space_id == space_id,
                sa.or_(prof.c.seq.in_(part), prof.c.canonical.in_(part)),
            )
        ):
            seqs[int(seq)] = segment_id
    held: set[tuple[str, str]] = set()
    for part in chunks(seqs):
        query = sa.select(ids.c.type, ids.c.value).where(ids.c.profile.in_(part))
        held.update((t, v) for t, v in conn.execute(query))
    return Found(
        space_id,
        frozenset(seqs),
        frozenset(seqs.values()),
        frozenset(held),
        frozenset(_contacts(conn, space_id, held, seqs.values())),
    )


def _contacts(
    conn: Connection, space_id: str, held: Iterable[tuple[str, str]], profile_ids: Collection[str]
) -> set[tuple[str, str]]:
    """The contact vectors (§18) of a space's profiles: their email and phone identifiers and
    their ``email`` and ``phone`` traits."""
    raw: list[tuple[str, Any]] = list(held)
    traits = schema.unify_profile_traits
    for part in chunks(profile_ids):
        query = sa.select(traits.c.key, traits.c.value).where(
            traits.c.space_id == space_id,
            traits.c.profile_id.in_(part),
            traits.c.key.in_(CONTACT_TRAITS),
        )
        raw += [(key, value) for key, value in conn.execute(query)]
    found: set[tuple[str, str]] = set()
    for type_, value in raw:
        for channel in CONTACT_TYPES.get(type_, ()):
            try:
                found.add((channel, contact_key(channel, value)))
            except InvalidError:
                continue
    return found


def _typed(subjects: Subjects) -> list[tuple[str, str]]:
    return [("user_id", v) for v in subjects.user_ids] + [
        ("anonymous_id", v) for v in subjects.anonymous_ids
    ]


class GraphExpander:
    """``Expander``: every identifier on the profiles the subject's ids resolve to, in every
    space of the workspace. A source-scoped erasure is not widened (a profile is no source's)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def expand(self, erasure: Erasure) -> Subjects:
        subjects = erasure.subjects
        if erasure.source_ids is not None:
            return subjects
        wider = subjects
        with self._engine.connect() as conn:
            for space_id in spaces_of(conn, erasure.workspace_id):
                found = find(
                    conn,
                    space_id,
                    [*_typed(subjects), *subjects.external_ids],
                    subjects.profile_ids,
                )
                wider = wider.union(found.subjects())
        return wider


class ProfilesEraser:
    """``Eraser`` of profiles, the identity graph and (through followers) Engage state."""

    def __init__(self, engine: Engine, followers: Sequence[Follower] = ()) -> None:
        self._engine = engine
        self._followers = tuple(followers)

    @property
    def target(self) -> Target:
        return Target("internal", "profiles", "Profiles and Engage")

    def erase(self, erasure: Erasure) -> Progress | None:
        if erasure.source_ids is not None:
            return None  # a profile is no source's: only a workspace's regulation erases it
        subjects = erasure.subjects
        with write_transaction(self._engine) as conn:
            generation = take_turn(conn)
            for space_id in spaces_of(conn, erasure.workspace_id):
                found = find(conn, space_id, _typed(subjects), subjects.profile_ids)
                erase_found(conn, found, subjects)
                for follower in self._followers:
                    follower.erase(conn, found, subjects)
            erased(conn, generation)
        return None


def erase_found(conn: Connection, found: Found, subjects: Subjects) -> None:
    """Delete a space's rows of the found profiles, and the rows that name the subject."""
    space_id, seqs, profile_ids = found.space_id, found.seqs, found.profile_ids
    for part in chunks(seqs):
        conn.execute(
            sa.delete(schema.unify_identities).where(schema.unify_identities.c.profile.in_(part))
        )
        links = schema.unify_links
        conn.execute(
            sa.delete(links).where(
                sa.or_(links.c.user_profile.in_(part), links.c.account_profile.in_(part))
            )
        )
        # A merge from one of them went into one of them (merged-away profiles point at
        # their survivor), so the index on ``into_profile`` finds every row.
        merges = schema.unify_merges
        conn.execute(
            sa.delete(merges).where(merges.c.space_id == space_id, merges.c.into_profile.in_(part))
        )
        conn.execute(sa.delete(schema.unify_profiles).where(schema.unify_profiles.c.seq.in_(part)))
    for table in (
        schema.unify_profile_traits,
        schema.unify_profile_events,
        schema.unify_profile_metadata,
        schema.unify_profile_consent,
    ):
        for part in chunks(profile_ids):
            conn.execute(
                sa.delete(table).where(table.c.space_id == space_id, table.c.profile_id.in_(part))
            )
    pointers = schema.unify_sync_profiles
    for part in chunks(profile_ids):
        conn.execute(
            sa.delete(pointers).where(
                pointers.c.space_id == space_id,
                sa.or_(pointers.c.segment_id.in_(part), pointers.c.canonical_segment_id.in_(part)),
            )
        )
    _erase_contacts(conn, space_id, found.contacts)
    mentions = Mentions(subjects, found)
    if not mentions:
        return
    outbox = schema.unify_sync_outbox
    delete_mentioning(conn, outbox.c.seq, [outbox.c.body], mentions, outbox.c.space_id == space_id)
    insights = schema.unify_insights
    delete_mentioning(
        conn,
        insights.c.id,
        [
            insights.c.id_type,
            insights.c.id_value,
            insights.c.profile_id,
            insights.c.merged_id,
            insights.c.identifiers,
            insights.c.payload,  # the event the item is about
        ],
        mentions,
        insights.c.space_id == space_id,
    )
    _erase_upload_errors(conn, space_id, mentions)


def _erase_contacts(conn: Connection, space_id: str, contacts: Collection[tuple[str, str]]) -> None:
    subs, groups = schema.unify_subscriptions, schema.unify_group_subscriptions
    by_channel: dict[str, set[str]] = {}
    for channel, key in contacts:
        by_channel.setdefault(channel, set()).add(key)
    for channel, keys in sorted(by_channel.items()):
        for part in chunks(keys):
            conn.execute(
                sa.delete(subs).where(
                    subs.c.space_id == space_id, subs.c.channel == channel, subs.c.key.in_(part)
                )
            )
            if channel == "EMAIL":
                conn.execute(
                    sa.delete(groups).where(groups.c.space_id == space_id, groups.c.key.in_(part))
                )


def _erase_upload_errors(conn: Connection, space_id: str, mentions: Mentions) -> None:
    """A subscription CSV's error report keeps a refused row's cells: the ones naming the
    subject go (a cell equal to one of its identifier values)."""
    errors = schema.unify_upload_errors
    gone: list[tuple[str, int]] = []
    for upload_id, row_number, cells in conn.execute(
        sa.select(errors.c.upload_id, errors.c.row_number, errors.c.cells).where(
            errors.c.space_id == space_id
        )
    ):
        values = decoded(cells)
        if isinstance(values, list) and any(
            isinstance(c, str) and (c in mentions.values or c in mentions.profile_ids)
            for c in values
        ):
            gone.append((upload_id, int(row_number)))
    for upload_id, row_number in gone:
        conn.execute(
            sa.delete(errors).where(
                errors.c.upload_id == upload_id, errors.c.row_number == row_number
            )
        )


def delete_mentioning(
    conn: Connection,
    key: sa.Column[Any],
    columns: Sequence[sa.Column[Any]],
    mentions: Mentions,
    *where: sa.ColumnElement[bool],
) -> int:
    """Delete the rows of ``key``'s table whose ``columns`` (JSON ones decoded) name the
    subject, reading the table a page at a time by its integer ``key``; how many."""
    table = key.table
    json_columns = {c.name for c in columns if isinstance(c.type, sa.JSON | sa.LargeBinary)}
    after: Any = None
    deleted = 0
    while True:
        query = sa.select(key, *columns).where(*where).order_by(key).limit(PAGE)
        if after is not None:
            query = query.where(key > after)
        rows = conn.execute(query).all()
        if not rows:
            return deleted
        after = rows[-1][0]
        gone = [
            row[0]
            for row in rows
            if mentions(
                {
                    c.name: decoded(v) if c.name in json_columns else v
                    for c, v in zip(columns, row[1:], strict=True)
                }
            )
        ]
        if gone:
            conn.execute(sa.delete(table).where(key.in_(gone)))
            deleted += len(gone)
