"""Functions as configuration: versions and their labels, the workspace limit, refused code,
settings declarations and instances' settings, deletion while in use, and the error log."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.errors import ConflictError, InvalidError, NotFoundError
from headwater.functions.contract import Invocation, LogLine, OutgoingRequest
from headwater.functions.store import REDACTED, FunctionLogs, FunctionStore
from headwater.store import schema
from headwater.store.workspace import WorkspaceStore
from tests.support.clock import Clock

ENRICH = "async function onTrack(event) { event.properties.message = 'Enriched'; return event }"
POST = "async function onTrack(event, settings) { await fetch(settings.url) }"
WEBHOOK = "def on_request(request, settings):\n    segment.track({'event': 'x', 'userId': 'u'})\n"
SECRET_KEY = {"name": "apiKey", "label": "API key", "type": "string", "secret": True}


@pytest.fixture
def workspace(engine: Engine, clock: Clock) -> WorkspaceStore:
    store = WorkspaceStore(engine, clock=clock)
    store.ensure_workspace("acme")
    return store


@pytest.fixture
def functions(workspace: WorkspaceStore) -> FunctionStore:
    return FunctionStore(workspace, base_url="https://hw.example.com")


def _destination(workspace: WorkspaceStore, name: str, type_: str = "webhook") -> str:
    """A destination row as DestinationStore writes it (a ``function:`` type is the catalog's
    to know, so the row is written directly)."""
    source = workspace.get_source("web") or workspace.create_source("web")
    with workspace.writing() as conn:
        conn.execute(
            schema.destinations.insert().values(
                id="dst_" + name,
                workspace_id=source.workspace_id,
                source_id=source.id,
                name=name,
                type=type_,
                enabled=True,
                settings={},
                delivery={},
                created_at=0,
                updated_at=0,
            )
        )
    return "dst_" + name


# --- versions ------------------------------------------------------------------------------


def test_create_saves_version_one_deployed(functions: FunctionStore) -> None:
    created = functions.create("enrich", "insert", "javascript", ENRICH, description="adds")
    assert created.id.startswith("fn_")
    assert (created.latest_version, created.deployed_version) == (1, 1)
    code = functions.deployed("enrich")
    assert code is not None
    assert (code.function, code.version, code.language, code.source) == (
        created.id,
        1,
        "javascript",
        ENRICH,
    )
    assert code.key == f"{created.id}@1"
    assert functions.get(created.id) == functions.get("enrich") == created


def test_save_keeps_deployed_and_deploy_moves_it(functions: FunctionStore) -> None:
    functions.create("enrich", "insert", "javascript", ENRICH)
    saved = functions.update("enrich", code=ENRICH + "\n// v2")
    assert (saved.latest_version, saved.deployed_version) == (2, 1)
    deployed = functions.deployed("enrich")
    assert deployed is not None and deployed.source == ENRICH
    assert functions.latest("enrich").source == ENRICH + "\n// v2"
    moved = functions.deploy("enrich")
    assert moved.deployed_version == 2
    assert [v.version for v in functions.versions("enrich")] == [2, 1]


def test_unchanged_code_is_no_new_version(
    functions: FunctionStore, workspace: WorkspaceStore
) -> None:
    functions.create("enrich", "insert", "javascript", ENRICH)
    before = workspace.config_version()
    same = functions.update("enrich", code=ENRICH, deploy=True)
    assert (same.latest_version, same.deployed_version) == (1, 1)
    assert workspace.config_version() == before


def test_save_and_deploy(functions: FunctionStore) -> None:
    functions.create("enrich", "insert", "javascript", ENRICH)
    saved = functions.update("enrich", code="// two\n" + ENRICH, deploy=True)
    assert (saved.latest_version, saved.deployed_version) == (2, 2)


def test_restore_is_a_new_version_with_the_old_code(functions: FunctionStore) -> None:
    functions.create("enrich", "insert", "javascript", ENRICH)
    functions.update("enrich", code="// two\n" + ENRICH, deploy=True)
    restored = functions.restore("enrich", 1)
    assert (restored.latest_version, restored.deployed_version) == (3, 2)
    assert functions.version("enrich", 3).code == ENRICH
    assert functions.restore("enrich", 2, deploy=True).deployed_version == 4
    with pytest.raises(NotFoundError):
        functions.restore("enrich", 9)


def test_deploy_an_older_version(functions: FunctionStore) -> None:
    functions.create("enrich", "insert", "javascript", ENRICH)
    functions.update("enrich", code="// two\n" + ENRICH, deploy=True)
    assert functions.deploy("enrich", 1).deployed_version == 1
    with pytest.raises(NotFoundError):
        functions.deploy("enrich", 7)


def test_every_change_bumps_the_config_version(
    functions: FunctionStore, workspace: WorkspaceStore
) -> None:
    before = workspace.config_version()
    functions.create("enrich", "insert", "javascript", ENRICH)
    functions.update("enrich", code="// two\n" + ENRICH)
    functions.deploy("enrich")
    assert workspace.config_version() == before + 3


# --- rules ---------------------------------------------------------------------------------


def test_ac111_a_26th_function_is_refused(functions: FunctionStore) -> None:
    """AC-111: Segment's default limit, 25 functions a workspace, all kinds together."""
    for i in range(25):
        functions.create(f"f{i}", ("source", "destination", "insert")[i % 3], "python", WEBHOOK)
    with pytest.raises(ConflictError, match="limit"):
        functions.create("f25", "insert", "javascript", ENRICH)
    functions.delete("f0")
    functions.create("f25", "insert", "javascript", ENRICH)


