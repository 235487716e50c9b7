"""The Unify pages (SQLite and PostgreSQL) over events resolved by the identity stage: the
spaces, profile search by any identifier, a profile's traits, identities, events and merges,
PII masked for a reader without PII Access, and 403 for a role without Unify."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.store.admin_token import hash_token
from headwater.web.app import WebApp
from tests.support.clock import Clock
from tests.web.unify_world import TOKEN, World


@pytest.fixture
def world(engine: Engine, tmp_path: Path, clock: Clock) -> World:
    world = World(engine, tmp_path, clock)
    world.send(type="identify", anonymousId="anon-1", traits={"plan": "pro"})
    world.send(
        type="identify",
        userId="u1",
        anonymousId="anon-1",
        traits={"email": "ana@example.com", "name": "Ana", "plan": "pro"},
    )
    world.send(type="track", userId="u1", event="Order Completed", properties={"total": 30})
    return world


@pytest.fixture
def web(world: World, clock: Clock) -> Iterator[TestClient]:
    app = WebApp(world.api, world.workspace, admin_token_hash=hash_token(TOKEN), clock=clock)
    with TestClient(app, follow_redirects=False) as http:
        yield http


def sign_in(web: TestClient, token: str = TOKEN) -> None:
    assert web.post("/login", data={"token": token, "next": "/"}).status_code == 303


def profile_link(page: str, space_id: str) -> str:
    start = page.index(f'href="/unify/{space_id}/profiles/use_') + len('href="')
    return page[start : page.index('"', start)]


def test_spaces_list_links_each_space_to_its_profiles(web: TestClient, world: World) -> None:
    sign_in(web)
    page = web.get("/unify")
    assert page.status_code == 200, page.text
    assert f'<a href="/unify/{world.space.id}/profiles">main</a>' in page.text
    assert web.get(f"/unify/{world.space.id}").headers["location"] == (
        f"/unify/{world.space.id}/profiles"
    )


@pytest.mark.parametrize(
    "q", ["ana@example.com", "anon-1", "u1", "user_id:u1", "email:ana@example.com"]
)
def test_search_finds_the_profile_by_any_identifier(web: TestClient, world: World, q: str) -> None:
    sign_in(web)
    page = web.get(f"/unify/{world.space.id}/profiles", params={"q": q})
    assert page.status_code == 200, page.text
    assert page.text.count(f'href="/unify/{world.space.id}/profiles/use_') == 1
    assert "email: ana@example.com" in page.text and "anonymous_id: anon-1" in page.text


def test_search_finds_a_custom_external_id(web: TestClient, world: World) -> None:
    with TestClient(world.api, headers={"Authorization": f"Bearer {TOKEN}"}) as rest:
        path = f"/api/v1/spaces/{world.space.id}/identity-settings"
        settings = rest.get(path).json()["data"]["identitySettings"]
        settings["identifiers"].append({"type": "crm_id"})
        assert rest.put(path, json=settings).status_code == 200
    world.send(type="identify", userId="u5", traits={"crm_id": "C-77"})
    sign_in(web)
    page = web.get(f"/unify/{world.space.id}/profiles", params={"q": "C-77"})
    assert page.status_code == 200, page.text
    assert "crm_id: C-77" in page.text and "user_id: u5" in page.text
    typed = web.get(f"/unify/{world.space.id}/profiles", params={"q": "crm_id:C-77"})
    assert "user_id: u5" in typed.text


def test_search_by_profile_id_and_unknown_identifier(web: TestClient, world: World) -> None:
    sign_in(web)
    base = f"/unify/{world.space.id}/profiles"
    link = profile_link(web.get(base, params={"q": "u1"}).text, world.space.id)
    profile = link.rsplit("/", 1)[1]
    assert link in web.get(base, params={"q": profile}).text
    missing = web.get(base, params={"q": "nobody@example.com"})
    assert missing.status_code == 200 and "No profile holds this identifier." in missing.text
    long = web.get(base, params={"q": "x" * 300})
    assert long.status_code == 400 and "at most 200" in long.text


def test_the_profile_page_shows_traits_identities_events_and_merges(
    web: TestClient, world: World
) -> None:
    sign_in(web)
    link = profile_link(
        web.get(f"/unify/{world.space.id}/profiles", params={"q": "u1"}).text, world.space.id
    )
    page = web.get(link)
    assert page.status_code == 200, page.text
    text = page.text
    assert '<th scope="row">email</th><td>ana@example.com</td>' in text
    assert '<th scope="row">plan</th><td>pro</td>' in text
    assert "<td>user_id</td><td>u1</td>" in text and "<td>anonymous_id</td><td>anon-1</td>" in text
    assert "Order Completed" in text and "&#34;total&#34;: 30" in text
    assert "No merges" in text  # the anonymous profile took the user id: no second profile


def test_merges_are_listed_and_a_merged_id_leads_to_the_survivor(
    web: TestClient, world: World
) -> None:
    world.send(type="identify", anonymousId="anon-2", traits={"color": "red"})
    base = f"/unify/{world.space.id}/profiles"
    sign_in(web)
    merged = profile_link(web.get(base, params={"q": "anon-2"}).text, world.space.id)
    world.send(type="track", userId="u1", anonymousId="anon-2", event="Signed In")
    survivor = profile_link(web.get(base, params={"q": "u1"}).text, world.space.id)
    page = web.get(merged)
    assert page.status_code == 200, page.text
    assert "was merged into this profile" in page.text
    assert merged.rsplit("/", 1)[1] in page.text and "No merges" not in page.text
    assert web.get(survivor).text.count("<td>anonymous_id</td>") == 2


def test_unknown_spaces_and_profiles_are_404_pages(web: TestClient, world: World) -> None:
    sign_in(web)
    assert web.get("/unify/nope/profiles").status_code == 404
    assert web.get(f"/unify/{world.space.id}/profiles/use_nope").status_code == 404
    assert web.get(f"/unify/{world.space.id}/profiles/%3Cscript%3E").status_code == 404


def test_a_reader_without_pii_access_sees_pii_masked(web: TestClient, world: World) -> None:
    sign_in(web, world.token("unify-read-only"))
    page = web.get(f"/unify/{world.space.id}/profiles", params={"q": "anon-1"})
    assert page.status_code == 200, page.text
    assert "ana@example.com" not in page.text and "email: " in page.text
    profile = web.get(profile_link(page.text, world.space.id))
    assert profile.status_code == 200
    assert "ana@example.com" not in profile.text and "<td>u1</td>" in profile.text


def test_a_role_without_unify_gets_403(web: TestClient, world: World) -> None:
    sign_in(web, world.token("source-read-only"))
    for path in ("/unify", f"/unify/{world.space.id}/profiles?q=u1"):
        refused = web.get(path)
        assert refused.status_code == 403 and "Not allowed" in refused.text
        assert world.space.id not in refused.text and "ana@" not in refused.text
    assert 'href="/unify"' not in web.get("/sources").text
