"""Unify end to end on a running server: events sent to the Tracking API by two sources come
back from the Profile API on the same port — identity resolution in the worker process, the
Profile API in the api process, one state database between them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.live import ADMIN_TOKEN, LiveServer, run_headwater
from tests.support.waiting import wait_for

TOKEN = "profile-token-0123456789abcdef"
CONFIG = f"""\
workspace: test
sources:
  - name: web
    write_key: WK_web
  - name: ios
    write_key: WK_ios
spaces:
  - name: main
    sources: [web, ios]
    access_tokens:
      - {{name: site, token: "{TOKEN}"}}
"""
BASE = "/v1/spaces/main/collections/users/profiles"

pytestmark = pytest.mark.live


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    path = tmp_path / "headwater.yaml"
    path.write_text(CONFIG)
    database = request.getfixturevalue("pg_database") if request.param == "postgresql" else None
    live = LiveServer(data_dir=tmp_path / "data", config=path, role="all", database=database)
    live.start(timeout=60)
    try:
        yield live
    finally:
        live.stop()


def _send(server: LiveServer, key: str, kind: str, body: dict[str, Any]) -> None:
    answer = httpx.post(f"{server.url}/v1/{kind}", json=body, auth=(key, ""), timeout=10)
    assert answer.status_code == 200, answer.text


def _get(server: LiveServer, path: str, **params: str) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", params=params, auth=(TOKEN, ""), timeout=10)


def test_tracking_api_events_become_a_profile_the_profile_api_serves(server: LiveServer) -> None:
    """A-UE-22, A-UE-23 and A-UE-24 through the whole server: traits from two sources (latest
    wins, null removes, "" kept), the anonymous visitor merged on identify, Track and Page on
    the timeline but never Identify, and the group's account linked (A-UE-8)."""
    _send(server, "WK_web", "page", {"anonymousId": "anon-1", "name": "Home"})
    _send(
        server,
        "WK_web",
        "identify",
        {
            "anonymousId": "anon-1",
            "userId": "u-1",
            "traits": {"first_name": "A", "trait1": "x", "trait2": "y"},
            "timestamp": "2026-12-01T10:00:00Z",
        },
    )
    _send(
        server,
        "WK_ios",
        "identify",
        {
            "userId": "u-1",
            "traits": {"first_name": "B", "trait1": None, "trait2": ""},
            "timestamp": "2026-12-01T11:00:00Z",
        },
    )
    _send(server, "WK_ios", "track", {"userId": "u-1", "event": "Order Completed"})
    _send(server, "WK_web", "group", {"userId": "u-1", "groupId": "acct-9"})

    def traits() -> dict[str, Any] | None:
        answer = _get(server, f"{BASE}/anonymous_id:anon-1/traits", verbose="true")
        if answer.status_code != 200:
            return None
        found: dict[str, Any] = answer.json()["traits"]
        return found if found.get("first_name", {}).get("value") == "B" else None

    verbose = wait_for(traits, 60, "the profile's traits")
    assert "trait1" not in verbose
    assert verbose["trait2"]["value"] == ""
    ios = httpx.get(
        f"{server.url}/api/v1/sources/ios",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=10,
    ).json()["data"]["source"]["id"]
    assert verbose["first_name"]["source_id"] == ios

    def timeline() -> list[dict[str, Any]] | None:
        answer = _get(server, f"{BASE}/user_id:u-1/events")
        assert answer.status_code == 200, answer.text
        items: list[dict[str, Any]] = answer.json()["data"]
        return items if any(i["event"] == "Order Completed" for i in items) else None

    items = wait_for(timeline, 60, "the track on the profile's timeline")
    assert "Page Viewed" in [item["event"] for item in items]
    assert all(item["type"] != "identify" for item in items)

    ids = _get(server, f"{BASE}/user_id:u-1/external_ids")
    assert {(i["type"], i["id"]) for i in ids.json()["data"]} >= {
        ("user_id", "u-1"),
        ("anonymous_id", "anon-1"),
    }

    def links() -> list[Any] | None:
        answer = _get(server, f"{BASE}/user_id:u-1/links")
        data: list[Any] = answer.json().get("data") or []
        return data or None

    linked = wait_for(links, 30, "the user's account link")
    assert linked[0]["to_collection"] == "accounts"
    assert linked[0]["external_ids"][0]["id"] == "acct-9"


