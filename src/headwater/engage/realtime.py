"""Real-time computation: each event updates a profile's state, and the computations that read
what changed are evaluated again.

A space's real-time computations compile into one ``Plan``. Every stream a definition reduces
(``event('Order Completed').where(…)`` with its reducer) is a **vector**: per profile, its values
in hourly buckets by the event's ``timestamp`` (Segment's windows are "precise to the hour":
90 days = 2,160 hours), so a window's value is the combination of the buckets inside it and an
event ageing out is a bucket leaving it. Definitions that reduce the same stream the same way
share one vector, whatever their windows: it keeps the buckets the longest window needs and
folds older ones into one bucket when an unwindowed reader still counts them.

A profile's state (``ProfileState``) is its vectors, the custom traits the plan's audiences
compare, and the last value of every computation (what destinations were told). Evaluation
follows dependencies: a computation referencing another's key (``trait('high_value')``) is
evaluated after it, so one event settles every value in one pass. ``due`` says when time alone
will next change a value (the oldest bucket of a window leaving it): the scheduler re-evaluates
the profile then, so a user who stops qualifying leaves the audience without a new event.

Batch-only definitions (funnels, dynamic references, ``between`` windows, accounts) are not
planned here: ``realtime_reason`` says why.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from headwater.engage.compare import holds, number, read_path, text
from headwater.engage.definition import (
    AllUsers,
    And,
    AnyUser,
    Compare,
    CompareOp,
    Condition,
    ContextRef,
    Definition,
    Not,
    Or,
    PropertyRef,
    Reduce,
    Stream,
    TraitRef,
    Value,
)
from headwater.engage.definition import (
    Literal as Const,
)
from headwater.timestamps import parse_timestamp

HOUR = 3600
FOLDED = -1  # the bucket of values older than every windowed reader needs
EVENT_NAMES = {"page": "Page Viewed", "screen": "Screen Viewed"}

Kind = Literal["audience", "trait"]


@dataclass(frozen=True)
class Computation:
    """An audience or computed trait as the engine needs it."""

    id: str
    key: str
    kind: Kind
    definition: Definition
    include_anonymous: bool = False
    include_historical: bool = False  # a new vector it reads waits for a seed from history


@dataclass(frozen=True)
class Change:
    """A computation's value changed on a profile: ``before`` → ``after``."""

    computation: Computation
    before: Any
    after: Any


class ProfileState(msgspec.Struct, omit_defaults=True):
    """One profile's real-time state (stored as MessagePack)."""

    v: dict[str, dict[int, Any]] = msgspec.field(default_factory=dict)  # vector → hour → agg
    t: dict[str, Any] = msgspec.field(default_factory=dict)  # compared custom traits
    c: dict[str, Any] = msgspec.field(default_factory=dict)  # computation id → last value
    e: bool | None = None  # has an identifier §13.3 counts (None: not looked up yet)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ProfileState)


def encode_state(state: ProfileState) -> bytes:
    return _encoder.encode(state)


def decode_state(data: bytes) -> ProfileState:
    return _decoder.decode(data)


# --- what is real-time --------------------------------------------------------------------------


def realtime_reason(definition: Definition) -> str | None:
    """Why a definition must be computed in batch (Segment §13.6), or None when real-time."""
    if definition.kind == "accounts":
        return "account-level computations are batch"
    reasons: list[str] = []

    def value(node: Value, inside_where: bool) -> None:
        if isinstance(node, Reduce):
            if inside_where:
                reasons.append("funnels are batch")
                return
            stream(node.stream)
        elif isinstance(node, TraitRef) and inside_where:
            reasons.append("dynamic property references are batch")
        elif isinstance(node, PropertyRef) and node.parent:
            reasons.append("funnels are batch")

    def stream(node: Stream) -> None:
        if node.window is not None and (node.window.start_hours > 0 or node.window.parent):
            reasons.append("'between' windows are batch")
        for condition in node.where:
            visit(condition, True)

    def visit(node: Condition | Value, inside_where: bool) -> None:
        if isinstance(node, Compare):
            value(node.left, inside_where)
            for arg in node.args:
                value(arg, inside_where)
        elif isinstance(node, And | Or):
            for item in node.items:
                visit(item, inside_where)
        elif isinstance(node, Not | AnyUser | AllUsers):
            visit(node.item, inside_where)
        else:
            value(node, inside_where)

    visit(definition.root, False)
    return reasons[0] if reasons else None


