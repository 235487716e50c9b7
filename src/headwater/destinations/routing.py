"""Whether an accepted event goes to one destination instance, and in what shape.

Segment's order for one instance (§6.5): the destination supports the method, the event's
``integrations`` object lets it through, then the instance's stages (destination filters), then,
for an Actions destination, the mappings whose triggers match. Destination-scoped
transformations are a stage after the filters (§5.1: they see what the filters let through).
Consent (§12.3) is a stage after the integrations object and the schema integration filters,
before destination filters (§24 step 7). The router runs this for live events and replay for
archived ones, so both decide alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from headwater import reasons
from headwater.destinations import integrations
from headwater.destinations.store import DestinationInfo

# A stage sees the message bound for one instance and returns it (changed or not), or a
# Segment reason code when the message stops here (destination filters are one).
Stage = Callable[[dict[str, Any], DestinationInfo], "dict[str, Any] | str"]


def destination_verdict(event: dict[str, Any], destination: DestinationInfo) -> str | None:
    """Why the event does not go to this instance (a Segment reason), or None if it does."""
    definition = destination.definition
    if event.get("type") not in definition.methods:
        return reasons.UNSUPPORTED_EVENT_TYPE
    flags = event.get("integrations")
    if not integrations.is_enabled(
        integration_names(event, destination),
        definition.default_enabled,
        flags if isinstance(flags, dict) else None,
    ):
        return reasons.FILTERED_BY_INTEGRATIONS_OBJECT
    return None


def integration_names(event: Mapping[str, Any], destination: DestinationInfo) -> tuple[str, ...]:
    """The names the event's ``integrations`` object may use for this instance: the catalog's
    name and aliases; for Engage's messages (``context.personas``), the instance's own name
    first, since Engage addresses the one instance a computation is connected to (§14.2 item
    9) where other senders name a destination by its catalog name (AC-033). A destination
    function's instance always answers to its own name as well."""
    definition = destination.definition
    names = definition.integration_names
    if definition.function is not None:
        # A destination function answers to its instance's name and to Segment's display
        # form, "<function name> (<workspace>)" (§11.3).
        return (destination.name, *names)
    context = event.get("context")
    if isinstance(context, Mapping) and "personas" in context:
        return (destination.name, *names)
    return names


CONSENT_EVENT = "Segment Consent Preference Updated"
_NO_PREFERENCES: Mapping[str, Any] = {}


def consent_stage(categories: frozenset[str]) -> Stage:
    """§12.3 for an instance whose type is mapped to ``categories``: it gets the event only if
    every one of them is ``true`` (a missing key is false). Not enforced: without
    ``context.consent``, or with a consent object lacking ``categoryPreferences`` (``consent:
    {}``) and no integrations object; with one, such a consent object counts as empty
    preferences (the table's rows 1 and 4). Preferences that are not an object enforce as
    empty ones. Engage's own messages (``context.personas``) are not enforced (§12.1), nor is
    the consent event itself for an Actions destination, which forwards consent state (§12.4).
    Runs per event and mapped instance, so it is written for speed (≤ 2 µs)."""

    def stage(event: dict[str, Any], destination: DestinationInfo) -> dict[str, Any] | str:
        context = event.get("context")
        if type(context) is not dict:
            return event
        consent = context.get("consent")
        if type(consent) is not dict:
            return event
        preferences = consent.get("categoryPreferences", _NO_PREFERENCES)
        if preferences is _NO_PREFERENCES:
            flags = event.get("integrations")
            if not (isinstance(flags, dict) and flags):
                return event  # ``consent: {}`` without an integrations object
        if type(preferences) is dict:
            for category in categories:
                if preferences.get(category) is not True:
                    break
            else:
                return event
        if "personas" in context:
            return event
        if event.get("event") == CONSENT_EVENT and destination.definition.actions:
            return event
        return reasons.FILTERED_BY_END_USER_CONSENT

    return stage


