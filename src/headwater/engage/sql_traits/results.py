"""What a SQL trait's query must return (§6), and what each of its rows says.

The columns first (``shape_of``): at most 25; a ``user_id``, ``email`` or ``anonymous_id``
column for a users trait — ``user_id`` is the identifier when present, then ``anonymous_id``,
then ``email``, and an ``email`` column beside another identifier is a trait (identity
resolution reads it as an identifier too) — but never both ``user_id`` and ``anonymous_id``; a
``group_id`` column for an accounts trait, where a ``user_id`` column names a user of the
account (its Group call associates them, §6) and is no trait; and at least one trait column.
Identifier columns are found whatever their case (Snowflake says ``USER_ID``); trait names are
the column names as returned.

Subscriptions with SQL (§18.5) ride on a users trait: a ``__segment_internal_email_subscription__``
column beside an ``email`` column, or ``__segment_internal_sms_subscription__`` beside a
``phone`` column, sets the contact's subscription state (``subscribed``, ``unsubscribed`` or
``did_not_subscribe``, as user subscriptions spell them; null leaves it as it is). These columns
are no traits, and a query with one needs no trait column; the same contact may not appear
twice with different states.

Then the rows (``Reader``), in one pass: an identifier may not be null or empty, nor appear
twice; at most 25,000,000 rows. A row is discarded and counted — not an error — when its record
is 16 KB or more ("larger records are discarded") or its identifier is longer than 500
characters (what Unify's ingestion drops). Values become what a Segment message carries:
strings, numbers and booleans as they are (numbers as JavaScript writes them: ``8.0`` is ``8``,
NaN and infinities ``null`` as in ``JSON.stringify``), times as ISO 8601 in UTC, arrays as
comma-separated strings; objects (structs, maps, JSON) and binary values are refused with the
column and row, as they have no string form a user would expect; anything else (UUIDs,
addresses) is its text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Final, NamedTuple

from headwater.errors import InvalidError, QueryError
from headwater.timestamps import format_timestamp
from headwater.unify.subscriptions import parse_status, render_status

MAX_COLUMNS: Final = 25
MAX_ROWS: Final = 25_000_000
MAX_RECORD_BYTES: Final = 16 * 1024  # "each record must be less than 16KB"
MAX_IDENTIFIER_LENGTH: Final = 500
USER_IDENTIFIERS: Final = ("user_id", "anonymous_id", "email")  # the first present wins
ACCOUNT_IDENTIFIER: Final = "group_id"
# §18.5: a status column → (channel, the contact column it needs)
SUBSCRIPTION_COLUMNS: Final = {
    "__segment_internal_email_subscription__": ("EMAIL", "email"),
    "__segment_internal_sms_subscription__": ("SMS", "phone"),
}
_SAFE_INTEGER: Final = 2**53

Value = None | bool | int | float | str


@dataclass(frozen=True)
class Shape:
    """Which columns of a result are the identifier, the associated user and the traits."""

    identifier: str  # user_id, anonymous_id, email, group_id
    id_index: int
    user_index: int | None  # accounts: the user_id column, if any
    traits: tuple[tuple[int, str], ...]  # (column index, trait name)
    # (status column index, channel, contact column index): subscriptions with SQL
    subscriptions: tuple[tuple[int, str, int], ...] = ()

    @property
    def trait_names(self) -> list[str]:
        return [name for _, name in self.traits]


class Record(NamedTuple):
    """One row: its identifier, its traits in column order, the account's user, and its
    canonical JSON (what is compared and stored; None when the row was discarded)."""

    number: int  # 1-based
    identifier: str
    traits: dict[str, Value]
    user_id: str | None
    text: str | None
    # (channel, contact, status) to set: an Identify's ``context.messaging_subscriptions``
    subscriptions: tuple[tuple[str, str, str], ...] = ()


def shape_of(columns: Sequence[str], level: str) -> Shape:
    if len(columns) > MAX_COLUMNS:
        raise QueryError(
            f"maximum columns exceeded: the query returns {len(columns)} columns; SQL traits "
            f"take at most {MAX_COLUMNS}, the identifier included",
            "query",
        )
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            raise QueryError(
                f"the query returns two columns named {name!r}; give each a name of its own (AS …)",
                "query",
            )
        seen.add(name)
    ids: dict[str, int] = {}
    for index, name in enumerate(columns):
        lowered = name.lower()
        if lowered in (*USER_IDENTIFIERS, ACCOUNT_IDENTIFIER):
            if lowered in ids:
                raise QueryError(f"the query returns two {lowered} columns", "query")
            ids[lowered] = index
    if level == "accounts":
        if ACCOUNT_IDENTIFIER not in ids:
            raise QueryError(
                "an account-level SQL trait's query must return a group_id column", "query"
            )
        identifier, user_index = ACCOUNT_IDENTIFIER, ids.get("user_id")
        special = {ids[ACCOUNT_IDENTIFIER], user_index}
    else:
        if "user_id" in ids and "anonymous_id" in ids:
            raise QueryError(
                "the query cannot include both user_id and anonymous_id: return one of them",
                "query",
            )
        found = [name for name in USER_IDENTIFIERS if name in ids]
        if not found:
            raise QueryError(
                "the query must return a user_id, email or anonymous_id column", "query"
            )
        identifier, user_index = found[0], None
        special = {ids[identifier]}
    subscriptions = _subscriptions(columns, level)
    special |= {status for status, _, _ in subscriptions}
    traits = tuple((i, name) for i, name in enumerate(columns) if i not in special)
    if not traits and not subscriptions:
        raise QueryError(
            f"the query must return at least one trait column besides {identifier}", "query"
        )
    return Shape(identifier, ids[identifier], user_index, traits, subscriptions)


def _subscriptions(columns: Sequence[str], level: str) -> tuple[tuple[int, str, int], ...]:
    """The subscription status columns with their contact columns (§18.5)."""
    lowered = [name.lower() for name in columns]
    found = []
    for index, name in enumerate(lowered):
        if name not in SUBSCRIPTION_COLUMNS:
            continue
        channel, contact = SUBSCRIPTION_COLUMNS[name]
        if level == "accounts":
            raise QueryError(
                f"{name}: subscription states are set on users; use a users trait", "query"
            )
        if contact not in lowered:
            raise QueryError(
                f"{name} needs a {contact} column: the {contact} whose state it sets", "query"
            )
        found.append((index, channel, lowered.index(contact)))
    return tuple(found)


@dataclass
class Reader:
    """Reads a result's rows into ``Record``s, enforcing the per-row rules; counts what it
    read and discarded."""

    shape: Shape
    max_rows: int = MAX_ROWS
    rows: int = 0
    discarded: int = 0
    _seen: dict[str, int] = field(default_factory=dict, repr=False)
    _states: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict, repr=False)

    def read(self, rows: Iterable[Sequence[Any]]) -> Iterator[Record]:
        shape = self.shape
        name = shape.identifier
        for row in rows:
            self.rows += 1
            number = self.rows
            if number > self.max_rows:
                raise QueryError(
                    f"the query returns more than {self.max_rows:,} rows, the most a SQL "
                    "trait may return",
                    "query",
                )
            identifier = identifier_text(row[shape.id_index], name, number)
            if identifier is None:
                raise QueryError(
                    f"row {number}: {name} is null; no row may have a null {name}", "query"
                )
            first = self._seen.get(identifier)
            if first is not None:
                raise QueryError(
                    f"duplicate {name} {identifier!r} (rows {first} and {number}): each row "
                    f"must be a different {'account' if name == ACCOUNT_IDENTIFIER else 'user'};"
                    " use DISTINCT or GROUP BY",
                    "query",
                )
            self._seen[identifier] = number
            user_id = None
            if shape.user_index is not None:
                user_id = identifier_text(row[shape.user_index], "user_id", number)
            traits = {
                trait: trait_value(row[index], trait, number) for index, trait in shape.traits
            }
            subscriptions = self._subscriptions(row, number)
            text: str | None = canonical(traits, user_id, subscriptions)
            size = len(str(text).encode()) + len(identifier.encode())
            if len(identifier) > MAX_IDENTIFIER_LENGTH or size >= MAX_RECORD_BYTES:
                self.discarded += 1
                text = None
            yield Record(number, identifier, traits, user_id, text, subscriptions)

    def _subscriptions(self, row: Sequence[Any], number: int) -> tuple[tuple[str, str, str], ...]:
        """The row's states to set; a contact seen before must have the same one."""
        found = []
        for status_index, channel, contact_index in self.shape.subscriptions:
            raw = row[status_index]
            contact = identifier_text(row[contact_index], "contact", number)
            try:
                status = parse_status(raw)
            except InvalidError:
                raise QueryError(
                    f"row {number}: {raw!r} is no subscription status: subscribed, "
                    "unsubscribed or did_not_subscribe",
                    "query",
                ) from None
            if status is None or contact is None:
                continue  # a blank status never overwrites a state
            vector = (channel, contact.strip().lower())
            first = self._states.setdefault(vector, (status, number))
            if first[0] != status:
                raise QueryError(
                    f"rows {first[1]} and {number} give {contact!r} different {channel} "
                    "subscription states: each contact must have one",
                    "query",
                )
            found.append((channel, contact, str(render_status(status, "api"))))
        return tuple(found)


