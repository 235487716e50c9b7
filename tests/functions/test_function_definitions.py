"""A destination function as a destination of the catalog: its definition made from the
function (name, settings declaration, onBatch), its type ``function:<name>``, and the names
the integrations object may use for its instances (§11.3)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from headwater import reasons
from headwater.delivery.functions import FunctionCatalog
from headwater.destinations import listing, registry
from headwater.destinations.functions import has_handler
from headwater.destinations.routing import destination_verdict
from headwater.destinations.store import DestinationStore
from headwater.errors import InvalidError, UnknownDestinationType
from headwater.functions.logs import FunctionLogs
from headwater.functions.store import FunctionStore
from headwater.store.workspace import WorkspaceStore

SQLITE = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)

POST = "async function onTrack(event, settings) { await fetch(settings.url) }"
BATCH = "async function onBatch(events, settings) { return [] }"
DECLARED = [
    {"name": "url", "label": "URL", "type": "string", "required": True},
    {"name": "apiKey", "label": "API key", "type": "string", "secret": True},
    {"name": "tags", "label": "Tags", "type": "array"},
]


@pytest.fixture
def stores(engine: object) -> Iterator[tuple[FunctionStore, DestinationStore]]:
    workspace = WorkspaceStore(engine)  # type: ignore[arg-type]
    workspace.ensure_workspace("My Workspace")
    workspace.create_source("web", write_key="WK_web")
    functions = FunctionStore(workspace)
    registry.use_functions(FunctionCatalog(functions, FunctionLogs(workspace)))
    try:
        yield functions, DestinationStore(workspace)
    finally:
        registry.use_functions(None)


@pytest.mark.parametrize(
    ("language", "code", "found"),
    [
        ("javascript", "async function onBatch(events, settings) {}", True),
        ("javascript", "const onBatch = async (events) => []", True),
        ("javascript", "exports.onBatch = async function (events) {}", True),
        ("javascript", "async function onTrack(e) { /* onBatch later */ }", False),
        ("javascript", "async function onBatchLater(events) {}", False),
        ("python", "def on_batch(events, settings):\n    return []\n", True),
        ("python", "async def on_batch(events, settings):\n    return []\n", True),
        ("python", "def on_track(event, settings):\n    on_batch = 1\n", False),
    ],
)
def test_has_handler_reads_the_source(language: str, code: str, found: bool) -> None:
    assert has_handler(language, code, "onBatch") is found


@SQLITE
def test_a_destination_function_is_a_catalog_type(
    stores: tuple[FunctionStore, DestinationStore],
) -> None:
    functions, destinations = stores
    functions.create("post-to-api", "destination", "javascript", POST, settings=DECLARED)
    definition = registry.get("function:post-to-api")
    assert definition.name == "post-to-api (My Workspace)"
    assert definition.function == "post-to-api"
    assert definition.secrets == frozenset({"apiKey"})
    assert definition.batching is None
    assert registry.function_definitions() == [definition]
    shown = listing.definition_json(definition)  # the REST API's catalog entry
    assert shown["type"] == "function:post-to-api"
    settings = definition.parse_settings({"url": "https://api.example.com", "tags": ["a"]})
    assert settings.model_dump(exclude_none=True) == {
        "url": "https://api.example.com",
        "tags": ["a"],
    }
    with pytest.raises(ValidationError):
        definition.parse_settings({"apiKey": "k"})  # url is required
    with pytest.raises(ValidationError):
        definition.parse_settings({"url": "u", "undeclared": 1})
    created = destinations.create(
        "internal-api",
        "function:post-to-api",
        "web",
        settings={"url": "https://api.example.com", "apiKey": "sk-secret"},
    )
    assert created.shown_settings()["apiKey"] == "[redacted]"
    with pytest.raises(InvalidError, match="no deployed destination function named 'nope'"):
        destinations.create("other", "function:nope", "web", settings={})


@SQLITE
def test_an_onbatch_handler_makes_it_batch(
    stores: tuple[FunctionStore, DestinationStore],
) -> None:
    functions, _ = stores
    functions.create("batcher", "destination", "javascript", BATCH)
    batching = registry.get("function:batcher").batching
    assert batching is not None
    assert (batching.max_events, batching.max_wait_seconds) == (20, 10.0)


@SQLITE
def test_insert_and_source_functions_are_not_destination_types(
    stores: tuple[FunctionStore, DestinationStore],
) -> None:
    functions, _ = stores
    functions.create("enrich", "insert", "javascript", "async function onTrack(e) { return e }")
    with pytest.raises(UnknownDestinationType):
        registry.get("function:enrich")


@SQLITE
def test_the_integrations_object_names_an_instance_or_the_display_form(
    stores: tuple[FunctionStore, DestinationStore],
) -> None:
    functions, destinations = stores
    functions.create("post-to-api", "destination", "javascript", POST, settings=DECLARED)
    instance = destinations.create(
        "internal-api", "function:post-to-api", "web", settings={"url": "https://x"}
    )

    def verdict(flags: dict[str, object]) -> str | None:
        event = {"type": "track", "event": "E", "integrations": flags}
        return destination_verdict(event, instance)

    assert verdict({}) is None
    assert verdict({"All": False, "internal-api": True}) is None
    assert verdict({"All": False, "post-to-api (My Workspace)": True}) is None
    assert verdict({"internal-api": False}) == reasons.FILTERED_BY_INTEGRATIONS_OBJECT
    assert verdict({"post-to-api (My Workspace)": False}) == (
        reasons.FILTERED_BY_INTEGRATIONS_OBJECT
    )
    assert verdict({"All": False, "post-to-api": True}) == reasons.FILTERED_BY_INTEGRATIONS_OBJECT
    # Every method reaches the function: a missing handler is the sandbox's answer (AC-100).
    assert destination_verdict({"type": "identify"}, instance) is None
