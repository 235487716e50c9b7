"""Table, column and schema names as Segment's warehouses spell them.

Every collection (table) and property (column) name goes through ``snake_case``, a
re-implementation of the Go package ``github.com/segmentio/go-snakecase`` that Segment's
warehouses use, so that queries written against a Segment warehouse run unchanged here. Its
quirks are kept on purpose: only ASCII letters and digits survive (everything else, non-ASCII
included, separates words), an input already made of ``[a-z0-9]`` runs joined by single
underscores is returned as is, and a leading run without lowercase letters (or one that follows
the last underscore) is glued to the next capitalised word (``CStringRef`` → ``cstring_ref``).

On top of that each warehouse kind has a :class:`Naming`:

* **Redshift** (what Segment documents): a name that is a Redshift reserved word, or that starts
  with a digit, gets a ``_`` prefix (``open`` → ``_open``, ``101 Account Update`` →
  ``_101_account_update``), and names are cut at Redshift's 127-byte identifier limit.
* **PostgreSQL and DuckDB** keep plain snake_case. We assume loaders always double-quote
  identifiers, which makes keywords (``open``, ``user``) and leading digits legal there, so no
  prefix is needed; snake_case output is ASCII ``[a-z0-9_]`` and can never contain a quote.
  PostgreSQL silently truncates identifiers to 63 bytes, so its Naming cuts there itself: two
  long names that share their first 63 bytes become one column deterministically instead of
  failing ``CREATE TABLE`` with a duplicate column. DuckDB has no length limit of its own;
  its Naming cuts at 512 characters, the warehouses' string length, so that ``tracks.event``
  (a string, cut there) always names the event's table, even for a 1,000-character event.

An empty result (a name made only of punctuation or non-ASCII characters) is returned as ``""``
and callers drop it: no database accepts an empty identifier.

Names repeat across millions of events, so every step is cached in plain dicts (bounded so an
unbounded property space cannot grow them forever).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, Literal

Dialect = Literal["duckdb", "postgres", "redshift"]
DIALECTS: Final[tuple[Dialect, ...]] = ("duckdb", "postgres", "redshift")

# Tables Segment itself writes; an event whose snake_case name equals one of them gets a "_"
# prefix so it can never mix its rows (and columns) into the standard table.
STANDARD_TABLES: Final = frozenset(
    {"tracks", "identifies", "users", "pages", "screens", "groups", "accounts", "aliases"}
)

# Amazon Redshift's published reserved words (docs: "Reserved words", r_pg_keywords).
_REDSHIFT_WORDS: Final = """
aes128 aes256 all allowoverwrite analyse analyze and any array as asc authorization az64 backup
between binary blanksasnull both bytedict bzip2 case cast check collate column constraint create
credentials cross current_date current_time current_timestamp current_user current_user_id
default deferrable deflate defrag delta delta32k desc disable distinct do else emptyasnull enable
encode encrypt encryption end except explicit false for foreign freeze from full globaldict256
globaldict64k grant group gzip having identity ignore ilike in initially inner intersect interval
into is isnull join leading left like limit localtime localtimestamp lun luns lzo lzop minus
mostly16 mostly32 mostly8 natural new not notnull null nulls off offline offset oid old on only
open or order outer overlaps parallel partition percent permissions pivot placing primary raw
readratio recover references rejectlog resort respect restore right select session_user similar
snapshot some sysdate system table tag tdes text255 text32k then timestamp to top trailing true
truncatecolumns union unique unnest unpivot user using verbose wallet when where with without
"""
REDSHIFT_RESERVED: Final = frozenset(_REDSHIFT_WORDS.split())

REDSHIFT_MAX_BYTES: Final = 127  # "between 1 and 127 bytes in length"
POSTGRES_MAX_BYTES: Final = 63  # NAMEDATALEN - 1; longer identifiers are silently truncated
DUCKDB_MAX_BYTES: Final = 512  # the string length of ``tracks.event``, which names a table

_CACHE_LIMIT: Final = 100_000

# --- snake_case ------------------------------------------------------------------------------

# Already in the output form: returned unchanged (go-snakecase's no-copy fast path).
_is_snake = re.compile(r"(?:[a-z0-9]+(?:_[a-z0-9]+)*)?", re.ASCII).fullmatch
# The longest leading part go-snakecase keeps verbatim: lowercase letters and digits, with
# single underscores that sit between two of them.
_kept_prefix = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*", re.ASCII).match
# A word: a run of capitals/digits, then a run of lowercase letters/digits (either may be
# empty, not both). Everything between words is a separator.
_words = re.compile(r"[A-Z0-9]+[a-z0-9]*|[a-z0-9]+", re.ASCII)
_has_lower = re.compile(r"[a-z]", re.ASCII).search

_snake_cache: dict[str, str] = {}


def snake_case(name: str) -> str:
    """``name`` as go-snakecase spells it (``inviteYourCustomers`` → ``invite_your_customers``).

    Cached: a sync converts the same few hundred property names millions of times.
    """
    try:
        return _snake_cache[name]
    except KeyError:
        pass
    result = _snake_case(name)
    if len(_snake_cache) >= _CACHE_LIMIT:
        _snake_cache.clear()
    _snake_cache[name] = result
    return result


def _snake_case(name: str) -> str:
    if _is_snake(name):
        return name
    prefix_match = _kept_prefix(name)
    prefix = prefix_match.group() if prefix_match else ""
    rest = name[len(prefix) :]
    words = _words.findall(rest)
    if not prefix:
        return "_".join(words).lower()
    # go-snakecase glues the first capitalised word to a kept prefix that has no lowercase
    # letter at all ("123Abc" → "123abc"), or none since its last underscore ("a_1B" → "a_1b").
    if words and "A" <= rest[0] <= "Z" and not _has_lower(prefix[prefix.rfind("_") + 1 :]):
        prefix += words.pop(0).lower()
    if not words:
        return prefix
    return prefix + "_" + "_".join(words).lower()


# --- per-warehouse rules ---------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Naming:
    """How one kind of warehouse turns snake_case names into identifiers it accepts."""

    dialect: Dialect
    reserved: frozenset[str] = frozenset()  # words that get a "_" prefix
    prefix_digit: bool = False  # a name starting with a digit gets a "_" prefix
    max_bytes: int | None = None  # longer names are cut (names are ASCII: bytes == chars)
    _cache: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def plain(self) -> bool:
        """True when ``identifier`` never changes a snake_case name (a hot-path shortcut)."""
        return not self.reserved and not self.prefix_digit and self.max_bytes is None

    def identifier(self, snaked: str) -> str:
        """An already snake_cased name made acceptable to this warehouse."""
        cache = self._cache
        try:
            return cache[snaked]
        except KeyError:
            pass
        name = snaked
        if name and ((self.prefix_digit and name[0].isdigit()) or name in self.reserved):
            name = "_" + name
        if self.max_bytes is not None:
            name = name[: self.max_bytes]
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[snaked] = name
        return name

    def column(self, name: str) -> str:
        """A property or trait name (raw, as sent) as this warehouse's column name."""
        return self.identifier(snake_case(name))

    def table(self, name: str) -> str:
        """A collection name (raw, as sent) as this warehouse's table name."""
        return self.identifier(snake_case(name))

    def event_table(self, event: str) -> str:
        """The table of a track event; never one of Segment's standard tables (``Tracks`` →
        ``_tracks``: snake_case never starts with ``_``, so no other event can take it)."""
        snaked = snake_case(event)
        if snaked in STANDARD_TABLES:
            snaked = "_" + snaked
        return self.identifier(snaked)


