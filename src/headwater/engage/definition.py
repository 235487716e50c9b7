"""Audience and computed-trait definitions as trees: what Segment Query Language text (and the
builder's JSON shape) parse to, and what the real-time engine and the batch compiler read.

One tree, two readers, so a definition means the same in real time and in batch. Every node
keeps ``span`` (0-based start and end offsets in the definition's text; ``(0, 0)`` for trees
built from the builder's JSON) so a later check can name the part it refuses. Spans take no
part in equality or ``repr``: two definitions that say the same are equal, and the engine keys
state it can share between definitions (a count over the same stream) by ``repr``.

    Definition  := kind ("users" | "accounts"), root (a Condition or a Value)
    Condition   := Compare | And | Or | Not | AnyUser | AllUsers
    Value       := Reduce | TraitRef | PropertyRef | ContextRef | Literal
    Reduce      := Stream reduced by count | sum | avg | min | max | mode | first | last
                   | unique (a list) | unique_count (``unique(…).count()``)
    Stream      := event name + where conditions + excluded sources + at most one Window

A ``where`` condition may hold a nested ``Compare`` over a ``Reduce`` of another event: that is
a funnel ("and then did (not) perform"); its window is ``parent=True`` (relative to the parent
event's time), and its property references may be ``parent=True`` too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal as Lit

Span = tuple[int, int]
NO_SPAN: Span = (0, 0)

# --- values ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    """A constant: a string, an int, a float, a bool or None."""

    value: str | int | float | bool | None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class TraitRef:
    """``trait('key')``: a profile trait; an audience's key names its membership (a bool)."""

    key: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class PropertyRef:
    """``property('a.b')``: an event property by dotted path (``properties.a.b``).
    ``parent``: the enclosing funnel's parent event's property (``property(parent: 'a')``)."""

    path: str
    parent: bool = False
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class ContextRef:
    """``context('page.url')``: a value of the event's ``context`` by dotted path."""

    path: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


# --- streams and reducers ---------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A time window in whole hours before now (or after the parent event: ``parent``).

    ``within(N unit)``: ``start_hours=0, end_hours=N``: events from N hours ago until now.
    ``between(S unit, E unit)``: events from E hours ago until S hours ago (S < E).
    With ``parent``, the same offsets count forward from the parent event's time.
    """

    start_hours: int
    end_hours: int
    parent: bool = False
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Stream:
    """``event('Name')`` with its filters; every ``where`` condition must hold."""

    event: str
    where: tuple[Condition, ...] = ()
    exclude_sources: frozenset[str] = frozenset()
    window: Window | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


ReduceOp = Lit[
    "count", "sum", "avg", "min", "max", "mode", "first", "last", "unique", "unique_count"
]
ValueType = Lit["number", "string", "array"]


@dataclass(frozen=True)
class Reduce:
    """A stream reduced to one value per profile.

    ``value``: the reduced property (None for ``count``). ``as_type``: ``min``/``max`` compare
    as numbers (None, "number") or as strings ("string"); ``mode`` counts values as strings
    (None) or, with "array", an array value whole. ``min_frequency``: ``mode``'s second
    argument (a value must be seen at least that often).
    """

    stream: Stream
    op: ReduceOp
    value: PropertyRef | ContextRef | None = None
    as_type: ValueType | None = None
    min_frequency: int | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


Value = Reduce | TraitRef | PropertyRef | ContextRef | Literal

# --- conditions ---------------------------------------------------------------------------------

CompareOp = Lit[
    "equals",
    "differs",
    "absent",
    "exists",
    "greater_than",
    "at_least",
    "less_than",
    "at_most",
    "contains",
    "omits",
    "starts_with",
    "ends_with",
    "one_of",
    "before_date",
    "after_date",
    "within_last",
    "within_next",
    "before_last",
    "after_next",
]


@dataclass(frozen=True)
class Compare:
    """``left.op(args…)``.

    ``args``: none for ``absent``/``exists``; one value for ``equals`` … ``at_most``,
    ``omits``, ``starts_with``, ``ends_with``, ``before_date``, ``after_date``; one or more
    ``Literal``s for ``contains`` and ``one_of``. ``hours``: the duration of ``within_last``,
    ``within_next``, ``before_last`` and ``after_next``, in hours (``7 days`` = 168).
    """

    left: Value
    op: CompareOp
    args: tuple[Value, ...] = ()
    hours: int | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class And:
    items: tuple[Condition, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Or:
    items: tuple[Condition, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Not:
    item: Condition
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class AnyUser:
    """``ANY (…)``: an account qualifies when at least one of its users does (accounts only)."""

    item: Condition
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class AllUsers:
    """``ALL (…)``: an account qualifies when every one of its users does (accounts only);
    ``ALL NOT …`` is "none of the users"."""

    item: Condition
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


Condition = Compare | And | Or | Not | AnyUser | AllUsers

# --- a whole definition -----------------------------------------------------------------------

Kind = Lit["users", "accounts"]


@dataclass(frozen=True)
class Definition:
    """A parsed definition. ``text``: the Segment Query Language it came from (for the builder
    shape, the equivalent text the parser writes back), kept so errors and exports quote it."""

    kind: Kind
    root: Condition | Value
    text: str = ""

    @property
    def is_audience(self) -> bool:
        return isinstance(self.root, Compare | And | Or | Not | AnyUser | AllUsers)
