"""Destination Actions: mappings (a trigger, an action of the destination, a field mapping).

An Actions destination declares its actions, each with a field schema and a ``perform`` that
turns mapped payloads into requests. An instance holds up to 50 mappings; new ones start
disabled. The router queues one job per matching enabled mapping (one event matching N
mappings makes N requests; none matching is ``NO_MATCHING_MAPPING``), and the delivery engine
maps each job's event through its mapping when it sends, so a retry uses the mapping as it is
then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from headwater import reasons
from headwater.destinations.definition import Rendered
from headwater.destinations.instance_lists import check_list
from headwater.destinations.mapping import FieldSpec, check_fields, coerce_output, compile_mapping
from headwater.destinations.trigger import Trigger, parse_trigger
from headwater.errors import ItemError, ListError, MappingError, TriggerError
from headwater.store.instances import REDACTED

MAX_MAPPINGS = 50

# Mapped payloads (one per message) and the instance's settings -> requests. Positions in the
# result refer to the payloads given.
Perform = Callable[[Sequence[Mapping[str, Any]], Any], Rendered]


@dataclass(frozen=True)
class ActionDefinition:
    name: str  # the id a mapping names, e.g. "send"
    title: str
    fields: Mapping[str, FieldSpec]
    perform: Perform | None  # None: the actions runtime runs the package's own perform
    description: str = ""
    default_trigger: str = ""
    # The field holding how many messages ``perform`` sends in one request, if it batches.
    batch_size_field: str | None = None
    # Object fields whose keys are destination-field paths (``info[0].email``, AC-078).
    keyed_fields: frozenset[str] = frozenset()
    # Fields whose values are secrets (of an object field such as ``headers``, each value):
    # shown and exported as [redacted], kept when [redacted] comes back.
    secret_fields: frozenset[str] = frozenset()
    # The package's action has a ``performBatch`` (its mappings' ``enable_batching`` uses it).
    batches: bool = False


@dataclass(frozen=True)
class Preset:
    """One of a definition's presets: a ready-made mapping (Segment's default subscriptions
    are the ``automatic`` ones)."""

    name: str
    action: str
    trigger: str
    fields: Mapping[str, Any]
    automatic: bool = True


class ActionMapping(BaseModel):
    """One mapping as stored, exported and shown by the API."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = ""
    name: str = Field(min_length=1, max_length=200)
    enabled: bool = False  # Segment: new mappings start disabled
    trigger: str = Field(min_length=1)
    action: str = Field(min_length=1)
    fields: dict[str, Any] = Field(default_factory=dict)

    @field_validator("trigger")
    @classmethod
    def _trigger(cls, value: str) -> str:
        try:
            parse_trigger(value)
        except TriggerError as exc:
            raise ValueError(f"not a valid trigger: {exc}") from None
        return value

    def stored(self) -> dict[str, Any]:
        """As stored, secrets included: never for display (``shown_mapping`` is)."""
        return self.model_dump()

    def written(self) -> dict[str, Any]:
        """As a config file writes it: no id, ``enabled`` always (it defaults to off); secrets
        included (``written_mapping`` redacts them)."""
        return self.model_dump(exclude={"id"})


def check_mappings(
    actions: Mapping[str, ActionDefinition],
    raw: Any,
    current: Sequence[ActionMapping] = (),
    new_id: Callable[[], str] = lambda: "",
) -> list[ActionMapping]:
    """Validated mappings to store: each names an action of the destination and maps its
    fields (``ListError`` names the mapping and field at fault)."""

    def check(mapping: ActionMapping) -> None:
        action = actions.get(mapping.action)
        if action is None:
            known = ", ".join(sorted(actions)) or "none"
            raise ItemError(
                f"unknown action {mapping.action!r}; this destination's actions: {known}", "action"
            )
        try:
            fields = with_defaults(action, mapping.fields)
            check_fields(fields, action.fields)
            _compile_fields(action, fields)
        except MappingError as exc:
            raise ItemError(str(exc), "fields") from None

    return check_list(
        raw,
        ActionMapping,
        kind="mappings",
        limit=MAX_MAPPINGS,
        current=current,
        new_id=new_id,
        check=check,
    )


