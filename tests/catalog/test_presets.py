"""Presets as mappings (``mappings: presets``, ``"presets": true``) and Segment's exported
subscriptions as mappings (headwater.yaml items in Segment's shape, ``headwater destination
import-subscriptions``), against the package's own catalog and a real state database."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.cli import main
from headwater.config.apply import apply, export_config, plan
from headwater.config.model import parse_config, read_yaml
from headwater.destinations import registry
from headwater.destinations.presets import import_subscriptions, preset_mappings, tidy_trigger
from headwater.destinations.runtime.definitions import read_catalog
from headwater.destinations.runtime.node import find_node
from headwater.destinations.runtime.pool import ActionsRuntime, Call, Outcome
from headwater.destinations.store import DestinationStore
from headwater.destinations.trigger import parse_trigger, to_condition
from headwater.errors import ConfigError, InputError
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from tests.catalog.test_definitions import PACKAGE_PRESET_PROBLEMS
from tests.support.receiver import Receiver

TOKEN = "test-admin-token"

SETTINGS = {
    "actions:customerio": {"siteId": "the-site", "apiKey": "the-key"},
    "actions:braze": {"api_key": "the-key", "endpoint": "https://rest.fra-01.braze.eu"},
    "actions:klaviyo": {"api_key": "the-key"},
    "actions:attentive": {"apiKey": "the-key"},
}


def _config(kind: str, mappings: Any) -> dict[str, Any]:
    return {
        "workspace": "acme",
        "sources": [{"name": "web", "write_key": "WK_web"}],
        "destinations": [
            {
                "name": "dest",
                "type": kind,
                "source": "web",
                "settings": SETTINGS[kind],
                "mappings": mappings,
            }
        ],
    }


def _automatic_presets(actions_dir: Path, kind: str) -> list[dict[str, Any]]:
    """What Segment creates for a new instance, read straight from the package's catalog:
    each automatic preset of a cloud action, as an enabled mapping."""
    [entry] = [
        e for e in read_catalog(actions_dir)["destinations"] if f"actions:{e['directory']}" == kind
    ]
    actions = {a["key"] for a in entry["actions"]}
    return [
        {
            "name": p["name"],
            "enabled": True,
            "trigger": p["subscribe"],
            "action": p["partnerAction"],
            "fields": p["mapping"],
        }
        for p in entry["presets"]
        if p["type"] == "automatic" and p["partnerAction"] in actions
    ]


def _comparable(mappings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mappings with each trigger as the condition it parses to (presets' triggers are stored
    on one line)."""
    return [{**m, "trigger": to_condition(parse_trigger(m["trigger"]))} for m in mappings]


@pytest.mark.parametrize("kind", ["actions:customerio", "actions:braze", "actions:klaviyo"])
def test_mappings_presets_creates_the_automatic_presets_enabled(
    engine: Engine, catalog: Path, kind: str
) -> None:
    store = WorkspaceStore(engine)
    config = parse_config(_config(kind, "presets"))
    apply(store, plan(store, config))
    [destination] = DestinationStore(store).list()
    stored = [m.written() for m in destination.mappings]
    assert _comparable(stored) == _comparable(_automatic_presets(catalog, kind))
    assert not any("\n" in m["trigger"] or "  " in m["trigger"] for m in stored)
    assert all(m.id.startswith("map_") for m in destination.mappings)
    assert not plan(store, config)  # `mappings: presets` applied again changes nothing

    exported = export_config(store)
    assert "presets" not in exported  # written out as ordinary mappings
    reread = parse_config(read_yaml(exported))
    assert reread.destinations is not None
    assert reread.destinations[0].mappings == stored
    assert not plan(store, reread)  # export → apply round-trips


def test_klaviyo_has_only_specific_event_presets(catalog: Path) -> None:
    """Its empty preset mappings above are Segment's (no default subscriptions), not a miss."""
    [entry] = [e for e in read_catalog(catalog)["destinations"] if e["directory"] == "klaviyo"]
    assert entry["presets"] and {p["type"] for p in entry["presets"]} == {"specificEvent"}


