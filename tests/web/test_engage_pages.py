"""The Engage pages (SQLite and PostgreSQL): a space's audiences, computed traits and journeys;
the audience builder (the guided form writing a query, the API's refusal by the field, the
size preview, creating and saving), activation, a journey's SVG diagram, and 403 for a role
without Engage."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.store.admin_token import hash_token
from headwater.web.app import WebApp
from headwater.web.engage import guided_query
from tests.support.clock import Clock
from tests.web.unify_world import TOKEN, World

QUERY = "event('Order Completed').within(30 days).count() >= 1"


@pytest.fixture
def world(engine: Engine, tmp_path: Path, clock: Clock) -> World:
    world = World(engine, tmp_path, clock)
    with TestClient(world.api, headers={"Authorization": f"Bearer {TOKEN}"}) as rest:
        base = f"/api/v1/spaces/{world.space.id}"
        made = rest.post(
            f"{base}/audiences", json={"name": "Buyers", "definition": {"query": QUERY}}
        )
        assert made.status_code == 201, made.text
        trait = {"name": "Orders", "definition": {"query": "event('Order Completed').count()"}}
        assert rest.post(f"{base}/computed-traits", json=trait).status_code == 201
        journey = {
            "name": "Welcome",
            "definition": {
                "entry": {"audience": "buyers"},
                "steps": [
                    {"name": "Wait 5 days", "delay": {"days": 5}},
                    {
                        "name": "Still buying",
                        "true_false": {
                            "condition": {"audience": "buyers"},
                            "true": [{"name": "Pause a day", "delay": {"days": 1}}],
                            "false": [],
                        },
                    },
                ],
            },
        }
        made = rest.post(f"{base}/journeys", json=journey)
        assert made.status_code == 201, made.text
    return world


@pytest.fixture
def web(world: World, clock: Clock) -> Iterator[TestClient]:
    app = WebApp(world.api, world.workspace, admin_token_hash=hash_token(TOKEN), clock=clock)
    with TestClient(app, follow_redirects=False) as http:
        assert http.post("/login", data={"token": TOKEN, "next": "/"}).status_code == 303
        yield http


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def audience_link(page: str, space_id: str) -> str:
    found = re.search(rf'href="(/engage/{space_id}/audiences/[^"]+)">Buyers<', page)
    assert found is not None, page
    return found.group(1)


def test_a_space_lists_audiences_computed_traits_and_journeys(
    web: TestClient, world: World
) -> None:
    listing = web.get("/engage")
    assert listing.status_code == 200
    assert f'<a href="/engage/{world.space.id}">main</a>' in listing.text
    page = web.get(f"/engage/{world.space.id}")
    assert page.status_code == 200, page.text
    assert ">Buyers</a>" in page.text and "<code>buyers</code>" in page.text
    assert "<td>Orders</td>" in page.text
    assert ">Welcome</a>" in page.text


def test_the_guided_form_writes_a_query_and_the_api_refuses_a_bad_one(
    web: TestClient, world: World
) -> None:
    base = f"/engage/{world.space.id}"
    csrf = csrf_of(web.get(base).text)
    built = web.post(
        f"{base}/audiences",
        data={"csrf": csrf, "action": "build", "event": "Signed Up", "times": "2", "days": "7"},
    )
    assert built.status_code == 200
    assert "event(&#39;Signed Up&#39;).within(7 days).count() &gt;= 2</textarea>" in built.text
    wrong = web.post(
        f"{base}/audiences",
        data={"csrf": csrf, "action": "build", "event": "x", "times": "many"},
    )
    assert wrong.status_code == 400 and "whole numbers" in wrong.text
    refused = web.post(
        f"{base}/audiences",
        data={"csrf": csrf, "action": "create", "name": "Bad", "query": "trait('a') = 1 OR"},
    )
    assert refused.status_code == 422, refused.text
    assert 'id="query-error"' in refused.text and 'aria-invalid="true"' in refused.text
    empty = web.post(f"{base}/audiences", data={"csrf": csrf, "action": "preview", "query": ""})
    assert empty.status_code == 400 and "Enter a query" in empty.text


def test_preview_without_the_batch_engine_says_so(web: TestClient, world: World) -> None:
    base = f"/engage/{world.space.id}"
    page = web.post(
        f"{base}/audiences",
        data={"csrf": csrf_of(web.get(base).text), "action": "preview", "query": QUERY},
    )
    assert page.status_code == 200, page.text
    assert "Size preview not available" in page.text and "batch engine" in page.text


def test_creating_an_audience_leads_to_its_page_and_saving_changes_it(
    web: TestClient, world: World
) -> None:
    base = f"/engage/{world.space.id}"
    query = guided_query("Signed Up", "1", "14")
    created = web.post(
        f"{base}/audiences",
        data={
            "csrf": csrf_of(web.get(base).text),
            "action": "create",
            "name": "New users",
            "query": query,
        },
    )
    assert created.status_code == 303, created.text
    page = web.get(created.headers["location"])
    assert page.status_code == 200, page.text
    assert "<h1>New users</h1>" in page.text and "<code>new_users</code>" in page.text
    assert "Signed Up" in page.text
    saved = web.post(
        created.headers["location"],
        data={
            "csrf": csrf_of(page.text),
            "action": "save",
            "name": "New users",
            "query": "trait('plan') = 'pro'",
        },
    )
    assert saved.status_code == 303, saved.text
    again = web.get(created.headers["location"]).text
    assert '<code id="saved-query">trait(&#39;plan&#39;) = &#39;pro&#39;</code>' in again


def test_activation_refuses_an_unknown_destination_by_the_field(
    web: TestClient, world: World
) -> None:
    link = audience_link(web.get(f"/engage/{world.space.id}").text, world.space.id)
    page = web.get(link)
    assert "No destinations are connected." in page.text
    refused = web.post(
        f"{link}/destinations", data={"csrf": csrf_of(page.text), "destination": "nowhere"}
    )
    assert 400 <= refused.status_code < 500, refused.text
    assert 'id="destination-error"' in refused.text
    empty = web.post(f"{link}/destinations", data={"csrf": csrf_of(page.text), "destination": ""})
    assert empty.status_code == 400 and "Enter a destination" in empty.text
    assert web.post(f"{link}/destinations", data={"csrf": "x"}).status_code == 403


def test_a_journey_is_drawn_as_svg_with_a_table(web: TestClient, world: World) -> None:
    page = web.get(f"/engage/{world.space.id}")
    found = re.search(rf'href="(/engage/{world.space.id}/journeys/[^"]+)">Welcome<', page.text)
    assert found is not None
    journey = web.get(found.group(1))
    assert journey.status_code == 200, journey.text
    text = journey.text
    assert "<svg" in text and '<title id="journey-title">' in text
    assert text.count("<rect ") == 6  # entry, wait, split, its two branches, the day's pause
    assert "<td>Wait 5 days</td><td>Wait 5 days</td>" in text
    assert "in buyers" in text and "audience buyers" in text


def test_unknown_audiences_and_journeys_are_404(web: TestClient, world: World) -> None:
    assert web.get(f"/engage/{world.space.id}/audiences/nope").status_code == 404
    assert web.get(f"/engage/{world.space.id}/journeys/nope").status_code == 404
    assert web.get("/engage/nope").status_code == 404


def test_a_role_without_engage_gets_403(web: TestClient, world: World) -> None:
    web.cookies.clear()
    token = world.token("unify-read-only")
    assert web.post("/login", data={"token": token, "next": "/"}).status_code == 303
    refused = web.get(f"/engage/{world.space.id}")
    assert refused.status_code == 403 and "Buyers" not in refused.text
    assert web.get("/unify").status_code == 200


def test_a_read_only_role_sees_audiences_but_cannot_create(web: TestClient, world: World) -> None:
    web.cookies.clear()
    token = world.token("unify-and-engage-read-only")
    assert web.post("/login", data={"token": token, "next": "/"}).status_code == 303
    page = web.get(f"/engage/{world.space.id}")
    assert page.status_code == 200 and ">Buyers</a>" in page.text
    refused = web.post(
        f"/engage/{world.space.id}/audiences",
        data={"csrf": csrf_of(page.text), "action": "create", "name": "X", "query": QUERY},
    )
    assert refused.status_code == 403
