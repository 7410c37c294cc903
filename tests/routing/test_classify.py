"""Query classification: session pins and releases, databases, transaction control, read-only,
the pre-filter (answers only when it agrees with the parser), the statement cache and
fingerprints. Pure tests on strings; the parser is pglast, no server involved."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pglast import parser as pg_parser

from pgmux.routing import classify as classify_module
from pgmux.routing.classify import (
    ANY_PARAMETER,
    NO_EFFECT,
    RELEASED_BY,
    Classification,
    StatementCache,
    classify,
    deallocate_spans,
    fingerprint,
    prefilter,
)

DEEP = "SELECT 1 " + "+ 1 " * 1500  # a tree nested deeper than json.loads can read
PIN_REASONS = {
    "set", "set_role", "listen", "advisory_lock", "temp_table", "cursor_with_hold", "prepare",
    "load",
}  # fmt: skip


def pins(sql: str) -> tuple[str, ...]:
    return classify(sql).pins


# --- SET and friends ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "names"),
    [
        ("SET statement_timeout = 5", ("statement_timeout",)),
        ("SET SESSION statement_timeout TO 5", ("statement_timeout",)),
        ("set Search_Path to a, b", ("search_path",)),
        ('SET "My.Var" = 1', ("my.var",)),
        ("SET myext.opt = 'x'", ("myext.opt",)),
        ("SET TIME ZONE 'UTC'", ("timezone",)),
        ("SET NAMES 'UTF8'", ("client_encoding",)),
        ("SET DateStyle = ISO", ("datestyle",)),
        ("SET application_name = 'x'", ("application_name",)),
        ("SET work_mem TO DEFAULT", ("work_mem",)),
        ("RESET work_mem", ("work_mem",)),
        ("SET work_mem FROM CURRENT", ("work_mem",)),
        (
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY",
            ("default_transaction_isolation", "default_transaction_read_only"),
        ),
        ("sEt /* a comment */ sEaRcH_pAtH -- and another\n TO a", ("search_path",)),
        ("SET a.b = 1; SET a.b = 2; SET c.d = 3", ("a.b", "c.d")),
    ],
)
def test_session_set_pins_with_its_names(sql: str, names: tuple[str, ...]) -> None:
    result = classify(sql)
    assert result.pins == ("set",)
    assert result.set_names == names
    assert not result.parse_error


@pytest.mark.parametrize(
    "sql",
    [
        "SET LOCAL statement_timeout = 5",
        "SET LOCAL search_path TO a",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SET TRANSACTION READ ONLY",
        "SET TRANSACTION SNAPSHOT '00000003-0000001B-1'",
        "SET CONSTRAINTS ALL DEFERRED",
        "SET LOCAL ROLE admin",
        "SET LOCAL SESSION AUTHORIZATION bob",
        "SHOW search_path",
        "ALTER ROLE bob SET search_path = a",  # a default for later sessions, not this one
        "ALTER DATABASE app SET work_mem = '1MB'",
        "ALTER FUNCTION f() SET search_path = a",
        "SELECT 'SET search_path = a'",
        "UPDATE t SET a = 1",
    ],
)
def test_transaction_scoped_and_other_sets_do_not_pin(sql: str) -> None:
    result = classify(sql)
    assert result.pins == ()
    assert result.set_names == ()
    assert not result.parse_error


@pytest.mark.parametrize(
    "sql",
    [
        "SET ROLE admin",
        "SET SESSION ROLE admin",
        "SET ROLE NONE",
        "RESET ROLE",
        "SET SESSION AUTHORIZATION bob",
        "SET SESSION AUTHORIZATION DEFAULT",
        "RESET SESSION AUTHORIZATION",
        "SELECT set_config('role', 'admin', false)",
    ],
)
def test_role_changes_pin_set_role_not_set(sql: str) -> None:
    result = classify(sql)
    assert result.pins == ("set_role",)
    assert result.set_names == ()


def test_reset_all_pins_set_without_names_and_releases_reset_all() -> None:
    result = classify("RESET ALL")
    assert result.pins == ("set",)
    assert result.set_names == ()
    assert result.releases == ("reset_all",)


@pytest.mark.parametrize(
    ("sql", "names"),
    [
        ("SELECT set_config('TimeZone', 'UTC', false)", ("timezone",)),
        ("SELECT pg_catalog.set_config('a.b', 'x', false)", ("a.b",)),
        ("SELECT set_config('a.b', 'x', 'off')", ("a.b",)),
        ("SELECT set_config('a.b', 'x', NULL)", ("a.b",)),
        ("SELECT set_config('a.b', 'x', $1)", ("a.b",)),  # not a literal: assume session-wide
        ("SELECT set_config('a.b', 'x', flag) FROM t", ("a.b",)),
        ("SELECT set_config($1, $2, false)", (ANY_PARAMETER,)),
        ("SELECT set_config(name, 'x', false) FROM t", (ANY_PARAMETER,)),
        ("SELECT * FROM t WHERE set_config('a.b', 'x', false) IS NOT NULL", ("a.b",)),
        ("SELECT (SELECT set_config('a.b', 'x', false))", ("a.b",)),
        (
            "SELECT set_config(setting_name => 'a.b', new_value => 'x', is_local => false)",
            ("a.b",),
        ),
    ],
)
def test_set_config_not_local_pins(sql: str, names: tuple[str, ...]) -> None:
    result = classify(sql)
    assert result.pins == ("set",)
    assert result.set_names == names
    assert result.read_only is False


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT set_config('a.b', 'x', true)",
        "SELECT set_config('a.b', 'x', 'on')",
        "SELECT set_config('a.b', 'x', 'TRUE')",
        "SELECT set_config('a.b', 'x', true::boolean)",
        "SELECT set_config(setting_name => 'a.b', new_value => 'x', is_local => true)",
        "SELECT 'set_config(''a'', ''b'', false)'",
        "SELECT current_setting('a.b')",
    ],
)
def test_set_config_local_or_quoted_does_not_pin(sql: str) -> None:
    assert pins(sql) == ()


# --- the other pin reasons -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("LISTEN jobs", ("listen",)),
        ('LISTEN "Mixed Case"', ("listen",)),
        ("listen jobs; SELECT 1", ("listen",)),
        ("NOTIFY jobs", ()),
        ("SELECT pg_notify('jobs', 'x')", ()),
        ("UNLISTEN jobs", ()),
        ("SELECT $$LISTEN jobs$$", ()),
        ("SELECT $tag$ LISTEN jobs; $tag$", ()),
        ("SELECT 'LISTEN jobs'", ()),
        ("-- LISTEN jobs\nSELECT 1", ()),
        ("/* LISTEN jobs */ SELECT 1", ()),
        ('SELECT 1 AS "LISTEN"', ()),
    ],
)
def test_listen(sql: str, expected: tuple[str, ...]) -> None:
    assert pins(sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT pg_advisory_lock(1)",
        "SELECT pg_advisory_lock_shared(1, 2)",
        "SELECT pg_try_advisory_lock(1)",
        "select PG_TRY_ADVISORY_LOCK_SHARED(1)",
        "SELECT pg_catalog.pg_advisory_lock(1)",
        "SELECT * FROM pg_advisory_lock(1)",
        "SELECT id FROM jobs WHERE pg_try_advisory_lock(id) LIMIT 1",
        "WITH x AS (SELECT pg_advisory_lock(1)) SELECT * FROM x",
        "INSERT INTO t SELECT pg_advisory_lock(1)",
        'SELECT U&"pg_\\0061dvisory_lock"(1)',  # spelled with a Unicode escape
        pytest.param(DEEP + "+ pg_advisory_lock(1)", id="deeper than json.loads goes"),
    ],
)
def test_session_advisory_locks_pin(sql: str) -> None:
    result = classify(sql)
    assert result.pins == ("advisory_lock",)
    assert result.read_only is False


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT pg_advisory_xact_lock(1)",
        "SELECT pg_advisory_xact_lock_shared(1)",
        "SELECT pg_try_advisory_xact_lock(1)",
        "SELECT pg_try_advisory_xact_lock_shared(1)",
        "SELECT pg_advisory_unlock(1)",
        "SELECT 'pg_advisory_lock(1)'",
        "SELECT $$pg_advisory_lock(1)$$",
        "SELECT 1 -- pg_advisory_lock(1)",
        'SELECT "pg_advisory_lock(1)" FROM t',
        "CREATE FUNCTION f() RETURNS void LANGUAGE sql "
        "BEGIN ATOMIC SELECT pg_advisory_lock(1); END",
    ],
)
def test_transaction_advisory_locks_and_mentions_do_not_pin(sql: str) -> None:
    assert pins(sql) == ()
    assert not classify(sql).parse_error


def test_xact_advisory_lock_is_not_read_only() -> None:
    assert classify("SELECT pg_advisory_xact_lock(1)").read_only is False


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("CREATE TEMP TABLE t (a int)", ("temp_table",)),
        ("CREATE TEMPORARY TABLE IF NOT EXISTS t (a int)", ("temp_table",)),
        ("CREATE LOCAL TEMP TABLE t (a int)", ("temp_table",)),
        ("CREATE TEMP TABLE t (a int) ON COMMIT DELETE ROWS", ("temp_table",)),
        ("CREATE TEMP TABLE t (a int) ON COMMIT PRESERVE ROWS", ("temp_table",)),
        ("CREATE TEMP TABLE t (a int) ON COMMIT DROP", ()),
        ("CREATE TABLE pg_temp.t (a int)", ("temp_table",)),
        ("CREATE TEMP VIEW v AS SELECT 1", ("temp_table",)),
        ("CREATE TEMP SEQUENCE s", ("temp_table",)),
        ("CREATE TEMP TABLE t AS SELECT 1", ("temp_table",)),
        ("CREATE TEMP TABLE t ON COMMIT DROP AS SELECT 1", ()),
        ("SELECT 1 AS a INTO TEMP t", ("temp_table",)),
        ("SELECT * INTO TEMPORARY TABLE t FROM src", ("temp_table",)),
        ("SELECT * INTO pg_temp.t FROM src", ("temp_table",)),
        ("CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'", ("temp_table",)),
        ("CREATE TYPE pg_temp.pair AS (a int, b int)", ("temp_table",)),
        ("CREATE TABLE t (a int)", ()),
        ("CREATE UNLOGGED TABLE t (a int)", ()),
        ("SELECT * INTO t FROM src", ()),
        ("SELECT temperature FROM readings", ()),
        ("INSERT INTO templates (name) VALUES ('temp')", ()),
    ],
)
def test_temporary_objects(sql: str, expected: tuple[str, ...]) -> None:
    assert pins(sql) == expected


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", ("cursor_with_hold",)),
        ("DECLARE c SCROLL CURSOR WITH HOLD FOR SELECT * FROM t", ("cursor_with_hold",)),
        ("DECLARE c CURSOR FOR SELECT 1", ()),
        ("DECLARE c BINARY CURSOR WITHOUT HOLD FOR SELECT 1", ()),
        ("PREPARE q (int) AS SELECT $1", ("prepare",)),
        ("PREPARE TRANSACTION 'gid'", ()),
        ("EXECUTE q (1)", ()),
        ("LOAD 'auto_explain'", ("load",)),
    ],
)
def test_cursors_prepared_statements_and_load(sql: str, expected: tuple[str, ...]) -> None:
    assert pins(sql) == expected


def test_multi_statement_pins_in_first_seen_order_without_duplicates() -> None:
    result = classify(
        "SET a.b = 1; LISTEN x; SELECT pg_advisory_lock(1); SET LOCAL c.d = 2; LISTEN y; "
        "CREATE TEMP TABLE t (a int); DECLARE c CURSOR WITH HOLD FOR SELECT 1; PREPARE p AS "
        "SELECT 1; LOAD 'x'; SET ROLE r"
    )
    assert result.pins == (
        "set", "listen", "advisory_lock", "temp_table", "cursor_with_hold", "prepare", "load",
        "set_role",
    )  # fmt: skip
    assert result.set_names == ("a.b",)


def test_a_pin_is_reported_even_when_released_later_in_the_text() -> None:
    # Over-pinning is safe; the caller applies releases first, then pins.
    result = classify("LISTEN x; UNLISTEN *")
    assert result.pins == ("listen",)
    assert result.releases == ("unlisten_all",)


# --- releases ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "releases"),
    [
        ("UNLISTEN *", ("unlisten_all",)),
        ("SELECT pg_advisory_unlock_all()", ("advisory_unlock_all",)),
        ("DISCARD ALL", ("discard_all",)),
        ("DISCARD TEMP", ("discard_temp",)),
        ("DISCARD TEMPORARY", ("discard_temp",)),
        ("DEALLOCATE ALL", ("deallocate_all",)),
        ("DEALLOCATE PREPARE ALL", ("deallocate_all",)),
        ("CLOSE ALL", ("close_all",)),
        ("RESET ALL", ("reset_all",)),
        ("UNLISTEN *; CLOSE ALL; DEALLOCATE ALL", ("unlisten_all", "close_all", "deallocate_all")),
        ("DISCARD PLANS", ()),
        ("DISCARD SEQUENCES", ()),
        ("UNLISTEN jobs", ()),
        ("CLOSE c", ()),
        ("DEALLOCATE q", ()),
        ("SELECT pg_advisory_unlock(1)", ()),
        ("SELECT 'DISCARD ALL'", ()),
    ],
)
def test_releases(sql: str, releases: tuple[str, ...]) -> None:
    assert classify(sql).releases == releases


@pytest.mark.parametrize(
    ("sql", "names"),
    [
        ("DEALLOCATE q", ("q",)),
        ("DEALLOCATE PREPARE q", ("q",)),
        ('DEALLOCATE "MyStmt"', ("MyStmt",)),
        ("DEALLOCATE a; DEALLOCATE b; DEALLOCATE a", ("a", "b")),
        ("DEALLOCATE ALL", ()),
    ],
)
def test_deallocate_names(sql: str, names: tuple[str, ...]) -> None:
    assert classify(sql).deallocate == names


def test_released_by_covers_every_release_and_pin() -> None:
    releases = {
        name
        for sql in ("UNLISTEN *", "DISCARD ALL", "DISCARD TEMP", "DEALLOCATE ALL", "CLOSE ALL")
        for name in classify(sql).releases
    }
    releases |= {"advisory_unlock_all", "reset_all"}
    assert set(RELEASED_BY) == releases
    assert set().union(*RELEASED_BY.values()) <= PIN_REASONS
    # DISCARD ALL drops every kind of session state except a loaded library.
    assert RELEASED_BY["discard_all"] == PIN_REASONS - {"load"}
    assert RELEASED_BY["reset_all"] == {"set"}  # role is not reset by RESET ALL


# --- databases ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "names", "force"),
    [
        ("DROP DATABASE app", ("app",), False),
        ("drop database IF EXISTS App", ("app",), False),
        ('DROP DATABASE IF EXISTS "Mixed Case" WITH (FORCE)', ("Mixed Case",), True),
        ("DROP DATABASE app (FORCE)", ("app",), True),
        ("DROP DATABASE a; DROP DATABASE b", ("a", "b"), False),
        ("DROP TABLE app", (), False),
        ("SELECT 'DROP DATABASE app'", (), False),
    ],
)
def test_drop_database(sql: str, names: tuple[str, ...], force: bool) -> None:
    result = classify(sql)
    assert result.drop_databases == names
    assert result.force_drop is force


@pytest.mark.parametrize(
    ("sql", "templates"),
    [
        ("CREATE DATABASE copy TEMPLATE tpl", ("tpl",)),
        ('CREATE DATABASE copy WITH TEMPLATE = "Tpl" OWNER bob', ("Tpl",)),
        ("CREATE DATABASE copy TEMPLATE = 'quoted'", ("quoted",)),
        ("CREATE DATABASE copy OWNER bob TEMPLATE template0 ENCODING 'UTF8'", ("template0",)),
        ("CREATE DATABASE copy TEMPLATE DEFAULT", ()),
        ("CREATE DATABASE plain", ()),
    ],
)
def test_create_database_templates(sql: str, templates: tuple[str, ...]) -> None:
    assert classify(sql).create_from_templates == templates


# --- transactions, read-only, types, errors ------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "control", "starts"),
    [
        ("BEGIN", True, True),
        ("begin isolation level serializable, read only", True, True),
        ("START TRANSACTION", True, True),
        ("COMMIT", True, False),
        ("END", True, False),
        ("ROLLBACK", True, False),
        ("ABORT", True, False),
        ("SAVEPOINT s1", True, False),
        ('RELEASE SAVEPOINT "s1_x"', True, False),
        ("ROLLBACK TO SAVEPOINT s1", True, False),
        ("COMMIT PREPARED 'gid'", True, False),
        ("COMMIT AND CHAIN", True, True),
        ("BEGIN; SELECT 1; COMMIT", True, True),
        ("SELECT 1", False, False),
        ("SELECT 'BEGIN'", False, False),
    ],
)
def test_transaction_control(sql: str, control: bool, starts: bool) -> None:
    result = classify(sql)
    assert (result.is_transaction_control, result.starts_transaction) == (control, starts)


@pytest.mark.parametrize(
    ("sql", "read_only"),
    [
        ("SELECT * FROM t WHERE a = 1", True),
        ("select count(*), lower(name) from t group by 2", True),
        ("VALUES (1), (2)", True),
        ("TABLE t", True),
        ("WITH x AS (SELECT 1) SELECT * FROM x", True),
        ("SELECT 1 UNION SELECT 2", True),
        ("SELECT 1; SELECT 2", True),
        ("SELECT * FROM t FOR UPDATE", False),
        ("SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED", False),
        ("SELECT * FROM t FOR SHARE", False),
        ("SELECT * FROM (SELECT * FROM t FOR KEY SHARE) s", False),
        ("SELECT nextval('s')", False),
        ("SELECT setval('s', 1)", False),
        ("SELECT lo_create(0)", False),
        ("SELECT txid_current()", False),
        ("SELECT pg_advisory_xact_lock(1)", False),
        ("WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", False),
        ("WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x", False),
        ("SELECT * INTO t2 FROM t", False),
        ("INSERT INTO t VALUES (1)", False),
        ("UPDATE t SET a = 1", False),
        ("DELETE FROM t", False),
        ("MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE", False),
        ("SELECT 1; INSERT INTO t VALUES (1)", False),
        ("BEGIN", False),
        ("SHOW work_mem", False),
        ("EXPLAIN SELECT 1", False),
        ("", None),
        ("-- nothing", None),
        ("SELEC 1", None),
    ],
)
def test_read_only(sql: str, read_only: bool | None) -> None:
    assert classify(sql).read_only is read_only


def test_statement_types_are_pglast_node_names_in_order() -> None:
    result = classify("SELECT 1; INSERT INTO t VALUES (1); SET a.b = 1; BEGIN; LISTEN x")
    assert result.statement_types == (
        "SelectStmt", "InsertStmt", "VariableSetStmt", "TransactionStmt", "ListenStmt",
    )  # fmt: skip


@pytest.mark.parametrize(
    "sql",
    ["SELEC 1", "SET", "'unterminated", "SELECT 1; SET x =", "SET x = 1; SELEC 1", "\ud800"],
)
def test_unparseable_text_has_no_effects(sql: str) -> None:
    # PostgreSQL parses the whole text before running any of it, so nothing runs.
    assert classify(sql) == Classification(parse_error=True)


def test_text_ends_at_the_first_nul() -> None:
    assert pins("SET a.b = 1\x00garbage") == ("set",)
    assert pins("SELECT 1\x00SET a.b = 1") == ()


def test_classify_is_pure_and_shares_equal_results() -> None:
    assert classify("SELECT 1") is classify("SELECT 2")
    assert classify("") is NO_EFFECT


@given(st.text(max_size=200))
@settings(max_examples=200, deadline=None)
def test_never_raises_on_any_text(sql: str) -> None:
    result = classify(sql)
    assert isinstance(result, Classification)
    shortcut = prefilter(sql)
    assert shortcut is None or not shortcut.pins
    assert len(fingerprint(sql)) == 16


# --- the pre-filter ----------------------------------------------------------------------------

ORM_QUERIES = [
    'SELECT "auth_user"."id", "auth_user"."password" FROM "auth_user" WHERE '
    '"auth_user"."username" = $1 LIMIT 21',
    'SELECT COUNT(*) AS "__count" FROM "app_item" WHERE ("app_item"."owner_id" = 7 AND '
    "\"app_item\".\"name\"::text LIKE '%O''Brien%')",
    'INSERT INTO "app_item" ("name", "created") VALUES ($1, $2) RETURNING "app_item"."id"',
    "INSERT INTO items (name) VALUES ('a') ON CONFLICT (name) DO UPDATE SET hits = 1",
    'UPDATE "app_item" SET "name" = $1 WHERE "app_item"."id" = $2',
    'DELETE FROM "app_item" WHERE "app_item"."id" IN (1, 2, 3)',
    "WITH recent AS (SELECT * FROM events ORDER BY ts DESC LIMIT 10) SELECT * FROM recent",
    "BEGIN",
    "BEGIN ISOLATION LEVEL READ COMMITTED",
    "START TRANSACTION",
    "COMMIT",
    "ROLLBACK",
    'SAVEPOINT "s140234_x1"',
    'RELEASE SAVEPOINT "s140234_x1"',
    'ROLLBACK TO SAVEPOINT "s140234_x1"',
    "SELECT 1; SELECT 2;",
    "/* controller='index',framework='django' */ SELECT * FROM t",
    "-- leading comment\nSELECT * FROM t",
    "SELECT * FROM t\n",
    "VALUES (1)",
    "",
    "  ;  ",
]

NEEDS_PARSER = [
    "SET search_path = a",
    "LISTEN x",
    "SELECT pg_advisory_lock(1)",
    "SELECT pg_advisory_xact_lock(1)",
    "SELECT set_config('a.b', 'x', false)",
    "SELECT * INTO TEMP t FROM src",
    "CREATE TEMP TABLE t (a int)",
    "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
    "WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x",
    "SELECT * FROM t FOR UPDATE",
    "SELECT nextval('s')",
    "SELECT x.lo_unlink(1)",
    "COMMIT AND CHAIN",
    "SELECT 'pg_advisory_lock('",
    'SELECT U&"pg_\\0061dvisory_lock"(1)',
    "/* /* nested */ SELECT */ SET search_path = a",
    "--c\rSET search_path = a",  # a comment ends at a carriage return too
    "SELECT 1; SET a.b = 1",
    "SELECT ';'; SET a.b = 1",
    "SELECT 1 /* ; */; LISTEN x",
    "(SELECT 1)",
    "SELECT\u00a0pg_sleep(1)",
    "DO $$BEGIN PERFORM 1; END$$",
    "DISCARD ALL",
    "DROP DATABASE app",
]


@pytest.fixture
def parser_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Records every text the classifier hands to pglast."""
    calls: list[str] = []
    real: Callable[[str], str] = pg_parser.parse_sql_json

    def spy(sql: str) -> str:
        calls.append(sql)
        return real(sql)

    monkeypatch.setattr(pg_parser, "parse_sql_json", spy)  # the module pgmux calls through
    yield calls