def test_the_limit_is_configurable(workspace: WorkspaceStore) -> None:
    small = FunctionStore(workspace, limit=1)
    small.create("one", "insert", "javascript", ENRICH)
    with pytest.raises(ConflictError):
        small.create("two", "insert", "javascript", ENRICH)


@pytest.mark.parametrize("kind", ["source", "destination", "insert"])
def test_ac113_code_calling_segments_function_host_is_refused(
    functions: FunctionStore, kind: str
) -> None:
    """AC-113: code containing https://fn.segmentapis.com is not saved, on create or update."""
    looping = "async function onRequest() { await fetch('https://fn.segmentapis.com/?b=x') }"
    with pytest.raises(InvalidError, match=r"fn\.segmentapis\.com"):
        functions.create("loop", kind, "javascript", looping)
    functions.create("fine", kind, "javascript", ENRICH)
    with pytest.raises(InvalidError, match=r"fn\.segmentapis\.com"):
        functions.update("fine", code=looping.replace("fn.", "FN."))
    assert functions.require("fine").latest_version == 1


def test_a_source_function_may_not_call_this_servers_function_endpoint(
    functions: FunctionStore,
) -> None:
    own = "async function onRequest() { await fetch('https://hw.example.com/v1/functions/x') }"
    with pytest.raises(InvalidError, match="v1/functions"):
        functions.create("loop", "source", "javascript", own)
    functions.create("forward", "destination", "javascript", own)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "transformation"}, "kind"),
        ({"language": "ruby"}, "language"),
        ({"code": ""}, "code"),
        ({"code": 12}, "code"),
        ({"code": "x" * (512 * 1024 + 1)}, "code"),
        ({"code": "a\x00b"}, "code"),
        ({"name": ""}, "name"),
        ({"name": "x" * 121}, "name"),
        ({"description": 5}, "description"),
        ({"settings": {"name": "x"}}, "settings"),
        ({"settings": [{"name": "bad name"}]}, "settings[0].name"),
        ({"settings": [{"name": "a"}, {"name": "a"}]}, "settings[1].name"),
        ({"settings": [{"name": "a", "type": "number"}]}, "settings[0].type"),
        ({"settings": [{"name": "a", "secret": "yes"}]}, "settings[0].secret"),
        ({"settings": [{"name": "a", "colour": "red"}]}, "settings[0]"),
    ],
)
def test_bad_input_is_refused_with_its_field(
    functions: FunctionStore, change: dict[str, object], field: str
) -> None:
    args: dict[str, object] = {
        "name": "enrich",
        "kind": "insert",
        "language": "javascript",
        "code": ENRICH,
    }
    args.update(change)
    with pytest.raises(InvalidError) as refused:
        functions.create(**args)  # type: ignore[arg-type]
    assert refused.value.field == field
    assert functions.list() == []


