"""Every definition of the installed Actions package as a Headwater catalog entry.

The whole catalog is checked, not a sample: each definition builds, its settings take a minimal
valid object and refuse a wrong one naming the field, each action's fields keep the package's
defaults, and each preset's mapping passes the mapping validation a saved mapping gets.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from headwater.destinations import registry
from headwater.destinations.actions import ActionDefinition, Preset, check_mappings
from headwater.destinations.definition import DestinationDefinition
from headwater.destinations.mapping import FieldSpec, check_fields
from headwater.destinations.runtime.definitions import build_all, read_catalog
from headwater.destinations.trigger import parse_trigger
from headwater.errors import CatalogNotInstalled, ListError, MappingError, UnknownDestinationType

# Presets the package ships that its own actions-core would refuse too (a literal outside the
# field's choices: actions-core's schema has them as an enum), and one using @liquid, which
# Headwater's mapping kit does not evaluate. Each must still fail, with this reason.
PACKAGE_PRESET_PROBLEMS = {
    ("actions:angler-ai", "Save Event - Checkout Payment Info Submitted"): "should be one of",
    ("actions:attentive", "View Item"): "should be one of",
    ("actions:rokt-capi", "Send"): "@liquid is not supported",
    ("actions:rokt-capi", "Sync Engage Audience"): "@liquid is not supported",
}


@pytest.fixture(scope="module")
def document(actions_dir: Path) -> dict[str, Any]:
    return read_catalog(actions_dir)


@pytest.fixture(scope="module")
def built(document: dict[str, Any]) -> dict[str, DestinationDefinition]:
    definitions, failed = build_all(document)
    assert failed == {}
    return definitions


def _entries(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"actions:{e['directory']}": e for e in document["destinations"]}


def test_every_definition_of_the_package_builds(
    document: dict[str, Any], built: dict[str, DestinationDefinition]
) -> None:
    assert document["failed"] == []  # catalog.js read every manifest entry
    entries = _entries(document)
    assert len(document["destinations"]) > 200
    assert set(built) == set(entries)  # one type per directory: none twice
    for kind, definition in built.items():
        entry = entries[kind]
        assert definition.type == kind
        assert definition.package_directory == entry["directory"]
        assert definition.name == entry["name"]
        assert definition.render is None
        assert set(definition.actions) == {a["key"] for a in entry["actions"]}
        assert definition.hooks == frozenset(entry["hooks"])
        passwords = {
            name
            for name, spec in entry["authentication"]["fields"].items()
            if spec["type"] == "password"
        }
        assert passwords <= definition.secrets


def test_each_action_keeps_the_packages_fields_and_defaults(
    document: dict[str, Any], built: dict[str, DestinationDefinition]
) -> None:
    for kind, entry in _entries(document).items():
        for action in entry["actions"]:
            ours = built[kind].actions[action["key"]]
            assert ours.perform is None  # the actions runtime runs the package's own
            assert ours.batches == action["hasPerformBatch"]
            if action["hasPerformBatch"] and "batch_size" in action["fields"]:
                assert ours.batch_size_field == "batch_size"
            else:
                assert ours.batch_size_field is None
            for name, spec in action["fields"].items():
                field = ours.fields[name]
                assert field.default == spec.get("default")  # a directive stays one
                assert field.required == (spec.get("required") is True)
                assert field.multiple == bool(spec.get("multiple"))


def test_a_directive_default_stays_a_mapping(built: dict[str, DestinationDefinition]) -> None:
    track = built["actions:customerio"].actions["trackEvent"]
    assert track.fields["id"].default == {"@path": "$.userId"}
    assert track.fields["name"].default == {"@path": "$.event"}
    assert track.fields["name"].required
    assert track.default_trigger.startswith('type = "track"')


def test_every_default_trigger_parses(built: dict[str, DestinationDefinition]) -> None:
    triggers = [a.default_trigger for d in built.values() for a in d.actions.values()]
    assert sum(1 for t in triggers if t) > 400
    for trigger in filter(None, triggers):
        parse_trigger(trigger)


def _minimal(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """Each required setting with a value of its type, or its first choice."""
    values: dict[str, Any] = {}
    for name in required:
        spec = properties[name]
        kinds = spec.get("anyOf", [spec])
        if "enum" in spec:
            values[name] = spec["enum"][0]
            continue
        kind = next(k.get("type") for k in kinds if k.get("type") != "null")
        item = spec.get("items", {})
        values[name] = {
            "string": "x",
            "number": 1.5,
            "integer": 2,
            "boolean": True,
            "object": {},
            "array": [item["enum"][0]] if "enum" in item else ["x"],
        }[kind]
    return values


def test_minimal_settings_validate_and_wrong_ones_name_the_field(
    built: dict[str, DestinationDefinition],
) -> None:
    for definition in built.values():
        schema = definition.settings.model_json_schema()
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        minimal = _minimal(properties, required)
        definition.parse_settings(minimal)
        with pytest.raises(ValidationError) as unknown:
            definition.parse_settings({**minimal, "not_a_setting": 1})
        assert unknown.value.errors()[0]["loc"] == ("not_a_setting",)
        for name in required:
            with pytest.raises(ValidationError) as missing:
                definition.parse_settings({k: v for k, v in minimal.items() if k != name})
            assert missing.value.errors()[0]["loc"] == (name,)
        for name, spec in properties.items():
            choices = spec.get("enum") or next(
                (k["enum"] for k in spec.get("anyOf", ()) if "enum" in k), None
            )
            if choices:
                with pytest.raises(ValidationError) as wrong:
                    definition.parse_settings({**minimal, name: "not one of the choices"})
                assert wrong.value.errors()[0]["loc"][0] == name


def test_customerio_settings(built: dict[str, DestinationDefinition]) -> None:
    customerio = built["actions:customerio"]
    assert customerio.name == "Actions Customerio"
    assert customerio.secrets == {"siteId", "apiKey"}
    parsed = customerio.parse_settings({"siteId": "site", "apiKey": "key"})
    assert parsed.model_dump(by_alias=True) == {
        "siteId": "site",
        "apiKey": "key",
        "accountRegion": "US 🇺🇸",
    }
    with pytest.raises(ValidationError) as wrong:
        customerio.parse_settings({"siteId": "s", "apiKey": "k", "accountRegion": "Mars"})
    assert wrong.value.errors()[0]["loc"] == ("accountRegion",)


def test_oauth_destinations_keep_their_tokens_as_a_secret_setting(
    document: dict[str, Any], built: dict[str, DestinationDefinition]
) -> None:
    oauth = [
        kind
        for kind, entry in _entries(document).items()
        if entry["authentication"]["scheme"] in ("oauth2", "oauth-managed")
    ]
    assert oauth
    for kind in oauth:
        definition = built[kind]
        assert "oauth" in definition.secrets
        minimal = _minimal(
            definition.settings.model_json_schema()["properties"],
            definition.settings.model_json_schema().get("required", []),
        )
        definition.parse_settings(
            {
                **minimal,
                "oauth": {
                    "access_token": "t",
                    "refresh_token": "r",
                    "clientId": "c",
                    "clientSecret": "s",
                },
            }
        )
        with pytest.raises(ValidationError):
            definition.parse_settings({**minimal, "oauth": {"acess_token": "typo"}})


def _as_mapping(preset: Preset) -> list[dict[str, Any]]:
    # A specific-event preset (Engage journeys, linked audiences) has no trigger of its own.
    trigger = preset.trigger or 'type = "track"'
    return [
        {"name": preset.name, "trigger": trigger, "action": preset.action, "fields": preset.fields}
    ]


def _partial(actions: dict[str, ActionDefinition]) -> dict[str, ActionDefinition]:
    """A specific-event preset is completed when an instance uses it: check what it maps."""
    return {
        key: dataclasses.replace(
            action,
            fields={n: dataclasses.replace(f, required=False) for n, f in action.fields.items()},
        )
        for key, action in actions.items()
    }


def test_every_preset_passes_mapping_validation(built: dict[str, DestinationDefinition]) -> None:
    checked = 0
    for kind, definition in built.items():
        for preset in definition.presets:
            assert preset.action in definition.actions
            actions = dict(definition.actions)
            if not preset.automatic:
                actions = _partial(actions)
            problem = PACKAGE_PRESET_PROBLEMS.get((kind, preset.name))
            if problem is None:
                check_mappings(actions, _as_mapping(preset))
                checked += 1
            else:
                with pytest.raises(ListError, match=problem):
                    check_mappings(actions, _as_mapping(preset))
    assert checked > 400


def test_presets_of_browser_actions_are_left_out(
    document: dict[str, Any], built: dict[str, DestinationDefinition]
) -> None:
    entries = _entries(document)
    amplitude = entries["actions:amplitude"]
    browser = [
        p["name"]
        for p in amplitude["presets"]
        if p["partnerAction"] not in {a["key"] for a in amplitude["actions"]}
    ]
    assert "Browser Session Tracking" in browser
    kept = [p.name for p in built["actions:amplitude"].presets]
    assert kept and not set(browser) & set(kept)


def test_a_constant_directive_is_checked_by_its_value() -> None:
    spec = {"name": FieldSpec("string", required=True, choices=("page_viewed", "cart_viewed"))}
    check_fields({"name": {"@template": "page_viewed"}}, spec)
    with pytest.raises(MappingError, match="should be one of"):
        check_fields({"name": {"@template": "checkout"}}, spec)
    with pytest.raises(MappingError, match="should be a string"):
        check_fields({"name": {"not": "a directive"}}, spec)


def test_the_registry_has_them_beside_the_native_ones(catalog: Path) -> None:
    everything = registry.definitions()
    assert registry.get("actions:customerio").package_directory == "customerio"
    assert registry.get("webhook").package_directory is None
    # A native destination and a package one may answer to the same name.
    assert everything["slack"].name == everything["actions:slack"].name == "Slack"
    assert (
        everything["mixpanel-actions"].name
        == everything["actions:mixpanel"].name
        == "Mixpanel (Actions)"
    )
    assert {"Slack", "Actions Customerio", "Webhooks"} <= registry.integration_names()
    with pytest.raises(UnknownDestinationType, match="did you mean actions:customerio"):
        registry.get("actions:custmerio")


def test_two_package_definitions_may_not_share_a_name(catalog: Path) -> None:
    a, b = (
        registry.package_definitions()["actions:braze"],
        registry.package_definitions()["actions:klaviyo"],
    )
    with pytest.raises(RuntimeError, match="both answer to"):
        registry._check_names([a, dataclasses.replace(b, name=a.name)])


def test_without_a_catalog_an_actions_type_says_how_to_install(no_catalog: Path) -> None:
    assert not any(t.startswith("actions:") for t in registry.definitions())
    assert "webhook" in registry.definitions()
    with pytest.raises(CatalogNotInstalled, match="run `headwater catalog install`"):
        registry.get("actions:customerio")


def test_validate_settings_in_node_for_every_definition(built: dict[str, Any]) -> None:
    """actions-core's own settings check, through the runtime's ``validateSettings`` hook,
    for the same minimal settings as above: the runtime's pool provides it."""
    pool = pytest.importorskip("headwater.destinations.runtime.pool")
    validate = getattr(pool, "validate_settings", None)
    if validate is None:
        pytest.skip("the actions runtime has no validate_settings yet")
    for definition in built.values():
        schema = definition.settings.model_json_schema()
        validate(
            definition.package_directory,
            _minimal(schema.get("properties", {}), schema.get("required", [])),
        )