@pytest.mark.parametrize("sql", ORM_QUERIES)
def test_prefilter_answers_typical_queries_without_pglast(
    sql: str, parser_calls: list[str]
) -> None:
    result = StatementCache().lookup(sql)
    assert parser_calls == []
    assert result == classify(sql)  # and answers what the parser would
    assert result.pins == ()


@pytest.mark.parametrize("sql", NEEDS_PARSER)
def test_prefilter_sends_texts_with_possible_effects_to_pglast(
    sql: str, parser_calls: list[str]
) -> None:
    assert prefilter(sql) is None
    StatementCache().lookup(sql)
    assert len(parser_calls) == 1


def test_a_quoted_lock_call_goes_to_pglast_which_finds_no_pin(parser_calls: list[str]) -> None:
    result = StatementCache().lookup("SELECT 'pg_advisory_lock(1)'")
    assert parser_calls == ["SELECT 'pg_advisory_lock(1)'"]
    assert result.pins == ()
    assert result.read_only is True


def test_prefilter_returns_shared_results() -> None:
    assert prefilter("SELECT * FROM a") is prefilter("select * from b where c = 1")
    assert prefilter("BEGIN") is prefilter("START TRANSACTION")
    assert prefilter("-- nothing") is NO_EFFECT


FRAGMENTS = [
    "SELECT", "select", "INSERT INTO t VALUES (1)", "UPDATE t SET a = 1", "DELETE FROM t",
    "BEGIN", "COMMIT", "ROLLBACK", "END", "SAVEPOINT s", "RELEASE s", "START TRANSACTION",
    "WITH x AS (SELECT 1) SELECT * FROM x", "VALUES (1)", "TABLE t", "1", "a", "*", "FROM t",
    "WHERE a = 1", "'x;y'", "'it''s'", "$$ LISTEN $$", "$1", '"q;"', "-- c\n", "/* c */",
    "/* /* */", "*/", ";", " ", "\n", "\r", "(", ")", ",", "FOR UPDATE", "FOR SHARE",
    "INTO TEMP t", "INTO t", "nextval('s')", "lo_unlink(1)", "pg_advisory_lock(1)",
    "set_config('a', 'b', false)", "SET x = 1", "LISTEN c", "RETURNING *", "AND CHAIN",
    "temp", "UNION", "DECLARE c CURSOR WITH HOLD FOR", "DISCARD ALL", "U&\"x\"",
]  # fmt: skip


