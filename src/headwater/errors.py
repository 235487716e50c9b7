"""Every exception Headwater raises on purpose, in one hierarchy.

Callers catch by meaning, not by module: the REST API answers every ``InputError`` with a 4xx
(so a refusal raised deep in a parser can never become a 500), ingest answers ``Unavailable``
with 503 and ``Retry-After``, and the delivery engine turns a ``Rejection`` into Segment's code.

    HeadwaterError
    ├── InputError (ValueError)     what a client or an operator gave cannot be used
    │   ├── InvalidError            a value the workspace model refuses         (API 422)
    │   ├── NotFoundError           no such source, destination, warehouse…     (API 404)
    │   ├── ConflictError           a name taken, an invariant that would break (API 409)
    │   ├── ConfigError             headwater.yaml, every problem listed
    │   ├── BodyError               a Tracking API body (Segment's 400 codes)
    │   ├── UnstorableSubmission    a request whose messages cannot be encoded for the log
    │   ├── FQLSyntaxError          an FQL statement, with its position
    │   ├── TriggerError            an Actions trigger, with its position
    │   ├── DefinitionError         an audience or computed trait definition, with its position
    │   ├── RegexError              a regular expression a destination's settings hold
    │   ├── MappingError            an Actions mapping, with the path inside it
    │   ├── ListError               a list of filters or mappings, with the field
    │   ├── ItemError               one item of such a list (ListError adds its position)
    │   ├── NotRepresentable        an FQL statement the browser's matcher cannot run alike
    │   ├── UnknownDestinationType  a destination type the catalog does not have
    │   │   └── CatalogNotInstalled an ``actions:*`` type with no Actions package installed
    │   ├── UnsafePathError         a path setting that would leave its directory
    │   ├── QueryError              a SQL trait's query, or its result, Segment's rules refuse
    │   ├── UploadRejected          a profiles CSV, with Segment's message and a 4xx status
    │   └── RegulationRefused       a regulation request: 400, 409 or 429, with headers
    ├── ExportError                 stored configuration that no file could hold
    ├── AuthorizationFailed         an OAuth authorization that gave no tokens
    ├── FQLEvaluationError          a statement with no answer for one event
    ├── RecordError                 a log record that is not a version 1 record
    ├── Rejection                   a message one destination will not take
    │   ├── MessageRejected         it lacks what the destination needs   (MESSAGE_REJECTED)
    │   └── InvalidSettings         the instance's settings cannot serve it (INVALID_SETTINGS)
    ├── Unavailable                 a store cannot be used now; retry later
    │   ├── LogUnavailable          the event log refuses writes (ingest answers 503)
    │   └── WarehouseError          a warehouse cannot be reached or used
    ├── LeaseLost                   another process owns a log partition now
    ├── SyncBusy                    another process is syncing this warehouse
    └── SyncStopped                 the process is shutting down mid-sync
"""

from __future__ import annotations

from headwater import reasons


class HeadwaterError(Exception):
    """The base of every exception Headwater raises on purpose."""


# --- input -----------------------------------------------------------------------------------


class InputError(HeadwaterError, ValueError):
    """Input that cannot be used; ``field`` names the offending input, if one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidError(InputError):
    """The value itself is unusable (empty name, bad slug, bad cursor…)."""


class NotFoundError(InputError):
    """The source, destination, warehouse, filter or mapping named does not exist."""


class ConflictError(InputError):
    """A name, slug or write key is already taken, or the change would break an invariant."""


class ConfigError(InputError):
    """The config file cannot be used; ``problems`` lists each one as ``path: message``."""

    def __init__(self, problems: list[str], source: str = "the config") -> None:
        super().__init__(f"{source} is not valid:\n" + "\n".join(f"  {p}" for p in problems))
        self.problems = problems


class BodyError(InputError):
    """A Tracking API body that cannot be used; answered 400 with ``code`` and the message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class UnstorableSubmission(InputError):
    """This request's messages cannot be written (they cannot be encoded); others can."""


