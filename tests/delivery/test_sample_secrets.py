"""Event Delivery samples hide every secret: mapped header values, credential-named headers and
secret settings of any length, without blanking every letter a short secret shares with the
body (issue 10)."""

from __future__ import annotations

import json

from headwater.delivery.redaction import MIN_SUBSTRING, Redactor
from headwater.destinations.definition import Request, Response
from headwater.store.counters import CounterStore
from tests.delivery.conftest import Pipeline, track
from tests.support.receiver import Answer, Receiver

H = "[redacted]"


def test_mapped_header_values_are_hidden_in_samples(pipeline: Pipeline, hook: Receiver) -> None:
    dest = pipeline.add(
        "orders-hook",
        "webhook-actions",
        settings={"shared_secret": "s"},
        mappings=[
            {
                "name": "Orders",
                "enabled": True,
                "trigger": 'type = "track"',
                "action": "send",
                "fields": {
                    "url": hook.url + "/orders",
                    "headers": {
                        "X-Tenant": "t7",
                        "X-Plain": "mapped-value-1",
                        "X-Auth-Token": {"@path": "$.userId"},
                    },
                    "data": {"echo": "mapped-value-1", "tenant": "t7", "letters": "t7s"},
                },
            }
        ],
    )
    hook.answer(
        Answer(
            status=400,
            body=json.dumps(
                {"error": "refused mapped-value-1", "tenant": "t7", "note": "tests t7 s"}
            ).encode(),
        )
    )
    event = track()
    pipeline.send(event)
    pipeline.deliver()
    [request] = hook.requests
    assert request.headers["x-tenant"] == "t7"  # what was sent is untouched
    assert request.headers["x-auth-token"] == event["userId"]
    [sample] = CounterStore(pipeline.engine).samples(destination_id=dest.id)
    shown = sample.message
    headers = shown["request"]["headers"]
    assert headers["X-Tenant"] == H and headers["X-Plain"] == H
    assert headers["X-Auth-Token"] == H and headers["X-Signature"] == H
    assert headers["Content-Type"] == "application/json"  # nothing else is hidden
    assert shown["request"]["body"] == {"echo": H, "tenant": H, "letters": "t7s"}
    assert shown["response"]["body"] == {"error": f"refused {H}", "tenant": H, "note": "tests t7 s"}
    assert "mapped-value-1" not in json.dumps(shown)


def test_secrets_of_any_length_are_hidden_as_whole_values() -> None:
    settings = {"api_key": "a", "token": "xy", "password": "abc", "long": "s3cr3t-value"}
    redactor = Redactor(settings, frozenset(settings))
    request = Request(
        "POST",
        "https://example.com/hooks/a/xy/in?k=abc&page=a&name=banana",
        {
            "X-Custom": "a",
            "X-Bearer": "Bearer xy",
            "X-Pair": "id=abc; v=1",
            "Accept": "a/b",
            "X-Other": "banana",
        },
        json.dumps(
            {
                "key": "a",
                "nested": [{"t": "xy"}],
                "text": "banana abc",
                "abc": 1,
                "long": "has s3cr3t-value inside",
            }
        ).encode(),
    )
    shown = redactor.request(request)
    assert shown["url"] == f"https://example.com/hooks/{H}/{H}/in?k={H}&page={H}&name=banana"
    assert shown["headers"] == {
        "X-Custom": H,
        "X-Bearer": H,
        "X-Pair": H,
        "Accept": "a/b",
        "X-Other": "banana",
    }
    assert shown["body"] == {
        "key": H,
        "nested": [{"t": H}],
        "text": "banana abc",
        H: 1,
        "long": f"has {H} inside",
    }
    response = redactor.response(Response(401, {"WWW-Authenticate": "x"}, b"bad key: abc"))
    assert response["headers"] == {"WWW-Authenticate": H}  # a credential-like name
    assert response["body"] == "bad key: abc"  # short: only a whole value is replaced


def test_secrets_from_min_substring_up_are_replaced_inside_text() -> None:
    secret = "k" * MIN_SUBSTRING
    redactor = Redactor({"api_key": secret}, frozenset({"api_key"}))
    assert redactor.text(f"key={secret}!") == f"key={H}!"
    assert redactor.text("k" * (MIN_SUBSTRING - 1)) == "k" * (MIN_SUBSTRING - 1)
    assert redactor.response(Response(500, {}, f"no {secret}".encode()))["body"] == f"no {H}"


def test_secret_headers_of_a_request_cover_its_response() -> None:
    redactor = Redactor({}, frozenset())
    request = Request(
        "POST",
        "https://example.com/in",
        {"X-Team": "zz", "X-Id": "q-12345"},
        b'{"echo": "q-12345", "team": "zz"}',
        secret_headers=frozenset({"X-Team", "X-Id"}),
    )
    scoped = redactor.for_request(request)
    assert scoped.request(request)["headers"] == {"X-Team": H, "X-Id": H}
    assert scoped.request(request)["body"] == {"echo": H, "team": H}
    assert scoped.response(Response(400, {}, b"unknown id q-12345"))["body"] == f"unknown id {H}"
    assert redactor.request(request)["body"] == {"echo": "q-12345", "team": "zz"}


def test_a_body_nested_too_deep_to_decode_is_shown_as_text() -> None:
    body = b"[" * 5000 + b"]" * 5000
    shown = Redactor({}, frozenset()).response(Response(400, {}, body[:8000]))
    assert isinstance(shown["body"], str)