@given(st.lists(st.sampled_from(FRAGMENTS), max_size=12))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_prefilter_agrees_with_the_parser(fragments: list[str]) -> None:
    sql = " ".join(fragments)
    shortcut = prefilter(sql)
    if shortcut is None:
        return
    full = classify(sql)
    if not full.parse_error:  # for text PostgreSQL rejects, any answer is harmless
        assert shortcut == full, sql
    assert full.pins == full.releases == ()


STATEMENTS = [
    "SELECT * FROM t WHERE a = 1", "select 1", "INSERT INTO t VALUES (1)", "UPDATE t SET a = 1",
    "DELETE FROM t", "BEGIN", "commit", "ROLLBACK", "SAVEPOINT s", "RELEASE SAVEPOINT s", "END",
    "START TRANSACTION READ ONLY", "ABORT", "WITH x AS (SELECT 1) SELECT * FROM x", "VALUES (1)",
    "TABLE t", "SELECT * FROM t FOR UPDATE", "SELECT nextval('s')", "SELECT 1 INTO t",
    "SET a.b = 1", "LISTEN x", "COMMIT AND CHAIN", "SELECT 'a;b'", "SELECT $$x$$",
    "/* c */ SELECT 1", "-- c\nSELECT 1", "", " ",
]  # fmt: skip


