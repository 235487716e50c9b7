"""The Profile API (spec §4): ``GET /v1/spaces/<space>/collections/<collection>/profiles/…``,
with ``/v1/namespaces/…`` as an alias (§21 #13), in Segment's shapes, not the REST API's; and
Headwater's ``…/profiles/<id>/subscriptions``: the profile's contact vectors with their user
subscription states (``headwater.unify.subscriptions``).

A raw ASGI app: the path is split on its raw bytes before percent-decoding, so a ``%2F`` or a
``%2B`` in an identifier's value stays part of the value (A-UE-28), and nothing a client sends
turns into a 500 (bad percent-encoding, non-UTF-8 bytes, huge numbers answer 400). Server-side
only (§4.1): no CORS headers, and no answer to a preflight but 405.

Per request: the token (HTTP Basic user name, empty password) is checked against a cache keyed
on the space and the token's SHA-256 digest, dropped whenever the workspace's config version
moves (checked at most once a second), so a revoked token stops working within about a second
and a valid one costs no database round trip; then the space's rate limit (a token bucket, 100
requests/s by default, ``server.profile_api_requests_per_second``); then one thread hop for the
graph lookup and one indexed read of the profile's data. Every response carries a
``Request-Id`` header.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote_to_bytes

import msgspec
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from headwater.timestamps import parse_timestamp
from headwater.unify.graph import GraphStore, StoredIdentifier
from headwater.unify.profile_ids import is_profile_id
from headwater.unify.profiles import TRAIT_CLASSES, ProfileData, Sort, iso
from headwater.unify.spaces import SpaceInfo, SpaceStore
from headwater.unify.subscription_groups import live_groups
from headwater.unify.subscriptions import profile_vectors, read_states, render_status

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PREFIXES = ("/v1/spaces/", "/v1/namespaces/")
COLLECTIONS = ("users", "accounts")
KINDS = ("traits", "external_ids", "events", "metadata", "links", "subscriptions")
DEFAULT_REQUESTS_PER_SECOND = 100
AUTH_REFRESH_SECONDS = 1.0
AUTH_CACHE_SIZE = 10_000
# (default, max) page sizes, §21 #2; the list route as /external_ids.
LIMITS = {
    "traits": (10, 200),
    "external_ids": (10, 100),
    "events": (10, 100),
    "links": (20, 20),
    "subscriptions": (10, 100),
    "metadata": (10, 100),
    "profiles": (10, 100),
}
_NAME_CHARS = re.compile(r"[a-z0-9_]")
_ID_TYPE_CHARS = re.compile(r"[A-Za-z0-9_.\-]")
_DIGITS = re.compile(r"[0-9]{1,9}")


class ProfileApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _not_found(message: str = "Profile was not found.") -> ProfileApiError:
    return ProfileApiError(404, "not_found", message)


def _invalid(message: str) -> ProfileApiError:
    return ProfileApiError(400, "invalid_request_error", message)


def _invalid_characters(parameter: str, value: str, allowed: re.Pattern[str]) -> ProfileApiError:
    bad = "".join(dict.fromkeys(c for c in value if not allowed.fullmatch(c)))
    return ProfileApiError(
        400,
        "validation_error",
        f"The parameter `{parameter}` has invalid character(s) `{_printable(bad)}`",
    )


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def request_id() -> str:
    """Segment's shape: ``1111-2222-3333-4444``."""
    digits = secrets.token_hex(8)
    return "-".join(digits[i : i + 4] for i in range(0, 16, 4))