def test_an_exported_preset_edited_in_the_file_is_an_update(engine: Engine, catalog: Path) -> None:
    store = WorkspaceStore(engine)
    apply(store, plan(store, parse_config(_config("actions:customerio", "presets"))))
    before = DestinationStore(store).require("dest").mappings
    edited = read_yaml(export_config(store))
    edited["destinations"][0]["mappings"][0]["enabled"] = False
    changes = plan(store, parse_config(edited))
    assert [line.split(":")[0] for line in changes.render().splitlines()] == ["~ destination dest"]
    apply(store, changes)
    after = DestinationStore(store).require("dest").mappings
    assert [m.id for m in after] == [m.id for m in before]  # same mappings, kept ids
    assert [m.enabled for m in after] == [False] + [True] * (len(before) - 1)


def test_presets_with_more_mappings_is_refused(catalog: Path) -> None:
    extra = {"name": "More", "trigger": 'type = "track"', "action": "trackEvent"}
    with pytest.raises(ConfigError) as refused:
        parse_config(_config("actions:customerio", [extra, "presets"]))
    assert "mappings[1]: `presets` stands for the whole list" in str(refused.value)
    with pytest.raises(ConfigError, match="must be a list of mappings, or `presets`"):
        parse_config(_config("actions:customerio", "preset"))


def test_a_preset_the_mapping_kit_refuses_is_named_and_nothing_is_created(
    engine: Engine, catalog: Path
) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(_config("actions:attentive", "presets"))
    assert "the preset 'View Item' of actions:attentive" in str(refused.value)
    assert "eventType: should be one of" in str(refused.value)

    store = WorkspaceStore(engine)
    store.ensure_workspace("acme")
    store.create_source("web")
    with pytest.raises(InputError, match="'View Item'"):
        DestinationStore(store).create(
            "dest", "actions:attentive", "web", settings=SETTINGS["actions:attentive"], presets=True
        )
    assert not DestinationStore(store).list()


def test_presets_of_a_destination_without_actions_are_refused(catalog: Path) -> None:
    config = _config("actions:customerio", "presets")
    config["destinations"][0].update(type="webhook", settings={"url": "https://example.com/"})
    with pytest.raises(ConfigError, match="webhook is not an Actions destination"):
        parse_config(config)


# --- the REST API ----------------------------------------------------------------------------