class FQLSyntaxError(InputError):
    """An FQL statement that cannot be parsed; ``position`` is the 0-based offset."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.position = position


class TriggerError(InputError):
    """A trigger Segment would not accept; ``position`` is the 0-based offset of the problem."""

    def __init__(self, message: str, source: str, position: int) -> None:
        super().__init__(f"invalid trigger: {message} at position {position} in {source!r}")
        self.reason = message
        self.source = source
        self.position = position


class DefinitionError(InputError):
    """A Segment Query Language definition Headwater refuses; ``position`` is the 0-based
    offset of the part refused in ``text`` (0 for the builder's JSON shape)."""

    def __init__(self, message: str, text: str, position: int) -> None:
        super().__init__(f"{message} at position {position} in {text!r}")
        self.reason = message
        self.text = text
        self.position = position


class RegexError(InputError):
    """A pattern that cannot be used; ``position`` is the offset in the pattern."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.position = position


class MappingError(InputError):
    """A mapping, or what it rendered, cannot be used; ``path`` says where in the mapping."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message
        self.path = path


class ListError(InputError):
    """A list that cannot be saved; ``field`` says where (``mappings.3.fields``)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message, field)
        self.field: str = field


class ItemError(InputError):
    """A problem with one item, at ``where`` inside it; ``check_list`` adds the position."""

    def __init__(self, message: str, where: str) -> None:
        super().__init__(message)
        self.where = where


class NotRepresentable(InputError):
    """The FQL statement has no equivalent in the browser matcher."""


class UnknownDestinationType(InputError):
    """A destination type that is not in the catalog."""


class CatalogNotInstalled(UnknownDestinationType):
    """An ``actions:*`` type asked of a process whose Actions package is not installed."""


class UnsafePathError(InputError):
    """A path setting that would leave its directory, or cannot be a path at all."""


class QueryError(InputError):
    """A SQL trait's query the warehouse refused (syntax, permissions, an unknown table) or
    whose result breaks Segment's rules (a duplicate ``user_id``, 26 columns…): the query's
    author fixes it, so the REST API answers 422."""


class UploadRejected(InputError):
    """A profiles CSV upload refused with Segment's message (§10.1); ``status``: the REST
    API's answer (413 too large, 415 not a .csv, 409 another upload running, else 422)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class RegulationRefused(InputError):
    """A regulation request Segment refuses: ``status`` 400 (the request), 409 (a replay runs)
    or 429 (a rate limit, with ``headers`` saying how many remain and when it resets)."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, field)
        self.status = status
        self.headers = headers or {}


class ExportError(HeadwaterError):
    """The workspace holds something that cannot be written to a file ``apply`` would take."""


class AuthorizationFailed(HeadwaterError):
    """``headwater catalog oauth`` got no tokens: consent refused, a forged or stale callback,
    the token endpoint's refusal, or no answer in time. Nothing was stored."""


# --- events ----------------------------------------------------------------------------------


class FQLEvaluationError(HeadwaterError, ValueError):
    """A statement that parsed but has no answer for this event."""


class RecordError(HeadwaterError, ValueError):
    """A payload that is not a version 1 log record."""


class Rejection(HeadwaterError):
    """A message one destination will not take; ``code`` is Segment's integration error code."""

    code: str = reasons.MESSAGE_REJECTED


class MessageRejected(Rejection):
    """The message lacks what this destination needs."""

    code = reasons.MESSAGE_REJECTED


class InvalidSettings(Rejection):
    """The instance's settings cannot serve this message."""

    code = reasons.INVALID_SETTINGS


# --- stores ----------------------------------------------------------------------------------


class Unavailable(HeadwaterError):
    """A store cannot be used now; the caller should retry later."""


class LogUnavailable(Unavailable):
    """The event log cannot take writes; the client should retry later."""


class WarehouseError(Unavailable):
    """A warehouse could not be reached or used; the message is meant for the user."""


class LeaseLost(HeadwaterError):
    """Another process owns a partition now; this pass's work is rolled back."""


class SyncBusy(HeadwaterError):
    """Another process is syncing this warehouse."""


class SyncStopped(HeadwaterError):
    """The process is shutting down."""
