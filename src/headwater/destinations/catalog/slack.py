"""Slack through an incoming webhook: ``POST <webhook URL>`` with ``{"text": …}``.

As Segment's Slack (Classic) destination: every ``track`` call posts a message, by default
``{{name}} did {{event}}.``, or the template set for its event name (exact name, or a
``/regex/flags`` key); ``identify`` calls post ``Identified user {{name}}.`` and the traits,
but only when they carry every whitelisted trait (none whitelisted: no identify is sent).
Events can be routed to their own channel. ``name`` is the user's display name, found as
Segment finds it (traits' name, first and last name, username, email, then ``User <userId>``
or ``Anonymous user <anonymousId>``).

Templates are a safe subset of Handlebars: ``{{path.to.value}}`` (or ``{{{…}}}``) looks the
path up in the message; nothing is evaluated. Substituted values have Slack's control
characters ``&``, ``<``, ``>`` escaped, so event data cannot mention ``@channel`` or forge
links; the template's own text is sent as written, so it may use Slack markup.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, Final

import msgspec
from pydantic import Field, HttpUrl, model_validator

from headwater.destinations.definition import (
    DestinationDefinition,
    DestinationSettings,
    Message,
    Outgoing,
    Rendered,
    Request,
)
from headwater.destinations.linear_regex import LinearRegex, compile_regex
from headwater.errors import InvalidSettings, MessageRejected, RegexError

TRACK_TEMPLATE: Final = "{{name}} did {{event}}."
IDENTIFY_TEMPLATE: Final = "Identified user {{name}}.\n{{traits}}"

# {{ path }} or {{{ path }}}; a path is dot-separated segments, each a run of plain characters
# or a [bracketed literal] (Handlebars' way to name keys with spaces or dots).
_SEGMENT = r"(?:[^\s.\[\]{}]+|\[[^\]]*\])"
# The spaces around a path are stripped in code: "\s*" around a lazy "[^{}]*?" tries every split
# of a run of spaces, cubic in a template such as "{{{" followed by many spaces.
_TAG = re.compile(r"\{\{\{(?P<raw>[^{}]*)\}\}\}|\{\{(?P<path>[^{}]*)\}\}")
_PATH = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT})*")
_SEGMENTS = re.compile(_SEGMENT)
_REGEX_KEY = re.compile(r"^/(?P<pattern>.+)/(?P<flags>[a-z]*)$", re.DOTALL)
_HELPERS = tuple("#/>!^&")  # block helpers, partials, comments: not supported, left as text


class SlackSettings(DestinationSettings):
    webhook_url: HttpUrl  # secret: the path is the webhook's token
    channel: str | None = None  # only legacy webhooks honour channel / username / icon
    username: str | None = None
    icon_url: HttpUrl | None = None
    icon_emoji: str | None = None
    templates: dict[str, str] = Field(default_factory=dict)
    event_channels: dict[str, str] = Field(default_factory=dict)
    identify_template: str = IDENTIFY_TEMPLATE
    whitelisted_traits: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> SlackSettings:
        if self.icon_url is not None and self.icon_emoji is not None:
            raise ValueError("give icon_url or icon_emoji, not both")
        for key in (*self.templates, *self.event_channels):
            if _REGEX_KEY.match(key):
                try:
                    _compiled(key)
                except RegexError as exc:
                    raise ValueError(f"{key!r} is not a usable regular expression: {exc}") from None
        return self


def render(messages: Sequence[Message], settings: SlackSettings) -> Rendered:
    rendered = Rendered()
    for position, message in enumerate(messages):
        rendered.outgoing.append(Outgoing(_request(message, settings), (position,)))
    return rendered


def _request(message: Message, settings: SlackSettings) -> Request:
    kind = message.get("type")
    data: dict[str, Any]
    channel = settings.channel
    if kind == "track":
        event = message.get("event")
        if not isinstance(event, str):
            raise MessageRejected("a track call needs an event name")
        template = _lookup(settings.templates, event) or TRACK_TEMPLATE
        channel = _lookup(settings.event_channels, event) or channel
        data = {**message, "name": display_name(message)}
    elif kind == "identify":
        traits = message.get("traits")
        traits = traits if isinstance(traits, dict) else {}
        if not settings.whitelisted_traits:
            raise MessageRejected(
                "identify calls go to Slack only once whitelisted_traits "
                "names the traits they must carry"
            )
        missing = [t for t in settings.whitelisted_traits if traits.get(t) in (None, "")]
        if missing:
            raise MessageRejected(f"the identify call lacks the whitelisted traits {missing}")
        template = settings.identify_template
        # Traits are also reachable at the top level, as {{email}} in Segment's examples.
        data = {**traits, **message, "name": display_name(message)}
    else:
        raise MessageRejected(f"Slack takes track and identify calls, not {kind!r}")

    text = render_template(template, data)
    if not text.strip():
        raise MessageRejected("the template gives an empty message, which Slack refuses")
    payload: dict[str, Any] = {"text": text}
    if channel:
        payload["channel"] = channel
    if settings.username:
        payload["username"] = settings.username
    if settings.icon_url is not None:
        payload["icon_url"] = str(settings.icon_url)
    elif settings.icon_emoji:
        payload["icon_emoji"] = settings.icon_emoji
    return Request(
        "POST",
        str(settings.webhook_url),
        {"Content-Type": "application/json"},
        msgspec.json.encode(payload),
    )


def _lookup(table: Mapping[str, str], event: str) -> str | None:
    """The entry for the event: its exact name first, then the first /regex/ that matches."""
    if event in table:
        return table[event]
    for key, value in table.items():
        if _REGEX_KEY.match(key):
            try:
                if _compiled(key).search(event):
                    return value
            except RegexError as exc:  # settings saved before validation existed
                raise InvalidSettings(f"{key!r} is not a valid regular expression") from exc
    return None


@lru_cache(maxsize=256)
def _compiled(key: str) -> LinearRegex:
    """The key's expression, matched in linear time whatever it is (a user's ``(a+)+$`` must
    not hold the worker on a long event name); "g" and other flags mean nothing here."""
    match = _REGEX_KEY.match(key)
    assert match is not None
    return compile_regex(match["pattern"], match["flags"])


def display_name(message: Mapping[str, Any]) -> str:
    """Segment's order: name, first + last name, username, email, user id, anonymous id."""

    def trait(key: str) -> Any:
        for source in (message.get("context"), message):
            traits = source.get("traits") if isinstance(source, dict) else None
            if isinstance(traits, dict) and traits.get(key) not in (None, ""):
                return traits[key]
        return None

    name = trait("name")
    if name is not None:
        return _text(name)
    first, last = trait("firstName"), trait("lastName")
    if first is not None or last is not None:
        return " ".join(_text(part) for part in (first, last) if part is not None)
    for key in ("username", "email"):
        value = trait(key)
        if value is not None:
            return _text(value)
    properties = message.get("properties")
    if isinstance(properties, dict) and properties.get("email") not in (None, ""):
        return _text(properties["email"])
    if message.get("userId"):
        return f"User {message['userId']}"
    return f"Anonymous user {message.get('anonymousId', '')}"