@pytest.fixture
def http(engine: Engine) -> TestClient:
    WorkspaceStore(engine).ensure_workspace("acme")
    client = TestClient(
        create_api(engine, admin_token_hash=hash_token(TOKEN)),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert client.post("/api/v1/sources", json={"name": "web"}).status_code == 201
    return client


def _listed(http: TestClient, name: str) -> list[dict[str, Any]]:
    answer = http.get(f"/api/v1/destinations/{name}/mappings")
    assert answer.status_code == 200, answer.text
    return [{k: v for k, v in m.items() if k != "id"} for m in answer.json()["data"]["mappings"]]


def test_api_presets_flag_on_create_and_update(http: TestClient, catalog: Path) -> None:
    body = {"type": "actions:braze", "source": "web", "settings": SETTINGS["actions:braze"]}
    created = http.post("/api/v1/destinations", json={**body, "name": "braze", "presets": True})
    assert created.status_code == 201, created.text
    presets = _comparable(_automatic_presets(catalog, "actions:braze"))
    assert _comparable(_listed(http, "braze")) == presets

    plain = http.post("/api/v1/destinations", json={**body, "name": "plain"})
    assert plain.status_code == 201 and _listed(http, "plain") == []
    mapping = {"name": "Mine", "trigger": 'type = "track"', "action": "trackEvent"}
    assert http.post("/api/v1/destinations/plain/mappings", json=mapping).status_code == 201
    updated = http.patch("/api/v1/destinations/plain", json={"presets": True})
    assert updated.status_code == 200, updated.text
    assert _comparable(_listed(http, "plain")) == presets  # replaced, as `mappings: presets`

    both = http.post(
        "/api/v1/destinations",
        json={**body, "name": "both", "presets": True, "mappings": [mapping]},
    )
    assert both.status_code == 422
    assert "give presets or mappings, not both" in both.text
    assert http.get("/api/v1/destinations/both").status_code == 404


def test_api_presets_flag_refusals_name_the_preset(http: TestClient, catalog: Path) -> None:
    refused = http.post(
        "/api/v1/destinations",
        json={
            "name": "attentive",
            "type": "actions:attentive",
            "source": "web",
            "settings": SETTINGS["actions:attentive"],
            "presets": True,
        },
    )
    assert refused.status_code == 422
    assert "'View Item'" in refused.text and "eventType" in refused.text
    native = http.post(
        "/api/v1/destinations",
        json={
            "name": "hook",
            "type": "webhook",
            "source": "web",
            "settings": {"url": "https://example.com/"},
            "presets": True,
        },
    )
    assert native.status_code == 422
    assert "not an Actions destination" in native.text


# --- Segment's subscriptions -----------------------------------------------------------------

# What Segment's Public API answers to GET /destinations/{destinationId}/subscriptions for a
# Customer.io (Actions) destination, written after the shape of its documentation.
SEGMENT_EXPORT: dict[str, Any] = {
    "data": {
        "subscriptions": [
            {
                "id": "sbxUfv6yDSzP8eXv1pyqLk",
                "name": "Track Event",
                "actionId": "ifcNXfgPBaGFtn69YDsHvq",
                "actionSlug": "trackEvent",
                "destinationId": "fP7qoQw2HTWt9WdMr718gn",
                "modelId": "",
                "enabled": True,
                "trigger": 'type = "track" and event != "Order Refunded"',
                "settings": {
                    "id": {"@path": "$.userId"},
                    "anonymous_id": {"@path": "$.anonymousId"},
                    "name": {"@path": "$.event"},
                    "event_id": {"@path": "$.messageId"},
                    "timestamp": {"@path": "$.timestamp"},
                    "data": {"@path": "$.properties"},
                    "convert_timestamp": True,
                    "enable_batching": True,
                    "batch_size": 100,
                },
            },
            {
                "id": "qWbzqYxyBGY5MFZmGnVMpV",
                "name": "Create or Update Person",
                "actionId": "vxcsXfn2fiZrYpLX4Hkq7T",
                "actionSlug": "createUpdatePerson",
                "destinationId": "fP7qoQw2HTWt9WdMr718gn",
                "modelId": "",
                "enabled": True,
                "trigger": 'type = "identify"',
                "settings": {
                    "id": {"@path": "$.userId"},
                    "anonymous_id": {"@path": "$.anonymousId"},
                    "email": {"@path": "$.traits.email"},
                    "created_at": {"@path": "$.traits.createdAt"},
                    "custom_attributes": {"@path": "$.traits"},
                    "convert_timestamp": True,
                },
            },
            {
                "id": "dRnQ1oG8yW3Y6pCk7tYx2b",
                "name": "Track Page View",
                "actionId": "5bH6rSa3NPNxRKTnW6Guep",
                "actionSlug": "trackPageView",
                "destinationId": "fP7qoQw2HTWt9WdMr718gn",
                "modelId": "",
                "enabled": False,
                "trigger": 'type = "page"',
                "settings": {
                    "id": {"@path": "$.userId"},
                    "url": {"@path": "$.context.page.url"},
                    "data": {"@path": "$.properties"},
                },
            },
        ],
        "pagination": {"current": "MA==", "totalEntries": 3},
    }
}


def _as_mappings(subscriptions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": s["name"],
            "enabled": s["enabled"],
            "trigger": s["trigger"],
            "action": s["actionSlug"],
            "fields": s["settings"],
        }
        for s in subscriptions
    ]


def _state(engine: Engine, tmp_path: Path) -> list[str]:
    """The CLI's options for the test's state database."""
    if engine.dialect.name == "sqlite":
        return ["--data-dir", str(tmp_path)]
    return [
        "--data-dir",
        str(tmp_path / "data"),
        "--database",
        engine.url.render_as_string(hide_password=False),
    ]


