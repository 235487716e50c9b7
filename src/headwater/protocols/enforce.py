"""A source's schema settings applied to one event: standard controls, then the common schema.

Pure: the event is never mutated. An event nothing happened to comes back as the same object, so
the stage can keep unchanged records as they are; otherwise a copy with the omitted names removed
and `context.protocols` written the way Segment writes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from headwater.protocols.compiled import CompiledEvent, CompiledPlan
from headwater.protocols.schema_messages import Violation

CommonAction = Literal["ALLOW", "BLOCK", "OMIT"]
BlockReason = Literal["unplanned_event", "violations", "common_schema"]


@dataclass(frozen=True, slots=True)
class CallControls:
    """One call type's controls (§4.1); the defaults allow everything, as Segment's do."""

    allow_unplanned_events: bool = True
    allow_unplanned_properties: bool = True
    allow_event_on_violations: bool = True
    allow_properties_on_violations: bool = True
    common_event_on_violations: CommonAction = "ALLOW"


@dataclass(frozen=True, slots=True)
class SchemaSettings:
    """A source's schema configuration (`PATCH /sources/{id}/settings` in Segment's Public API)."""

    track: CallControls = field(default_factory=CallControls)
    identify: CallControls = field(default_factory=CallControls)
    group: CallControls = field(default_factory=CallControls)
    forwarding_blocked_events_to: str | None = None
    forwarding_violations_to: str | None = None

    @classmethod
    def from_segment(cls, body: Mapping[str, Any]) -> SchemaSettings:
        """Read Segment's body; enum values in any case (the docs themselves write `"Block"`)."""
        return cls(
            track=_controls(body.get("track"), "track", _TRACK_FIELDS, "OMIT_PROPERTIES"),
            identify=_controls(body.get("identify"), "identify", _TRAIT_FIELDS, "OMIT_TRAITS"),
            group=_controls(body.get("group"), "group", _TRAIT_FIELDS, "OMIT_TRAITS"),
            forwarding_blocked_events_to=_target(body, "forwardingBlockedEventsTo"),
            forwarding_violations_to=_target(body, "forwardingViolationsTo"),
        )


_TRACK_FIELDS = {
    "allowUnplannedEvents": "allow_unplanned_events",
    "allowUnplannedEventProperties": "allow_unplanned_properties",
    "allowEventOnViolations": "allow_event_on_violations",
    "allowPropertiesOnViolations": "allow_properties_on_violations",
}
_TRAIT_FIELDS = {
    "allowUnplannedTraits": "allow_unplanned_properties",
    "allowTraitsOnViolations": "allow_properties_on_violations",
}


def _controls(body: Any, call: str, fields: Mapping[str, str], omit: str) -> CallControls:
    if body is None:
        return CallControls()
    if not isinstance(body, Mapping):
        raise ValueError(f"{call} must be an object")
    values: dict[str, Any] = {}
    for name, value in body.items():
        if name == "commonEventOnViolations":
            word = str(value).upper() if isinstance(value, str) else None
            if word not in ("ALLOW", "BLOCK", omit):
                raise ValueError(f"{call}.{name} must be one of ALLOW, BLOCK, {omit}")
            values["common_event_on_violations"] = "OMIT" if word == omit else word
        elif name in fields:
            if not isinstance(value, bool):
                raise ValueError(f"{call}.{name} must be true or false")
            values[fields[name]] = value
        else:
            raise ValueError(f"{call}.{name} is not a schema setting")
    return CallControls(**values)