def test_names_are_unique_and_insert_names_short(functions: FunctionStore) -> None:
    functions.create("x" * 120, "insert", "javascript", ENRICH)
    functions.create("enrich", "insert", "javascript", ENRICH)
    with pytest.raises(ConflictError):
        functions.create("enrich", "destination", "javascript", POST)
    functions.create("y" * 200, "source", "python", WEBHOOK)


# --- instances and deletion ------------------------------------------------------------------


def test_instance_settings_are_checked_and_secrets_kept(
    functions: FunctionStore, workspace: WorkspaceStore
) -> None:
    declared = [SECRET_KEY, {"name": "tags", "type": "array", "required": True}]
    function = functions.create("enrich", "insert", "javascript", ENRICH, settings=declared)
    assert [s.shown()["secret"] for s in function.settings] == [True, False]
    hook = _destination(workspace, "hook")
    attached = functions.attach_insert("hook", "enrich", {"apiKey": "s3cret", "tags": ["a"]})
    assert attached is not None and attached.settings == {"apiKey": "s3cret", "tags": ["a"]}
    assert function.redact(attached.settings) == {"apiKey": REDACTED, "tags": ["a"]}
    # An export sends the secret back redacted (or leaves it out): the stored value stays.
    again = functions.attach_insert(hook, "enrich", {"apiKey": REDACTED, "tags": ["b"]})
    assert again is not None and again.settings == {"apiKey": "s3cret", "tags": ["b"]}
    with pytest.raises(InvalidError, match="tags is required"):
        functions.attach_insert("hook", "enrich", {"apiKey": "k"})
    with pytest.raises(InvalidError, match="list of strings"):
        functions.attach_insert("hook", "enrich", {"tags": "a"})
    with pytest.raises(InvalidError, match="not a setting"):
        functions.attach_insert("hook", "enrich", {"tags": ["a"], "other": "x"})
    info = workspace.engine
    with info.connect() as conn:
        row = conn.execute(
            sa.select(schema.destinations.c.insert_function_id).where(
                schema.destinations.c.id == hook
            )
        ).one()
    assert row.insert_function_id == function.id


def test_only_the_right_kind_attaches(functions: FunctionStore, workspace: WorkspaceStore) -> None:
    functions.create("enrich", "insert", "javascript", ENRICH)
    functions.create("stripe", "source", "python", WEBHOOK)
    workspace.create_source("stripe-in")
    _destination(workspace, "hook")
    with pytest.raises(InvalidError, match="not a source function"):
        functions.attach_source("stripe-in", "enrich")
    with pytest.raises(InvalidError, match="not a insert function"):
        functions.attach_insert("hook", "stripe")
    with pytest.raises(NotFoundError):
        functions.attach_source("stripe-in", "missing")
    attached = functions.attach_source("stripe-in", "stripe")
    assert attached is not None and attached.function.name == "stripe"
    source = workspace.get_source("stripe-in")
    assert source is not None and source.function_id == attached.function.id
    assert functions.attach_source("stripe-in", None) is None
    assert functions.source_function("stripe-in") is None


def test_a_function_in_use_is_not_deleted(
    functions: FunctionStore, workspace: WorkspaceStore
) -> None:
    functions.create("enrich", "insert", "javascript", ENRICH)
    functions.create("stripe", "source", "python", WEBHOOK)
    functions.create("post", "destination", "javascript", POST)
    workspace.create_source("stripe-in")
    functions.attach_source("stripe-in", "stripe")
    _destination(workspace, "hook")
    functions.attach_insert("hook", "enrich")
    _destination(workspace, "internal-api", "function:post")
    for name, user in (("stripe", "stripe-in"), ("enrich", "hook"), ("post", "internal-api")):
        with pytest.raises(ConflictError, match=user):
            functions.delete(name)
    with pytest.raises(ConflictError, match="renaming"):
        functions.update("post", name="post2")
    functions.attach_source("stripe-in", None)
    functions.delete("stripe")
    assert functions.get("stripe") is None
    assert [f.name for f in functions.list()] == ["enrich", "post"]


