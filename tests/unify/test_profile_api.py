"""The Profile API in process (httpx over ASGI, or the raw ASGI call for bytes httpx would
not send) over real ``ProfileData`` and ``SpaceStore`` on SQLite and PostgreSQL, with a
``MemoryGraph`` built by the ``Resolver`` from real events."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from headwater.store import schema
from headwater.store.database import write_transaction
from headwater.store.workspace import WorkspaceStore
from headwater.unify.profile_api import ProfileAPI
from headwater.unify.settings import IdentifierSetting, IdentitySettings
from headwater.unify.spaces import SpaceStore
from tests.support.clock import Clock
from tests.support.profiles import ProfileSpace
from tests.support.unify import DAY, START

TOKEN = "profile-token-0123456789"
PHONE = IdentitySettings().with_identifier(IdentifierSetting(type="phone_number"))


class Api:
    """A space with data, its Profile API and a client for it."""

    def __init__(self, engine: Engine, rate: int = 1_000_000) -> None:
        self.clock = Clock(0.0)  # the API's monotonic clock (auth cache, rate limit)
        self.workspace = WorkspaceStore(engine)
        self.workspace.ensure_workspace("acme")
        self.spaces = SpaceStore(self.workspace)
        self.space_id = self.spaces.create("main", identity=PHONE).id
        self.spaces.create_access_token("main", "site", TOKEN)
        self.data = ProfileSpace(engine, self.space_id, now=START + DAY, settings=PHONE)
        self.app = ProfileAPI(
            self.spaces,
            engine,
            lambda space: self.data.graph,
            requests_per_second=rate,
            clock=self.clock,
            wall_clock=lambda: self.data.now,
        )

    def get(
        self, path: str, token: str | None = TOKEN, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            auth = (token, "") if token is not None else None
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                return await http.get(path, params=params, auth=auth)

        return asyncio.run(send())

    def users(self, rest: str, **params: Any) -> httpx.Response:
        return self.get(
            f"/v1/spaces/{self.space_id}/collections/users/profiles/{rest}", params=params
        )

    def raw(
        self,
        method: str,
        path: bytes,
        query: bytes = b"",
        token: str | None = TOKEN,
        auth: bytes | None = None,
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        """One request straight into the ASGI app, bytes as given."""
        headers = [(b"host", b"test")]
        if token is not None and auth is None:
            auth = b"Basic " + base64.b64encode(f"{token}:".encode())
        if auth is not None:
            headers.append((b"authorization", auth))
        scope = {
            "type": "http",
            "method": method,
            "path": path.decode("latin-1"),
            "raw_path": path,
            "query_string": query,
            "headers": headers,
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        asyncio.run(self.app(scope, receive, send))
        return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


@pytest.fixture
def api(engine: Engine) -> Iterator[Api]:
    yield Api(engine)


def test_traits_by_identifier_by_use_id_and_by_space_name(api: Api) -> None:
    api.data.send("identify", userId="u1", traits={"first_name": "Bob", "city": "Oslo"})
    user = api.data.user("user_id", "u1")
    body = api.users("user_id:u1/traits").json()
    assert body == {
        "traits": {"city": "Oslo", "first_name": "Bob"},
        "cursor": {
            "url": f"/v1/spaces/{api.space_id}/collections/users/profiles/{user}/traits",
            "has_more": False,
            "next": "",
        },
    }
    assert api.users(f"{user}/traits").json()["traits"] == body["traits"]
    by_name = api.get("/v1/namespaces/main/collections/users/profiles/user_id:u1/traits")
    assert by_name.status_code == 200
    assert by_name.json()["traits"] == body["traits"]


def test_unknown_profile_is_404_A_UE_25(api: Api) -> None:
    """A-UE-25: an identifier no profile holds."""
    for rest in (
        "user_id:unknown/traits",
        "use_000000000000000000000000000/events",
        "email:/traits",
    ):
        response = api.users(rest)
        assert response.status_code == 404
        assert response.json() == {
            "error": {"code": "not_found", "message": "Profile was not found."}
        }


def test_auth_and_the_collection_parameter_A_UE_26(api: Api) -> None:
    """A-UE-26: no or a wrong token is 401; collection ``users!`` is 400 validation_error."""
    path = f"/v1/spaces/{api.space_id}/collections/users/profiles/user_id:u1/traits"
    for token in (None, "wrong-token-0123456789", ""):
        response = api.get(path, token=token)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "authentication_error"
    for header in (
        b"Bearer " + TOKEN.encode(),
        b"Basic !!!",
        b"Basic " + base64.b64encode(b"\xff:"),
    ):
        assert api.raw("GET", path.encode(), auth=header)[0] == 401
    other = api.spaces.create("other").id  # a valid token of another space does not open it
    assert api.get(path.replace(api.space_id, other)).status_code == 401
    response = api.get(f"/v1/spaces/{api.space_id}/collections/users!/profiles/user_id:u1/traits")
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "validation_error",
            "message": "The parameter `collection` has invalid character(s) `!`",
        }
    }


def test_a_revoked_token_stops_within_a_second(api: Api) -> None:
    path = f"/v1/spaces/{api.space_id}/collections/users/profiles/user_id:u1/traits"
    assert api.get(path).status_code == 404
    api.spaces.revoke_access_token("main", "site")
    api.clock.advance(1.0)
    assert api.get(path).status_code == 401


def test_the_rate_limit_per_space_A_UE_27(engine: Engine) -> None:
    """A-UE-27: the 101st request within one second is 429 rate_limit_error."""
    api = Api(engine, rate=100)
    path = f"/v1/spaces/{api.space_id}/collections/users/profiles/user_id:u1/traits"
    statuses = [api.raw("GET", path.encode())[0] for _ in range(100)]
    assert statuses == [404] * 100
    status, headers, body = api.raw("GET", path.encode())
    assert status == 429
    assert msgspec.json.decode(body)["error"]["code"] == "rate_limit_error"
    assert headers[b"retry-after"] == b"1"
    api.clock.advance(0.05)  # five requests' worth come back
    assert [api.raw("GET", path.encode())[0] for _ in range(6)] == [404] * 5 + [429]


def test_a_percent_encoded_plus_resolves_A_UE_28(api: Api) -> None:
    """A-UE-28: ``phone_number:%2B5555550123`` is the phone ``+5555550123``."""
    api.data.send("identify", userId="u1", traits={"phone_number": "+5555550123", "a": 1})
    response = api.users("phone_number:%2B5555550123/traits")
    assert response.status_code == 200
    assert response.json()["traits"] == {"a": 1, "phone_number": "+5555550123"}


def test_null_removes_and_empty_string_stays_A_UE_22(api: Api) -> None:
    """A-UE-22: ``{trait1: null}`` removes trait1, ``{trait2: ""}`` keeps trait2 as ``""``."""
    api.data.send("identify", userId="u1", traits={"trait1": "x", "trait2": "y"})
    api.data.later(1)
    api.data.send("identify", userId="u1", traits={"trait1": None, "trait2": ""})
    assert api.users("user_id:u1/traits").json()["traits"] == {"trait2": ""}


def test_latest_write_wins_and_verbose_shows_where_from_A_UE_23(api: Api) -> None:
    """A-UE-23: "A" from one source, then "B" from another: "B", with its source and time."""
    api.data.send("identify", "web", userId="u1", traits={"first_name": "A"})
    api.data.later(90)
    api.data.send("identify", "ios", userId="u1", traits={"first_name": "B"})
    assert api.users("user_id:u1/traits").json()["traits"] == {"first_name": "B"}
    verbose = api.users("user_id:u1/traits", verbose="true").json()["traits"]
    assert verbose == {
        "first_name": {"value": "B", "source_id": "ios", "updated_at": "2025-01-01T00:01:30.000Z"}
    }


def test_classes_include_and_paging_A_UE_29(api: Api) -> None:
    """A-UE-29: class=audience, include=, and limit=2 over 3 traits pages to the 3rd."""
    api.data.send("identify", userId="u1", traits={"b": 2, "a": 1, "c": 3})
    user = api.data.user("user_id", "u1")
    with write_transaction(api.data.engine) as conn:  # what an audience computation will write
        conn.execute(
            schema.unify_profile_traits.insert().values(
                space_id=api.space_id,
                profile_id=user,
                key="high_value_user",
                value=True,
                present=True,
                trait_class="audience",
                source_id="engage",
                updated_at=0,
            )
        )
    assert api.users("user_id:u1/traits", **{"class": "audience"}).json()["traits"] == {
        "high_value_user": True
    }
    assert api.users("user_id:u1/traits", **{"class": "computed_trait"}).json()["traits"] == {}
    included = api.users("user_id:u1/traits", include="high_value_user", limit=100).json()
    assert included["traits"] == {"high_value_user": True}
    assert included["cursor"]["has_more"] is False
    assert included["cursor"]["next"] == ""
    assert included["cursor"]["limit"] == 100
    first = api.users("user_id:u1/traits", include="a,b,c", limit=2).json()
    assert first["traits"] == {"a": 1, "b": 2}
    assert first["cursor"]["has_more"] is True
    rest = api.users("user_id:u1/traits", include="a,b,c", limit=2, next=first["cursor"]["next"])
    assert rest.json()["traits"] == {"c": 3}
    assert rest.json()["cursor"]["has_more"] is False


def test_external_ids_and_metadata_fields_A_UE_30(api: Api) -> None:
    """A-UE-30: the fields of /external_ids items and of /metadata."""
    api.data.send("identify", "web", anonymousId="a1", userId="u1", traits={"email": "e@x.com"})
    api.data.later(5)
    api.data.send("track", "ios", userId="u1", event="Opened")
    body = api.users("user_id:u1/external_ids").json()
    assert [(i["type"], i["id"]) for i in body["data"]] == [
        ("user_id", "u1"),
        ("email", "e@x.com"),
        ("anonymous_id", "a1"),
    ]
    assert body["data"][0] == {
        "source_id": "web",
        "collection": "users",
        "id": "u1",
        "type": "user_id",
        "created_at": "2025-01-01T00:00:00.000Z",
        "encoding": "none",
        "first_message_id": "msg-1",
    }
    only = api.users("user_id:u1/external_ids", include="anonymous_id,email").json()["data"]
    assert [i["type"] for i in only] == ["email", "anonymous_id"]
    page = api.users("user_id:u1/external_ids", limit=2).json()
    assert page["cursor"]["has_more"] is True
    assert page["cursor"]["next"].startswith("map_")
    rest = api.users("user_id:u1/external_ids", limit=2, next=page["cursor"]["next"]).json()
    assert [i["id"] for i in rest["data"]] == ["a1"]
    assert api.users("user_id:u1/metadata").json() == {
        "metadata": {
            "created_at": "2025-01-01T00:00:00.000Z",
            "updated_at": "2025-01-01T00:00:05.000Z",
            "expires_at": None,
            "first_message_id": "msg-1",
            "first_source_id": "web",
            "last_message_id": "msg-2",
            "last_source_id": "ios",
        }
    }


def test_every_response_has_a_request_id_A_UE_30(engine: Engine) -> None:
    """A-UE-30: 200, 400, 401, 404, 405 and 429 answers all carry ``Request-Id``."""
    api = Api(engine, rate=3)
    api.data.send("identify", userId="u1")
    base = f"/v1/spaces/{api.space_id}/collections"
    seen = [
        api.raw("GET", f"{base}/users/profiles/user_id:u1/metadata".encode()),
        api.raw("GET", f"{base}/users!/profiles/user_id:u1/traits".encode()),
        api.raw("GET", f"{base}/users/profiles/user_id:u1/traits".encode(), token=None),
        api.raw("GET", f"{base}/users/profiles/user_id:nobody/traits".encode()),
        api.raw("OPTIONS", f"{base}/users/profiles/user_id:u1/traits".encode()),
        api.raw("GET", f"{base}/users/profiles/user_id:u1/traits".encode()),
    ]
    assert [status for status, _, _ in seen] == [200, 400, 401, 404, 405, 429]
    ids = [headers[b"request-id"] for _, headers, _ in seen]
    assert len(set(ids)) == len(ids)
    for _, headers, _ in seen:  # server-side only: never a CORS header
        assert not [name for name in headers if name.startswith(b"access-control-")]


def test_events_A_UE_24(api: Api) -> None:
    """A-UE-24: no Identify calls; only the last 14 days; desc by default; sort=asc,
    include=Page Viewed and start honoured; cursors page through."""
    api.data.now = START + 30 * DAY
    api.data.send("track", userId="u1", event="Too Old")
    api.data.later(20 * DAY)
    api.data.send("identify", userId="u1", traits={"a": 1})
    api.data.later(1)
    api.data.send("page", userId="u1", name="Pricing", properties={"url": "https://x/p"})
    api.data.later(1)
    api.data.send("track", userId="u1", event="Order Completed", properties={"total": 3})
    user = api.data.user("user_id", "u1")
    body = api.users("user_id:u1/events").json()
    assert [e["event"] for e in body["data"]] == ["Order Completed", "Page Viewed"]
    track = body["data"][0]
    assert track["type"] == "track"
    assert track["message_id"] == "msg-4"
    assert track["source_id"] == "src"
    assert track["timestamp"] == "2025-01-21T00:00:02.000Z"
    assert track["properties"] == {"total": 3}
    assert track["related"] == {"users": user}
    assert track["external_ids"] == [
        {"collection": "users", "type": "user_id", "id": "u1", "encoding": "none"}
    ]
    asc = api.users("user_id:u1/events", sort="asc").json()["data"]
    assert [e["event"] for e in asc] == ["Page Viewed", "Order Completed"]
    pages = api.users("user_id:u1/events", include="Page Viewed").json()["data"]
    assert [e["event"] for e in pages] == ["Page Viewed"]
    others = api.users("user_id:u1/events", exclude="Page Viewed,Nothing").json()["data"]
    assert [e["event"] for e in others] == ["Order Completed"]
    assert len(api.users("user_id:u1/events", start="2006-01-02").json()["data"]) == 2
    assert api.users("user_id:u1/events", start="2025-01-21T00:00:02Z").json()["data"] == [track]
    assert api.users("user_id:u1/events", end="2018-01-02").json()["data"] == []
    first = api.users("user_id:u1/events", limit=1).json()
    cursor = first["cursor"]
    assert cursor["has_more"] is True
    at, _, message_id = base64.b64decode(cursor["next"]).decode().partition("::")
    assert (int(at), message_id) == (1737417601 * 10**9, "msg-3")
    rest = api.users("user_id:u1/events", limit=1, next=cursor["next"]).json()
    assert [e["event"] for e in rest["data"]] == ["Page Viewed"]
    assert rest["cursor"] == {
        "url": f"/v1/spaces/{api.space_id}/collections/users/profiles/{user}/events",
        "has_more": False,
        "next": "",
        "limit": 1,
    }


def test_lookup_by_a_merged_anonymous_id_A_UE_18(api: Api) -> None:
    """A-UE-18: P2{a2} merged into P1{a1} by a shared email; ``anonymous_id:a2`` finds P1,
    with both anonymous ids, the email, and the traits of both."""
    api.data.send("identify", anonymousId="a1", traits={"plan": "free"})
    first = api.data.user("anonymous_id", "a1")
    api.data.later(1)
    api.data.send("identify", anonymousId="a2", traits={"age": 30})
    second = api.data.user("anonymous_id", "a2")
    api.data.later(1)
    api.data.send("identify", anonymousId="a1", traits={"email": "e@x.com"})
    api.data.later(1)
    api.data.send("identify", anonymousId="a2", traits={"email": "e@x.com"})
    assert first != second
    ids = api.users("anonymous_id:a2/external_ids").json()["data"]
    assert sorted((i["type"], i["id"]) for i in ids) == [
        ("anonymous_id", "a1"),
        ("anonymous_id", "a2"),
        ("email", "e@x.com"),
    ]
    traits = api.users("anonymous_id:a2/traits").json()
    assert traits["traits"] == {"age": 30, "email": "e@x.com", "plan": "free"}
    assert f"/profiles/{first}/traits" in traits["cursor"]["url"]
    assert api.users(f"{second}/traits").json()["traits"] == traits["traits"]  # merged-away id


def test_links_between_users_and_accounts_A_UE_8(api: Api) -> None:
    """A-UE-8: a group call links the user to the account ``group_id ADGCJE3Y8H``; /links
    shows it from both sides; the account has its traits."""
    api.data.send("identify", userId="u1")
    api.data.later(1)
    api.data.send("group", "grp-src", userId="u1", groupId="ADGCJE3Y8H", traits={"plan": "team"})
    links = api.users("user_id:u1/links").json()
    assert links == {
        "data": [
            {
                "to_collection": "accounts",
                "external_ids": [
                    {
                        "source_id": "grp-src",
                        "collection": "accounts",
                        "id": "ADGCJE3Y8H",
                        "type": "group_id",
                        "created_at": "2025-01-01T00:00:01.000Z",
                        "encoding": "none",
                    }
                ],
            }
        ]
    }
    account = f"/v1/spaces/{api.space_id}/collections/accounts/profiles/group_id:ADGCJE3Y8H"
    assert api.get(f"{account}/traits").json()["traits"] == {"plan": "team"}
    back = api.get(f"{account}/links").json()["data"]
    assert [(item["to_collection"], item["external_ids"][0]["id"]) for item in back] == [
        ("users", "u1")
    ]
    # a user is not an account
    assert (
        api.get(account.replace("group_id:ADGCJE3Y8H", "user_id:u1") + "/traits").status_code == 404
    )


def test_list_profiles(api: Api) -> None:
    for n in range(3):
        api.data.send("identify", userId=f"u{n}")
    ids = sorted(api.data.user("user_id", f"u{n}") for n in range(3))
    first = api.get(f"/v1/spaces/{api.space_id}/collections/users/profiles", params={"limit": 2})
    assert [p["segment_id"] for p in first.json()["data"]] == ids[:2]
    cursor = first.json()["cursor"]
    assert cursor["has_more"] is True
    rest = api.get(
        f"/v1/spaces/{api.space_id}/collections/users/profiles",
        params={"limit": 2, "next": cursor["next"]},
    )
    assert [p["segment_id"] for p in rest.json()["data"]] == ids[2:]


@pytest.mark.parametrize(
    ("path", "query"),
    [
        (b"/v1/spaces/{space}/collections/users/profiles/user_id:u1/traits", b"limit=0"),
        (b"/v1/spaces/{space}/collections/users/profiles/user_id:u1/traits", b"limit=201"),
        (
            b"/v1/spaces/{space}/collections/users/profiles/user_id:u1/traits",
            b"limit=" + b"9" * 5000,
        ),
        (b"/v1/spaces/{space}/collections/users/profiles/user_id:u1/traits", b"limit=-1"),
        (b"/v1/spaces/{space}/collections/users/profiles/user_id:u1/traits", b"class=nope"),
        (b"/v1/spaces/{space}/collections/users/profiles/user_id:u1/traits", b"verbose=maybe"),
        (b"/v1/spaces/{space}/collections/users/profiles/user_id:u1/traits", b"include=%ff"),
        (b"/v1/spaces/{space}/collections/users/profiles/user_id:u1/traits", b"next=\xff"),
        (b"/v1/spaces/{space}/collections/users/profiles/user_id:u1/events", b"limit=101"),
        (b"/v1/spaces/{space}/collections/users/profiles/user_id:u1/events", b"sort=up"),
        (b"/v1/spaces/{space}/collections/users/profiles/user_id:u1/events", b"start=yesterday"),
        (b"/v1/spaces/{space}/collections/users/profiles/user_id:u1/events", b"next=%%%"),
        (b"/v1/spaces/{space}/collections/users/profiles/user_id:u1/events", b"next=bm9wZQ=="),
        (
            b"/v1/spaces/{space}/collections/users/profiles/user_id:u1/events",
            b"next=OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTo6eA==",
        ),
        (b"/v1/spaces/{space}/collections/users/profiles/user_id:u1/external_ids", b"next=map_!!"),
        (b"/v1/spaces/{space}/collections/users/profiles/user_id:u1/external_ids", b"next=zzz"),
        (b"/v1/spaces/{space}/collections/users/profiles/user_id:u1/links", b"limit=21"),
        (b"/v1/spaces/{space}/collections/users/profiles/user%ff:u1/traits", b""),
        (b"/v1/spaces/{space}/collections/users/profiles/us er:u1/traits", b""),
        (b"/v1/spaces/{space}/collections/users/profiles/nocolon/traits", b""),
        (b"/v1/spaces/{space}/collections/Users/profiles/user_id:u1/traits", b""),
        (b"/v1/spaces/{space}/collections/things/profiles/user_id:u1/traits", b""),
        (b"/v1/spaces/{space}/collections/%ff/profiles/user_id:u1/traits", b""),
    ],
)
def test_bad_requests_are_400(api: Api, path: bytes, query: bytes) -> None:
    api.data.send("identify", userId="u1", traits={"a": 1})
    status, headers, body = api.raw("GET", path.replace(b"{space}", api.space_id.encode()), query)
    assert status == 400, body
    assert msgspec.json.decode(body)["error"]["code"] in (
        "invalid_request_error",
        "validation_error",
    )
    assert headers[b"content-type"] == b"application/json"


@pytest.mark.parametrize(
    "path",
    [
        b"/v1/spaces/",
        b"/v1/spaces//collections/users/profiles",
        b"/v1/spaces/%ff/collections/users/profiles/user_id:u1/traits",
        b"/v1/spaces/{space}",
        b"/v1/spaces/{space}/",
        b"/v1/spaces/{space}/collections",
        b"/v1/spaces/{space}/collections/users/profiles/user_id:u1",
        b"/v1/spaces/{space}/collections/users/profiles/user_id:u1/traits/",
        b"/v1/spaces/{space}/collections/users/profiles/user_id:u1/nothing",
        b"/v1/spaces/{space}/collections/users/profiles//traits",
        b"/v1/spaces/{space}/collections/users/profiles/user_id:%00/traits",
        b"/v1/spaces/{space}/collections/users/profiles/user_id:\xff\xfe/traits",
        b"/v1/spaces/{space}/collections/users/profiles/user_id:a%2Fb/traits",
        b"/v1/spaces/{space}/collections/users/profiles/user_id:" + b"x" * 20000 + b"/traits",
        b"/v1/namespaces/{space}/../../admin",
    ],
)
def test_odd_paths_never_answer_500(api: Api, path: bytes) -> None:
    status, headers, body = api.raw("GET", path.replace(b"{space}", api.space_id.encode()))
    assert status in (400, 401, 404), body
    assert b"request-id" in headers
    assert set(msgspec.json.decode(body)) == {"error"}


def test_a_value_with_a_slash_is_one_segment(api: Api) -> None:
    api.data.send("identify", userId="a/b", traits={"k": "v"})
    assert api.users("user_id:a%2Fb/traits").json()["traits"] == {"k": "v"}


_SEGMENTS = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [b"users", b"accounts", b"profiles", b"traits", b"events", b"user_id:u1", b"%ff", b"%2"]
    ),
)
_QUERIES = st.one_of(
    st.binary(max_size=60),
    st.lists(
        st.tuples(
            st.sampled_from(
                ["limit", "next", "class", "verbose", "include", "exclude", "start", "end", "sort"]
            ),
            st.text(max_size=30),
        ),
        max_size=4,
    ).map(lambda pairs: urlencode(pairs).encode()),
)


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    kind=st.sampled_from(["traits", "external_ids", "events", "metadata", "links", "x"]),
    segments=st.lists(_SEGMENTS, max_size=3),
    query=_QUERIES,
)
def test_no_request_gets_a_500(api: Api, kind: str, segments: list[bytes], query: bytes) -> None:
    """Whatever the path's tail and the query hold: an answer in Segment's error shape."""
    if not api.data.graph.find("users", "user_id", "u1"):
        api.data.send("identify", userId="u1", traits={"a": 1})
        api.data.send("track", userId="u1", event="E")
    base = f"/v1/spaces/{api.space_id}/collections/users/profiles/user_id:u1/{kind}".encode()
    path = b"/".join([base, *segments]) if segments else base
    status, headers, body = api.raw("GET", path.replace(b"?", b"%3F"), query)
    assert status in (200, 400, 404), body
    assert b"request-id" in headers
    decoded = msgspec.json.decode(body)
    assert isinstance(decoded, dict)
    if status != 200:
        assert decoded["error"]["code"] in (
            "invalid_request_error",
            "validation_error",
            "not_found",
        )
