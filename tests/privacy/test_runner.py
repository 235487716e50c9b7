"""The deletion runner over small real erasers: rows in a real SQLite table, a crash, a resume.

The stores' own erasers come from their packages; these stand in for them with the same
contract (``privacy/erasure.py``): idempotent, told the widened subjects, and free to fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.privacy.erasure import (
    Erasure,
    NotSupported,
    Progress,
    Subjects,
    Target,
    TargetKind,
)
from headwater.privacy.regulations import (
    DELETE_ARCHIVE_ONLY,
    FAILED,
    FINISHED,
    INITIALIZED,
    INVALID,
    NOT_SUPPORTED,
    PARTIAL_SUCCESS,
    RUNNING,
    SOURCE,
    STATUSES,
    SUPPRESS_ONLY,
    SUPPRESS_WITH_DELETE,
    WORKSPACE,
    Regulations,
)
from headwater.privacy.runner import DeletionRunner, error_text
from headwater.store.database import open_engine
from tests.support.clock import Clock

rows = sa.MetaData()
# One store of events: who sent each (user_id, anonymous_id) and from which source.
stored = sa.Table(
    "stored_events",
    rows,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source_id", sa.String(40), nullable=False),
    sa.Column("user_id", sa.String(100), nullable=True),
    sa.Column("anonymous_id", sa.String(100), nullable=True),
)
# A stand-in identity graph: the anonymous ids each user was seen with.
graph = sa.Table(
    "graph",
    rows,
    sa.Column("user_id", sa.String(100), primary_key=True),
    sa.Column("anonymous_id", sa.String(100), primary_key=True),
)


class Crash(BaseException):
    """The process dies here: nothing after this line of the runner runs."""


class TableEraser:
    """Deletes the subjects' rows of one kind of store; ``fail`` raises on the next calls."""

    def __init__(self, store: Engine, kind: TargetKind, name: str) -> None:
        self._store = store
        self.target = Target(kind, name, name)
        self.calls: list[Erasure] = []
        self.fail: list[BaseException] = []
        self.progress: list[Progress] = []

    def erase(self, erasure: Erasure) -> Progress | None:
        self.calls.append(erasure)
        if self.fail:
            raise self.fail.pop(0)
        subjects = erasure.subjects
        where = sa.or_(
            stored.c.user_id.in_(sorted(subjects.user_ids)),
            stored.c.anonymous_id.in_(sorted(subjects.anonymous_ids)),
        )
        if erasure.source_ids is not None:
            where = sa.and_(where, stored.c.source_id.in_(sorted(erasure.source_ids)))
        with self._store.begin() as conn:
            conn.execute(stored.delete().where(where))
        if self.progress:
            return self.progress.pop(0)
        return None


class GraphExpander:
    def __init__(self, store: Engine) -> None:
        self._store = store
        self.calls = 0

    def expand(self, erasure: Erasure) -> Subjects:
        self.calls += 1
        with self._store.connect() as conn:
            found = conn.execute(
                sa.select(graph.c.anonymous_id).where(
                    graph.c.user_id.in_(sorted(erasure.subjects.user_ids))
                )
            ).scalars()
            return Subjects(anonymous_ids=frozenset(found))


class GraphEraser(TableEraser):
    """The internal stores: the identity graph goes too, so a later expansion finds nothing."""

    def erase(self, erasure: Erasure) -> Progress | None:
        outcome = super().erase(erasure)
        with self._store.begin() as conn:
            conn.execute(
                graph.delete().where(graph.c.user_id.in_(sorted(erasure.subjects.user_ids)))
            )
        return outcome


@pytest.fixture
def store(tmp_path: Path) -> Engine:
    engine = open_engine(f"sqlite:///{tmp_path / 'store.db'}")
    rows.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            stored.insert(),
            [
                {"source_id": "s1", "user_id": "u2", "anonymous_id": "a2"},
                {"source_id": "s1", "user_id": None, "anonymous_id": "a2"},  # before login
                {"source_id": "s2", "user_id": "u2", "anonymous_id": "a2b"},
                {"source_id": "s1", "user_id": "u9", "anonymous_id": "a9"},
                {"source_id": "s2", "user_id": None, "anonymous_id": "a9"},
            ],
        )
        conn.execute(
            graph.insert(),
            [
                {"user_id": "u2", "anonymous_id": "a2"},
                {"user_id": "u2", "anonymous_id": "a2b"},
                {"user_id": "u9", "anonymous_id": "a9"},
            ],
        )
    return engine


