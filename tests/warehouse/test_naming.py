"""Segment's warehouse names: go-snakecase, Redshift's rules, schema names (spec §12.1, AC-130,
AC-131)."""

from __future__ import annotations

import random

import pytest

from headwater.warehouse.naming import (
    DUCKDB,
    POSTGRES,
    REDSHIFT,
    REDSHIFT_RESERVED,
    check_schema_name,
    default_schema_name,
    naming_for,
    redshift_column,
    redshift_table,
    snake_case,
)

# §12.1's reference vectors, which are go-snakecase's own test table, plus its later
# "CStringRef" case and the examples of Segment's schema docs.
VECTORS = [
    ("sample text", "sample_text"),
    ("sample-text", "sample_text"),
    ("sample_text", "sample_text"),
    ("sample___text", "sample_text"),
    ("sampleText", "sample_text"),
    ("inviteYourCustomersAddInvites", "invite_your_customers_add_invites"),
    ("sample 2 Text", "sample_2_text"),
    ("   sample   2    Text   ", "sample_2_text"),
    ("   $#$sample   2    Text   ", "sample_2_text"),
    ("SAMPLE 2 TEXT", "sample_2_text"),
    ("___$$Base64Encode", "base64_encode"),
    ("FOO:BAR$BAZ", "foo_bar_baz"),
    ("FOO#BAR#BAZ", "foo_bar_baz"),
    ("something.com", "something_com"),
    ("$something%", "something"),
    ("•¶§ƒ˚foo˙∆˚¬", "foo"),
    ("CStringRef", "cstring_ref"),
    # Segment's docs
    ("accountType", "account_type"),
    ("Signed Up", "signed_up"),
    ("Completed Order", "completed_order"),
    ("Clocked In", "clocked_in"),
    ("total billed", "total_billed"),
    ("field_nestedA_nestedB", "field_nested_a_nested_b"),
    ("Register", "register"),
    ("101 Account Update", "101_account_update"),
]


@pytest.mark.parametrize(("name", "expected"), VECTORS)
def test_snake_case_vectors(name: str, expected: str) -> None:
    assert snake_case(name) == expected
    assert snake_case(name) == expected  # cached the second time, same answer


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("", ""),
        ("$$$", ""),
        ("_", ""),
        ("a", "a"),
        ("A", "a"),
        ("ABC", "abc"),
        ("userId", "user_id"),
        ("user_id", "user_id"),
        ("_user_id", "user_id"),
        ("user_id_", "user_id"),
        ("HTTPServer", "httpserver"),  # an all-capital run keeps its next word (go-snakecase)
        ("getHTTPResponse", "get_httpresponse"),
        ("123Abc", "123abc"),  # a prefix with no lowercase is glued to the next word
        ("a_1B", "a_1b"),  # ... as is one with none since its last underscore
        ("a_bC", "a_b_c"),
        ("product_id.sku", "product_id_sku"),
        ("éclair Größe", "clair_gr_e"),  # non-ASCII letters are separators, as in Go's bytes
    ],
)
def test_snake_case_edges(name: str, expected: str) -> None:
    assert snake_case(name) == expected


def _reference(s: str) -> str:
    """go-snakecase as a byte-by-byte state machine, kept apart from the regex version so the
    two can check each other. Non-ASCII characters act as Go's multi-byte separators."""

    def lower(c: str) -> bool:
        return "a" <= c <= "z"

    def upper(c: str) -> bool:
        return "A" <= c <= "Z"

    def digit(c: str) -> bool:
        return "0" <= c <= "9"

    i, n = 0, len(s)
    saw_lower = saw_underscore = lower_after_underscore = False
    while i < n:
        c = s[i]
        if lower(c):
            saw_lower = True
            lower_after_underscore = lower_after_underscore or saw_underscore
        elif digit(c):
            pass
        elif c == "_" and 0 < i < n - 1 and (lower(s[i + 1]) or digit(s[i + 1])):
            saw_underscore, lower_after_underscore = True, False
        else:
            break
        i += 1
    if i == n:
        return s
    out = list(s[:i])

    def word() -> None:
        nonlocal i
        while i < n and (upper(s[i]) or digit(s[i])):
            out.append(s[i].lower())
            i += 1
        while i < n and (lower(s[i]) or digit(s[i])):
            out.append(s[i])
            i += 1

    if upper(s[i]) and (not saw_lower or (saw_underscore and not lower_after_underscore)):
        word()
    while i < n:
        if not (lower(s[i]) or upper(s[i]) or digit(s[i])):
            i += 1
            continue
        if out:
            out.append("_")
        word()
    return "".join(out)


def test_reference_agrees_with_the_vectors() -> None:
    for name, expected in VECTORS:
        assert _reference(name) == expected