def _headwater(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code: object = 0
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    if isinstance(code, str):  # SystemExit("message") prints it and exits 1
        return 1, out, code
    assert code is None or isinstance(code, int)
    return code or 0, out, err


@pytest.fixture
def customerio(engine: Engine, catalog: Path) -> DestinationStore:
    store = WorkspaceStore(engine)
    config = _config("actions:customerio", [])
    config["destinations"][0].pop("mappings")
    apply(store, plan(store, parse_config(config)))
    return DestinationStore(store)


def test_import_subscriptions_adds_them_as_mappings(
    engine: Engine,
    customerio: DestinationStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    exported = tmp_path / "subscriptions.json"
    exported.write_text(json.dumps(SEGMENT_EXPORT))
    state = _state(engine, tmp_path)
    code, out, err = _headwater(
        capsys, "destination", "import-subscriptions", "dest", str(exported), *state
    )
    assert code == 0, err
    subscriptions = SEGMENT_EXPORT["data"]["subscriptions"]
    stored = customerio.require("dest").mappings
    assert [m.written() for m in stored] == _as_mappings(subscriptions)
    assert out.splitlines()[0] == "3 mappings added to dest:"
    assert '  + Track Page View (trackPageView, disabled) when type = "page"' in out

    # The `subscriptions` list alone, or one subscription: added after those there are.
    exported.write_text(json.dumps(subscriptions[2]))
    code, _, err = _headwater(
        capsys, "destination", "import-subscriptions", "dest", str(exported), *state
    )
    assert code == 0, err
    assert [m.name for m in customerio.require("dest").mappings][-2:] == ["Track Page View"] * 2
    exported.write_text(json.dumps({"subscriptions": subscriptions[:1]}))
    code, out, err = _headwater(
        capsys, "destination", "import-subscriptions", "dest", str(exported), *state, "--replace"
    )
    assert code == 0, err
    assert out.splitlines()[0] == "1 mappings replaced the mappings of dest:"
    assert [m.written() for m in customerio.require("dest").mappings] == _as_mappings(
        subscriptions[:1]
    )


def test_import_subscriptions_says_when_there_are_more_pages(
    engine: Engine,
    customerio: DestinationStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    page = copy.deepcopy(SEGMENT_EXPORT)
    page["data"]["pagination"]["next"] = "Mw=="
    exported = tmp_path / "page.json"
    exported.write_text(json.dumps(page))
    code, _, err = _headwater(
        capsys,
        "destination",
        "import-subscriptions",
        "dest",
        str(exported),
        *_state(engine, tmp_path),
    )
    assert code == 0
    assert "one page of several (next: Mw==)" in err
    assert len(customerio.require("dest").mappings) == 3


def _broken(change: dict[str, Any], position: int = 1) -> dict[str, Any]:
    document = copy.deepcopy(SEGMENT_EXPORT)
    document["data"]["subscriptions"][position].update(change)
    return document


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            {"actionSlug": "trackPurchase"},
            "subscriptions[1] ('Create or Update Person', id qWbzqYxyBGY5MFZmGnVMpV)"
            ".actionSlug: the destination has no action 'trackPurchase'; its actions: ",
        ),
        (
            {"settings": {"id": {"@path": "$.userId"}, "emial": {"@path": "$.traits.email"}}},
            "subscriptions[1] ('Create or Update Person', id qWbzqYxyBGY5MFZmGnVMpV): "
            "fields: emial: is not a field of this action",
        ),
        (
            {"settings": {"__segment_internal_sync_mode": "upsert"}},
            ".settings.__segment_internal_sync_mode: is a setting Segment keeps for its sync modes",
        ),
        ({"modelId": "mdl_1"}, ".modelId: is a Reverse ETL subscription"),
        ({"trigger": 'type = "track'}, "trigger: not a valid trigger"),
        ({"filter": "x"}, ".filter: unknown key 'filter' in a Segment subscription"),
    ],
)
def test_a_bad_subscription_is_named_and_nothing_is_imported(
    engine: Engine,
    customerio: DestinationStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, Any],
    named: str,
) -> None:
    exported = tmp_path / "subscriptions.json"
    exported.write_text(json.dumps(_broken(change)))
    code, _, err = _headwater(
        capsys,
        "destination",
        "import-subscriptions",
        "dest",
        str(exported),
        *_state(engine, tmp_path),
    )
    assert code == 1
    assert err.startswith("headwater destination import-subscriptions: subscriptions[1] ")
    assert named in err
    assert customerio.require("dest").mappings == ()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", "cannot read"),
        (json.dumps({"data": {"destinations": []}}), "is not Segment's list of subscriptions"),
        (json.dumps([{"name": "x"}]), "subscriptions[0] ('x'): is not a Segment subscription"),
    ],
)
def test_a_file_that_is_no_subscriptions_is_refused(
    engine: Engine,
    customerio: DestinationStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    document: str,
    message: str,
) -> None:
    exported = tmp_path / "subscriptions.json"
    exported.write_text(document)
    code, _, err = _headwater(
        capsys,
        "destination",
        "import-subscriptions",
        "dest",
        str(exported),
        *_state(engine, tmp_path),
    )
    assert code == 1 and message in err
    assert customerio.require("dest").mappings == ()


