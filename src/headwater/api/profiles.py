"""``/api/v1/spaces/{idOrName}/profiles``: the Profile explorer's reads, for the web app and any
client holding an API token (the Profile API itself answers to a space's access tokens only).

``GET …/profiles?q=`` finds profiles by any identifier: a bare value is looked up under every
identifier type the space resolves (``user_id``, ``email``, ``anonymous_id``, an external id's
type…), ``type:value`` under one type, and a ``use_…`` id is the profile itself (or the one it
was merged into). ``GET …/profiles/{profileId}`` is one profile: its traits, identifiers,
recent events, merges and account links. A reader without PII Access sees Red and Yellow
values masked, as the Profile API masks them for a token without PII Access (§9.8).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from headwater.api.errors import ApiError
from headwater.api.privacy import masker_for
from headwater.api.sources import iso as iso_seconds
from headwater.api.sources import store_of
from headwater.privacy.masking import Masker
from headwater.unify.graph import StoredIdentifier
from headwater.unify.profile_ids import is_profile_id
from headwater.unify.profiles import ProfileData, iso
from headwater.unify.spaces import SpaceInfo, SpaceStore
from headwater.unify.sql_graph import SqlGraph

router = APIRouter(prefix="/spaces", tags=["profiles"])

SpaceId = Annotated[str, Path(alias="idOrName", description="The space's id or name.")]
ProfileId = Annotated[str, Path(alias="profileId", description="The profile's use_… id.")]
MAX_QUERY = 1000
MAX_FOUND = 20
RECENT_EVENTS = 20
COLLECTIONS = ("users", "accounts")
BUILT_IN_TYPES = frozenset({"user_id", "anonymous_id", "email", "group_id"})
MAX_TYPE = 200  # unify_identities.type


def _space(request: Request, id_or_name: str) -> SpaceInfo:
    return SpaceStore(store_of(request)).require(id_or_name)


def _graph(request: Request, space: SpaceInfo) -> SqlGraph:
    # No cache: identity resolution (another process, maybe) writes the graph.
    return SqlGraph(store_of(request).engine, space.id, cache_size=0)


def _data(request: Request, space: SpaceInfo) -> ProfileData:
    clock = getattr(request.app.state, "clock", None)
    if clock is None:
        return ProfileData(store_of(request).engine, space.id, space.identity)
    return ProfileData(store_of(request).engine, space.id, space.identity, clock=clock)


def _types(space: SpaceInfo) -> list[str]:
    """The identifier types a bare value is looked up under: the space's configured ones
    (only those are resolved, §2.2) and the built-in ones. A type since taken out of the
    settings is still found by ``type:value``. No scan of the space's identities: a search
    costs one probe of the unique index per type."""
    return sorted({s.type for s in space.identity.identifiers} | BUILT_IN_TYPES)


def _search(space: SpaceInfo, graph: SqlGraph, q: str) -> list[str]:
    if is_profile_id(q):
        found = graph.canonical(q)
        return [found] if found is not None else []
    id_type, sep, value = q.partition(":")
    keys = [(c, t, q) for c in COLLECTIONS for t in _types(space)]
    if sep and id_type and value and len(id_type) <= MAX_TYPE:
        keys += [(c, id_type, value) for c in COLLECTIONS]
    hits = graph.find_many(keys)
    profiles: list[str] = []
    for key in keys:  # the order asked: a bare value's types before the typed reading
        profile = hits.get(key)
        if profile is not None and profile not in profiles:
            profiles.append(profile)
    return profiles[:MAX_FOUND]


def _identifier(row: StoredIdentifier, masker: Masker | None) -> dict[str, Any]:
    value: str = row.value
    if masker is not None and masker.restricted(f"traits.{row.type}", value):
        value = masker.mask
    return {
        "type": row.type,
        "id": value,
        "sourceId": row.source_id,
        "firstSeen": iso_seconds(int(row.first_seen)),
        "messageId": row.message_id,
    }


def _traits(data: ProfileData, profile: str, masker: Masker | None) -> dict[str, Any]:
    traits = {key: trait.value for key, trait in data.traits(profile).items()}
    return traits if masker is None else masker.values(traits, "traits")


@router.get("/{idOrName}/profiles", response_model=None)
def search_profiles(
    space_id: SpaceId,
    request: Request,
    q: Annotated[
        str,
        Query(
            max_length=MAX_QUERY,
            description="An identifier's value (any type), `type:value`, or a `use_…` id.",
        ),
    ] = "",
) -> dict[str, Any]:
    """The profiles holding the identifier ``q`` (at most 20), each with its identifiers and
    traits."""
    space = _space(request, space_id)
    q = q.strip()
    if not q:
        return {"data": {"profiles": [], "q": q}}
    if any(ord(c) < 32 for c in q):
        raise ApiError(400, "validation", "q: control characters are not allowed", "q")
    graph, data, masker = _graph(request, space), _data(request, space), masker_for(request)
    profiles = []
    for profile in _search(space, graph, q):
        record = graph.profile(profile)
        profiles.append(
            {
                "id": profile,
                "collection": record.collection,
                "createdAt": iso_seconds(int(record.created_at)),
                "identifiers": [_identifier(r, masker) for r in graph.identifiers(profile)],
                "traits": _traits(data, profile, masker),
            }
        )
    return {"data": {"profiles": profiles, "q": q}}


@router.get("/{idOrName}/profiles/{profileId}", response_model=None)
def get_profile(space_id: SpaceId, profile_id: ProfileId, request: Request) -> dict[str, Any]:
    """One profile (a merged-away id answers with the profile it went into): traits,
    identifiers, its 20 most recent events (of the last 14 days), merges and links."""
    space = _space(request, space_id)
    if not is_profile_id(profile_id):
        raise ApiError(404, "not_found", "Profile was not found.", "profileId")
    graph, data, masker = _graph(request, space), _data(request, space), masker_for(request)
    canonical = graph.canonical(profile_id)
    if canonical is None:
        raise ApiError(404, "not_found", "Profile was not found.", "profileId")
    try:
        record = graph.profile(canonical)
        identifiers = graph.identifiers(canonical)
    except KeyError:
        raise ApiError(404, "not_found", "Profile was not found.", "profileId") from None
    events = [e.body for e in data.events(canonical, limit=RECENT_EVENTS)]
    if masker is not None:
        events = [masker.event(e) for e in events]
    meta = data.metadata(canonical)
    return {
        "data": {
            "profile": {
                "id": canonical,
                "asked": profile_id,
                "collection": record.collection,
                "createdAt": iso_seconds(int(record.created_at)),
                "updatedAt": iso(meta.updated_at) if meta is not None else None,
                "traits": _traits(data, canonical, masker),
                "identifiers": [_identifier(r, masker) for r in identifiers],
                "events": events,
                "merges": [
                    {
                        "from": m.from_id,
                        "into": m.into_id,
                        "at": iso_seconds(int(m.at)),
                        "sourceId": m.source_id,
                        "messageId": m.message_id,
                        "eventType": m.event_type,
                    }
                    for m in graph.merge_history(canonical)
                ],
                "links": [
                    {"id": other, "collection": graph.profile(other).collection}
                    for other in graph.links(canonical)
                ],
            }
        }
    }