def canonical(
    traits: dict[str, Value],
    user_id: str | None,
    subscriptions: Sequence[tuple[str, str, str]] = (),
) -> str:
    """A row's values as one string: equal values, equal strings."""
    body: dict[str, Any] = {"traits": traits}
    if user_id is not None:
        body["user_id"] = user_id
    if subscriptions:
        body["subscriptions"] = [list(s) for s in subscriptions]
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def decoded(text: str) -> tuple[dict[str, Value], str | None]:
    """``canonical`` read back: the traits and the account's user."""
    body = json.loads(text)
    return body["traits"], body.get("user_id")


# --- values ----------------------------------------------------------------------------------


def identifier_text(value: Any, column: str, number: int) -> str | None:
    """An identifier as the message carries it (text; numbers as JavaScript writes them);
    None for null or empty."""
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, bool | dict | list | tuple | bytes | bytearray):
        raise QueryError(
            f"row {number}: {column} must be text or a number, not {type(value).__name__}",
            "query",
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal):
        number_value = _number(value)
        return None if number_value is None else _text(number_value)
    return str(value)


def trait_value(value: Any, column: str, number: int) -> Value:
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float | Decimal):
        return _number(value)
    if isinstance(value, datetime | date | time):
        return _time_text(value)
    if isinstance(value, list | tuple):
        return ",".join(_element(item, column, number) for item in value)
    _refuse_unreadable(value, column, number)
    return str(value)


def _refuse_unreadable(value: Any, column: str, number: int) -> None:
    if isinstance(value, dict):
        what = "an object (a struct, map or JSON value)"
    elif isinstance(value, bytes | bytearray | memoryview):
        what = "a binary value"
    else:
        return
    raise QueryError(
        f"column {column!r}, row {number}: {what}; SQL traits take strings, numbers and "
        "booleans: cast it to text in the query",
        "query",
    )


def _element(value: Any, column: str, number: int) -> str:
    """An array element's part of the comma-separated string."""
    converted = trait_value(value, column, number)
    if converted is None:
        return ""
    return _text(converted)


def _number(value: float | Decimal) -> int | float | None:
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        if value == value.to_integral_value():
            return int(value)
        return float(value)
    if not math.isfinite(value):
        return None
    if value.is_integer() and abs(value) < _SAFE_INTEGER:
        return int(value)
    return value


def _text(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _time_text(value: datetime | date | time) -> str:
    if isinstance(value, datetime):
        return format_timestamp(value)
    return value.isoformat()
