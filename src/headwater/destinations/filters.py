"""Destination filters: per instance, which events leave Headwater and with which fields.

Segment's Public API filter object: ``if`` (FQL, or ``all``), ``actions`` (``DROP``,
``SAMPLE``, ``DROP_PROPERTIES``, ``ALLOW_PROPERTIES``), title, description, enabled; at most
ten per instance. Actions run in Segment's order — sample, drop, drop properties, allow
properties — whatever order the filters were written in. A statement that cannot be evaluated
drops the event (fail closed, as Segment does to keep PII from leaking).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from headwater import fql, reasons
from headwater.destinations.instance_lists import check_list

MAX_FILTERS = 10

ActionType = Literal["SAMPLE", "DROP", "DROP_PROPERTIES", "ALLOW_PROPERTIES"]
ORDER: tuple[ActionType, ...] = ("SAMPLE", "DROP", "DROP_PROPERTIES", "ALLOW_PROPERTIES")
# The Config API's older names for the same actions.
OLD_NAMES = {
    "drop_event": "DROP",
    "sample_event": "SAMPLE",
    "blocklist_fields": "DROP_PROPERTIES",
    "whitelist_fields": "ALLOW_PROPERTIES",
    "allowlist_fields": "ALLOW_PROPERTIES",
}


class FilterAction(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: ActionType
    percent: Annotated[float, Field(ge=0, le=1)] | None = None  # SAMPLE: the share kept
    path: str | None = None  # SAMPLE: the same value is always kept or always dropped
    fields: dict[str, list[str]] | None = None  # path ("" is the top level) -> keys

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("type") in OLD_NAMES:
            return {**value, "type": OLD_NAMES[value["type"]]}
        return value

    @model_validator(mode="after")
    def _arguments(self) -> FilterAction:
        if self.type == "SAMPLE" and self.percent is None:
            raise ValueError("a SAMPLE action needs percent, from 0 to 1")
        if self.type in ("DROP_PROPERTIES", "ALLOW_PROPERTIES") and not self.fields:
            raise ValueError(f"a {self.type} action needs fields: {{path: [keys]}}")
        if self.type != "SAMPLE" and (self.percent is not None or self.path is not None):
            raise ValueError("percent and path belong to SAMPLE actions")
        if self.type in ("SAMPLE", "DROP") and self.fields is not None:
            raise ValueError("fields belong to DROP_PROPERTIES and ALLOW_PROPERTIES actions")
        return self


class DestinationFilter(BaseModel):
    """One filter as stored, exported and shown by the API (``if`` on the wire)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str = ""
    title: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=2000)
    if_: str = Field(alias="if", min_length=1)
    actions: list[FilterAction] = Field(min_length=1, max_length=len(ORDER))
    enabled: bool = True

    @field_validator("if_")
    @classmethod
    def _statement(cls, value: str) -> str:
        if value != "all":
            try:
                fql.parse(value)
            except fql.FQLSyntaxError as exc:
                raise ValueError(f"not valid FQL: {exc}") from None
        return value

    def shown(self) -> dict[str, Any]:
        """As the API shows and the store keeps it."""
        return self.model_dump(by_alias=True, exclude_none=True)

    def written(self) -> dict[str, Any]:
        """As a config file writes it: no id (files match filters by position), no defaults."""
        return self.model_dump(
            by_alias=True, exclude={"id"}, exclude_none=True, exclude_defaults=True
        )


def check_filters(
    raw: Any, current: Sequence[DestinationFilter] = (), new_id: Callable[[], str] = lambda: ""
) -> list[DestinationFilter]:
    """Validated filters to store (``ListError`` names the filter and field at fault)."""
    return check_list(
        raw, DestinationFilter, kind="filters", limit=MAX_FILTERS, current=current, new_id=new_id
    )


# Returns the event to send on (maybe changed) or the reason it stops here.
Apply = Callable[[dict[str, Any]], "dict[str, Any] | str"]


@dataclass(frozen=True)
class _Step:
    filter_id: str
    matches: Callable[[Mapping[str, Any]], bool]
    action: FilterAction


def compile_filters(
    filters: Iterable[DestinationFilter], rng: random.Random | None = None
) -> Apply | None:
    """One function applying every enabled filter in Segment's order; None when there are none.

    A stored filter that no longer parses (or has lost its actions) stops every event: fail
    closed, named by its id.
    """
    steps: list[_Step] = []
    for found in filters:
        if not found.enabled:
            continue
        try:
            matches = _always if found.if_ == "all" else fql.parse(found.if_).matches
        except fql.FQLSyntaxError:
            return _stop_everything(found.id)
        if not found.actions:
            return _stop_everything(found.id)
        steps.extend(_Step(found.id, matches, action) for action in found.actions)
    if not steps:
        return None
    steps.sort(key=lambda s: ORDER.index(s.action.type))  # stable: written order within a type
    chance = rng or random.Random()

    def apply(event: dict[str, Any]) -> dict[str, Any] | str:
        copied = False
        for step in steps:
            try:
                hit = step.matches(event)
            except fql.FQLEvaluationError:
                return f"{reasons.FILTER_ERROR}:{step.filter_id}"
            if not hit:
                continue
            action = step.action
            if action.type == "DROP" or (
                action.type == "SAMPLE" and not _kept(event, action, chance)
            ):
                return f"{reasons.FILTERED_BY_RULES}:{step.filter_id}"
            if action.fields:
                if not copied:  # the router shares the decoded event between instances
                    event = msgspec.json.decode(msgspec.json.encode(event))
                    copied = True
                _edit(event, action.fields, keep=action.type == "ALLOW_PROPERTIES")
        return event

    return apply


def _stop_everything(filter_id: str) -> Apply:
    reason = f"{reasons.FILTER_ERROR}:{filter_id}"
    return lambda _event: reason


def _always(_event: Mapping[str, Any]) -> bool:
    return True


def _kept(event: Mapping[str, Any], action: FilterAction, chance: random.Random) -> bool:
    percent = action.percent or 0.0
    if percent <= 0:
        return False
    if percent >= 1:
        return True
    if not action.path:
        return chance.random() <= percent
    return sample_position(_get(event, action.path)) < percent


def sample_position(value: Any) -> float:
    """Where a value falls in [0, 1): the first 64 bits of the MD5 of its JSON, as a fraction.

    The same value always lands in the same place, so a user is either always sampled in or
    always out, whichever process evaluates the filter.
    """
    digest = hashlib.md5(msgspec.json.encode(value), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _get(event: Mapping[str, Any], path: str) -> Any:
    value: Any = event
    for key in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _edit(event: dict[str, Any], fields: Mapping[str, list[str]], *, keep: bool) -> None:
    """Drop (or keep only) ``keys`` in the object at each path; in every element of a list."""
    for path, keys in fields.items():
        target = event if path == "" else _get(event, path)
        for found in target if isinstance(target, list) else [target]:
            if not isinstance(found, dict):
                continue
            for key in [k for k in found if (k not in keys if keep else k in keys)]:
                del found[key]