def consent_stages(
    destination: DestinationInfo, consent: Mapping[str, frozenset[str]]
) -> tuple[Stage, ...]:
    """The consent stage for this instance, if its type is mapped to an enabled category."""
    categories = consent.get(destination.type)
    return (consent_stage(categories),) if categories else ()


class Encrypts(Protocol):
    """An instance's field encryption (``privacy/encryption.py``)."""

    def apply(self, event: dict[str, Any]) -> dict[str, Any]: ...


def encryption_stages(
    destination: DestinationInfo, encryption: Mapping[str, Encrypts]
) -> tuple[Stage, ...]:
    """HIPAA-style field encryption (§13), the last stage before delivery (§24 step 7), for
    an instance that has it on."""
    settings = encryption.get(destination.id)
    if settings is None:
        return ()

    def stage(event: dict[str, Any], _destination: DestinationInfo) -> dict[str, Any] | str:
        return settings.apply(event)

    return (stage,)


def destination_filters(
    event: dict[str, Any], destination: DestinationInfo
) -> dict[str, Any] | str:
    """The instance's destination filters (Segment: after the integrations object)."""
    apply = destination.apply_filters
    return event if apply is None else apply(event)


def default_stages(
    destination: DestinationInfo, after_filters: Stage | None = None
) -> Sequence[Stage]:
    """The instance's stages: its destination filters, then ``after_filters`` (its
    destination-scoped transformations, Segment: after the filters, before the mappings)."""
    stages: tuple[Stage, ...] = (destination_filters,) if destination.filters else ()
    return stages if after_filters is None else (*stages, after_filters)


# (source id, Track-tab event name) -> destination names its schema turns off for that event.
TurnedOff = Callable[[str, str], Mapping[str, bool]]

PAGE_VIEWED = "Page Viewed"  # how the Source Schema lists Page and Screen calls
SCREEN_VIEWED = "Screen Viewed"


def schema_event_name(event: dict[str, Any]) -> str | None:
    call = event.get("type")
    if call == "track":
        name = event.get("event")
        return name if isinstance(name, str) else None
    return PAGE_VIEWED if call == "page" else SCREEN_VIEWED if call == "screen" else None


def schema_integration_filter(turned_off: TurnedOff) -> Stage:
    """Segment's schema integration filters (§6.2): after the integrations object, before
    destination filters; a destination the event's own ``integrations`` object names is left
    to it. Warehouses load from the archive and never pass here."""

    def stage(event: dict[str, Any], destination: DestinationInfo) -> dict[str, Any] | str:
        name = schema_event_name(event)
        if name is None:
            return event
        off = turned_off(destination.source_id, name)
        if not off:
            return event
        names = destination.definition.integration_names
        if not any(n in off for n in names):
            return event
        flags = event.get("integrations")
        if integrations.names_destination(names, flags if isinstance(flags, dict) else None):
            return event
        return reasons.FILTERED_BY_INTEGRATIONS_OBJECT

    return stage


def route(
    event: dict[str, Any], destination: DestinationInfo, stages: Sequence[Stage]
) -> tuple[dict[str, Any], list[str]] | str:
    """The event as it goes to this instance with the mapping ids to queue it for ("" for a
    destination without Actions), or the reason it does not go."""
    reason = destination_verdict(event, destination)
    if reason is not None:
        return reason
    staged = run_stages(event, destination, stages)
    if isinstance(staged, str):
        return staged
    if not destination.definition.actions:
        return staged, [""]
    matched = destination.compiled_mappings.matching(staged)
    return (staged, matched) if matched else reasons.NO_MATCHING_MAPPING


def run_stages(
    event: dict[str, Any], destination: DestinationInfo, stages: Sequence[Stage]
) -> dict[str, Any] | str:
    for stage in stages:
        result = stage(event, destination)
        if isinstance(result, str):
            return result
        event = result
    return event