def test_destination_function_types(functions: FunctionStore) -> None:
    functions.create("post", "destination", "javascript", POST)
    functions.create("enrich", "insert", "javascript", ENRICH)
    assert functions.destination_function("function:post").name == "post"
    with pytest.raises(InvalidError, match="not a destination function"):
        functions.destination_function("function:enrich")
    with pytest.raises(InvalidError, match="no function"):
        functions.destination_function("function:nope")


def test_deleting_removes_versions_and_logs(
    functions: FunctionStore, workspace: WorkspaceStore
) -> None:
    created = functions.create("enrich", "insert", "javascript", ENRICH)
    functions.update("enrich", code="// 2\n" + ENRICH)
    FunctionLogs(workspace).record("enrich", 1, None, Invocation(error="Error", message="x"), {})
    functions.delete("enrich")
    with workspace.engine.connect() as conn:
        for table in (schema.function_versions, schema.function_logs):
            count = conn.execute(
                sa.select(sa.func.count())
                .select_from(table)
                .where(table.c.function_id == created.id)
            ).scalar_one()
            assert count == 0


# --- logs ----------------------------------------------------------------------------------


def test_logs_keep_the_100_most_recent(
    functions: FunctionStore, workspace: WorkspaceStore, clock: Clock
) -> None:
    functions.create("enrich", "insert", "javascript", ENRICH)
    logs = FunctionLogs(workspace, clock=clock)
    for i in range(105):
        clock.advance(1)
        logs.record("enrich", 1, "dst_x", Invocation(error="RetryError", message=f"#{i}"), {"i": i})
    recent = logs.recent("enrich")
    assert len(recent) == 100
    assert recent[0].message == "#104" and recent[-1].message == "#5"
    assert recent[0].payload == {"i": 104}
    assert (recent[0].level, recent[0].error, recent[0].instance_id) == (
        "error",
        "RetryError",
        "dst_x",
    )
    with workspace.engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(schema.function_logs))
        assert stored.scalar_one() == 100


def test_logs_last_30_days(
    functions: FunctionStore, workspace: WorkspaceStore, clock: Clock
) -> None:
    functions.create("enrich", "insert", "javascript", ENRICH)
    logs = FunctionLogs(workspace, clock=clock)
    logs.record("enrich", 1, None, Invocation(value={}), {"old": True})
    clock.advance(29 * 86400)
    logs.record("enrich", 1, None, Invocation(value={}), {"new": True})
    assert len(logs.recent("enrich")) == 2
    clock.advance(2 * 86400)
    assert [e.payload for e in logs.recent("enrich")] == [{"new": True}]
    assert logs.prune() == 1


def test_logs_cap_console_output_and_hide_secrets(
    functions: FunctionStore, workspace: WorkspaceStore
) -> None:
    functions.create("enrich", "insert", "javascript", ENRICH)
    logs = FunctionLogs(workspace)
    invocation = Invocation(
        error="ValidationError",
        message="key s3cretvalue refused",
        logs=[LogLine("log", "using s3cretvalue")] + [LogLine("log", "x" * 1000)] * 6,
        requests=[OutgoingRequest("GET", "https://api.example.com/?k=s3cretvalue", 403)],
    )
    logs.record(
        "enrich",
        1,
        None,
        invocation,
        {"big": "y" * 40_000, "k": "s3cretvalue"},
        secrets=["s3cretvalue"],
    )
    (entry,) = logs.recent("enrich")
    assert "s3cretvalue" not in repr(entry)
    assert entry.message == f"key {REDACTED} refused"
    assert sum(len(text.encode()) for _, text in entry.logs) <= 4096 + len("…".encode())
    assert entry.logs[-1][1].endswith("…")
    assert entry.requests[0]["url"] == f"https://api.example.com/?k={REDACTED}"
    assert isinstance(entry.payload, str) and len(entry.payload.encode()) <= 16 * 1024 + 3


def test_logs_of_an_unknown_function(workspace: WorkspaceStore) -> None:
    with pytest.raises(NotFoundError):
        FunctionLogs(workspace).recent("nope")