def test_subscriptions_in_headwater_yaml_are_read_as_mappings(
    engine: Engine, catalog: Path
) -> None:
    subscriptions = SEGMENT_EXPORT["data"]["subscriptions"]
    written = {
        "name": "Mine",
        "enabled": True,
        "trigger": 'type = "alias"',
        "action": "mergePeople",
        "fields": {"primary": {"@path": "$.userId"}, "secondary": {"@path": "$.previousId"}},
    }
    store = WorkspaceStore(engine)
    config = parse_config(_config("actions:customerio", [*subscriptions, written]))
    apply(store, plan(store, config))
    stored = DestinationStore(store).require("dest").mappings
    assert [m.written() for m in stored] == [*_as_mappings(subscriptions), written]
    assert not plan(store, config)
    assert not plan(store, parse_config(read_yaml(export_config(store))))


def test_a_bad_subscription_in_headwater_yaml_is_named(catalog: Path) -> None:
    subscriptions = _broken({"actionSlug": "trackPurchase"})["data"]["subscriptions"]
    with pytest.raises(ConfigError) as refused:
        parse_config(_config("actions:customerio", subscriptions))
    assert (
        "destinations[0]: mappings[1].actionSlug: the destination has no action 'trackPurchase'"
        in str(refused.value)
    )


def test_api_imports_subscriptions(http: TestClient, catalog: Path) -> None:
    body = {
        "type": "actions:customerio",
        "source": "web",
        "settings": SETTINGS["actions:customerio"],
    }
    assert http.post("/api/v1/destinations", json={**body, "name": "cio"}).status_code == 201
    subscriptions = SEGMENT_EXPORT["data"]["subscriptions"]
    imported = http.post("/api/v1/destinations/cio/mappings/import", json=SEGMENT_EXPORT)
    assert imported.status_code == 201, imported.text
    added = imported.json()["data"]["mappings"]
    assert [{k: v for k, v in m.items() if k != "id"} for m in added] == _as_mappings(subscriptions)
    assert _listed(http, "cio") == _as_mappings(subscriptions)

    refused = http.post(
        "/api/v1/destinations/cio/mappings/import",
        params={"replace": "true"},
        json=_broken({"actionSlug": "trackPurchase"}),
    )
    assert refused.status_code == 422
    assert "the destination has no action 'trackPurchase'" in refused.text
    assert _listed(http, "cio") == _as_mappings(subscriptions)  # nothing changed

    replaced = http.post(
        "/api/v1/destinations/cio/mappings/import",
        params={"replace": "true"},
        json=subscriptions[2],
    )
    assert replaced.status_code == 201, replaced.text
    assert _listed(http, "cio") == _as_mappings(subscriptions[2:])


def test_presets_without_the_catalog_say_how_to_install(engine: Engine, no_catalog: Path) -> None:
    store = WorkspaceStore(engine)
    with pytest.raises(InputError, match="headwater catalog install"):
        apply(store, plan(store, parse_config(_config("actions:customerio", "presets"))))


