"""Ready-made mappings: a definition's presets, and subscriptions exported from Segment.

``mappings: presets`` (``"presets": true`` in the REST API) gives a new destination what Segment
gives it: a mapping for each ``automatic`` preset (Segment's default subscriptions), enabled.
Segment's Public API lists a destination's mappings as subscriptions (``actionSlug`` is the
action's key, ``settings`` its field mapping); ``from_subscription`` reads one as a mapping, so
a team moving off Segment brings its mappings as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from headwater.destinations.actions import ActionDefinition, check_mappings
from headwater.destinations.definition import DestinationDefinition
from headwater.destinations.trigger import parse_trigger, to_condition
from headwater.errors import InvalidError, ItemError, ListError, TriggerError

# ``mappings: presets`` in headwater.yaml.
PRESETS = "presets"


def preset_mappings(definition: DestinationDefinition) -> list[dict[str, Any]]:
    """The definition's automatic presets as enabled mappings, each checked like a saved mapping
    (a preset the mapping kit refuses is named with its reason, and none is created)."""
    if not definition.actions:
        raise InvalidError(
            f"{definition.type} is not an Actions destination: it has no presets", PRESETS
        )
    found = []
    for preset in definition.presets:
        if not preset.automatic:
            continue  # a specific-event preset (Engage) needs the event it is made for
        mapping = {
            "name": preset.name,
            "enabled": True,
            "trigger": tidy_trigger(preset.trigger),
            "action": preset.action,
            "fields": dict(preset.fields),
        }
        try:
            check_mappings(definition.actions, [mapping])
        except ListError as exc:
            raise InvalidError(
                f"the preset {preset.name!r} of {definition.type} cannot be a mapping here: "
                f"{_unplaced(str(exc))}",
                PRESETS,
            ) from None
        found.append(mapping)
    return found


def tidy_trigger(trigger: str) -> str:
    """The trigger on one line: Segment's presets indent theirs over many lines, which a file
    would show as a string of escapes. Only whitespace between tokens changes, and only when
    the trigger parses to the same condition as before."""
    tidied: list[str] = []
    quote: str | None = None
    for char in trigger:
        if quote is None and char in " \t\n":
            if tidied and tidied[-1] != " ":
                tidied.append(" ")
            continue
        if quote is None and char in "\"'":
            quote = char
        elif char == quote:
            quote = None
        tidied.append(char)
    text = "".join(tidied).strip()
    try:
        same = to_condition(parse_trigger(text)) == to_condition(parse_trigger(trigger))
    except TriggerError:
        same = False
    return text if same else trigger


# --- Segment's subscriptions -----------------------------------------------------------------

# Keys of a subscription in Segment's Public API (``DestinationSubscription``). Ids are Segment's
# own and mean nothing here; ``modelId`` and ``reverseETLSchedule`` belong to Reverse ETL.
_IGNORED = frozenset({"id", "actionId", "destinationId"})
_KNOWN = _IGNORED | {
    "name",
    "actionSlug",
    "enabled",
    "settings",
    "trigger",
    "modelId",
    "reverseETLSchedule",
}
# Keys Segment keeps in a subscription's settings for its own features rather than as fields
# (``__segment_internal_sync_mode``, ``__segment_internal_matching_key`` of sync-mode actions).
_INTERNAL_PREFIX = "__segment_internal"


def is_subscription(item: object) -> bool:
    """A mapping written in Segment's shape (``actionSlug`` + ``settings``), not Headwater's."""
    return isinstance(item, Mapping) and "actionSlug" in item


def from_subscription(
    actions: Mapping[str, ActionDefinition], subscription: Mapping[str, Any]
) -> dict[str, Any]:
    """One Segment subscription as a Headwater mapping (``ItemError`` says where it is wrong)."""
    unknown = sorted(str(k) for k in subscription if k not in _KNOWN)
    if unknown:
        raise ItemError(
            f"unknown key {unknown[0]!r} in a Segment subscription (its keys: "
            f"{', '.join(sorted(_KNOWN))})",
            unknown[0],
        )
    if subscription.get("modelId") or subscription.get("reverseETLSchedule"):
        raise ItemError(
            "is a Reverse ETL subscription (it has a modelId); Headwater has no Reverse ETL",
            "modelId",
        )
    slug = subscription.get("actionSlug")
    if not isinstance(slug, str) or not slug:
        raise ItemError("must name the action's key", "actionSlug")
    if slug not in actions:
        known = ", ".join(sorted(actions)) or "none"
        raise ItemError(
            f"the destination has no action {slug!r}; its actions: {known}", "actionSlug"
        )
    settings = subscription.get("settings", {})
    if not isinstance(settings, Mapping):
        raise ItemError("must be an object (the action's field mapping)", "settings")
    for key in settings:
        if str(key).startswith(_INTERNAL_PREFIX):
            raise ItemError(
                "is a setting Segment keeps for its sync modes and matching keys, not a field "
                "of the action; Headwater's mappings have neither yet: remove it to import the "
                "subscription with the action's default behaviour",
                f"settings.{key}",
            )
    name = subscription.get("name")
    trigger = subscription.get("trigger")
    mapping: dict[str, Any] = {
        # A subscription saved without a name is shown by Segment under its action's title.
        "name": name if name else actions[slug].title,
        "enabled": subscription.get("enabled", False),
        "trigger": tidy_trigger(trigger) if isinstance(trigger, str) else trigger,
        "action": slug,
        "fields": dict(settings),
    }
    return mapping


def subscriptions_in(document: Any) -> list[Any]:
    """The subscriptions of what Segment's Public API answers to ``GET
    /destinations/{destinationId}/subscriptions``: the whole answer, its ``subscriptions``
    list, or one subscription."""
    if isinstance(document, Mapping) and isinstance(document.get("data"), Mapping):
        document = document["data"]
    if isinstance(document, Mapping) and "subscriptions" in document:
        document = document["subscriptions"]
    if is_subscription(document):
        return [document]
    if isinstance(document, list):
        return document
    raise InvalidError(
        "is not Segment's list of subscriptions: expected the answer of GET "
        '/destinations/{destinationId}/subscriptions ({"data": {"subscriptions": [...]}}), '
        "its subscriptions list, or one subscription",
        "subscriptions",
    )


def more_pages(document: Any) -> str | None:
    """The cursor of the next page when the answer is one page of several."""
    data = document.get("data") if isinstance(document, Mapping) else None
    pagination = data.get("pagination") if isinstance(data, Mapping) else None
    following = pagination.get("next") if isinstance(pagination, Mapping) else None
    return str(following) if following else None


def import_subscriptions(definition: DestinationDefinition, document: Any) -> list[dict[str, Any]]:
    """Segment's exported subscriptions as mappings of ``definition``, each checked; an error
    names the subscription (position, name and Segment id) and what is wrong with it."""
    if not definition.actions:
        raise InvalidError(
            f"{definition.type} is not an Actions destination: it has no mappings", "subscriptions"
        )
    found = []
    for position, subscription in enumerate(subscriptions_in(document)):
        where = _named(position, subscription)
        try:
            if not is_subscription(subscription):
                raise ItemError("is not a Segment subscription (it has no actionSlug)", "")
            [checked] = check_mappings(
                definition.actions, [from_subscription(definition.actions, subscription)]
            )
        except ItemError as exc:
            inside = f".{exc.where}" if exc.where else ""
            raise InvalidError(f"{where}{inside}: {exc}", f"subscriptions.{position}") from None
        except ListError as exc:
            raise InvalidError(
                f"{where}: {_unplaced(str(exc))}", f"subscriptions.{position}"
            ) from None
        found.append(checked.written())
    return found


def _named(position: int, subscription: Any) -> str:
    where = f"subscriptions[{position}]"
    if isinstance(subscription, Mapping):
        details = [f"{subscription['name']!r}"] if subscription.get("name") else []
        details += [f"id {subscription['id']}"] if subscription.get("id") else []
        if details:
            where += f" ({', '.join(details)})"
    return where


def _unplaced(message: str) -> str:
    """A one-item list's error without its ``[0]`` (``[0].fields.x: …`` → ``fields.x: …``)."""
    return message.removeprefix("[0]").removeprefix(".").removeprefix(":").lstrip()