# --- vectors ---------------------------------------------------------------------------------


_FAMILIES = {"avg": "sum", "unique_count": "unique"}  # reducers sharing another's buckets


def _vector_key(node: Reduce) -> str:
    """What a vector's buckets depend on: the stream without its window, and the reducer's
    aggregate (sum and avg share one; a mode's minimum frequency is read later)."""
    stream = node.stream
    family = _FAMILIES.get(node.op, node.op)
    return repr(
        (
            stream.event,
            stream.where,
            tuple(sorted(stream.exclude_sources)),
            family,
            node.value,
            node.as_type if family in ("min", "max", "mode") else None,
        )
    )


@dataclass
class _Vector:
    key: str
    reduce: Reduce  # the first reader's (its window is not the vector's)
    ends: set[int | None] = field(default_factory=set)  # readers' windows (None: all time)
    family: str = ""
    keep: int | None = None  # hours of buckets kept apart (None: every reader folds them)
    folds: bool = False  # an unwindowed reader counts buckets older than ``keep``
    since: float | None = None  # events received earlier come from the history seed

    def finish(self) -> None:
        self.family = _FAMILIES.get(self.reduce.op, self.reduce.op)
        finite = [end for end in self.ends if end is not None]
        self.keep = max(finite) if finite else None
        self.folds = None in self.ends


def _add(family: str, bucket: Any, value: Any, at: float) -> Any:
    """A bucket's aggregate with one more value."""
    if family == "count":
        return (bucket or 0) + 1
    if family == "sum":
        total, n = bucket or (0.0, 0)
        return [total + value, n + 1]
    if family in ("min", "max"):
        if bucket is None:
            return value
        pick = min if family == "min" else max
        return pick(bucket, value)
    if family in ("mode", "unique"):
        counts = dict(bucket or {})
        counts[value] = counts.get(value, 0) + 1
        return counts
    if family in ("first", "last"):
        if bucket is None:
            return [at, value]
        earlier = at < bucket[0]
        keep_new = earlier if family == "first" else at >= bucket[0]
        return [at, value] if keep_new else bucket
    raise ValueError(family)


def _combine(family: str, a: Any, b: Any) -> Any:
    """Two buckets' aggregates as one (folding buckets, merging profiles)."""
    if a is None:
        return b
    if b is None:
        return a
    if family == "count":
        return a + b
    if family == "sum":
        return [a[0] + b[0], a[1] + b[1]]
    if family == "min":
        return min(a, b)
    if family == "max":
        return max(a, b)
    if family in ("mode", "unique"):
        counts = dict(a)
        for value, n in b.items():
            counts[value] = counts.get(value, 0) + n
        return counts
    if family == "first":
        return a if a[0] <= b[0] else b
    if family == "last":
        return b if b[0] >= a[0] else a
    raise ValueError(family)


def _read(node: Reduce, buckets: Mapping[int, Any], now_hour: int, zero: bool = True) -> Any:
    """The reducer's value over the buckets inside the node's window. With no bucket there,
    a count, sum or unique count is 0 when ``zero`` (a condition's "performed 0 times", a
    trait that had a value), else None (a trait that never had one does not start at 0)."""
    window = node.stream.window
    op = node.op
    if op == "count":  # the commonest reader, without a call a bucket
        if window is None:
            return sum(buckets.values()) if buckets or zero else None
        oldest = now_hour - window.end_hours  # buckets after this hour are inside
        inside = [n for hour, n in buckets.items() if hour > oldest and hour != FOLDED]
        return sum(inside) if inside or zero else None
    family = _FAMILIES.get(op, op)
    total: Any = None
    for hour, bucket in buckets.items():
        if window is not None and (hour == FOLDED or now_hour - hour >= window.end_hours):
            continue
        total = _combine(family, total, bucket)
    if total is None and not zero:
        return None
    if op == "sum":
        return _tidy(total[0]) if total else 0
    if op == "avg":
        return _tidy(total[0] / total[1]) if total and total[1] else None
    if op in ("min", "max"):
        return total
    if op in ("first", "last"):
        return total[1] if total else None
    if op == "unique_count":
        return len(total) if total else 0
    if op == "unique":
        return sorted(total) if total else None
    if op == "mode":
        if not total:
            return None
        least = node.min_frequency or 1
        best = max(total.values())
        if best < least:
            return None
        return min(value for value, n in total.items() if n == best)  # tie: alphabetical
    raise ValueError(op)