def test_imported_subscriptions_run_in_segments_code(
    engine: Engine, customerio: DestinationStore, receiver: Receiver, catalog: Path
) -> None:
    """The mappings as imported are what Segment's own Customer.io code gets: a track and an
    identify event reach the receiver as the subscriptions' settings map them."""
    destination = customerio.edit_mappings(
        "dest",
        lambda _current: import_subscriptions(
            customerio.require("dest").definition, SEGMENT_EXPORT
        ),
    )
    by_action = {m.action: m for m in destination.mappings}
    track = {
        "type": "track",
        "event": "Order Completed",
        "userId": "user-1",
        "messageId": "message-1",
        "timestamp": "2026-12-06T10:00:00.000Z",
        "properties": {"total": 30},
    }
    identify = {
        "type": "identify",
        "userId": "user-1",
        "messageId": "message-2",
        "timestamp": "2026-12-06T10:00:00.000Z",
        "traits": {"email": "ada@example.com", "plan": "pro"},
    }
    settings = {**SETTINGS["actions:customerio"], "accountRegion": "US 🇺🇸"}
    calls = [
        Call("customerio", action, settings, by_action[action].fields, [event])
        for action, event in (("trackEvent", track), ("createUpdatePerson", identify))
    ]

    async def run() -> list[list[Outcome]]:
        runtime = ActionsRuntime(
            catalog, node=find_node(), redirects={"https://track.customer.io": receiver.url}
        )
        try:
            return [await runtime.execute(call) for call in calls]
        finally:
            await runtime.close()

    outcomes = asyncio.run(run())
    assert [[o.ok for o in found] for found in outcomes] == [[True], [True]]
    event, person = (r.json() for r in receiver.requests)
    assert (event["action"], event["name"], event["id"]) == (
        "event",
        "Order Completed",
        "message-1",
    )
    assert event["identifiers"] == {"id": "user-1"} and event["attributes"] == {"total": 30}
    assert (person["action"], person["identifiers"]) == ("identify", {"id": "user-1"})
    assert person["attributes"]["email"] == "ada@example.com"
    assert person["attributes"]["plan"] == "pro"


@pytest.mark.parametrize(
    ("trigger", "tidied"),
    [
        (
            '\n  event = "Device Created"\n  or event = "Device  Deleted"\n',
            'event = "Device Created" or event = "Device  Deleted"',
        ),
        ("type = 'track'\tand\n\nevent = \"a\\\"", "type = 'track' and event = \"a\\\""),
        # a backslash escapes the character after it: a newline there is part of the path
        ("properties.a\\\nb = 1", "properties.a\\\nb = 1"),
        ("properties.a\\  = 1", "properties.a\\ = 1"),  # "a " either way
        ('type = "track" and (', 'type = "track" and ('),  # not a trigger: left for the check
    ],
)
def test_tidy_trigger_changes_only_whitespace_between_tokens(trigger: str, tidied: str) -> None:
    assert tidy_trigger(trigger) == tidied


def test_presets_of_every_package_destination(catalog: Path) -> None:
    """Every definition's automatic presets become mappings (each trigger meaning what the
    package's does), except where the package's own preset is refused (test_definitions)."""
    refused = {kind for kind, _name in PACKAGE_PRESET_PROBLEMS}
    built = registry.package_definitions()
    assert len(built) > 200
    for kind, definition in built.items():
        automatic = [p for p in definition.presets if p.automatic]
        if kind in refused and any((kind, p.name) in PACKAGE_PRESET_PROBLEMS for p in automatic):
            with pytest.raises(InputError, match="the preset '"):
                preset_mappings(definition)
            continue
        made = preset_mappings(definition)
        assert [m["name"] for m in made] == [p.name for p in automatic], kind
        for mapping, preset in zip(made, automatic, strict=True):
            assert to_condition(parse_trigger(mapping["trigger"])) == to_condition(
                parse_trigger(preset.trigger)
            ), (kind, preset.name)