@given(
    st.lists(st.sampled_from(STATEMENTS), max_size=5),
    st.sampled_from([";", "; ", ";\n", " ;; "]),
    st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_prefilter_agrees_with_the_parser_on_statement_lists(
    statements: list[str], separator: str, upper: bool
) -> None:
    sql = separator.join(statements)
    sql = sql.upper() if upper else sql
    shortcut = prefilter(sql)
    if shortcut is not None:
        assert shortcut == classify(sql), sql


# --- the cache -----------------------------------------------------------------------------------


def test_cache_returns_the_same_object_for_a_repeated_text() -> None:
    cache = StatementCache()
    first = cache.lookup("SET search_path = a")
    assert cache.lookup("SET search_path = a") is first
    assert cache.lookup(b"SET search_path = a") == first  # bytes and str are separate keys
    assert cache.lookup(b"SET search_path = a") is cache.lookup(b"SET search_path = a")
    assert (cache.hits, cache.misses, cache.parses) == (3, 2, 2)


def test_cache_does_not_parse_a_text_twice(parser_calls: list[str]) -> None:
    cache = StatementCache()
    for _ in range(3):
        cache.lookup("LISTEN x")
    assert len(parser_calls) == 1


def test_cache_evicts_the_least_recently_used_beyond_max_entries() -> None:
    cache = StatementCache(max_entries=3)
    for sql in ("LISTEN a", "LISTEN b", "LISTEN c"):
        cache.lookup(sql)
    cache.lookup("LISTEN a")  # now b is the oldest
    cache.lookup("LISTEN d")
    assert len(cache) == 3
    misses = cache.misses
    cache.lookup("LISTEN a")
    assert cache.misses == misses
    cache.lookup("LISTEN b")
    assert cache.misses == misses + 1


def test_cache_stays_bounded() -> None:
    cache = StatementCache(max_entries=100, max_size=1 << 20)
    for i in range(1000):
        cache.lookup(f"SELECT {i}")
        cache.lookup(f"SET a.b = {i}".encode())
    assert len(cache) == 100


def test_cache_bounds_the_size_of_the_texts_it_keeps() -> None:
    cache = StatementCache(max_size=16 * 1024)
    big = "SELECT '" + "x" * 2000 + "'"  # over a sixteenth of max_size: not kept
    assert cache.lookup(big) == classify(big)
    assert len(cache) == 0
    for i in range(100):
        cache.lookup(f"SELECT '{i:0900}'")
    assert 0 < len(cache) <= 16 * 1024 // 900


@given(st.binary(max_size=100))
@settings(max_examples=100, deadline=None)
def test_cache_never_raises_on_any_bytes(sql: bytes) -> None:
    assert isinstance(StatementCache().lookup(sql), Classification)


# --- fingerprints ---------------------------------------------------------------------------------


def test_fingerprint_ignores_constants_case_and_whitespace() -> None:
    a = fingerprint("SELECT * FROM t WHERE a = 1")
    assert a == fingerprint("select *\n  from t where a = 42")
    assert a == pg_parser.fingerprint("SELECT * FROM t WHERE a = 1")
    assert a != fingerprint("SELECT * FROM u WHERE a = 1")


def test_fingerprint_of_unparseable_text_hashes_its_words() -> None:
    a = fingerprint("SELEC  1")
    assert a == fingerprint("  SELEC 1\n")
    assert a != fingerprint("SELEC 2")
    assert len(a) == 16
    int(a, 16)


# --- the deep-tree fallback ------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'it''s', E'back\\\\slash \\n', 'ü€😀', \"q\"\"uote\" FROM t WHERE a = -1.5e3",
        "SET a.b = 1; LISTEN x; CREATE TEMP TABLE t (a int[]) ON COMMIT DROP",
    ],
)
def test_deep_json_reader_matches_json_loads(sql: str) -> None:
    text = pg_parser.parse_sql_json(sql)
    assert classify_module._loads_deep(text) == json.loads(text)