class RateLimit:
    """A token bucket per space holding one second's requests: short bursts pass, the
    ``rate + 1``-th request within a second does not (A-UE-27)."""

    def __init__(self, per_second: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = float(per_second)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # space -> (tokens, updated)

    def admit(self, space_id: str) -> bool:
        now = self._clock()
        tokens, updated = self._buckets.get(space_id, (self._rate, now))
        tokens = min(self._rate, tokens + (now - updated) * self._rate)
        if tokens >= 1.0:
            self._buckets[space_id] = (tokens - 1.0, now)
            return True
        self._buckets[space_id] = (tokens, now)
        return False


# --- auth ------------------------------------------------------------------------------------


class TokenCache:
    """``SpaceStore.authenticate`` answers, kept until the config version moves."""

    def __init__(self, spaces: SpaceStore, clock: Callable[[], float] = time.monotonic) -> None:
        self._spaces = spaces
        self._clock = clock
        self._answers: dict[tuple[str, str], tuple[SpaceInfo, bool] | None] = {}
        self._version = -1
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    def fresh(self) -> bool:
        return self._clock() - self._checked_at < AUTH_REFRESH_SECONDS

    def cached(self, space: str, digest: str) -> tuple[bool, tuple[SpaceInfo, bool] | None]:
        key = (space, digest)
        if key in self._answers:
            return True, self._answers[key]
        return False, None

    def authenticate(self, space: str, token: str, digest: str) -> tuple[SpaceInfo, bool] | None:
        """Blocking: refresh the version when due, then answer from the cache or the store."""
        with self._lock:
            if not self.fresh():
                version = self._spaces.workspace.config_version()
                if version != self._version:
                    self._answers = {}
                    self._version = version
                self._checked_at = self._clock()
            key = (space, digest)
            if key in self._answers:
                return self._answers[key]
        found = self._spaces.authorize(space, token)
        with self._lock:
            if len(self._answers) >= AUTH_CACHE_SIZE:
                self._answers = {}
            self._answers[key] = found
        return found


def basic_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The user name of HTTP Basic auth, or None."""
    for name, value in headers:
        if name.lower() != b"authorization":
            continue
        scheme, _, encoded = value.strip().partition(b" ")
        if scheme.lower() != b"basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        token = decoded.partition(":")[0]
        return token or None
    return None


# --- requests --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    prefix: str  # "spaces" or "namespaces"
    space: str
    collection: str
    identifier: str | None  # None: the list route
    kind: str  # one of KINDS, or "profiles" for the list route


def _segment(raw: bytes) -> str:
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid("The path is not valid UTF-8 once percent-decoded.") from None


def parse_path(raw_path: bytes) -> tuple[str, str, list[bytes]]:
    """(prefix, space, the raw segments after the space)."""
    parts = raw_path.split(b"/")
    if len(parts) < 4 or parts[0] != b"" or parts[1] != b"v1" or not parts[3]:
        raise _not_found("Resource was not found.")
    prefix = parts[2].decode("latin-1")
    if prefix not in ("spaces", "namespaces"):
        raise _not_found("Resource was not found.")
    return prefix, _segment(parts[3]), parts[4:]


def route_of(prefix: str, space: str, rest: list[bytes]) -> Route:
    if len(rest) < 2 or rest[0] != b"collections":
        raise _not_found("Resource was not found.")
    collection = _segment(rest[1])
    if collection not in COLLECTIONS:
        if any(not _NAME_CHARS.fullmatch(c) for c in collection):
            raise _invalid_characters("collection", collection, _NAME_CHARS)
        raise ProfileApiError(
            400, "validation_error", "The parameter `collection` must be `users` or `accounts`"
        )
    if len(rest) == 3 and rest[2] == b"profiles":
        return Route(prefix, space, collection, None, "profiles")
    if len(rest) != 5 or rest[2] != b"profiles" or not rest[3]:
        raise _not_found("Resource was not found.")
    kind = _segment(rest[4])
    if kind not in KINDS:
        raise _not_found("Resource was not found.")
    return Route(prefix, space, collection, _segment(rest[3]), kind)


def parse_query(query: bytes) -> dict[str, str]:
    try:
        text = query.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise _invalid("The query string is not valid UTF-8 once percent-decoded.") from None
    return dict(pairs)


def _limit(params: dict[str, str], kind: str) -> int:
    default, most = LIMITS[kind]
    given = params.get("limit")
    if given is None or given == "":
        return default
    if not _DIGITS.fullmatch(given) or not 1 <= int(given) <= most:
        raise _invalid(f"The parameter `limit` must be an integer between 1 and {most}.")
    return int(given)


def _flag(params: dict[str, str], name: str) -> bool:
    value = params.get(name, "").lower()
    if value in ("", "false", "0"):
        return False
    if value in ("true", "1"):
        return True
    raise _invalid(f"The parameter `{name}` must be `true` or `false`.")


def _names(params: dict[str, str], name: str) -> list[str] | None:
    value = params.get(name)
    if not value:
        return None
    names = [part.strip() for part in value.split(",") if part.strip()]
    return names or None


def _time(params: dict[str, str], name: str) -> Any:
    value = params.get(name)
    if not value:
        return None
    parsed = parse_timestamp(value)
    if parsed is None:
        raise _invalid(f"The parameter `{name}` must be an ISO 8601 date or time.")
    return parsed


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def _unb64(text: str, standard: bool = False) -> str:
    padded = text + "=" * (-len(text) % 4)
    try:
        raw = (
            base64.b64decode(padded, validate=True)
            if standard
            else base64.urlsafe_b64decode(padded.encode("ascii"))
        )
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise _invalid("The parameter `next` is not a valid cursor.") from None


def events_cursor(at_ns: int, message_id: str) -> str:
    """§4.3: base64 of ``<unix_nanos>::<message_id>``."""
    return base64.b64encode(f"{at_ns}::{message_id}".encode()).decode("ascii")


def _events_position(cursor: str) -> tuple[int, str]:
    at, sep, message_id = _unb64(cursor, standard=True).partition("::")
    if not sep or not at.isascii() or not at.isdigit() or len(at) > 19:
        raise _invalid("The parameter `next` is not a valid cursor.")
    return int(at), message_id


def _vector_cursor(channel: str, value: str) -> str:
    return "sub_" + _b64(msgspec.json.encode([channel, value]).decode())


def _map_cursor(identifier: StoredIdentifier) -> str:
    return "map_" + _b64(msgspec.json.encode([identifier.type, identifier.value]).decode())


# --- the app ---------------------------------------------------------------------------------


class ProfileAPI:
    """The Profile API over a workspace's spaces; ``graphs`` gives a space's identity graph."""

    def __init__(
        self,
        spaces: SpaceStore,
        engine: Engine,
        graphs: Callable[[SpaceInfo], GraphStore],
        *,
        requests_per_second: int = DEFAULT_REQUESTS_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        masker: Callable[[], Masking] | None = None,
    ) -> None:
        self._engine = engine
        self._masker = masker
        self._graphs = graphs
        self._tokens = TokenCache(spaces, clock)
        self._limiter = RateLimit(requests_per_second, clock)
        self._wall_clock = wall_clock
        self._data: dict[str, ProfileData] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = request_id()
        try:
            status, body, extra = await self._answer(scope)
        except ProfileApiError as exc:
            status, extra = exc.status, []
            body = {"error": {"code": exc.code, "message": exc.message}}
            if status == 429:
                extra = [(b"retry-after", b"1")]
            elif status == 405:
                extra = [(b"allow", b"GET")]
        except OperationalError:
            logger.warning("profile api: the database is unavailable", exc_info=True)
            status, extra = 503, [(b"retry-after", b"5")]
            body = {"error": {"code": "server_error", "message": "Try again later."}}
        except Exception:
            logger.exception("profile api: request failed")
            status, extra = 500, []
            body = {"error": {"code": "server_error", "message": "Internal server error."}}
        payload = msgspec.json.encode(body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"request-id", rid.encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _answer(self, scope: Scope) -> tuple[int, Any, list[tuple[bytes, bytes]]]:
        if scope.get("method") != "GET":
            raise ProfileApiError(
                405, "invalid_request_error", "The Profile API answers GET requests only."
            )
        raw = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        raw = raw.partition(b"?")[0]  # some servers put the query in raw_path
        prefix, space_ref, rest = parse_path(raw)
        token = basic_token(scope.get("headers") or [])
        if token is None:
            raise ProfileApiError(
                401,
                "authentication_error",
                "Authenticate with HTTP Basic: your access token as the user name, an empty "
                "password.",
            )
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
        hit, found = (
            self._tokens.cached(space_ref, digest) if self._tokens.fresh() else (False, None)
        )
        if not hit:
            found = await asyncio.to_thread(self._tokens.authenticate, space_ref, token, digest)
        if found is None:
            raise ProfileApiError(
                401, "authentication_error", "The access token is not valid for this space."
            )
        space, pii_access = found
        if not self._limiter.admit(space.id):
            raise ProfileApiError(429, "rate_limit_error", "Too many requests; slow down.")
        route = route_of(prefix, space_ref, rest)
        params = parse_query(scope.get("query_string") or b"")
        body = await asyncio.to_thread(self._serve, space, route, params)
        if not pii_access and self._masker is not None:
            body = await asyncio.to_thread(_masked, self._masker(), route.kind, body)
        return 200, body, []

    # --- blocking part (a worker thread) -----------------------------------------------------

    def _serve(self, space: SpaceInfo, route: Route, params: dict[str, str]) -> Any:
        data = self._data.get(space.id)
        if data is None:
            data = self._data[space.id] = ProfileData(
                self._engine, space.id, space.identity, clock=self._wall_clock
            )
        limit = _limit(params, route.kind)
        if route.identifier is None:
            return self._list(space, route, data, params, limit)
        graph = self._graphs(space)
        profile = self._lookup(graph, route)
        url = (
            f"/v1/{route.prefix}/{space.id}/collections/{route.collection}/profiles/"
            f"{profile}/{route.kind}"
        )
        cursor: dict[str, Any] = {"url": url}
        if "limit" in params:
            cursor["limit"] = limit
        if route.kind == "traits":
            return self._traits(data, profile, params, limit, cursor)
        if route.kind == "external_ids":
            return self._external_ids(graph, profile, route, params, limit, cursor)
        if route.kind == "events":
            return self._events(data, profile, route, params, limit, cursor)
        if route.kind == "metadata":
            return self._metadata(graph, data, profile)
        if route.kind == "subscriptions":
            return self._subscriptions(graph, space, profile, route, params, limit, cursor)
        return self._links(graph, profile, limit)

    def _lookup(self, graph: GraphStore, route: Route) -> str:
        identifier = route.identifier or ""
        id_type, sep, value = identifier.partition(":")
        try:
            if not sep:
                if not is_profile_id(identifier):
                    raise ProfileApiError(
                        400,
                        "validation_error",
                        "The identifier must be `<id_type>:<value>` or a profile's `use_…` id",
                    )
                found = graph.canonical(identifier)
            else:
                if not id_type or any(not _ID_TYPE_CHARS.fullmatch(c) for c in id_type):
                    raise _invalid_characters("id_type", id_type or ":", _ID_TYPE_CHARS)
                found = graph.find(route.collection, id_type, value) if value else None
            if found is None or graph.profile(found).collection != route.collection:
                raise _not_found()
        except KeyError:
            raise _not_found() from None
        return found

    def _traits(
        self,
        data: ProfileData,
        profile: str,
        params: dict[str, str],
        limit: int,
        cursor: dict[str, Any],
    ) -> Any:
        verbose = _flag(params, "verbose")
        trait_class = params.get("class") or None
        if trait_class is not None and trait_class not in TRAIT_CLASSES:
            raise _invalid("The parameter `class` must be `audience` or `computed_trait`.")
        found = data.traits(
            profile,
            keys=_names(params, "include"),
            trait_class=trait_class,
            after=params.get("next") or None,
            limit=limit + 1,
        )
        keys = list(found)
        more = len(keys) > limit
        traits = {
            key: (
                {
                    "value": found[key].value,
                    "source_id": found[key].source_id,
                    "updated_at": iso(found[key].updated_at),
                }
                if verbose
                else found[key].value
            )
            for key in keys[:limit]
        }
        cursor.update(has_more=more, next=keys[limit] if more else "")
        return {"traits": traits, "cursor": _ordered(cursor)}

    def _external_ids(
        self,
        graph: GraphStore,
        profile: str,
        route: Route,
        params: dict[str, str],
        limit: int,
        cursor: dict[str, Any],
    ) -> Any:
        _flag(params, "verbose")  # accepted; every field is shown anyway
        types = _names(params, "include")
        rows = graph.identifiers(profile, types)
        start = 0
        after = params.get("next")
        if after:
            if not after.startswith("map_"):
                raise _invalid("The parameter `next` is not a valid cursor.")
            try:
                wanted = msgspec.json.decode(_unb64(after[4:]))
            except msgspec.DecodeError:
                raise _invalid("The parameter `next` is not a valid cursor.") from None
            keys = [[row.type, row.value] for row in rows]
            if wanted not in keys:
                raise _invalid("The parameter `next` is not a valid cursor.")
            start = keys.index(wanted)
        page = rows[start : start + limit]
        more = len(rows) > start + limit
        cursor.update(has_more=more, next=_map_cursor(rows[start + limit]) if more else "")
        return {
            "data": [_external_id(row, route.collection, first=True) for row in page],
            "cursor": _ordered(cursor),
        }

    def _events(
        self,
        data: ProfileData,
        profile: str,
        route: Route,
        params: dict[str, str],
        limit: int,
        cursor: dict[str, Any],
    ) -> Any:
        sort = params.get("sort") or "desc"
        if sort not in ("asc", "desc"):
            raise _invalid("The parameter `sort` must be `asc` or `desc`.")
        after = params.get("next")
        position = _events_position(after) if after else None
        sorted_as: Sort = "asc" if sort == "asc" else "desc"
        found = data.events(
            profile,
            start=_time(params, "start"),
            end=_time(params, "end"),
            include=_names(params, "include"),
            exclude=_names(params, "exclude"),
            limit=limit + 1,
            sort=sorted_as,
            cursor=position,
        )
        more = len(found) > limit
        last = found[limit] if more else None
        cursor.update(
            has_more=more, next=events_cursor(last.at_ns, last.message_id) if last else ""
        )
        return {
            "data": [{**e.body, "related": {route.collection: profile}} for e in found[:limit]],
            "cursor": _ordered(cursor),
        }

    def _metadata(self, graph: GraphStore, data: ProfileData, profile: str) -> Any:
        meta = data.metadata(profile)
        if meta is not None:
            created, updated = iso(meta.created_at), iso(meta.updated_at)
            first = (meta.first_message_id, meta.first_source_id)
            last = (meta.last_message_id, meta.last_source_id)
        else:  # a profile with no data yet: what the graph knows of it
            record = graph.profile(profile)
            created = updated = iso(int(record.created_at * 1_000_000))
            ids = graph.identifiers(profile)
            first = (ids[0].message_id, ids[0].source_id) if ids else ("", "")
            last = (ids[-1].message_id, ids[-1].source_id) if ids else ("", "")
        return {
            "metadata": {
                "created_at": created,
                "updated_at": updated,
                "expires_at": None,
                "first_message_id": first[0],
                "first_source_id": first[1],
                "last_message_id": last[0],
                "last_source_id": last[1],
            }
        }

    def _subscriptions(
        self,
        graph: GraphStore,
        space: SpaceInfo,
        profile: str,
        route: Route,
        params: dict[str, str],
        limit: int,
        cursor: dict[str, Any],
    ) -> Any:
        """Headwater's route (the Profile explorer's states, which Segment's Profile API does
        not serve): the profile's contact vectors, each with its subscription state (``null``:
        no subscription status) and its subscription groups' states, in the Public API's
        words (``SUBSCRIBED``, ``DID_NOT_SUBSCRIBE``, …)."""
        vectors = profile_vectors(graph, profile) if route.collection == "users" else []
        start = 0
        after = params.get("next")
        if after:
            keys = [_vector_cursor(v.channel, v.value) for v in vectors]
            if after not in keys:
                raise _invalid("The parameter `next` is not a valid cursor.")
            start = keys.index(after)
        page = vectors[start : start + limit]
        more = len(vectors) > start + limit
        with self._engine.connect() as conn:
            states = read_states(conn, space.id, [(v.channel, v.key) for v in page])
            groups = {g.id: g for g in live_groups(conn, space.id).values()} if page else {}
        data = []
        for vector in page:
            state = states[(vector.channel, vector.key)]
            data.append(
                {
                    "key": vector.value,
                    "type": vector.channel,
                    "status": render_status(state.status, "api"),
                    "updated_at": (
                        iso(state.updated_at * 1000) if state.updated_at is not None else None
                    ),
                    "groups": [
                        {
                            "id": held.group_id,
                            "name": groups[held.group_id].name,
                            "status": render_status(held.status, "api"),
                            "updated_at": iso(held.updated_at * 1000),
                        }
                        for held in sorted(
                            (h for h in state.groups.values() if h.group_id in groups),
                            key=lambda h: groups[h.group_id].name,
                        )
                    ],
                }
            )
        following = vectors[start + limit] if more else None
        cursor.update(
            has_more=more,
            next=_vector_cursor(following.channel, following.value) if following else "",
        )
        return {"data": data, "cursor": _ordered(cursor)}

    def _links(self, graph: GraphStore, profile: str, limit: int) -> Any:
        found = []
        for other in graph.links(profile)[:limit]:
            collection = graph.profile(other).collection
            found.append(
                {
                    "to_collection": collection,
                    "external_ids": [
                        _external_id(row, collection, first=False)
                        for row in graph.identifiers(other)
                    ],
                }
            )
        return {"data": found}

    def _list(
        self,
        space: SpaceInfo,
        route: Route,
        data: ProfileData,
        params: dict[str, str],
        limit: int,
    ) -> Any:
        after = params.get("next") or None
        found = data.profiles(route.collection, after=after, limit=limit + 1)
        more = len(found) > limit
        cursor: dict[str, Any] = {
            "url": f"/v1/{route.prefix}/{space.id}/collections/{route.collection}/profiles",
            "has_more": more,
            "next": found[limit - 1][0] if more else "",
        }
        if "limit" in params:
            cursor["limit"] = limit
        return {
            "data": [
                {
                    "segment_id": profile,
                    "collection": meta.collection,
                    "created_at": iso(meta.created_at),
                    "updated_at": iso(meta.updated_at),
                }
                for profile, meta in found[:limit]
            ],
            "cursor": cursor,
        }


class Masking(Protocol):
    """The Privacy Portal's masking (``privacy/masking.py``), given by the server: a token
    without PII Access sees Red and Yellow values masked (§9.8)."""

    def values(self, values: Any, prefix: str) -> Any: ...

    def event(self, event: Any) -> Any: ...

    def restricted(self, path: str, value: Any) -> bool: ...

    @property
    def mask(self) -> str: ...


def _masked(masking: Masking, kind: str, body: Any) -> Any:
    """An answer as a reader without PII Access sees it."""
    if kind == "traits" and isinstance(body.get("traits"), dict):
        return {**body, "traits": masking.values(body["traits"], "traits")}
    if kind == "events" and isinstance(body.get("data"), list):
        return {**body, "data": [masking.event(e) for e in body["data"]]}
    if kind in ("external_ids", "links") and isinstance(body.get("data"), list):
        return {**body, "data": [_masked_ids(masking, item) for item in body["data"]]}
    return body


def _masked_ids(masking: Masking, item: Any) -> Any:
    if not isinstance(item, dict):
        return item
    if isinstance(item.get("external_ids"), list):
        return {**item, "external_ids": [_masked_ids(masking, x) for x in item["external_ids"]]}
    kind, value = item.get("type"), item.get("id")
    if isinstance(kind, str) and masking.restricted(f"traits.{kind}", value):
        return {**item, "id": masking.mask}
    return item


def _external_id(row: StoredIdentifier, collection: str, *, first: bool) -> dict[str, Any]:
    item: dict[str, Any] = {
        "source_id": row.source_id,
        "collection": collection,
        "id": row.value,
        "type": row.type,
        "created_at": iso(int(row.first_seen * 1_000_000)),
        "encoding": "none",
    }
    if first:
        item["first_message_id"] = row.message_id
    return item


def _ordered(cursor: dict[str, Any]) -> dict[str, Any]:
    """§4.3's order: url, has_more, next, then limit."""
    keys = ("url", "has_more", "next", "limit")
    return {key: cursor[key] for key in keys if key in cursor}
