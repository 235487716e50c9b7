"""The IAM routes (/roles, /users, /labels, a source's labels) and resource-scoped access
through the REST API, on SQLite and PostgreSQL (A-IAM-1, A-IAM-2)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import PREFIX, create_api
from headwater.iam.principals import user_principal
from headwater.iam.resources import find_resource
from headwater.iam.roles import ROLES
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from tests.api.test_sources_api import assert_error

ADMIN = "test-admin-token"


@pytest.fixture
def http(engine: Engine) -> Iterator[TestClient]:
    WorkspaceStore(engine).ensure_workspace("acme")
    app = create_api(engine, admin_token_hash=hash_token(ADMIN))
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN}"}) as client:
        yield client


def _ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def _token(http: TestClient, permissions: list[dict[str, Any]]) -> dict[str, str]:
    made = _ok(
        http.post(f"{PREFIX}/tokens", json={"description": "t", "permissions": permissions}), 201
    )
    return {"Authorization": f"Bearer {made['token']['token']}"}


def _labelled(*labels: tuple[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "roleId": "source-read-only",
            "resources": [
                {"type": "WORKSPACE", "labels": [{"key": k, "value": v} for k, v in labels]}
            ],
        }
    ]


def test_roles_are_segments(http: TestClient) -> None:
    roles = _ok(http.get(f"{PREFIX}/roles"))["roles"]
    assert {r["name"] for r in roles} == {r.name for r in ROLES.values()}
    assert len(roles) == 16 and all(set(r) == {"id", "name", "description"} for r in roles)
    page = _ok(http.get(f"{PREFIX}/roles", params={"pagination.count": 5}))
    assert len(page["roles"]) == 5 and "next" in page["pagination"]


def test_users_with_permissions(http: TestClient) -> None:
    made = _ok(http.post(f"{PREFIX}/users", json={"email": "bob@example.com", "name": "Bob"}), 201)
    user, password = made["user"], made["password"]
    assert len(password) >= 16 and user["permissions"] == []
    assert password not in http.get(f"{PREFIX}/users").text
    assert_error(
        http.post(f"{PREFIX}/users", json={"email": "BOB@example.com", "password": "long enough"}),
        409,
        "conflict",
    )
    assert_error(http.post(f"{PREFIX}/users", json={"email": "bob"}), 422, "validation", "email")
    with_password = _ok(
        http.post(f"{PREFIX}/users", json={"email": "al@example.com", "password": "long enough"}),
        201,
    )
    assert "password" not in with_password
    replaced = _ok(
        http.put(
            f"{PREFIX}/users/{user['id']}/permissions",
            json={
                "permissions": [
                    {"roleId": "tracking-plan-admin", "resources": [{"type": "WORKSPACE"}]}
                ]
            },
        )
    )
    assert replaced["permissions"] == [
        {
            "roleId": "tracking-plan-admin",
            "roleName": "Tracking Plan Admin",
            "resources": [{"id": "", "type": "WORKSPACE"}],
        }
    ]
    shown = _ok(http.get(f"{PREFIX}/users/{user['id']}"))["user"]
    assert shown["permissions"] == replaced["permissions"] and shown["email"] == "bob@example.com"
    bad = http.put(
        f"{PREFIX}/users/{user['id']}/permissions",
        json={"permissions": [{"roleId": "nope", "resources": [{"type": "WORKSPACE"}]}]},
    )
    assert_error(bad, 422, "validation", "permissions.0.roleId")
    _ok(http.delete(f"{PREFIX}/users/{user['id']}"))
    assert_error(http.get(f"{PREFIX}/users/{user['id']}"), 404, "not_found")
    assert_error(http.get(f"{PREFIX}/users/%ED%A0%80"), 404, "not_found")


def test_labels_routes(http: TestClient) -> None:
    """A-IAM-2 through the API."""
    listed = _ok(http.get(f"{PREFIX}/labels"))["labels"]
    assert [(x["key"], x["value"]) for x in listed] == [
        ("environment", "dev"),
        ("environment", "prod"),
    ]
    for key, value in (("1env", "prod"), ("env", "")):
        refused = http.post(f"{PREFIX}/labels", json={"label": {"key": key, "value": value}})
        assert_error(refused, 422, "validation")
    _ok(http.post(f"{PREFIX}/labels", json={"label": {"key": "product", "value": "car"}}), 201)
    _ok(http.post(f"{PREFIX}/sources", json={"name": "web"}), 201)
    kept = _ok(
        http.put(
            f"{PREFIX}/sources/web/labels",
            json={
                "labels": [
                    {"key": "environment", "value": "prod"},
                    {"key": "product", "value": "car"},
                ]
            },
        )
    )
    assert kept["labels"] == [
        {"key": "environment", "value": "prod"},
        {"key": "product", "value": "car"},
    ]
    two_values = http.put(
        f"{PREFIX}/sources/web/labels",
        json={
            "labels": [
                {"key": "environment", "value": "prod"},
                {"key": "environment", "value": "dev"},
            ]
        },
    )
    assert_error(two_values, 409, "conflict")
    assert_error(http.delete(f"{PREFIX}/labels/environment/prod"), 409, "conflict")
    _ok(http.delete(f"{PREFIX}/labels/environment/dev"))
    assert_error(http.delete(f"{PREFIX}/labels/environment/dev"), 404, "not_found")
    assert_error(http.put(f"{PREFIX}/sources/nope/labels", json={"labels": []}), 404, "not_found")
    _ok(http.post(f"{PREFIX}/spaces", json={"name": "Prod"}), 201)
    on_space = [{"key": "environment", "value": "prod"}]
    assert _ok(http.put(f"{PREFIX}/spaces/Prod/labels", json={"labels": on_space}))["labels"] == (
        on_space
    )
    assert_error(http.put(f"{PREFIX}/spaces/nope/labels", json={"labels": []}), 404, "not_found")


def test_label_scoped_tokens_see_their_sources_only(http: TestClient) -> None:
    """A-IAM-1 through the API, and a 403 that says nothing about whether a source exists."""
    _ok(http.post(f"{PREFIX}/labels", json={"label": {"key": "product", "value": "car"}}), 201)
    _ok(http.post(f"{PREFIX}/labels", json={"label": {"key": "product", "value": "truck"}}), 201)
    for name, env, product in (("A", "prod", "car"), ("B", "prod", "truck"), ("C", "dev", "car")):
        _ok(http.post(f"{PREFIX}/sources", json={"name": name}), 201)
        labels = [{"key": "environment", "value": env}, {"key": "product", "value": product}]
        _ok(http.put(f"{PREFIX}/sources/{name}/labels", json={"labels": labels}))
    _ok(
        http.post(
            f"{PREFIX}/destinations",
            json={
                "name": "hook",
                "type": "webhook",
                "source": "A",
                "settings": {"url": "http://127.0.0.1:9/"},
            },
        ),
        201,
    )
    people = {
        "sally": (_labelled(("environment", "prod")), {"A", "B"}),
        "bob": (_labelled(("environment", "prod"), ("product", "truck")), {"B"}),
        "jane": (_labelled(("product", "car")), {"A", "C"}),
    }
    for who, (permissions, expected) in people.items():
        headers = _token(http, permissions)
        seen = set()
        for name in ("A", "B", "C"):
            got = http.get(f"{PREFIX}/sources/{name}", headers=headers)
            if got.status_code == 200:
                seen.add(name)
            else:
                assert_error(got, 403, "forbidden")
                assert name not in got.text
        assert seen == expected, who
        # Lists show exactly those, and their destinations (A-IAM-2 on list routes).
        listed = _ok(http.get(f"{PREFIX}/sources", headers=headers))
        assert {x["name"] for x in listed["sources"]} == expected, who
        assert listed["pagination"]["totalEntries"] == len(expected)
        segment = http.get("/segment/v1/sources", headers=headers).json()["data"]["sources"]
        assert {x["name"] for x in segment} == expected, who
        overview = _ok(http.get(f"{PREFIX}/overview", headers=headers))
        assert {x["name"] for x in overview["sources"]} == expected, who
        hooks = {d["name"] for d in overview["destinations"]}
        assert hooks == ({"hook"} if "A" in expected else set()), who
        listed_hooks = _ok(http.get(f"{PREFIX}/destinations", headers=headers))["destinations"]
        assert {d["name"] for d in listed_hooks} == hooks, who
        missing = http.get(f"{PREFIX}/sources/no-such-source", headers=headers)
        assert (
            missing.json()
            == http.get(
                f"{PREFIX}/sources/B", headers=_token(http, _labelled(("product", "car")))
            ).json()
        )
        # The destination is A's: it is readable exactly when A is.
        delivery = http.get(f"{PREFIX}/destinations/hook", headers=headers).status_code
        assert (delivery == 200) == ("A" in expected), who
        # Reading is not writing.
        assert_error(
            http.patch(f"{PREFIX}/sources/A", json={"enabled": False}, headers=headers),
            403,
            "forbidden",
        )
    everything = _token(http, [{"roleId": "source-admin", "resources": [{"type": "WORKSPACE"}]}])
    assert_error(http.get(f"{PREFIX}/sources/no-such-source", headers=everything), 404, "not_found")
    one = _token(http, [{"roleId": "source-admin", "resources": [{"type": "SOURCE", "id": "C"}]}])
    assert (
        http.patch(f"{PREFIX}/sources/C", json={"enabled": False}, headers=one).status_code == 200
    )
    assert_error(
        http.patch(f"{PREFIX}/sources/A", json={"enabled": False}, headers=one), 403, "forbidden"
    )
    assert_error(http.post(f"{PREFIX}/sources", json={"name": "D"}, headers=one), 403, "forbidden")
    assert http.post(f"{PREFIX}/sources", json={"name": "D"}, headers=everything).status_code == 201


def test_groups_give_their_members_their_grants(http: TestClient, engine: Engine) -> None:
    """A-IAM-4 through the API: a member of two groups, Source Admin on brand:a and on
    brand:b, may change sources of either brand and no other."""
    workspace = WorkspaceStore(engine)
    for brand in ("a", "b", "c"):
        _ok(http.post(f"{PREFIX}/labels", json={"label": {"key": "brand", "value": brand}}), 201)
        _ok(http.post(f"{PREFIX}/sources", json={"name": f"site-{brand}"}), 201)
        labels = [{"key": "brand", "value": brand}]
        _ok(http.put(f"{PREFIX}/sources/site-{brand}/labels", json={"labels": labels}))
    user = _ok(http.post(f"{PREFIX}/users", json={"email": "jane@example.com"}), 201)["user"]
    groups = {}
    for brand in ("a", "b"):
        group = _ok(http.post(f"{PREFIX}/groups", json={"name": f"brand {brand}"}), 201)
        groups[brand] = group["userGroup"]["id"]
        added = _ok(
            http.post(
                f"{PREFIX}/groups/{groups[brand]}/users", json={"emails": ["Jane@example.com"]}
            )
        )
        assert added["userGroup"]["memberCount"] == 1
        permissions = [
            {
                "roleId": "source-admin",
                "resources": [{"type": "WORKSPACE", "labels": [{"key": "brand", "value": brand}]}],
            }
        ]
        _ok(
            http.put(
                f"{PREFIX}/groups/{groups[brand]}/permissions", json={"permissions": permissions}
            )
        )
    assert_error(http.post(f"{PREFIX}/groups", json={"name": "brand a"}), 409, "conflict")
    assert_error(
        http.post(f"{PREFIX}/groups/{groups['a']}/users", json={"emails": ["x@example.com"]}),
        404,
        "not_found",
    )
    mine = _ok(http.get(f"{PREFIX}/users/{user['id']}/groups"))["userGroups"]
    assert sorted(g["name"] for g in mine) == ["brand a", "brand b"]
    members = _ok(http.get(f"{PREFIX}/groups/{groups['a']}/users"))["users"]
    assert [m["email"] for m in members] == ["jane@example.com"]

    def changeable() -> set[str]:
        principal = user_principal(workspace, user["id"])
        assert principal is not None
        return {
            brand
            for brand in ("a", "b", "c")
            if principal.allows("sources", True, find_resource(engine, "SOURCE", f"site-{brand}"))
        }

    assert changeable() == {"a", "b"}
    removed = http.delete(
        f"{PREFIX}/groups/{groups['b']}/users", params={"emails": ["jane@example.com"]}
    )
    _ok(removed)
    assert changeable() == {"a"}
    _ok(http.delete(f"{PREFIX}/groups/{groups['a']}"))
    assert changeable() == set()
    assert_error(http.get(f"{PREFIX}/groups/{groups['a']}"), 404, "not_found")


def test_lists_of_warehouses_spaces_and_functions_show_only_the_granted(
    http: TestClient,
) -> None:
    warehouses = [
        _ok(http.post(f"{PREFIX}/warehouses", json={"name": n, "type": "duckdb"}), 201)
        for n in ("wh-a", "wh-b")
    ]
    spaces = [_ok(http.post(f"{PREFIX}/spaces", json={"name": n}), 201) for n in ("Prod", "Dev")]
    code = "async function onTrack(event) { return event }\n"
    functions = [
        _ok(
            http.post(
                f"{PREFIX}/functions",
                json={"name": n, "kind": "insert", "language": "javascript", "code": code},
            ),
            201,
        )
        for n in ("fa", "fb")
    ]
    cases = [
        ("warehouse-destination-read-only", "WAREHOUSE", warehouses[0]["warehouse"]["id"]),
        ("unify-read-only", "SPACE", spaces[0]["space"]["id"]),
        ("function-read-only", "FUNCTION", functions[0]["function"]["id"]),
    ]
    for role, type_, resource_id in cases:
        one = _token(http, [{"roleId": role, "resources": [{"type": type_, "id": resource_id}]}])
        every = _token(http, [{"roleId": role, "resources": [{"type": "WORKSPACE"}]}])
        key = {"WAREHOUSE": "warehouses", "SPACE": "spaces", "FUNCTION": "functions"}[type_]
        for path in (f"{PREFIX}/{key}", f"/segment/v1/{key}"):
            assert [x["id"] for x in _ok(http.get(path, headers=one))[key]] == [resource_id], path
            assert len(_ok(http.get(path, headers=every))[key]) == 2, path