def left(store: Engine) -> list[tuple[str, str | None, str | None]]:
    with store.connect() as conn:
        found = conn.execute(
            sa.select(stored.c.source_id, stored.c.user_id, stored.c.anonymous_id).order_by(
                stored.c.id
            )
        ).all()
    return [(r[0], r[1], r[2]) for r in found]


EVERYONE_ELSE = [("s1", "u9", "a9"), ("s2", None, "a9")]


def erasers(store: Engine) -> list[TableEraser]:
    return [
        GraphEraser(store, "internal", "profiles"),
        TableEraser(store, "archive", "archive"),
        TableEraser(store, "warehouse", "wh"),
        TableEraser(store, "destination", "amplitude"),
    ]


def delete_u2(engine: Engine, clock: Clock, type_: str = SUPPRESS_WITH_DELETE) -> str:
    created = Regulations(engine, clock=clock).create("ws", WORKSPACE, type_, "USER_ID", ["u2"])
    return created.regulation.id


def test_a_deletion_widens_the_subject_then_erases_every_store_in_order(
    engine: Engine, store: Engine, clock: Clock
) -> None:
    regulation_id = delete_u2(engine, clock)
    expander = GraphExpander(store)
    steps = erasers(store)
    runner = DeletionRunner(engine, [expander], steps, clock=clock)

    runner.run_due()

    # The anonymous ids the graph held went with the user, though the graph is gone now.
    assert left(store) == EVERYONE_ELSE
    regulations = Regulations(engine, clock=clock)
    regulation = regulations.get(regulation_id)
    assert regulation is not None and regulation.status == FINISHED
    assert regulation.finished_at == clock.now
    assert regulation.expanded == Subjects(
        user_ids=frozenset({"u2"}), anonymous_ids=frozenset({"a2", "a2b"})
    )
    assert [(s.kind, s.status) for s in regulations.steps(regulation_id)] == [
        ("internal", FINISHED),
        ("archive", FINISHED),
        ("warehouse", FINISHED),
        ("destination", FINISHED),
    ]
    for eraser in steps:
        assert len(eraser.calls) == 1
        assert eraser.calls[0].subjects == regulation.expanded
        assert eraser.calls[0].source_ids is None
    runner.run_due()  # nothing is due any more
    assert all(len(e.calls) == 1 for e in steps) and expander.calls == 1


def test_a_crash_mid_way_resumes_without_repeating_what_finished(
    engine: Engine, store: Engine, clock: Clock
) -> None:
    regulation_id = delete_u2(engine, clock)
    first = erasers(store)
    first[2].fail = [Crash()]  # the process dies inside the warehouse's eraser
    with pytest.raises(Crash):
        DeletionRunner(engine, [GraphExpander(store)], first, clock=clock).run_due()
    regulations = Regulations(engine, clock=clock)
    assert regulations.get(regulation_id).status == RUNNING  # type: ignore[union-attr]
    assert [s.status for s in regulations.steps(regulation_id)] == [
        FINISHED,
        FINISHED,
        RUNNING,
        INITIALIZED,
    ]
    # The graph is erased already: a new process knows the widened subjects from the store.
    expander = GraphExpander(store)
    second = erasers(store)
    DeletionRunner(engine, [expander], second, clock=clock).run_due()

    assert expander.calls == 0
    assert [len(e.calls) for e in second] == [0, 0, 1, 1]
    assert second[3].calls[0].subjects.anonymous_ids == {"a2", "a2b"}
    assert left(store) == EVERYONE_ELSE
    assert regulations.get(regulation_id).status == FINISHED  # type: ignore[union-attr]


