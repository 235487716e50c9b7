"""A journey's definition, read from its written shape (``headwater.yaml`` and REST share it)
and checked against Segment's limits (§15.7, §16, §19.3), every refusal naming the part.

The written shape is a tree: ``steps`` is a list run in order; a split (true/false,
multi-branch, randomized) or a Hold Until ends its list, and each branch carries a list of its
own. It becomes a flat ``Plan`` of ``Step``s, each naming its parent, so the runner walks
parents and children only. A step's id is its name in snake case (names are unique in a
journey); a branch's is ``<split id>__<branch>``; the entry is ``@entry``.

    type: classic                              # or event_triggered
    entry: {audience: cart_abandoners}         # classic: an audience of the space, by key
    # (use_historical_data: true lets the audience's members at publication in)
    exit: {after: {days: 7}}                   # optional; re-entry needs it
    reentry: {after: {days: 30}}
    steps:
      - {name: Wait 5 days, delay: {days: 5}}
      - {name: Bought, condition: {audience: bought}}
      - name: Channel
        true_false:
          condition: {audience: email_opt_in}
          true: [{name: Opened email, send: {destinations: [{name: hook, send_track: true}]}}]
          false: []
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from headwater.errors import InvalidError

ENTRY = "@entry"
EXIT = "@exit"
Kind = Literal["classic", "event_triggered"]
KINDS = ("classic", "event_triggered")

# §15.7, §16, §19.3
MAX_STEPS = 100
MAX_STEP_NAME = 170
MAX_KEY = 255
MAX_JOURNEY_NAME = 73
MAX_RANDOM_BRANCHES = 5
MAX_HOLD_BRANCHES = 4
MIN_WAIT = 5 * 60
MAX_WAIT = 182 * 86_400
MAX_UNIQUE_ID = 500
UNITS = {"minutes": 60, "hours": 3600, "days": 86_400, "weeks": 7 * 86_400}
SPLITS = ("true_false", "multi_branch", "randomized", "hold_until")
STEP_TYPES = ("delay", "condition", "send", *SPLITS)
KEY_SUFFIX = re.compile(r"^j_o_[0-9a-z_]+__[0-9a-z_]+_[0-9a-z]{6}$")


@dataclass(frozen=True)
class Condition:
    """An audience of the space the profile must (or must not) be a member of."""

    audience: str  # the audience's key
    member: bool = True


@dataclass(frozen=True)
class Target:
    """One destination of a send step (an instance on the space's Engage source)."""

    name: str
    send_identify: bool = True
    send_track: bool = True
    list: bool = False  # a list destination: users are added, never removed (§14.1)


@dataclass(frozen=True)
class Send:
    targets: tuple[Target, ...]
    event: str | None = None  # event-triggered: the custom event name
    traits: tuple[str, ...] = ()  # event-triggered: profile traits added to the payload


@dataclass(frozen=True)
class Step:
    """One node of the journey: ``kind`` says how a profile joins it once its parent is
    joined (``branch``: chosen by its parent split, or an event of a Hold Until)."""

    id: str
    name: str
    kind: str  # delay, condition, send, true_false, multi_branch, randomized, hold_until,
    # branch, timeout
    parent: str
    seconds: int = 0  # a delay, or a Hold Until's maximum
    condition: Condition | None = None
    percent: int = 0  # a randomized branch's share
    send: Send | None = None
    key: str = ""  # a send step's key
    event: str = ""  # a Hold Until branch's event
    where: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # property equals any of values
    send_back: bool = False
    side: bool | None = None  # a true/false branch's side


@dataclass(frozen=True)
class Entry:
    condition: Condition | None = None  # classic: the entry audience; triggered: a filter
    event: str = ""
    where: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    every_time: bool = True  # event-triggered: re-enter every time (with unique_id)
    unique_id: str = ""
    historical: bool = False  # classic: "Use historical data": the audience's members enter


@dataclass(frozen=True)
class Plan:
    """A checked definition."""

    kind: Kind
    entry: Entry
    steps: Mapping[str, Step]
    children: Mapping[str, tuple[str, ...]]
    exit_after: int | None = None
    reentry_after: int | None = None
    exclude_previous: bool = False
    written: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def audiences(self) -> set[str]:
        """The audience keys the journey reads."""
        found = {s.condition.audience for s in self.steps.values() if s.condition}
        if self.entry.condition is not None:
            found.add(self.entry.condition.audience)
        return found

    def leaves(self) -> set[str]:
        return {s for s in self.steps if not self.children.get(s)}


def step_id(name: str) -> str:
    found = re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")
    return found


def parse(written: object, *, where: str = "definition") -> Plan:
    """A ``Plan`` from the written shape; ``InvalidError`` naming the part otherwise."""
    if not isinstance(written, Mapping):
        raise InvalidError("must be an object with entry and steps", where)
    _known(written, ("type", "entry", "exit", "reentry", "steps", "exclude_previous"), where)
    kind = written.get("type", "classic")
    if kind not in KINDS:
        raise InvalidError("must be classic or event_triggered", f"{where}.type")
    builder = _Builder(kind, where)
    entry = builder.entry(written.get("entry"), f"{where}.entry")
    exit_after = reentry_after = None
    if written.get("exit") is not None:
        exit_after = _after(written["exit"], f"{where}.exit")
    if written.get("reentry") is not None:
        if exit_after is None:
            raise InvalidError("re-entry needs exit settings (§15.4)", f"{where}.reentry")
        reentry_after = _after(written["reentry"], f"{where}.reentry")
    if kind == "event_triggered" and exit_after is not None:
        raise InvalidError("event-triggered journeys have no exit settings", f"{where}.exit")
    builder.chain(written.get("steps", []), ENTRY, f"{where}.steps")
    if builder.count > MAX_STEPS:
        raise InvalidError(f"a journey has at most {MAX_STEPS} steps", f"{where}.steps")
    exclude = written.get("exclude_previous", False)
    if not isinstance(exclude, bool):
        raise InvalidError("must be true or false", f"{where}.exclude_previous")
    return Plan(
        kind,
        entry,
        builder.steps,
        {k: tuple(v) for k, v in builder.children.items()},
        exit_after,
        reentry_after,
        exclude,
        written,
    )


class _Builder:
    def __init__(self, kind: str, where: str) -> None:
        self.kind = kind
        self.where = where
        self.steps: dict[str, Step] = {}
        self.children: dict[str, list[str]] = {}
        self.count = 0

    def entry(self, written: object, where: str) -> Entry:
        if not isinstance(written, Mapping):
            raise InvalidError("must be an object", where)
        if self.kind == "classic":
            _known(written, ("audience", "member", "use_historical_data"), where)
            historical = written.get("use_historical_data", False)
            if not isinstance(historical, bool):
                raise InvalidError("must be true or false", f"{where}.use_historical_data")
            return Entry(condition=_condition(written, where), historical=historical)
        _known(written, ("event", "where", "audience", "reentry", "unique_id"), where)
        event = written.get("event")
        if not isinstance(event, str) or not event.strip():
            raise InvalidError("must name the entry event", f"{where}.event")
        condition = _condition(written, where) if written.get("audience") is not None else None
        reentry = written.get("reentry", "every_time")
        if reentry not in ("every_time", "once"):
            raise InvalidError("must be every_time or once", f"{where}.reentry")
        unique_id = written.get("unique_id", "")
        if reentry == "every_time":
            if not isinstance(unique_id, str) or not unique_id.strip():
                raise InvalidError(
                    "re-entering every time needs a unique identifier property (such as "
                    "cart_id): one journey instance per value",
                    f"{where}.unique_id",
                )
            if len(unique_id) > MAX_UNIQUE_ID:
                raise InvalidError(
                    f"must be at most {MAX_UNIQUE_ID} characters", f"{where}.unique_id"
                )
        return Entry(
            condition=condition,
            event=event,
            where=_filters(written.get("where"), f"{where}.where"),
            every_time=reentry == "every_time",
            unique_id=unique_id if reentry == "every_time" else "",
        )

    def add(self, step: Step, where: str) -> None:
        if step.id in self.steps or not step.id:
            raise InvalidError(
                f"step names must be unique in a journey (and give a key): {step.name!r}",
                f"{where}.name",
            )
        self.steps[step.id] = step
        self.children.setdefault(step.parent, []).append(step.id)

    def chain(self, written: object, parent: str, where: str) -> None:
        if not isinstance(written, list):
            raise InvalidError("must be a list of steps", where)
        for n, item in enumerate(written):
            here = f"{where}[{n}]"
            if not isinstance(item, Mapping):
                raise InvalidError("must be a step object", here)
            parent = self.step(item, parent, here)
            if any(kind in item for kind in SPLITS) and n != len(written) - 1:
                raise InvalidError("a split ends its path: put the steps in its branches", here)

    def step(self, item: Mapping[str, Any], parent: str, where: str) -> str:
        types = [t for t in STEP_TYPES if t in item]
        if len(types) != 1:
            raise InvalidError(f"a step has exactly one of {', '.join(STEP_TYPES)}", where)
        (kind,) = types
        _known(item, ("name", "key", kind), where)
        name = _name(item.get("name"), f"{where}.name")
        sid = step_id(name)
        body = item[kind]
        here = f"{where}.{kind}"
        self.count += 1
        if kind == "delay":
            self.add(Step(sid, name, kind, parent, seconds=_duration(body, here)), where)
        elif kind == "condition":
            self.add(Step(sid, name, kind, parent, condition=_condition(body, here)), where)
        elif kind == "send":
            key = item.get("key", "")
            if key and (not isinstance(key, str) or len(key) > MAX_KEY):
                raise InvalidError(f"must be a key of at most {MAX_KEY} characters", where)
            self.add(Step(sid, name, kind, parent, send=self.send(body, here), key=key), where)
        else:
            self.add(Step(sid, name, kind, parent), where)
            getattr(self, kind)(body, sid, here)
        return sid

    def send(self, body: object, where: str) -> Send:
        if not isinstance(body, Mapping):
            raise InvalidError("must be an object with destinations", where)
        _known(body, ("destinations", "event", "traits"), where)
        items = body.get("destinations")
        if not isinstance(items, list) or not items:
            raise InvalidError("must list at least one destination", f"{where}.destinations")
        targets = []
        for n, t in enumerate(items):
            here = f"{where}.destinations[{n}]"
            if not isinstance(t, Mapping):
                raise InvalidError("must be an object with a name", here)
            _known(t, ("name", "send_identify", "send_track", "list"), here)
            name = t.get("name")
            if not isinstance(name, str) or not name.strip():
                raise InvalidError("must name a destination", f"{here}.name")
            flags = {}
            for flag in ("send_identify", "send_track", "list"):
                if flag in t:
                    if not isinstance(t[flag], bool):
                        raise InvalidError("must be true or false", f"{here}.{flag}")
                    flags[flag] = t[flag]
            target = Target(name, **flags)
            if not (target.send_identify or target.send_track):
                raise InvalidError("sends nothing: set send_identify or send_track", here)
            targets.append(target)
        event = body.get("event")
        traits = body.get("traits", [])
        if self.kind == "event_triggered":
            if len(targets) != 1:
                raise InvalidError(
                    "an event-triggered send step has one destination", f"{where}.destinations"
                )
            if not isinstance(event, str) or not event.strip():
                raise InvalidError("must name the event sent", f"{where}.event")
        elif event is not None or traits:
            raise InvalidError(
                "event and traits are for event-triggered journeys' send steps", where
            )
        if not isinstance(traits, list) or not all(isinstance(x, str) and x for x in traits):
            raise InvalidError("must be a list of trait names", f"{where}.traits")
        return Send(tuple(targets), event, tuple(traits))

    def _branch(self, split: str, name: object, path: str, **fields: Any) -> str:
        label = _name(name, f"{path}.name")
        bid = f"{split}__{step_id(label)}"
        self.add(Step(bid, label, fields.pop("kind", "branch"), split, **fields), path)
        return bid

    def true_false(self, body: object, sid: str, where: str) -> None:
        if not isinstance(body, Mapping):
            raise InvalidError("must be an object with condition, true and false", where)
        _known(body, ("condition", "true", "false"), where)
        condition = _condition(body.get("condition"), f"{where}.condition")
        for side in (True, False):
            word = "true" if side else "false"
            bid = self._branch(sid, word, where, condition=condition, side=side)
            self.chain(body.get(word, []), bid, f"{where}.{word}")

    def multi_branch(self, body: object, sid: str, where: str) -> None:
        if not isinstance(body, list) or len(body) < 2:
            raise InvalidError("a multi-branch split has at least 2 branches", where)
        for n, branch in enumerate(body):
            here = f"{where}[{n}]"
            if not isinstance(branch, Mapping):
                raise InvalidError("must be a branch object", here)
            _known(branch, ("name", "condition", "steps"), here)
            condition = _condition(branch.get("condition"), f"{here}.condition")
            bid = self._branch(sid, branch.get("name"), here, condition=condition)
            self.chain(branch.get("steps", []), bid, f"{here}.steps")

    def randomized(self, body: object, sid: str, where: str) -> None:
        if not isinstance(body, list) or not 2 <= len(body) <= MAX_RANDOM_BRANCHES:
            raise InvalidError(f"a randomized split has 2 to {MAX_RANDOM_BRANCHES} branches", where)
        total = 0
        for n, branch in enumerate(body):
            here = f"{where}[{n}]"
            if not isinstance(branch, Mapping):
                raise InvalidError("must be a branch object", here)
            _known(branch, ("name", "percent", "steps"), here)
            percent = branch.get("percent")
            if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 99:
                raise InvalidError("must be a whole percentage from 1 to 99", f"{here}.percent")
            total += percent
            bid = self._branch(sid, branch.get("name"), here, percent=percent)
            self.chain(branch.get("steps", []), bid, f"{here}.steps")
        if total != 100:
            raise InvalidError(f"the percentages add up to {total}, not 100", where)

    def hold_until(self, body: object, sid: str, where: str) -> None:
        if self.kind != "event_triggered":
            raise InvalidError("Hold Until is a step of event-triggered journeys", where)
        if not isinstance(body, Mapping):
            raise InvalidError("must be an object with branches and a maximum duration", where)
        _known(body, ("branches", "timeout", "timeout_steps"), where)
        branches = body.get("branches")
        if not isinstance(branches, list) or not 1 <= len(branches) <= MAX_HOLD_BRANCHES:
            raise InvalidError(
                f"a Hold Until step has 1 to {MAX_HOLD_BRANCHES} event branches",
                f"{where}.branches",
            )
        seconds = _duration(body.get("timeout"), f"{where}.timeout")
        self.steps[sid] = Step(
            sid, self.steps[sid].name, "hold_until", self.steps[sid].parent, seconds=seconds
        )
        seen: set[tuple[str, tuple[Any, ...]]] = set()
        for n, branch in enumerate(branches):
            here = f"{where}.branches[{n}]"
            if not isinstance(branch, Mapping):
                raise InvalidError("must be a branch object", here)
            _known(branch, ("name", "event", "where", "send_back", "steps"), here)
            event = branch.get("event")
            if not isinstance(event, str) or not event.strip():
                raise InvalidError("must name the event", f"{here}.event")
            filters = _filters(branch.get("where"), f"{here}.where")
            if (event, filters) in seen:
                raise InvalidError("branches must be mutually exclusive", here)
            seen.add((event, filters))
            send_back = branch.get("send_back", False)
            if not isinstance(send_back, bool):
                raise InvalidError("must be true or false", f"{here}.send_back")
            bid = self._branch(
                sid, branch.get("name"), here, event=event, where=filters, send_back=send_back
            )
            self.chain(branch.get("steps", []), bid, f"{here}.steps")
        tid = self._branch(sid, "timeout", where, kind="timeout")
        self.chain(body.get("timeout_steps", []), tid, f"{where}.timeout_steps")


def _known(item: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in item:
        if key not in allowed:
            raise InvalidError(
                f"unknown field {key!r}; expected one of {', '.join(allowed)}", f"{where}.{key}"
            )


def _name(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidError("must be a non-empty name", where)
    if len(value) > MAX_STEP_NAME:
        raise InvalidError(f"must be at most {MAX_STEP_NAME} characters", where)
    if not step_id(value):
        raise InvalidError("must have letters or digits (it gives the step's key)", where)
    return value


def _condition(value: object, where: str) -> Condition:
    if not isinstance(value, Mapping):
        raise InvalidError("must be an object naming an audience: {audience: KEY}", where)
    audience = value.get("audience")
    if not isinstance(audience, str) or not audience.strip():
        raise InvalidError("must name an audience of the space by its key", f"{where}.audience")
    member = value.get("member", True)
    if not isinstance(member, bool):
        raise InvalidError("must be true or false", f"{where}.member")
    return Condition(audience, member)


def _filters(value: object, where: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """Event property filters: ``equals`` (a value) or ``equals any of`` (a list), ANDed."""
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise InvalidError("must map property names to a value or a list of values", where)
    out = []
    for name, wanted in value.items():
        values = tuple(wanted) if isinstance(wanted, list) else (wanted,)
        if not values or any(isinstance(v, Mapping | list) for v in values):
            raise InvalidError(
                "must be a value (equals) or a list of values (equals any of)", f"{where}.{name}"
            )
        out.append((str(name), values))
    return tuple(sorted(out, key=lambda f: f[0]))


def _duration(value: object, where: str) -> int:
    """Seconds of ``{minutes|hours|days|weeks: N}``, from 5 minutes to 182 days."""
    if not isinstance(value, Mapping) or len(value) != 1:
        raise InvalidError(
            "must be one of {minutes: N}, {hours: N}, {days: N} or {weeks: N}", where
        )
    ((unit, amount),) = value.items()
    if unit not in UNITS:
        raise InvalidError(f"unknown unit {unit!r}; expected {', '.join(UNITS)}", where)
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidError("must be a whole positive number", f"{where}.{unit}")
    seconds = amount * UNITS[unit]
    if not MIN_WAIT <= seconds <= MAX_WAIT:
        raise InvalidError(
            f"{amount} {unit} is outside the allowed 5 minutes to 182 days", f"{where}.{unit}"
        )
    return seconds


def _after(value: object, where: str) -> int:
    if not isinstance(value, Mapping):
        raise InvalidError("must be {after: {days: N}}", where)
    _known(value, ("after",), where)
    found = value.get("after")
    if not isinstance(found, Mapping) or len(found) != 1:
        raise InvalidError("must be one of {hours: N}, {days: N} or {weeks: N}", f"{where}.after")
    ((unit, amount),) = found.items()
    if unit not in UNITS or isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidError(
            "must be a whole positive number of hours, days or weeks", f"{where}.after"
        )
    return int(amount * UNITS[unit])


def journey_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidError("must be a non-empty name", "name")
    if len(name) > MAX_JOURNEY_NAME:
        raise InvalidError(f"must be at most {MAX_JOURNEY_NAME} characters", "name")
    if not step_id(name):
        raise InvalidError("must have letters or digits (it gives the journey's key)", "name")
    return name


def send_steps(plan: Plan) -> list[Step]:
    return [s for s in plan.steps.values() if s.kind == "send"]


def with_keys(written: Mapping[str, Any], keys: Mapping[str, str]) -> dict[str, Any]:
    """The written definition with each send step's ``key`` set from ``keys`` (by step id)."""

    def steps(items: Any) -> Any:
        if not isinstance(items, list):
            return items
        out = []
        for item in items:
            item = dict(item)
            if "send" in item and isinstance(item.get("name"), str):
                found = keys.get(step_id(item["name"]))
                if found:
                    item["key"] = found
            for kind in ("true_false",):
                if isinstance(item.get(kind), Mapping):
                    body = dict(item[kind])
                    for side in ("true", "false"):
                        if side in body:
                            body[side] = steps(body[side])
                    item[kind] = body
            for kind in ("multi_branch", "randomized"):
                if isinstance(item.get(kind), list):
                    item[kind] = [_branch_keyed(b) for b in item[kind]]
            if isinstance(item.get("hold_until"), Mapping):
                body = dict(item["hold_until"])
                if isinstance(body.get("branches"), list):
                    body["branches"] = [_branch_keyed(b) for b in body["branches"]]
                if "timeout_steps" in body:
                    body["timeout_steps"] = steps(body["timeout_steps"])
                item["hold_until"] = body
            out.append(item)
        return out

    def _branch_keyed(branch: Any) -> Any:
        if isinstance(branch, Mapping) and "steps" in branch:
            return {**branch, "steps": steps(branch["steps"])}
        return branch

    return (
        {**written, "steps": steps(written.get("steps", []))} if "steps" in written else {**written}
    )


@dataclass(frozen=True)
class LiveJourney:
    """A journey version that runs: published (entries and progress) or paused (progress
    only)."""

    id: str
    space_id: str
    key: str
    version: int
    status: str
    plan: Plan