def render_template(template: str, data: Mapping[str, Any]) -> str:
    """Substitute ``{{path}}`` tags; a missing value is empty, as in Handlebars."""

    def substitute(match: re.Match[str]) -> str:
        path = (match["raw"] if match["raw"] is not None else match["path"]).strip()
        if not path or path.startswith(_HELPERS) or not _PATH.fullmatch(path):
            return match[0]
        return escape(_text(_resolve(data, path)))

    return _TAG.sub(substitute, template)


def _resolve(data: Any, path: str) -> Any:
    value = data
    for segment in _segments(path):
        key = segment[1:-1] if segment.startswith("[") else segment
        if isinstance(value, Mapping):
            value = value.get(key)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


def _segments(path: str) -> list[str]:
    """The segments of a path that fullmatches ``_PATH``, each matched where the last ended
    (``findall`` would rescan the rest of the text from every unclosed ``[``)."""
    found: list[str] = []
    at = 0
    while (segment := _SEGMENTS.match(path, at)) is not None:
        found.append(segment[0])
        at = segment.end() + 1  # past the dot
    return found


def _text(value: Any) -> str:
    """As JavaScript would print it, except objects: one ``key: value`` line per key."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Mapping):
        return "\n".join(f"{k}: {_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    return str(value)


def escape(text: str) -> str:
    """Slack's escaping: only these three characters are control characters in messages."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


DEFINITION = DestinationDefinition(
    type="slack",
    name="Slack",
    metadata_id="56748689e954a874ca44ccfb",
    slug="slack",
    settings=SlackSettings,
    render=render,
    methods=frozenset({"track", "identify"}),
    secrets=frozenset({"webhook_url"}),
    concurrency=1,  # keeps a channel's messages in the order they were sent
    rate_limit_per_second=1.0,  # Slack's limit for incoming webhooks: one message a second
    description="Post a message to a Slack channel for each track call and for identify "
    "calls that carry the whitelisted traits.",
)