def test_a_crash_before_the_subjects_are_stored_expands_again(
    engine: Engine, store: Engine, clock: Clock
) -> None:
    regulation_id = delete_u2(engine, clock)

    class Dying(GraphExpander):
        def expand(self, erasure: Erasure) -> Subjects:
            raise Crash()

    first = erasers(store)
    with pytest.raises(Crash):
        DeletionRunner(engine, [Dying(store)], first, clock=clock).run_due()
    assert all(not e.calls for e in first)  # nothing erased before the subjects were stored
    assert Regulations(engine).get(regulation_id).expanded is None  # type: ignore[union-attr]
    DeletionRunner(engine, [GraphExpander(store)], erasers(store), clock=clock).run_due()
    assert left(store) == EVERYONE_ELSE


def test_failures_are_retried_with_back_off_then_the_regulation_fails(
    engine: Engine, store: Engine, clock: Clock
) -> None:
    regulation_id = delete_u2(engine, clock)
    steps = erasers(store)
    secret = "https://admin:hunter2@amplitude.test/delete?api_key=sk_live_42"
    steps[3].fail = [RuntimeError(f"502 from {secret}") for _ in range(5)]
    runner = DeletionRunner(engine, [GraphExpander(store)], steps, clock=clock, backoff=10)
    regulations = Regulations(engine, clock=clock)

    waits = []
    for _ in range(5):
        runner.run_due()
        step = regulations.steps(regulation_id)[3]
        if step.due_at is not None:
            waits.append(step.due_at - clock.now)
            clock.now = step.due_at
    assert waits == [10, 40, 160, 640]
    assert len(steps[3].calls) == 5 and len(steps[0].calls) == 1
    regulation = regulations.get(regulation_id)
    assert regulation is not None and regulation.status == FAILED
    step = regulations.steps(regulation_id)[3]
    assert step.status == FAILED and step.attempts == 5
    assert step.detail.startswith("RuntimeError: 502 from https://")
    assert "hunter2" not in step.detail and "sk_live_42" not in step.detail
    # Everyone else's stores finished: still FAILED overall (§10.2).
    assert [s.status for s in regulations.steps(regulation_id)[:3]] == [FINISHED] * 3


def test_a_failure_that_recovers_finishes(engine: Engine, store: Engine, clock: Clock) -> None:
    regulation_id = delete_u2(engine, clock)
    steps = erasers(store)
    steps[1].fail = [OSError("disk busy")]
    runner = DeletionRunner(engine, [GraphExpander(store)], steps, clock=clock, backoff=5)
    runner.run_due()
    regulations = Regulations(engine, clock=clock)
    step = regulations.steps(regulation_id)[1]
    assert (step.status, step.attempts, step.detail) == (RUNNING, 1, "OSError: disk busy")
    assert regulations.get(regulation_id).status == RUNNING  # type: ignore[union-attr]
    runner.run_due()  # not due yet
    assert len(steps[1].calls) == 1
    clock.advance(5)
    runner.run_due()
    assert regulations.get(regulation_id).status == FINISHED  # type: ignore[union-attr]
    assert left(store) == EVERYONE_ELSE


def test_progress_is_asked_again_after_its_wait_and_holds_back_the_steps_after_it(
    engine: Engine, store: Engine, clock: Clock
) -> None:
    regulation_id = delete_u2(engine, clock)
    steps = erasers(store)
    steps[0].progress = [Progress("log segments expire in 2 days", retry_after=3600)]
    runner = DeletionRunner(engine, [GraphExpander(store)], steps, clock=clock)
    runner.run_due()
    regulations = Regulations(engine, clock=clock)
    first = regulations.steps(regulation_id)
    assert (first[0].status, first[0].detail) == (RUNNING, "log segments expire in 2 days")
    # What the log still holds may reach the stores after it: they wait for it.
    assert [s.status for s in first[1:]] == [INITIALIZED] * 3
    assert [len(s.calls) for s in steps[1:]] == [0, 0, 0]
    regulation = regulations.get(regulation_id)
    assert regulation is not None and regulation.due_at == clock.now + 3600
    clock.advance(3600)
    runner.run_due()
    assert len(steps[0].calls) == 2
    assert [len(s.calls) for s in steps[1:]] == [1, 1, 1]
    assert regulations.get(regulation_id).status == FINISHED  # type: ignore[union-attr]


