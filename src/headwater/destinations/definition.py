"""What a destination is: its catalog entry and the code that turns messages into requests.

Each module under ``destinations/catalog/`` defines one ``DEFINITION``. Everything else (the
router, the delivery engine, the REST API, the YAML config) reads only this shape, so adding a
destination needs no change anywhere else.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from headwater import reasons
from headwater.errors import Rejection

if TYPE_CHECKING:
    from headwater.destinations.actions import ActionDefinition, Preset

Message = dict[str, Any]

ALL_METHODS = frozenset({"identify", "track", "page", "screen", "group", "alias"})

# The settings key of an OAuth destination's app and tokens: {clientId, clientSecret,
# accessToken, refreshToken}, all secrets (actions-core takes them as ``auth``).
OAUTH_SETTING = "oauth"


class DestinationSettings(BaseModel):
    """Base of every destination's settings model: unknown keys are an error, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Request:
    """One HTTP request to the destination, fully rendered."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    # Headers whose values are secrets whatever their name (an Actions mapping's ``headers``):
    # Event Delivery samples show them as [redacted].
    secret_headers: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Outgoing:
    """A request and the positions (in the rendered batch) of the messages it carries."""

    request: Request
    messages: tuple[int, ...]


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


# Renders the messages of one batch (a single message when the destination does not batch).
# Raise MessageRejected / InvalidSettings for a single message; for a batch, leave the bad
# message out of every Outgoing and report it through ``rejected``.
Render = Callable[[Sequence[Message], Any], "Rendered"]


@dataclass
class Rendered:
    outgoing: list[Outgoing] = field(default_factory=list)
    # position -> (code, detail) for messages that will not be sent
    rejected: dict[int, tuple[str, str]] = field(default_factory=dict)

    def reject(self, position: int, problem: Rejection | str) -> None:
        """Leave the message at ``position`` unsent; a plain detail means MESSAGE_REJECTED."""
        if isinstance(problem, Rejection):
            self.rejected[position] = (problem.code, str(problem))
        else:
            self.rejected[position] = (reasons.MESSAGE_REJECTED, problem)


# Per message of one request: None when delivered, else the error code, from the response.
# The default treats the whole request alike (Segment's "error amplification").
Interpret = Callable[[Response, int], list[str | None] | None]


# The requests that ask the destination to delete users' data (a regulation forwarded, §10.3):
# the user ids, the instance's settings. Raise InvalidSettings when the settings lack what the
# vendor's deletion API needs (Amplitude's Secret Key).
RenderDeletion = Callable[[Sequence[str], Any], "list[Request]"]


@dataclass(frozen=True)
class Batching:
    """Limits of one batch request: whichever is reached first closes the batch."""

    max_events: int
    max_bytes: int
    max_wait_seconds: float = 1.0


@dataclass(frozen=True)
class DestinationDefinition:
    type: str  # the id used in headwater.yaml and the REST API, e.g. "webhook"
    name: str  # the catalog name: the key of the integrations object
    settings: builtins.type[DestinationSettings]
    render: Render | None = None  # None for an Actions destination: its actions render
    methods: frozenset[str] = ALL_METHODS
    aliases: tuple[str, ...] = ()  # other names the integrations object may use
    secrets: frozenset[str] = frozenset()  # settings never shown after they are saved
    default_enabled: bool = True  # value when the integrations object names neither it nor All
    batching: Batching | None = None
    concurrency: int = 16  # requests in flight per instance
    rate_limit_per_second: float | None = None  # requests per second per instance
    timeout_seconds: float = 10.0
    interpret: Interpret | None = None
    description: str = ""
    # An Actions destination's actions, by name; its instances' mappings choose among them.
    actions: Mapping[str, ActionDefinition] = field(default_factory=dict)
    # An Actions destination of Segment's published package, run by the actions runtime: the
    # package's directory name (``customerio``). Its actions have no ``perform`` here.
    package_directory: str | None = None
    # Segment's presets: mappings a new instance may start with (``automatic`` ones are its
    # default subscriptions).
    presets: tuple[Preset, ...] = ()
    # Hooks of the definition beyond its actions: createAudience, getAudience, onDelete,
    # refreshAccessToken, testAuthentication.
    hooks: frozenset[str] = frozenset()
    # A native destination's deletion API, when the vendor has one (Actions destinations use
    # their package's ``onDelete`` hook instead).
    delete: RenderDeletion | None = None
    # A destination function's instances (``function:<name>``): the function's name; the
    # delivery engine runs its deployed code in the functions' sandbox.
    function: str | None = None
    # Segment's catalog id and slug of this destination (the Public API's ``metadataId``), so
    # Segment's SDKs and Terraform configurations name it as they do in Segment.
    metadata_id: str | None = None
    slug: str | None = None

    @property
    def integration_names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def parse_settings(self, raw: Mapping[str, Any]) -> DestinationSettings:
        return self.settings.model_validate(dict(raw))
