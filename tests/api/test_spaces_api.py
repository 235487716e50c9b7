"""The spaces routes: CRUD, sources, Profile API access tokens (created and shown once, listed
by name, revoked), through FastAPI's TestClient on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.config.apply import export_config
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from headwater.unify.space_deletion import GRACE_SECONDS, SpaceDeletions
from headwater.unify.spaces import SpaceStore
from tests.api.test_sources_api import assert_error
from tests.support.clock import Clock

TOKEN = "test-admin-token"
SPACES = "/api/v1/spaces"


def delete_due_spaces(engine: Engine, clock: Clock) -> None:
    """Five calendar days on, the worker deletes the spaces whose deletion was asked (§11)."""
    clock.advance(GRACE_SECONDS)
    SpaceDeletions(WorkspaceStore(engine), clock=clock).run_due()


@pytest.fixture
def client(engine: Engine, clock: Clock) -> Iterator[TestClient]:
    WorkspaceStore(engine).ensure_workspace("acme")
    app = create_api(engine, admin_token_hash=hash_token(TOKEN), clock=clock)
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        for name in ("web", "ios"):
            assert http.post("/api/v1/sources", json={"name": name}).status_code == 201
        made = http.post("/api/v1/warehouses", json={"name": "default", "type": "duckdb"})
        assert made.status_code == 201, made.text
        yield http


def space_of(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    space: dict[str, Any] = response.json()["data"]["space"]
    return space


def source_id(client: TestClient, name: str) -> str:
    found: str = client.get(f"/api/v1/sources/{name}").json()["data"]["source"]["id"]
    return found


def test_crud(client: TestClient, engine: Engine, clock: Clock) -> None:
    created = space_of(
        client.post(
            SPACES,
            json={"name": "Prod", "sourceIds": ["web"], "profilesSync": {"warehouse": "default"}},
        ),
        201,
    )
    assert created["id"].startswith("spa_") and len(created["id"]) == 26
    assert created["slug"] == "prod"
    assert created["sourceIds"] == [source_id(client, "web")]
    assert created["profilesSync"]["warehouse"] == "default"
    assert created["profilesSync"]["schema"] == "prod"
    assert space_of(client.get(f"{SPACES}/{created['id']}")) == created
    assert space_of(client.get(f"{SPACES}/Prod")) == created

    space_of(client.post(SPACES, json={"name": "Dev", "sourceIds": ["web", "ios"]}), 201)
    listed = client.get(SPACES, params={"pagination.count": 1}).json()["data"]
    assert [s["name"] for s in listed["spaces"]] == ["Dev"]
    assert listed["pagination"]["totalEntries"] == 2
    after = client.get(SPACES, params={"pagination.cursor": listed["pagination"]["next"]})
    assert [s["name"] for s in after.json()["data"]["spaces"]] == ["Prod"]

    renamed = space_of(
        client.patch(
            f"{SPACES}/Prod",
            json={"name": "Production", "profilesSync": {"warehouse": "default", "schema": "p"}},
        )
    )
    assert renamed["slug"] == "prod"  # a space's slug never changes
    assert renamed["profilesSync"]["schema"] == "p"
    off = space_of(client.patch(f"{SPACES}/Production", json={"profilesSync": None}))
    assert off["profilesSync"] is None and off["sourceIds"] == created["sourceIds"]
    assert space_of(client.patch(f"{SPACES}/Production", json={"sourceIds": []}))["sourceIds"] == []

    deleted = client.delete(f"{SPACES}/Production").json()["data"]
    assert deleted["status"] == "SUCCESS" and deleted["deletion"]["status"] == "PENDING"
    delete_due_spaces(engine, clock)
    assert_error(client.get(f"{SPACES}/Production"), 404, "not_found")
    assert_error(client.get(f"{SPACES}/{created['id']}"), 404, "not_found")


def test_bad_input_names_the_field(client: TestClient, engine: Engine) -> None:
    space_of(client.post(SPACES, json={"name": "main"}), 201)
    assert_error(client.post(SPACES, json={"name": "main"}), 409, "conflict", "name")
    assert_error(client.post(SPACES, json={"name": " x"}), 422, "validation", "name")
    assert_error(
        client.post(SPACES, json={"name": "b", "sourceIds": ["android"]}),
        404,
        "not_found",
        "sources[0]",
    )
    assert_error(
        client.post(SPACES, json={"name": "b", "profilesSync": {"warehouse": "lake"}}),
        404,
        "not_found",
        "profiles_sync.warehouse",
    )
    assert_error(
        client.post(SPACES, json={"name": "b", "profilesSync": {"warehouse": "default",
                                                                  "schema": "No"}}),
        422,
        "validation",
        "profiles_sync.schema",
    )  # fmt: skip
    assert_error(client.post(SPACES, json={"name": "b", "extra": 1}), 422, "validation", "extra")
    assert_error(client.patch(f"{SPACES}/main", json={"name": None}), 422, "validation", "name")
    assert_error(client.patch(f"{SPACES}/nope", json={"name": "x"}), 404, "not_found")
    assert [s.name for s in SpaceStore(WorkspaceStore(engine)).list()] == ["main"]


def test_sources_connect_and_disconnect(client: TestClient) -> None:
    space_of(client.post(SPACES, json={"name": "main"}), 201)
    space_of(client.post(SPACES, json={"name": "dev", "sourceIds": ["web"]}), 201)
    connected = space_of(client.post(f"{SPACES}/main/sources", json={"sourceId": "web"}))
    assert connected["sourceIds"] == [source_id(client, "web")]
    # twice: nothing changes; a source may be in several spaces
    space_of(client.post(f"{SPACES}/main/sources", json={"sourceId": source_id(client, "web")}))
    space_of(client.post(f"{SPACES}/main/sources", json={"sourceId": "ios"}))
    listed = client.get(f"{SPACES}/main/sources").json()["data"]
    assert [s["name"] for s in listed["sources"]] == ["ios", "web"]
    assert_error(
        client.post(f"{SPACES}/main/sources", json={"sourceId": "nope"}),
        404,
        "not_found",
        "sourceId",
    )
    ok = client.delete(f"{SPACES}/main/sources", params={"sourceId": "web"})
    assert ok.json() == {"data": {"status": "SUCCESS"}}
    assert_error(
        client.delete(f"{SPACES}/main/sources", params={"sourceId": "web"}),
        404,
        "not_found",
        "sourceId",
    )
    assert space_of(client.get(f"{SPACES}/dev"))["sourceIds"] == [source_id(client, "web")]
    # a deleted source leaves every space
    assert client.delete("/api/v1/sources/ios").status_code == 200
    assert space_of(client.get(f"{SPACES}/main"))["sourceIds"] == []


def test_access_tokens_are_shown_once_and_revoked(client: TestClient, engine: Engine) -> None:
    space = space_of(client.post(SPACES, json={"name": "main"}), 201)
    spaces = SpaceStore(WorkspaceStore(engine))
    made = client.post(f"{SPACES}/main/access-tokens", json={"name": "marketing_site/production"})
    assert made.status_code == 201, made.text
    shown = made.json()["data"]["accessToken"]
    token = shown["token"]
    assert set(shown) == {"name", "createdAt", "piiAccess", "token"} and len(token) >= 32
    assert shown["piiAccess"] is True  # the default: PII Access (A-PR-6)
    assert spaces.authenticate(space["id"], token) is not None
    assert spaces.authenticate("main", token) is not None
    other = client.post(f"{SPACES}/main/access-tokens", json={"name": "app", "piiAccess": False})
    other_token = other.json()["data"]["accessToken"]["token"]
    assert other.json()["data"]["accessToken"]["piiAccess"] is False
    assert spaces.authorize("main", other_token) == (spaces.require("main"), False)
    assert other_token != token
    assert_error(
        client.post(f"{SPACES}/main/access-tokens", json={"name": "app"}), 409, "conflict", "name"
    )

    listed = client.get(f"{SPACES}/main/access-tokens")
    assert listed.status_code == 200
    assert [t["name"] for t in listed.json()["data"]["accessTokens"]] == [
        "app",
        "marketing_site/production",
    ]
    assert all(
        set(t) == {"name", "createdAt", "piiAccess"} for t in listed.json()["data"]["accessTokens"]
    )
    # the secret is in no later answer, nor in the export
    everything = [
        client.get(SPACES),
        client.get(f"{SPACES}/main"),
        listed,
        client.get(f"{SPACES}/main/sources"),
    ]
    for response in everything:
        assert token not in response.text and other_token not in response.text
    exported = export_config(WorkspaceStore(engine))
    assert token not in exported and other_token not in exported
    assert "[redacted]" in exported

    name = quote("marketing_site/production", safe="")
    revoked = client.delete(f"{SPACES}/main/access-tokens/{name}")
    assert revoked.json() == {"data": {"status": "SUCCESS"}}
    assert spaces.authenticate("main", token) is None  # no longer authenticates
    assert spaces.authenticate("main", other_token) is not None
    assert_error(client.delete(f"{SPACES}/main/access-tokens/{name}"), 404, "not_found")
    client.delete(f"{SPACES}/main/access-tokens/app")
    assert client.get(f"{SPACES}/main/access-tokens").json()["data"]["accessTokens"] == []
    assert spaces.authenticate("main", other_token) is None


def test_deleting_a_space_ends_its_tokens(client: TestClient, engine: Engine, clock: Clock) -> None:
    space_of(client.post(SPACES, json={"name": "main"}), 201)
    made = client.post(f"{SPACES}/main/access-tokens", json={"name": "site"})
    token = made.json()["data"]["accessToken"]["token"]
    client.delete(f"{SPACES}/main")
    delete_due_spaces(engine, clock)
    space_of(client.post(SPACES, json={"name": "main"}), 201)  # a new space of the same name
    spaces = SpaceStore(WorkspaceStore(engine))
    assert spaces.authenticate("main", token) is None
    assert_error(client.get(f"{SPACES}/x/access-tokens"), 404, "not_found")
    assert json.loads(client.get(f"{SPACES}/main/access-tokens").text)["data"]["accessTokens"] == []


# --- identity settings -----------------------------------------------------------------------

IDENTIFIERS = [
    {
        "type": "user_id",
        "limit": 1,
        "priority": 1,
        "blocked": [{"value": "-1"}, {"value": "^[0-]*$", "regex": True}],
    },
    {"type": "email", "limit": 1, "priority": 2},
    {"type": "anonymous_id", "limit": 5, "period": "weekly"},
    {"type": "shopify_id", "key": "shopifyId", "limit": 1},
]


def identity_of(response: Any, status: int = 200) -> list[dict[str, Any]]:
    assert response.status_code == status, response.text
    found: list[dict[str, Any]] = response.json()["data"]["identitySettings"]["identifiers"]
    return found


def test_identity_settings_get_put_and_import(client: TestClient, engine: Engine) -> None:
    main = space_of(client.post(SPACES, json={"name": "main"}), 201)
    url = f"{SPACES}/main/identity-settings"
    defaults = identity_of(client.get(url))
    assert [i["type"] for i in defaults][:3] == ["user_id", "email", "android.id"]
    assert len(defaults) == 11
    assert defaults[0] == {
        "type": "user_id",
        "limit": 1,
        "period": "ever",
        "priority": 1,
        "blocked": [],
        "key": None,
        "collection": "users",
    }
    assert client.get(url).json()["data"]["spaceId"] == main["id"]

    put = identity_of(client.put(url, json={"identifiers": IDENTIFIERS}))
    assert put == identity_of(client.get(f"{SPACES}/{main['id']}/identity-settings"))
    assert put[0]["blocked"] == [
        {"value": "-1", "regex": False},
        {"value": "^[0-]*$", "regex": True},
    ]
    assert put[2] == {
        "type": "anonymous_id",
        "limit": 5,
        "period": "weekly",
        "priority": None,
        "blocked": [],
        "key": None,
        "collection": "users",
    }
    assert put[3]["key"] == "shopifyId" and put[3]["limit"] == 1
    stored = SpaceStore(WorkspaceStore(engine)).require("main").identity
    assert [s.type for s in stored.identifiers] == [i["type"] for i in IDENTIFIERS]
    # GET's answer is a PUT body that changes nothing
    version = WorkspaceStore(engine).config_version()
    assert identity_of(client.put(url, json={"identifiers": put})) == put
    assert WorkspaceStore(engine).config_version() == version
    # headwater export writes them
    exported = export_config(WorkspaceStore(engine))
    assert "shopifyId" in exported and "weekly" in exported

    space_of(client.post(SPACES, json={"name": "dev"}), 201)
    imported = identity_of(
        client.post(f"{SPACES}/dev/identity-settings/import", json={"fromSpace": main["id"]})
    )
    assert imported == put
    assert_error(
        client.post(f"{SPACES}/dev/identity-settings/import", json={"fromSpace": "nope"}),
        404,
        "not_found",
        "fromSpace",
    )
    assert_error(
        client.post(f"{SPACES}/nope/identity-settings/import", json={"fromSpace": "main"}),
        404,
        "not_found",
    )
    assert_error(client.get(f"{SPACES}/nope/identity-settings"), 404, "not_found")


@pytest.mark.parametrize(
    ("identifiers", "status", "field"),
    [
        ([{**IDENTIFIERS[0], "limit": 0}], 422, "identifiers[0].limit"),
        ([IDENTIFIERS[0], {"type": "user_id"}], 422, "identifiers[1].type"),
        ([IDENTIFIERS[0], {"type": "email", "priority": 1}], 422, "identifiers[1].priority"),
        ([{"type": "x", "blocked": [{"value": "(", "regex": True}]}], 422, "identifiers[0].blocked[0].value"),
        ([{"type": "x", "blocked": [{"value": "\u0000"}]}], 422, "identifiers[0].blocked[0].value"),
        ([{"type": "Email"}], 422, "identifiers[0].type"),
        ([{"type": "email", "key": "mail"}], 422, "identifiers[0].key"),
        ([{"type": "group_id", "collection": "users"}], 422, "identifiers[0].collection"),
        ([{"type": "x", "priority": 10**30}], 422, "identifiers[0].priority"),
        ([], 422, "identifiers"),
        ([{"type": "x", "limits": 1}], 422, "identifiers.0.limits"),
        ([{"type": "x", "period": "daily"}], 422, "identifiers.0.period"),
        ([{"type": "x", "limit": "1"}], 422, "identifiers.0.limit"),
    ],
)  # fmt: skip
def test_bad_identity_settings_name_the_field(
    client: TestClient, identifiers: list[Any], status: int, field: str
) -> None:
    space_of(client.post(SPACES, json={"name": "main"}), 201)
    url = f"{SPACES}/main/identity-settings"
    assert_error(client.put(url, json={"identifiers": identifiers}), status, "validation", field)
    assert len(identity_of(client.get(url))) == 11  # nothing changed