def with_defaults(action: ActionDefinition, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The mapping's fields, with the action's default mapping for each field left out."""
    defaults = {
        name: spec.default
        for name, spec in action.fields.items()
        if spec.default is not None and name not in fields
    }
    return {**defaults, **fields}


def _compile_fields(
    action: ActionDefinition, fields: Mapping[str, Any]
) -> Callable[[Mapping[str, Any]], Any]:
    """The fields' mapping; an object in one of the action's keyed fields builds nesting from
    its keys' paths."""
    keyed = {
        name: compile_mapping(value, expand_keys=True)
        for name, value in fields.items()
        if name in action.keyed_fields
        and isinstance(value, dict)
        and not any(str(k).startswith("@") for k in value)
    }
    plain = compile_mapping({k: v for k, v in fields.items() if k not in keyed})
    if not keyed:
        return plain

    def render(event: Mapping[str, Any]) -> Any:
        found = plain(event)
        for name, compiled in keyed.items():
            found[name] = compiled(event)
        return found

    return render


def shown_mapping(
    actions: Mapping[str, ActionDefinition], mapping: ActionMapping
) -> dict[str, Any]:
    """The mapping as the API shows it: the action's secret fields ``[redacted]``."""
    return _redacted(actions, mapping.stored())


def written_mapping(
    actions: Mapping[str, ActionDefinition], mapping: Mapping[str, Any]
) -> dict[str, Any]:
    """A mapping as a file or a plan shows it (no id), secret fields ``[redacted]``."""
    return _redacted(actions, {k: v for k, v in mapping.items() if k != "id"})


def _redacted(
    actions: Mapping[str, ActionDefinition], mapping: Mapping[str, Any]
) -> dict[str, Any]:
    action = actions.get(str(mapping.get("action")))
    fields = mapping.get("fields")
    if action is None or not action.secret_fields or not isinstance(fields, Mapping):
        return dict(mapping)
    hidden = dict(fields)
    for name in action.secret_fields & hidden.keys():
        value = hidden[name]
        if _is_object(value):
            hidden[name] = {key: REDACTED if _is_set(item) else item for key, item in value.items()}
        elif _is_set(value):
            hidden[name] = REDACTED  # a directive building the whole object
    return {**mapping, "fields": hidden}


def restore_secrets(
    actions: Mapping[str, ActionDefinition], raw: Any, current: Sequence[ActionMapping]
) -> Any:
    """The mappings to check and store: a secret sent back as ``[redacted]`` (as shown and
    exported) takes the stored value of the same mapping (by id, or by position when the item
    has none, as ids are kept) and the same header; with none stored it is an error."""
    if not isinstance(raw, list):
        return raw
    by_id = {m.id: m for m in current}
    restored: list[Any] = []
    for position, item in enumerate(raw):
        action = actions.get(str(item.get("action"))) if isinstance(item, dict) else None
        fields = item.get("fields") if isinstance(item, dict) else None
        if action is None or not action.secret_fields or not isinstance(fields, dict):
            restored.append(item)
            continue
        given = item.get("id")
        stored = (
            by_id.get(given) if given else (current[position] if position < len(current) else None)
        )
        old = stored.fields if stored is not None else {}
        fields = dict(fields)
        for name in action.secret_fields & fields.keys():
            fields[name] = _restored(
                fields[name], old.get(name, _MISSING), f"mappings.{position}.fields.{name}"
            )
        restored.append({**item, "fields": fields})
    return restored


_MISSING: Any = object()


def _restored(value: Any, old: Any, where: str) -> Any:
    if value == REDACTED:
        if old is _MISSING:
            raise ListError(
                f"{where.split('.', 2)[2]} is a secret: [redacted] keeps a stored "
                "value, and there is none; give the value",
                where,
            )
        return old
    if not _is_object(value):
        return value
    old_items = old if _is_object(old) else {}
    out = {}
    for key, item in value.items():
        if item == REDACTED:
            if key not in old_items:
                raise ListError(
                    f"{where.split('.', 2)[2]}.{key} is a secret: [redacted] keeps "
                    "a stored value, and there is none; give the value",
                    f"{where}.{key}",
                )
            item = old_items[key]
        out[key] = item
    return out


def secret_values(
    actions: Mapping[str, ActionDefinition], mappings: Iterable[ActionMapping]
) -> Iterator[str]:
    """The literal values the mappings give their actions' secret fields, for Event Delivery
    samples to hide wherever the destination's code put them."""
    for mapping in mappings:
        action = actions.get(mapping.action)
        for name in action.secret_fields if action is not None else ():
            value = mapping.fields.get(name)
            items = (
                list(value.values()) if isinstance(value, dict) and _is_object(value) else [value]
            )
            yield from (item for item in items if isinstance(item, str) and item)


def _is_object(value: Any) -> bool:
    """A plain object of values (each header its own), not a directive building one."""
    return isinstance(value, dict) and not any(str(k).startswith("@") for k in value)


def _is_set(value: Any) -> bool:
    return value not in (None, "", {}, [])


def duplicate(mapping: ActionMapping) -> dict[str, Any]:
    """Segment's Duplicate: an exact copy named "<name> (Copy)", disabled."""
    return {
        **mapping.model_dump(exclude={"id"}),
        "name": f"{mapping.name} (Copy)"[:200],
        "enabled": False,
    }


@dataclass(frozen=True)
class RunnableMapping:
    id: str
    trigger: Trigger
    action: ActionDefinition
    fields: Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Mappings:
    """An instance's mappings, compiled once per configuration change."""

    by_id: Mapping[str, RunnableMapping] = field(default_factory=dict)
    enabled: tuple[RunnableMapping, ...] = ()
    largest_batch: int = 0  # the largest literal batch size of an enabled batching mapping

    @classmethod
    def compile(
        cls, actions: Mapping[str, ActionDefinition], mappings: Iterable[ActionMapping]
    ) -> Mappings:
        by_id: dict[str, RunnableMapping] = {}
        enabled = []
        largest = 0
        for m in mappings:
            action = actions.get(m.action)
            if action is None:
                continue
            try:
                compiled = RunnableMapping(
                    m.id,
                    parse_trigger(m.trigger),
                    action,
                    _compile_fields(action, with_defaults(action, m.fields)),
                )
            except (TriggerError, MappingError):
                continue  # checked on save; a stored one that no longer compiles sends nothing
            by_id[m.id] = compiled
            if m.enabled:
                enabled.append(compiled)
                size = with_defaults(action, m.fields).get(action.batch_size_field or "")
                if isinstance(size, int) and not isinstance(size, bool):
                    largest = max(largest, size)
        return cls(by_id, tuple(enabled), largest)

    def matching(self, event: Mapping[str, Any]) -> list[str]:
        """Ids of the enabled mappings whose trigger matches, in the mappings' order."""
        return [m.id for m in self.enabled if m.trigger.matches(event)]

    def render(
        self, mapping_ids: Sequence[str], messages: Sequence[Mapping[str, Any]], settings: Any
    ) -> Rendered:
        """Requests for a claim of jobs: each message mapped by its job's mapping, then each
        action's ``perform`` on its share; positions refer to ``messages``."""
        rendered = Rendered()
        groups: dict[str, list[tuple[int, Mapping[str, Any]]]] = {}
        for position, (mapping_id, message) in enumerate(zip(mapping_ids, messages, strict=True)):
            mapping = self.by_id.get(mapping_id)
            if mapping is None or mapping not in self.enabled:
                rendered.rejected[position] = (
                    reasons.NO_MATCHING_MAPPING,
                    "the mapping was disabled or deleted after routing",
                )
                continue
            try:
                payload = coerce_output(mapping.fields(message), mapping.action.fields)
            except MappingError as exc:
                rendered.reject(position, str(exc))
                continue
            groups.setdefault(mapping_id, []).append((position, payload))
        for mapping_id, members in groups.items():
            action = self.by_id[mapping_id].action
            assert action.perform is not None, "the actions runtime delivers package actions"
            done = action.perform([payload for _, payload in members], settings)
            positions = [position for position, _ in members]
            for outgoing in done.outgoing:
                rendered.outgoing.append(
                    type(outgoing)(outgoing.request, tuple(positions[i] for i in outgoing.messages))
                )
            for i, reason in done.rejected.items():
                rendered.rejected[positions[i]] = reason
        return rendered
