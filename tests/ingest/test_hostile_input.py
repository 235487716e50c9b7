"""Whatever bytes a client sends to the Tracking API, the answer is never a 5xx.

A battery of hostile bodies (deep nesting, lone surrogates, numbers past every range, invalid
UTF-8, broken and exploding gzip, wrong types) goes to every ``/v1`` route of a live server
running every role; afterwards a good event must still be acknowledged and reach the archive,
so no hostile message stopped a later stage either.
"""

from __future__ import annotations

import base64
import gzip
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from headwater.ingest.app import BATCH_ROUTES, SINGLE_ROUTES
from headwater.store.archive import Archive
from tests.support.hostile import (
    ENCODED_BODIES,
    RAW_BODIES,
    TIMESTAMPS,
    VALUES,
    deep_array,
    deep_object,
)
from tests.support.live import BASE_CONFIG, LiveServer

pytestmark = pytest.mark.live  # every test here starts a headwater server process

AUTH = {"Authorization": "Basic " + base64.b64encode(b"WK_web:").decode()}

# Where a hostile value goes in a single call ({v}) and in a batch.
SINGLE_TEMPLATES = [
    "{v}",
    '{{"userId":"u","event":{v}}}',
    '{{"userId":{v},"event":"e"}}',
    '{{"anonymousId":{v},"event":"e"}}',
    '{{"userId":"u","event":"e","properties":{{"p":{v}}}}}',
    '{{"userId":"u","event":"e","properties":{v}}}',
    '{{"userId":"u","event":"e","context":{v}}}',
    '{{"userId":"u","event":"e","context":{{"library":{{"name":{v}}},"ip":{v}}}}}',
    '{{"userId":"u","event":"e","integrations":{v}}}',
    '{{"userId":"u","event":"e","messageId":{v}}}',
    '{{"userId":"u","event":"e","timestamp":{v},"sentAt":{v}}}',
    '{{"userId":"u","traits":{v},"groupId":{v},"previousId":{v},"name":{v},"category":{v}}}',
    '{{"userId":"u","event":"Segment Consent Preference Updated","context":{{"consent":{v}}}}}',
    '{{"writeKey":{v},"userId":"u","event":"e"}}',
]
BATCH_TEMPLATES = [
    '{{"batch":{v}}}',
    '{{"batch":[{v}]}}',
    '{{"batch":[{{"type":"track","userId":"u","event":"e","properties":{v}}}]}}',
    '{{"batch":[{{"type":{v},"userId":"u","event":"e"}}]}}',
    '{{"batch":[{{"type":"track","userId":"u","event":"e"}}],"context":{v}}}',
    '{{"batch":[{{"type":"track","userId":"u","event":"e"}}],"integrations":{v},"sentAt":{v}}}',
    '{{"batch":[{{"type":"track","userId":"u","event":"e","writeKey":{v}}}]}}',
]


def _bodies(templates: list[str]) -> Iterator[bytes]:
    for template in templates:
        for value in VALUES + TIMESTAMPS:
            yield template.format(v=value).encode()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    base = tmp_path_factory.mktemp("hostile")
    config = base / "headwater.yaml"
    config.write_text(BASE_CONFIG)
    server = LiveServer(data_dir=base / "data", config=config, role="all")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30) as client:
        yield client


def _check(response: httpx.Response, what: object) -> None:
    assert response.status_code < 500, (what, response.status_code, response.text[:300])
    if response.status_code == 400:
        body = response.json()
        assert body["code"] and body["message"], (what, body)


def test_hostile_single_calls_never_5xx(live: LiveServer, http: httpx.Client) -> None:
    for body in _bodies(SINGLE_TEMPLATES):
        _check(http.post("/v1/track", content=body, headers=AUTH), body[:200])
    for body in _bodies(SINGLE_TEMPLATES[:2]):
        for name in SINGLE_ROUTES:
            _check(http.post(f"/v1/{name}", content=body, headers=AUTH), (name, body[:200]))
    _good_event_still_flows(live, http)