def _target(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None  # Segment: leave the field out (or empty) to turn forwarding off
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a source id")
    return value


class Verdict(NamedTuple):
    """What the plan says about an event: the event to pass on, or why it is blocked.

    A blocked verdict carries the event as it arrived (what blocked-event forwarding sends).
    A NamedTuple: one is made per event, and a frozen dataclass costs 0.6 µs to make.
    """

    event: Mapping[str, Any]
    blocked: BlockReason | None = None
    violations: tuple[Violation, ...] = ()
    omitted: tuple[str, ...] = ()
    omitted_on_violation: tuple[str, ...] = ()


_ALLOW_ALL = CallControls()  # made once: a frozen dataclass costs ~0.6 µs to build

_PASS: dict[str, tuple[str, str]] = {
    # call type → (container of names, the settings it follows)
    "track": ("properties", "track"),
    "page": ("properties", "track"),
    "screen": ("properties", "track"),
    "identify": ("traits", "identify"),
    "group": ("traits", "group"),
}


def enforce(
    event: Mapping[str, Any], plan: CompiledPlan, settings: SchemaSettings, source_id: str
) -> Verdict:
    """Standard controls (unplanned names, the event's rule), then the common schema (§4.2)."""
    call = event.get("type")
    shape = _PASS.get(call) if isinstance(call, str) else None
    rule: CompiledEvent | None = None
    controls = _ALLOW_ALL
    container = "properties"
    if shape is not None:
        container = shape[0]
        controls = getattr(settings, shape[1])
        if call == "track":
            name = event.get("event")
            rule = plan.track.get(name) if isinstance(name, str) else None
            if rule is None and not controls.allow_unplanned_events:
                return Verdict(event, blocked="unplanned_event")
        else:
            rule = getattr(plan, str(call))
    payload = event.get(container)
    names: Mapping[str, Any] = payload if isinstance(payload, dict) else {}
    violations: list[Violation] = []
    omitted: list[str] = []
    omitted_on_violation: list[str] = []
    working = event

    if rule is not None:
        if not controls.allow_unplanned_properties:
            omitted = [name for name in names if name not in rule.planned]
            if omitted:
                working = _without(working, container, omitted)
        # `is_valid` first unless the rule's last event failed: a valid event never pays for
        # error objects, a run of failing ones never for `is_valid` (inlined: every event).
        schema = rule.schema(event)
        failing = rule.failing
        if failing[0] or not schema.is_valid(working):
            found = schema.errors(working)
            failing[0] = bool(found)
        else:
            found = []
        if found:
            violations = found
            if not controls.allow_event_on_violations and container == "properties":
                return Verdict(event, blocked="violations", violations=tuple(violations))
            if not controls.allow_properties_on_violations:
                omitted_on_violation = _offending(found, container, working)
                if omitted_on_violation:
                    working = _without(working, container, omitted_on_violation)

    common = plan.common
    if common is not None and not common.is_valid(working):
        found = common.errors(working)
        violations.extend(found)
        action = controls.common_event_on_violations if shape is not None else "ALLOW"
        if action == "BLOCK":
            return Verdict(event, blocked="common_schema", violations=tuple(violations))
        if action == "OMIT":
            offending = _offending(found, container, working)
            more = [name for name in offending if name not in omitted_on_violation]
            if more:
                omitted_on_violation.extend(more)
                working = _without(working, container, more)

    if not violations and not omitted and not omitted_on_violation:
        return Verdict(event)
    context = working.get("context")
    new_context = dict(context) if type(context) is dict else {}
    existing = new_context.get("protocols")
    protocols = dict(existing) if type(existing) is dict else {}
    protocols["omitted"] = omitted  # fresh lists, made for this event
    protocols["omitted_on_violation"] = omitted_on_violation
    protocols["violations"] = [
        {"type": kind, "field": path, "description": text} for kind, path, text in violations
    ]
    protocols["sourceId"] = source_id
    new_context["protocols"] = protocols
    out = dict(working)
    out["context"] = new_context
    return Verdict(out, None, tuple(violations), tuple(omitted), tuple(omitted_on_violation))


def _offending(found: list[Violation], container: str, event: Mapping[str, Any]) -> list[str]:
    """Top-level names under the container that violations point at and the event has."""
    payload = event.get(container)
    if not isinstance(payload, dict):
        return []
    prefix = container + "."
    start = len(prefix)
    names: list[str] = []
    for violation in found:
        path = violation.field
        if path.startswith(prefix):
            name = path[start:].partition(".")[0]
            if name in payload and name not in names:
                names.append(name)
    return names


def _without(event: Mapping[str, Any], container: str, names: list[str]) -> dict[str, Any]:
    payload = dict(event[container])
    for name in names:
        del payload[name]
    out = dict(event)
    out[container] = payload
    return out