def _tidy(value: float) -> int | float:
    """A sum or average as Segment shows it: whole numbers without ``.0``."""
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


# --- events ------------------------------------------------------------------------------------


def event_name(event: Mapping[str, Any]) -> str | None:
    kind = event.get("type")
    if kind == "track":
        name = event.get("event")
        return name if isinstance(name, str) else None
    return EVENT_NAMES.get(str(kind))


def event_seconds(event: Mapping[str, Any]) -> float | None:
    for name in ("timestamp", "receivedAt"):
        parsed = parse_timestamp(event.get(name))
        if parsed is not None:
            return parsed.timestamp()
    return None


def _properties(event: Mapping[str, Any]) -> Mapping[str, Any]:
    properties = event.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    if event.get("type") in EVENT_NAMES and "name" not in properties and event.get("name"):
        return {**properties, "name": event.get("name")}  # a page's name is a property
    return properties


def _extract(ref: Value | None, event: Mapping[str, Any]) -> Any:
    if isinstance(ref, PropertyRef):
        return read_path(_properties(event), ref.path)
    if isinstance(ref, ContextRef):
        return read_path(event.get("context"), ref.path)
    if isinstance(ref, Const):
        return ref.value
    return None


def _where(condition: Condition, event: Mapping[str, Any], now: float) -> bool:
    if isinstance(condition, Compare):
        left = _extract(condition.left, event)
        args = [_extract(arg, event) for arg in condition.args]
        return holds(condition.op, left, args, hours=condition.hours, now=now)
    if isinstance(condition, And):
        return all(_where(item, event, now) for item in condition.items)
    if isinstance(condition, Or):
        return any(_where(item, event, now) for item in condition.items)
    if isinstance(condition, Not):
        return not _where(condition.item, event, now)
    raise ValueError("not a real-time condition")


def _value_of(node: Reduce, event: Mapping[str, Any]) -> Any:
    """The value an event gives a vector, or None when it gives none."""
    if node.op == "count":
        return 1
    value = _extract(node.value, event)
    if value is None:
        return None
    if node.op in ("sum", "avg"):
        return number(value)
    if node.op in ("min", "max"):
        return text(value) if node.as_type == "string" else number(value)
    if node.op == "mode" and node.as_type == "array" and isinstance(value, list):
        return msgspec.json.encode(value).decode()
    if node.op in ("mode", "unique", "unique_count"):
        if isinstance(value, list):
            return [text(v) for v in value if v is not None] or None
        return text(value)
    return value  # first, last: the value itself


# --- a space's plan ------------------------------------------------------------------------------


Reader = Callable[[ProfileState, float, int, bool], Any]  # state, now, now's hour, zero
Test = Callable[[ProfileState, float, int], bool]
_NO_BUCKETS: dict[int, Any] = {}


@dataclass
class _Planned:
    computation: Computation
    vectors: set[str]  # vector keys read
    traits: set[str]  # trait keys read (custom traits and other computations' keys)
    windowed: bool  # time alone can change it
    read: Reader | None = None  # a trait's value
    test: Test | None = None  # an audience's condition