def test_each_type_reaches_only_its_stores(engine: Engine, store: Engine, clock: Clock) -> None:
    """KINDS_OF per type; every status one of A-DS-7's."""
    regulations = Regulations(engine, clock=clock)
    archive_only = regulations.create(
        "ws", SOURCE, DELETE_ARCHIVE_ONLY, "ANONYMOUS_ID", ["a2"], source_id="s1"
    ).regulation.id
    clock.advance(1)
    internal = delete_u2(engine, clock, "DELETE_INTERNAL")
    clock.advance(1)
    suppress = regulations.create("ws", WORKSPACE, SUPPRESS_ONLY, "USER_ID", ["u7"]).regulation.id
    expander = GraphExpander(store)
    steps = erasers(store)
    DeletionRunner(engine, [expander], steps, clock=clock).run_due()

    # DELETE_ARCHIVE_ONLY: the archive only, the anonymous id as given, in its source only.
    archive_call = steps[1].calls[0]
    assert archive_call.regulation_id == archive_only
    assert archive_call.subjects == Subjects(anonymous_ids=frozenset({"a2"}))
    assert archive_call.source_ids == frozenset({"s1"})
    assert [k.target.kind for k in steps if any(c.regulation_id == internal for c in k.calls)] == [
        "internal",
        "archive",
    ]
    assert not steps[2].calls and not steps[3].calls
    assert expander.calls == 1  # the internal deletion's; never the archive-only one's
    assert [s.kind for s in regulations.steps(internal)] == ["internal", "archive"]
    assert regulations.steps(suppress) == []
    for regulation_id in (archive_only, internal, suppress):
        found = regulations.get(regulation_id)
        assert found is not None and found.status == FINISHED and found.status in STATUSES


def test_a_regulation_of_a_deleted_source_is_invalid(engine: Engine, clock: Clock) -> None:
    regulations = Regulations(engine, clock=clock)
    regulation_id = regulations.create(
        "ws", SOURCE, SUPPRESS_ONLY, "USER_ID", ["u1"], source_id="gone"
    ).regulation.id
    DeletionRunner(engine, [], [], clock=clock, source_exists=lambda _: False).run_due()
    found = regulations.get(regulation_id)
    assert found is not None and found.status == INVALID


def test_error_text_keeps_the_reason_and_drops_secrets() -> None:
    text = error_text(
        ValueError('401 {"api_key": "abc123", "error": "bad"} Authorization: Bearer tok.en')
    )
    assert text.startswith("ValueError: 401 ")
    assert "abc123" not in text and "tok.en" not in text and '"error": "bad"' in text


def test_a_store_removed_before_its_step_finished_is_not_supported(
    engine: Engine, store: Engine, clock: Clock
) -> None:
    regulation_id = delete_u2(engine, clock)
    steps = erasers(store)
    steps[3].fail = [RuntimeError("503")]
    DeletionRunner(engine, [GraphExpander(store)], steps, clock=clock, backoff=1).run_due()
    clock.advance(1)
    # The destination was deleted from the workspace meanwhile: its eraser is not given.
    DeletionRunner(engine, [GraphExpander(store)], steps[:3], clock=clock).run_due()
    regulations = Regulations(engine, clock=clock)
    last = regulations.steps(regulation_id)[3]
    assert last.status == NOT_SUPPORTED and "no longer configured" in last.detail
    found = regulations.get(regulation_id)
    assert found is not None and found.status == PARTIAL_SUCCESS and found.due_at is None


def test_a_destination_without_a_deletion_api_fails_the_regulation_at_once(
    engine: Engine, store: Engine, clock: Clock
) -> None:
    """A-DS-6's last rule: the unsupported destination fails, though every other store
    finished, and nothing retries it."""
    regulation_id = delete_u2(engine, clock)
    steps = erasers(store)
    steps[3].fail = [NotSupported("Webhooks takes no deletion requests")]
    DeletionRunner(engine, [GraphExpander(store)], steps, clock=clock).run_due()
    regulations = Regulations(engine, clock=clock)
    statuses = [(s.status, s.attempts) for s in regulations.steps(regulation_id)]
    assert statuses == [(FINISHED, 0), (FINISHED, 0), (FINISHED, 0), (FAILED, 0)]
    assert "takes no deletion requests" in regulations.steps(regulation_id)[3].detail
    found = regulations.get(regulation_id)
    assert found is not None and found.status == FAILED and found.due_at is None
    assert left(store) == EVERYONE_ELSE