def test_snake_case_matches_the_reference_on_random_names() -> None:
    rng = random.Random(20240601)
    alphabet = "aAbBzZ09_ _-.$é•"
    for _ in range(20_000):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
        assert snake_case(name) == _reference(name), name


def test_snake_case_output_is_always_a_plain_identifier_body() -> None:
    rng = random.Random(7)
    for _ in range(2_000):
        name = "".join(chr(rng.randint(32, 0x2FF)) for _ in range(rng.randint(0, 12)))
        out = snake_case(name)
        assert out == snake_case(out)  # idempotent
        assert all(c.isascii() and (c.islower() or c.isdigit() or c == "_") for c in out)
        assert not out.startswith("_") and not out.endswith("_") and "__" not in out


# --- Redshift (AC-131) -------------------------------------------------------------------------


def test_redshift_examples() -> None:
    assert redshift_column("open") == "_open"
    assert redshift_table("101 Account Update") == "_101_account_update"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Open", "_open"),
        ("user", "_user"),
        ("select", "_select"),
        ("timestamp", "_timestamp"),
        ("current_date", "_current_date"),
        ("currentDate", "_current_date"),
        ("1st Place", "_1st_place"),
        ("plan", "plan"),
        ("opened", "opened"),
        ("account_type", "account_type"),
        ("$$", ""),
    ],
)
def test_redshift_columns(name: str, expected: str) -> None:
    assert redshift_column(name) == expected


def test_redshift_reserved_words_are_the_published_list() -> None:
    assert len(REDSHIFT_RESERVED) == 156  # AWS "Reserved words" page
    assert {"open", "user", "timestamp", "tag", "wallet", "without", "az64"} <= REDSHIFT_RESERVED
    assert all(w == w.lower() for w in REDSHIFT_RESERVED)


def test_identifier_length_limits() -> None:
    long = "a" * 300
    assert len(REDSHIFT.column(long)) == 127
    assert len(POSTGRES.column(long)) == 63
    assert DUCKDB.column(long) == long
    # DuckDB takes any length, but tracks.event (a string cut at 512) must name the table.
    assert DUCKDB.event_table("x" * 1000) == "x" * 512
    assert len(REDSHIFT.table("9" + "b" * 200)) == 127
    assert REDSHIFT.table("9" + "b" * 200).startswith("_9b")


def test_postgres_and_duckdb_keep_plain_snake_case() -> None:
    # Loaders double-quote identifiers, so keywords and leading digits are legal there.
    for naming in (DUCKDB, POSTGRES):
        assert naming.column("open") == "open"
        assert naming.table("101 Account Update") == "101_account_update"
        assert naming.column("user") == "user"


def test_naming_for() -> None:
    assert naming_for("redshift") is REDSHIFT
    assert naming_for("postgres") is POSTGRES
    assert naming_for("duckdb") is DUCKDB
    with pytest.raises(ValueError, match="unknown warehouse dialect"):
        naming_for("snowflake")


@pytest.mark.parametrize(
    ("event", "duckdb", "redshift"),
    [
        ("Order Completed", "order_completed", "order_completed"),
        ("Tracks", "_tracks", "_tracks"),
        ("users", "_users", "_users"),
        ("Identifies", "_identifies", "_identifies"),
        ("Pages", "_pages", "_pages"),
        ("screens", "_screens", "_screens"),
        ("Groups", "_groups", "_groups"),
        ("accounts", "_accounts", "_accounts"),
        ("Aliases", "_aliases", "_aliases"),
        ("Track", "track", "track"),
        ("Open", "open", "_open"),
        ("101 Account Update", "101_account_update", "_101_account_update"),
        ("???", "", ""),
    ],
)
def test_event_tables_never_collide_with_standard_tables(
    event: str, duckdb: str, redshift: str
) -> None:
    assert DUCKDB.event_table(event) == duckdb
    assert REDSHIFT.event_table(event) == redshift


# --- schema names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slug", "expected"),
    [
        ("segment-engineering", "segment_engineering"),
        ("iOS Prod", "i_os_prod"),
        ("initech", "initech"),
        ("web_app", "web_app"),
        ("1st-source", "_1st_source"),
        ("---", "source"),
    ],
)
def test_default_schema_name(slug: str, expected: str) -> None:
    assert default_schema_name(slug) == expected
    assert check_schema_name(default_schema_name(slug)) == expected


@pytest.mark.parametrize("name", ["segment_engineering", "ios_prod", "_1st", "a", "a" * 63])
def test_valid_schema_names(name: str) -> None:
    assert check_schema_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "lowercase"),
        ("Prod", "lowercase"),
        ("ios-prod", "lowercase"),
        ("1st", "digit"),
        ("my schema", "lowercase"),
        ("a" * 64, "longer than 63"),
        ("pg_data", "reserved"),
        ("information_schema", "reserved"),
        ("__segment_reverse_etl", "reserved"),
    ],
)
def test_invalid_schema_names(name: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_schema_name(name)