def test_hostile_batches_never_5xx(live: LiveServer, http: httpx.Client) -> None:
    for body in _bodies(BATCH_TEMPLATES):
        _check(http.post("/v1/batch", content=body, headers=AUTH), body[:200])
    for body in _bodies(BATCH_TEMPLATES[:3]):
        for name in BATCH_ROUTES:
            _check(http.post(f"/v1/{name}", content=body, headers=AUTH), (name, body[:200]))
    _good_event_still_flows(live, http)


def test_broken_and_odd_bodies_on_every_route(live: LiveServer, http: httpx.Client) -> None:
    routes = [*SINGLE_ROUTES, *BATCH_ROUTES, "m", "nope"]
    for name in routes:
        for raw in RAW_BODIES:
            _check(http.post(f"/v1/{name}", content=raw, headers=AUTH), (name, raw[:50]))
        for encoded, encoding in ENCODED_BODIES:
            response = http.post(
                f"/v1/{name}", content=encoded, headers={**AUTH, "Content-Encoding": encoding}
            )
            _check(response, (name, encoding, encoded[:30]))
    odd_headers: list[dict[str, str]] = [
        {"Authorization": "Basic !!!"},
        {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:").decode()},
        {
            "Authorization": "Basic "
            + base64.b64encode("\ud800".encode("utf-8", "surrogatepass")).decode()
        },
        {"Authorization": "Bearer"},
        {"Authorization": "Basic"},
        {"Content-Encoding": "identity"},
    ]
    for headers in odd_headers:
        for name in ("track", "batch"):
            _check(
                http.post(f"/v1/{name}", content=b'{"userId":"u","event":"e"}', headers=headers),
                (name, headers),
            )
    _good_event_still_flows(live, http)


def test_hostile_pixels_still_get_the_gif(live: LiveServer, http: httpx.Client) -> None:
    def pixel(path: str, query: str) -> None:
        response = http.get(f"{path}?{query}")
        assert response.status_code == 200, (path, query[:200], response.text[:200])
        assert response.content.startswith(b"GIF89a")

    for value in VALUES + TIMESTAMPS:
        for template in (
            '{{"writeKey":"WK_web","userId":"u","event":{v}}}',
            '{{"writeKey":"WK_web","userId":"u","event":"e","properties":{v}}}',
            '{{"writeKey":{v}}}',
            "{v}",
        ):
            raw = template.format(v=value).encode()
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                pixel("/v1/pixel/track", "data=" + quote(encode(raw).decode()))
    dotted = ".".join(["p"] * 3000)
    for query in (
        f"writeKey=WK_web&userId=u&event=e&{dotted}=1",
        f"writeKey=WK_web&userId=u&event=e&properties.{dotted}=1",
        "writeKey=WK_web&userId=%ED%A0%80&event=%FF%FE",
        "writeKey=%ED%A0%80&userId=u&event=e",
        "writeKey=WK_web&userId=u&event=e&timestamp=%2B275760-09-13T00:00:00Z&sentAt=0001-01-01",
        "writeKey=WK_web&userId=u&event=e&properties=1&properties.a=2&context=x&context.ip=3",
        "data=" + "A" * 4000,
        "data=%00%00",
        "data=",
        "data",
        "&&&===",
        "=",
        "writeKey=WK_web&writeKey=WK_off&userId=u&event=e",
    ):
        for pixel_type in ("track", "page", "identify", "group", "alias", "screen", "nope"):
            pixel(f"/v1/pixel/{pixel_type}", query)
    for path in (
        "/v1/projects/%ED%A0%80/settings",
        "/v1/projects/" + "x" * 5000 + "/settings",
        "/v1/projects//settings",
        "/v1/projects/%00/settings",
    ):
        assert http.get(path).status_code < 500
    assert (
        http.options(
            "/v1/track",
            headers={b"Origin": b"\xff\xfe", b"Access-Control-Request-Headers": b"x" * 5000},
        ).status_code
        < 500
    )
    _good_event_still_flows(live, http)


def test_depth_limit_is_clear_and_exact(http: httpx.Client) -> None:
    """100 levels are accepted (the top-level object counts as one); 101 are not."""
    ok = f'{{"userId":"u","event":"e","properties":{deep_object(99)}}}'
    assert http.post("/v1/track", content=ok, headers=AUTH).status_code == 200
    too_deep = f'{{"userId":"u","event":"e","properties":{deep_object(100)}}}'
    response = http.post("/v1/track", content=too_deep, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    assert "100 levels" in response.json()["message"]
    # A batch item may nest as deep as a single call: the batch's own two levels are free.
    item = f'{{"type":"track","userId":"u","event":"e","properties":{deep_object(99)}}}'
    batch = f'{{"batch":[{item}]}}'
    assert http.post("/v1/batch", content=batch, headers=AUTH).status_code == 200
    item = f'{{"type":"track","userId":"u","event":"e","properties":{deep_array(100)}}}'
    response = http.post("/v1/batch", content=f'{{"batch":[{item}]}}', headers=AUTH)
    assert response.status_code == 400
    # Brackets inside strings are text, not nesting.
    text = '"' + "[{" * 5000 + '\\"]}"'
    assert (
        http.post("/v1/track", content=f'{{"userId":"u","event":{text}}}', headers=AUTH).status_code
        == 200
    )
    # Deep gzip bodies are measured after inflating.
    response = http.post(
        "/v1/batch",
        content=gzip.compress(deep_array(150).encode()),
        headers={**AUTH, "Content-Encoding": "gzip"},
    )
    assert response.status_code == 400 and "100 levels" in response.json()["message"]


def test_broken_gzip_is_a_bad_request_not_invalid_json(http: httpx.Client) -> None:
    good = gzip.compress(b'{"userId":"u","event":"e"}')
    for broken in (good[:-9], good[: len(good) // 2], good + b"garbage", b"\x1f\x8b", b""):
        response = http.post(
            "/v1/track", content=broken, headers={**AUTH, "Content-Encoding": "gzip"}
        )
        assert response.status_code == 400, broken
        assert response.json()["code"] == "bad_request", (broken, response.json())
        assert "gzip" in response.json()["message"]
    # Several gzip members make one valid body (what `cat a.gz b.gz` gives), and so does
    # zero padding after the last member, as gzip(1) itself accepts.
    split = gzip.compress(b'{"userId":"u",') + gzip.compress(b'"event":"e"}')
    for body in (split, good + b"\0" * 8):
        response = http.post(
            "/v1/track", content=body, headers={**AUTH, "Content-Encoding": "gzip"}
        )
        assert response.status_code == 200, response.text
    # A body that inflates fine but is not JSON is still invalid_json.
    response = http.post(
        "/v1/track", content=gzip.compress(b"{nope"), headers={**AUTH, "Content-Encoding": "gzip"}
    )
    assert response.json()["code"] == "invalid_json"


def _good_event_still_flows(live: LiveServer, http: httpx.Client) -> None:
    """A good event is acknowledged and archived: no hostile message stalled a stage."""
    marker = uuid.uuid4().hex
    response = http.post("/v1/track", json={"userId": marker, "event": "Still Works"}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert http.get("/ready").status_code == 200
    archive = Archive(Path(live.data_dir) / "archive")
    now = datetime.now(UTC)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for source in archive.sources():
            window = (now - timedelta(hours=1), now + timedelta(hours=1))
            if any(e.get("userId") == marker for e in archive.read(source, *window)):
                return
        time.sleep(0.1)
    raise AssertionError(f"the good event never reached the archive: {live.output}")