def test_deep_trees_are_read_without_recursion(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = classify_module._loads_deep

    def spy(text: str) -> object:
        calls.append(text)
        return real(text)

    monkeypatch.setattr(classify_module, "_loads_deep", spy)
    sql = DEEP + "+ length(set_config('a\"b.c', 'x', false))"
    assert classify(sql).set_names == ('a"b.c',)
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("sql", "statements"),
    [
        (b"SELECT 1; DEALLOCATE s", [b"DEALLOCATE s"]),
        (
            b'DEALLOCATE "a;b"; SELECT 2; deallocate prepare t',
            [b'DEALLOCATE "a;b"', b"deallocate prepare t"],
        ),
        ("SELECT 'é'; DEALLOCATE s".encode(), [b"DEALLOCATE s"]),  # offsets count bytes
        (b"SELECT 1; DEALLOCATE ALL", []),
        (b"SELECT 1", []),
        (b"SELECT (; DEALLOCATE s", []),  # PostgreSQL rejects the whole text
        (b"SELECT '\xff'; DEALLOCATE s", []),  # not UTF-8: no byte offsets to trust
    ],
)
def test_deallocate_spans_are_the_byte_ranges_of_each_named_deallocate(
    sql: bytes, statements: list[bytes]
) -> None:
    assert [sql[start:end] for start, end in deallocate_spans(sql)] == statements
