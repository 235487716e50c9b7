"""The contract between a function's code and the rest of Headwater (layer 0).

A sandbox loads one saved version of a function (``Code``) and runs one handler on one
payload; whatever the language, the answer is an ``Invocation``: the handler's value or the
error class it threw, with its console lines, outgoing requests and (source functions) the
calls it emitted. ``verdict`` turns an invocation into Segment's code and retry rule (§11.5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

Kind = Literal["source", "destination", "insert"]
Language = Literal["javascript", "python"]
KINDS: Final = ("source", "destination", "insert")
LANGUAGES: Final = ("javascript", "python")

# Handlers by Segment's (JavaScript) name; Python functions use the snake_case name.
REQUEST_HANDLER: Final = "onRequest"
EVENT_HANDLERS: Final = {
    "identify": "onIdentify",
    "track": "onTrack",
    "page": "onPage",
    "screen": "onScreen",
    "group": "onGroup",
    "alias": "onAlias",
    "delete": "onDelete",
}
BATCH_HANDLER: Final = "onBatch"
HANDLERS: Final = frozenset({REQUEST_HANDLER, BATCH_HANDLER, *EVENT_HANDLERS.values()})


def python_name(handler: str) -> str:
    """``onTrack`` → ``on_track``: a Python function's name for a handler."""
    return "on_" + handler.removeprefix("on").lower()


# The error classes user code may throw (insert functions add DropEvent); the sandbox reports
# the class name, or one of the names below for what the host saw.
EVENT_NOT_SUPPORTED: Final = "EventNotSupported"
INVALID_EVENT_PAYLOAD: Final = "InvalidEventPayload"
VALIDATION_ERROR: Final = "ValidationError"
RETRY_ERROR: Final = "RetryError"
DROP_EVENT: Final = "DropEvent"
ERROR_CLASSES: Final = (
    EVENT_NOT_SUPPORTED,
    INVALID_EVENT_PAYLOAD,
    VALIDATION_ERROR,
    RETRY_ERROR,
    DROP_EVENT,
)
TIMEOUT: Final = "Timeout"  # the invocation ran past its deadline (5 s): the process was killed
MEMORY_LIMIT: Final = "MemoryLimit"  # the invocation's process ran out of its memory cap
CRASHED: Final = "Crashed"  # the process died another way while running it
INVALID_SETTINGS: Final = "InvalidSettings"  # the settings do not fit the function's
LOAD_ERROR: Final = "LoadError"  # the code does not compile or load (a SyntaxError…)
OTHER_ERROR: Final = "Error"  # any other thrown value


@dataclass(frozen=True)
class Code:
    """One saved version of a function: what a sandbox loads, keyed by ``key``."""

    function: str
    version: int
    language: Language
    source: str

    @property
    def key(self) -> str:
        return f"{self.function}@{self.version}"


@dataclass(frozen=True)
class IncomingRequest:
    """A source function's HTTP request, as its ``onRequest`` sees it."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class LogLine:
    level: str  # log, info, warn, error, debug
    text: str


@dataclass(frozen=True)
class OutgoingRequest:
    """A request the code made through the host's ``fetch``, and how it ended."""

    method: str
    url: str
    status: int | None  # None when it failed before an answer
    error: str | None = None  # why it failed (not on the allow list, timeout, refused…)
    duration_ms: float = 0.0


@dataclass
class Invocation:
    """What one handler call did. ``error`` is None when it returned (``value``)."""

    value: Any = None
    error: str | None = None  # a name of ERROR_CLASSES, TIMEOUT, MEMORY_LIMIT, … or OTHER_ERROR
    message: str = ""
    logs: list[LogLine] = field(default_factory=list)
    requests: list[OutgoingRequest] = field(default_factory=list)
    # Source functions: Segment.identify/track/… as {"type": "track", …}; Segment.set as
    # {"type": "set", "collection": …, "id": …, "properties": {…}}.
    emitted: list[dict[str, Any]] = field(default_factory=list)
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Verdict:
    code: str  # Segment's code, as Event Delivery shows it
    retry: bool
    dropped: bool = False  # DropEvent: filtered at insert function, not a failure


# §11.5: thrown → surfaced code, retried.
FILTERED_AT_INSERT_FUNCTION: Final = "Filtered at insert function"
_VERDICTS: Final = {
    VALIDATION_ERROR: Verdict("MESSAGE_REJECTED", retry=False),
    INVALID_EVENT_PAYLOAD: Verdict("MESSAGE_REJECTED", retry=False),
    EVENT_NOT_SUPPORTED: Verdict("UNSUPPORTED_EVENT_TYPE", retry=False),
    RETRY_ERROR: Verdict("RETRY_ERROR", retry=True),
    TIMEOUT: Verdict("FUNCTION_TIMEOUT", retry=True),
    DROP_EVENT: Verdict(FILTERED_AT_INSERT_FUNCTION, retry=False, dropped=True),
    INVALID_SETTINGS: Verdict("INVALID_SETTINGS", retry=False),
    # A process that died under the invocation is Headwater's trouble, not the code's: retried.
    CRASHED: Verdict("FUNCTION_CRASHED", retry=True),
}
_OTHER: Final = Verdict("INVOKE_ERROR", retry=False)  # Bad Request: any other exception


def verdict(invocation: Invocation) -> Verdict | None:
    """Segment's code and retry rule for a failed invocation; None when it succeeded."""
    if invocation.error is None:
        return None
    return _VERDICTS.get(invocation.error, _OTHER)