DUCKDB: Final = Naming("duckdb", max_bytes=DUCKDB_MAX_BYTES)
POSTGRES: Final = Naming("postgres", max_bytes=POSTGRES_MAX_BYTES)
REDSHIFT: Final = Naming(
    "redshift", reserved=REDSHIFT_RESERVED, prefix_digit=True, max_bytes=REDSHIFT_MAX_BYTES
)
_NAMINGS: Final[dict[str, Naming]] = {"duckdb": DUCKDB, "postgres": POSTGRES, "redshift": REDSHIFT}


def naming_for(dialect: str) -> Naming:
    """The naming rules of a warehouse kind; unknown kinds are an error, not a silent default."""
    try:
        return _NAMINGS[dialect]
    except KeyError:
        raise ValueError(
            f"unknown warehouse dialect {dialect!r}; known: {', '.join(DIALECTS)}"
        ) from None


def redshift_column(name: str) -> str:
    """``open`` → ``_open``; ``1st Place`` → ``_1st_place``."""
    return REDSHIFT.column(name)


def redshift_table(name: str) -> str:
    """``101 Account Update`` → ``_101_account_update``."""
    return REDSHIFT.table(name)


# --- schema (source) names -------------------------------------------------------------------

SCHEMA_MAX_BYTES: Final = POSTGRES_MAX_BYTES  # the tightest of the supported warehouses
_valid_schema = re.compile(r"[a-z_][a-z0-9_]*", re.ASCII).fullmatch
# Schemas the databases or Headwater itself own (PostgreSQL reserves every "pg_" name; the
# Reverse ETL state schema is spelled both ways in Segment's docs).
_SYSTEM_SCHEMAS: Final = frozenset(
    {
        "information_schema",
        "pg_catalog",
        "pg_toast",
        "temp",
        "system",
        "_segment_reverse_etl",
        "__segment_reverse_etl",
    }
)


def default_schema_name(slug: str) -> str:
    """A source's schema when none is configured: its slug in snake_case, made a valid
    unquoted identifier everywhere (``_`` before a leading digit, ``source`` if nothing is
    left) so that hand-written SQL needs no quotes around it."""
    name = snake_case(slug)[:SCHEMA_MAX_BYTES]
    if not name:
        return "source"
    if name[0].isdigit():
        name = ("_" + name)[:SCHEMA_MAX_BYTES]
    return name


def check_schema_name(name: str) -> str:
    """``name`` when it can be a source's schema, else ValueError saying why.

    Segment: "lowercase, may include underscores". We also require a valid unquoted identifier
    (letter or ``_`` first, then letters, digits, ``_``) within 63 bytes, and refuse system
    schemas, which loaders must never create tables in or drop.
    """
    if not _valid_schema(name):
        raise ValueError(
            f"schema name {name!r} must be lowercase letters, digits and "
            "underscores, not starting with a digit"
        )
    if len(name) > SCHEMA_MAX_BYTES:
        raise ValueError(f"schema name {name!r} is longer than {SCHEMA_MAX_BYTES} characters")
    if name in _SYSTEM_SCHEMAS or name.startswith("pg_"):
        raise ValueError(f"schema name {name!r} is reserved for the database or Headwater")
    return name
