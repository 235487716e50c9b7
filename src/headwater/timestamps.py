"""ISO-8601 timestamps as Segment's clients send them and as Segment stores them.

Every message carries up to four timestamps and each is parsed on the ingest hot path, so the
common shape (``2015-12-12T19:11:01.152Z``) goes through the C parser and, when it is already in
the stored form, is reused as is instead of being formatted again. Anything else the docs or the
client libraries produce — offsets, fractions of any length (.NET sends 7 digits), Segment's
own unpadded example ``2015-2-02T00:30:08.276Z``, bare dates — takes a slower, lenient path.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

_fromisoformat = datetime.fromisoformat

# Dates may lack zero padding; the time part, seconds, fraction and zone are each optional.
_LENIENT: Final = re.compile(
    r"""\s*
    (\d{4})-(\d{1,2})-(\d{1,2})
    (?:[Tt\ ](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:[.,](\d+))?)?)?
    \s*(?:(?:([Zz])|([+-])(\d{2}):?(\d{2})?)\s*)?\Z""",
    re.VERBOSE | re.ASCII,
)
# The stored form exactly; a parsed value that matches it needs no formatting.
_is_stored_form = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", re.ASCII).fullmatch


def parse_timestamp(value: object) -> datetime | None:
    """Parse a client timestamp leniently; None when it is not a usable ISO-8601 string.

    Values without a zone are taken as UTC: server libraries that format naive datetimes mean
    their server's clock, which is UTC in practice, and a date alone means midnight UTC as in
    JavaScript's ``Date.parse``.
    """
    if not isinstance(value, str):
        return None
    try:
        parsed = _fromisoformat(value)
    except ValueError:
        lenient = _parse_lenient(value)
        if lenient is None:
            return None
        parsed = lenient
    zone = parsed.tzinfo
    if zone is UTC:
        return parsed
    if zone is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 has no UTC instant in range
        return None


def format_timestamp(dt: datetime) -> str:
    """Format as Segment stores timestamps: ``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC.

    Sub-millisecond digits are cut, not rounded, so a formatted time never moves past the
    instant it describes. A naive datetime is taken as UTC.
    """
    zone = dt.tzinfo
    if zone is not UTC and zone is not None:
        dt = dt.astimezone(UTC)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031 (%-format is ~2x an f-string)
        dt.year,
        dt.month,
        dt.day,
        dt.hour,
        dt.minute,
        dt.second,
        dt.microsecond // 1000,
    )


def normalize_timestamp(value: object) -> tuple[datetime, str] | None:
    """Parse ``value`` and give it with its stored form; None when it is not a timestamp.

    Saves the formatting step when the client already sent the stored form, which is what
    analytics.js, the mobile SDKs and most server libraries send.
    """
    parsed = parse_timestamp(value)
    if parsed is None:
        return None
    if isinstance(value, str) and _is_stored_form(value):
        return parsed, value
    return parsed, format_timestamp(parsed)


def _parse_lenient(value: str) -> datetime | None:
    match = _LENIENT.match(value)
    if match is None:
        return None
    (year, month, day, hour, minute, second, fraction, _zulu, sign, off_hours, off_minutes) = (
        match.groups()
    )
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    zone = UTC
    if sign is not None:
        offset = timedelta(hours=int(off_hours), minutes=int(off_minutes or 0))
        if offset >= timedelta(hours=24):
            return None
        zone = timezone(-offset if sign == "-" else offset)
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            micro,
            tzinfo=zone,
        )
    except ValueError:  # month 13, February 30th, hour 24, leap second 60, …
        return None