class Plan:
    """A space's real-time computations, compiled for evaluation."""

    def __init__(self, computations: Iterable[Computation]) -> None:
        self._vectors: dict[str, _Vector] = {}
        self._by_event: dict[str, list[tuple[_Vector, Reduce]]] = {}
        planned = [self._plan(c) for c in computations if realtime_reason(c.definition) is None]
        for vector in self._vectors.values():
            vector.finish()
        by_key = {p.computation.key: p for p in planned}
        self.order = _topological(planned, by_key)
        self.computations = {p.computation.key: p.computation for p in self.order}
        self.trait_keys = {k for p in planned for k in p.traits if k not in by_key}
        # Who reads what, by position in ``order``: evaluation visits only those.
        self._by_vector: dict[str, list[int]] = {}
        self._by_trait: dict[str, list[int]] = {}
        for index, item in enumerate(self.order):
            for key in item.vectors:
                self._by_vector.setdefault(key, []).append(index)
            for key in item.traits:
                self._by_trait.setdefault(key, []).append(index)
        self._gated = [
            i
            for i, p in enumerate(self.order)
            if p.computation.kind == "audience" and not p.computation.include_anonymous
        ]
        # The traits read by computations time moves through a date range (``within_last``…
        # of a trait): a profile holding one is due every hour.
        self._dated = [p.traits for p in self.order if p.windowed and not p.vectors]
        for item in self.order:
            root = item.computation.definition.root
            if item.computation.kind == "trait":
                item.read = self._reader(root) if isinstance(root, Reduce | TraitRef) else None
            else:
                item.test = self._test(root)

    @property
    def empty(self) -> bool:
        return not self.order

    def _plan(self, computation: Computation) -> _Planned:
        reads: set[str] = set()
        traits: set[str] = set()
        windowed = False

        def value(node: Value) -> None:
            nonlocal windowed
            if isinstance(node, Reduce):
                vector = self._vector(node)
                reads.add(vector.key)
                window = node.stream.window
                vector.ends.add(window.end_hours if window is not None else None)
                windowed |= window is not None
            elif isinstance(node, TraitRef):
                traits.add(node.key)

        def visit(node: Condition | Value) -> None:
            if isinstance(node, Compare):
                value(node.left)
                for arg in node.args:
                    value(arg)
                if node.op in ("within_last", "within_next", "before_last", "after_next"):
                    nonlocal windowed
                    windowed = True  # time moves a date into or out of the range
            elif isinstance(node, And | Or):
                for item in node.items:
                    visit(item)
            elif isinstance(node, Not | AnyUser | AllUsers):
                visit(node.item)
            else:
                value(node)

        visit(computation.definition.root)
        return _Planned(computation, reads, traits, windowed)

    def _vector(self, node: Reduce) -> _Vector:
        key = _vector_key(node)
        vector = self._vectors.get(key)
        if vector is None:
            vector = self._vectors[key] = _Vector(key, node)
            self._by_event.setdefault(node.stream.event, []).append((vector, node))
        return vector

    # --- updates --------------------------------------------------------------------------------

    def apply_event(
        self, state: ProfileState, event: Mapping[str, Any], source_id: str, now: float
    ) -> set[str]:
        """Add an event to the vectors it belongs to; the vector keys changed."""
        name = event_name(event)
        readers = self._by_event.get(name) if name is not None else None
        if not readers:
            return set()
        at = event_seconds(event)
        if at is None:
            return set()
        hour = math.floor(at / HOUR)
        now_hour = math.floor(now / HOUR)
        changed: set[str] = set()
        received: float | None = None
        for vector, node in readers:
            stream = node.stream
            if source_id in stream.exclude_sources:
                continue
            if vector.since is not None:
                if received is None:
                    stamp = parse_timestamp(event.get("receivedAt"))
                    received = stamp.timestamp() if stamp is not None else now
                if received < vector.since:
                    continue  # the seed from the warehouse counts it
            if stream.where and not all(_where(c, event, now) for c in stream.where):
                continue
            value = _value_of(node, event)
            if value is None:
                continue
            keep = vector.keep
            if keep is None or now_hour - hour >= keep:
                if not vector.folds:
                    continue  # older than every window: it counts nowhere
                slot = FOLDED
            else:
                slot = hour
            buckets = state.v.setdefault(vector.key, {})
            many = isinstance(value, list) and vector.family in ("mode", "unique")
            values = value if many else [value]
            for item in values:
                buckets[slot] = _add(vector.family, buckets.get(slot), item, at)
            changed.add(vector.key)
        return changed

    def vectors(self) -> dict[str, tuple[Reduce, str, int | None, bool]]:
        """Every vector by key: a reduce reading it, its family, ``keep`` and ``folds`` (what
        a seed query needs)."""
        return {k: (v.reduce, v.family, v.keep, v.folds) for k, v in self._vectors.items()}

    def readers(self, key: str) -> list[Computation]:
        """The computations reading a vector."""
        return [self.order[i].computation for i in self._by_vector.get(key, ())]

    def start(self, since: Mapping[str, float | None]) -> None:
        """When each vector began counting events in real time (None: from any time)."""
        for key, vector in self._vectors.items():
            vector.since = since.get(key)

    def seed(self, state: ProfileState, key: str, buckets: Mapping[int, Any]) -> bool:
        """Add a vector's buckets from history (events received before it started) to a
        profile's; whether the vector is still planned."""
        vector = self._vectors.get(key)
        if vector is None:
            return False
        mine = state.v.setdefault(key, {})
        for hour, bucket in buckets.items():
            # the seed's events arrived first: a first/last tie goes as in real time
            mine[hour] = _combine(vector.family, bucket, mine.get(hour))
        return True

    def apply_traits(self, state: ProfileState, traits: Mapping[str, Any]) -> set[str]:
        """Note changed custom traits the plan compares; the keys changed."""
        changed: set[str] = set()
        for key in self.trait_keys.intersection(traits):
            value = traits[key]
            if value is None:
                if state.t.pop(key, None) is not None:
                    changed.add(key)
            elif state.t.get(key) != value:
                state.t[key] = value
                changed.add(key)
        return changed

    def merge(self, into: ProfileState, other: ProfileState) -> set[str]:
        """Fold a merged-away profile's state into the survivor's; the vectors changed.
        Traits: the survivor's win (the profile data's merge already chose per key)."""
        changed: set[str] = set()
        for key, buckets in other.v.items():
            vector = self._vectors.get(key)
            if vector is None:
                continue
            mine = into.v.setdefault(key, {})
            for hour, bucket in buckets.items():
                mine[hour] = _combine(vector.family, mine.get(hour), bucket)
            changed.add(key)
        for key, value in other.t.items():
            into.t.setdefault(key, value)
        if other.e or (into.e is False and other.e is None):
            into.e = other.e
        return changed

    def prune(self, state: ProfileState, now: float) -> None:
        """Drop (or fold) buckets every window has left."""
        now_hour = math.floor(now / HOUR)
        for key in list(state.v):
            vector = self._vectors.get(key)
            if vector is None:
                del state.v[key]  # no computation reads it any more
                continue
            keep = vector.keep
            buckets = state.v[key]
            old = [h for h in buckets if h != FOLDED and (keep is None or now_hour - h >= keep)]
            for hour in old:
                bucket = buckets.pop(hour)
                if vector.folds:
                    buckets[FOLDED] = _combine(vector.family, buckets.get(FOLDED), bucket)
            if not buckets:
                del state.v[key]

    def due(self, state: ProfileState, now: float) -> float | None:
        """When time alone next changes a windowed value (None: never)."""
        now_hour = math.floor(now / HOUR)
        best: int | None = None
        for key, buckets in state.v.items():
            vector = self._vectors.get(key)
            if vector is None:
                continue
            hours = sorted(h for h in buckets if h != FOLDED)
            for end in vector.ends:
                if end is None:
                    continue
                inside = [h for h in hours if now_hour - h < end]
                if inside:
                    leaves = inside[0] + end
                    best = leaves if best is None else min(best, leaves)
        if self._dated and any(traits & state.t.keys() for traits in self._dated):
            best = now_hour + 1 if best is None else min(best, now_hour + 1)  # date ranges
        return float(best * HOUR) if best is not None else None

    # --- evaluation -----------------------------------------------------------------------------

    def evaluate(
        self,
        state: ProfileState,
        vectors: set[str],
        traits: set[str],
        now: float,
        eligible: Callable[[], bool],
        *,
        everything: bool = False,
        eligibility: bool = False,
    ) -> list[Change]:
        """Evaluate the computations reading what changed — all of them with ``everything``
        (time passed, profiles merged), the audiences that need a known identifier with
        ``eligibility`` (the profile's identifiers changed) — and record and return the values
        that changed. ``eligible``: whether the profile has an identifier an audience without
        anonymous users needs (asked only when it matters)."""
        changes: list[Change] = []
        known: bool | None = None
        now_hour = math.floor(now / HOUR)
        values = state.c
        order = self.order
        if everything:
            pending = list(range(len(order)))
        else:
            found: set[int] = set()
            for key in vectors:
                found.update(self._by_vector.get(key, ()))
            for key in traits:
                found.update(self._by_trait.get(key, ()))
            if eligibility:
                found.update(self._gated)
            pending = list(found)
        heapq.heapify(pending)  # a computation comes after what it reads (``order``)
        seen = set(pending)
        while pending:
            planned = order[heapq.heappop(pending)]
            computation = planned.computation
            before = values.get(computation.id)
            after: Any
            if planned.test is None:
                read = planned.read
                after = read(state, now, now_hour, before is not None) if read else None
                if after == before and type(after) is type(before):
                    continue
                if after is None:
                    values.pop(computation.id, None)
                else:
                    values[computation.id] = after
            else:
                after = planned.test(state, now, now_hour)
                if after and not computation.include_anonymous:
                    if known is None:
                        known = eligible()
                    after = known
                before = bool(before)
                if after == before:
                    continue
                if after:
                    values[computation.id] = True
                else:
                    values.pop(computation.id, None)
            changes.append(Change(computation, before, after))
            for reader in self._by_trait.get(computation.key, ()):
                if reader not in seen:
                    seen.add(reader)
                    heapq.heappush(pending, reader)
        return changes

    def current(self, state: ProfileState, computation: Computation) -> Any:
        value = state.c.get(computation.id)
        return bool(value) if computation.kind == "audience" else value

    # --- compiled definitions: closures, built once per plan --------------------------------

    def _reader(self, node: Value) -> Reader:
        if isinstance(node, Reduce):
            key = self._vector(node).key

            def reduce(state: ProfileState, now: float, hour: int, zero: bool) -> Any:
                return _read(node, state.v.get(key, _NO_BUCKETS), hour, zero)

            return reduce
        if isinstance(node, TraitRef):
            other = self.computations.get(node.key)
            trait_key = node.key
            if other is None:
                return lambda state, now, hour, zero: state.t.get(trait_key)
            other_id = other.id
            if other.kind == "audience":
                return lambda state, now, hour, zero: bool(state.c.get(other_id))
            return lambda state, now, hour, zero: state.c.get(other_id)
        if isinstance(node, Const):
            constant = node.value
            return lambda state, now, hour, zero: constant
        return lambda state, now, hour, zero: None

    def _test(self, node: Condition | Value) -> Test:
        if isinstance(node, Compare):
            left = self._reader(node.left)
            op, hours = node.op, node.hours
            if all(isinstance(arg, Const) for arg in node.args):
                constants = [arg.value for arg in node.args if isinstance(arg, Const)]
                bound = number(constants[0]) if op in _ORDERS and constants else None
                if bound is not None:
                    return _ordered(left, op, constants, bound)
                return lambda state, now, hour: holds(
                    op, left(state, now, hour, True), constants, hours=hours, now=now
                )
            readers = [self._reader(arg) for arg in node.args]
            return lambda state, now, hour: holds(
                op,
                left(state, now, hour, True),
                [read(state, now, hour, True) for read in readers],
                hours=hours,
                now=now,
            )
        if isinstance(node, And):
            tests = [self._test(item) for item in node.items]
            return lambda state, now, hour: all(test(state, now, hour) for test in tests)
        if isinstance(node, Or):
            tests = [self._test(item) for item in node.items]
            return lambda state, now, hour: any(test(state, now, hour) for test in tests)
        if isinstance(node, Not):
            inner = self._test(node.item)
            return lambda state, now, hour: not inner(state, now, hour)
        return lambda state, now, hour: False  # a value where a condition belongs