def test_the_profile_api_answers_segment_errors_without_cors(server: LiveServer) -> None:
    """A-UE-25, A-UE-26 on the server's port: unknown profile → 404 not_found, no token → 401,
    and no CORS headers even when a browser asks (server-side only)."""
    missing = _get(server, f"{BASE}/user_id:nobody/traits")
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "not_found", "message": "Profile was not found."}}
    assert missing.headers.get("request-id")
    anonymous = httpx.get(f"{server.url}{BASE}/user_id:nobody/traits", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "authentication_error"
    browser = httpx.get(
        f"{server.url}{BASE}/user_id:nobody/traits",
        headers={"Origin": "https://shop.example.com"},
        auth=(TOKEN, ""),
        timeout=10,
    )
    assert not any(h.lower().startswith("access-control-") for h in browser.headers)
    preflight = httpx.options(
        f"{server.url}{BASE}/user_id:nobody/traits",
        headers={
            "Origin": "https://shop.example.com",
            "Access-Control-Request-Method": "GET",
        },
        timeout=10,
    )
    assert not any(h.lower().startswith("access-control-") for h in preflight.headers)


def test_profiles_sync_loads_the_space_schema_on_a_warehouse_sync(tmp_path: Path) -> None:
    """A-UE-58's §11.4 story on a running server (SQLite state, the default DuckDB warehouse): two
    visitors' pages, then identifies sharing an email → after `headwater warehouse sync`, the
    space's schema has the merge in `id_graph` and both anonymous ids on one profile."""
    path = tmp_path / "headwater.yaml"
    path.write_text(
        CONFIG.replace("  - name: main\n", "  - name: people\n")
        + "    profiles_sync: {warehouse: default}\n"
    )
    live = LiveServer(data_dir=tmp_path / "data", config=path, role="all")
    live.start(timeout=60)
    try:
        _send(live, "WK_web", "page", {"anonymousId": "5285bc35", "name": "Home"})
        group = {"anonymousId": "5285bc35", "groupId": "acme", "traits": {"industry": "Software"}}
        _send(live, "WK_web", "group", group)
        _send(
            live,
            "WK_web",
            "identify",
            {"anonymousId": "5285bc35", "traits": {"email": "jane.kim@segment.com"}},
        )
        _send(live, "WK_ios", "page", {"anonymousId": "b50e18a5", "name": "Education"})
        _send(
            live,
            "WK_ios",
            "identify",
            {"anonymousId": "b50e18a5", "traits": {"email": "jane.kim@segment.com"}},
        )
        people = "/v1/spaces/people/collections/users/profiles"

        def merged() -> bool:
            answer = _get(live, f"{people}/anonymous_id:b50e18a5/external_ids")
            ids = answer.json().get("data") or [] if answer.status_code == 200 else []
            return {i["id"] for i in ids} >= {"5285bc35", "b50e18a5"}

        wait_for(merged, 60, "the two visitors merged")
        data = tmp_path / "data"
        synced = run_headwater("warehouse", "sync", "default", "--url", live.url, data_dir=data)
        assert synced.returncode == 0, synced.stdout + synced.stderr
        queried = run_headwater(
            "warehouse",
            "query",
            "default",
            "SELECT external_id_type, external_id_value, canonical_segment_id = ("
            "SELECT canonical_segment_id FROM people.external_id_mapping "
            "WHERE external_id_value = '5285bc35') FROM people.external_id_mapping "
            "ORDER BY external_id_value",
            data_dir=data,
        )
        assert queried.returncode == 0, queried.stderr
        assert queried.stdout.splitlines()[1:] == [
            "anonymous_id\t5285bc35\tTrue",
            "anonymous_id\tb50e18a5\tTrue",
            "email\tjane.kim@segment.com\tTrue",
        ]
        graph = run_headwater(
            "warehouse",
            "query",
            "default",
            "SELECT count(*), count(DISTINCT canonical_segment_id) FROM people.id_graph",
            data_dir=data,
        )
        assert graph.stdout.splitlines()[1:] == ["2\t1"], graph.stdout + graph.stderr
        # The Group call: the account's link (to the merged profile) and its trait, kept by
        # group_id in the account tables, none of it among the users' traits.
        accounts = run_headwater(
            "warehouse",
            "query",
            "default",
            "SELECT a.group_id, t.name, t.value, a.canonical_segment_id IN "
            "(SELECT canonical_segment_id FROM people.id_graph), "
            "(SELECT count(*) FROM people.user_traits WHERE name = 'industry') "
            "FROM people.user_accounts AS a JOIN people.account_traits AS t USING (group_id)",
            data_dir=data,
        )
        assert accounts.stdout.splitlines()[1:] == ["acme\tindustry\tSoftware\tTrue\t0"], (
            accounts.stdout + accounts.stderr
        )
    finally:
        live.stop()