# The orders (-1, 0, 1 as ``compare._order`` gives them) each ordering comparator accepts.
_ORDERS = {
    "greater_than": (1,),
    "at_least": (0, 1),
    "less_than": (-1,),
    "at_most": (-1, 0),
}


def _ordered(left: Reader, op: CompareOp, constants: list[Any], bound: float) -> Test:
    """``holds`` of an ordering comparator against a numeric constant, without its calls when
    the value is a number (the commonest audience: a count at least n)."""
    accepted = _ORDERS[op]

    def test(state: ProfileState, now: float, hour: int) -> bool:
        value = left(state, now, hour, True)
        kind = type(value)
        if kind is int or kind is float:
            amount = float(value)
            return ((amount > bound) - (amount < bound)) in accepted
        return holds(op, value, constants, now=now)

    return test


def _topological(planned: Sequence[_Planned], by_key: Mapping[str, _Planned]) -> list[_Planned]:
    """Computations after those whose keys they read (the store refuses cycles)."""
    done: dict[str, _Planned] = {}
    visiting: set[str] = set()

    def visit(item: _Planned) -> None:
        key = item.computation.key
        if key in done or key in visiting:
            return
        visiting.add(key)
        for other in sorted(item.traits):
            if other in by_key:
                visit(by_key[other])
        visiting.discard(key)
        done[key] = item

    for item in planned:
        visit(item)
    return list(done.values())
