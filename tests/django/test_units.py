"""Pure parts of pgmux.django and the demo, tested in-process (Django is never configured)."""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace
from typing import Any

import pytest

from pgmux.demo.load import LoadResult, _response, shop_mix
from pgmux.demo.report import Row, percentile, render_table
from pgmux.django import database, scope
from pgmux.django.database import SettingsError, parse_url
from pgmux.django.iniconfig import IniOptions, plan, render, render_userlist
from pgmux.django.status import format_table
from pgmux.django.tagging import comment_for, tag_queries


def test_database_from_url_has_pooling_settings() -> None:
    entry = database("postgres://u%40x:p%2Fw@db.local/shop?sslmode=disable")
    assert entry["ENGINE"] == "django.db.backends.postgresql"
    assert (entry["NAME"], entry["USER"], entry["PASSWORD"]) == ("shop", "u@x", "p/w")
    assert (entry["HOST"], entry["PORT"]) == ("db.local", 6432)  # pgmux's port by default
    assert entry["DISABLE_SERVER_SIDE_CURSORS"] is True
    assert (entry["CONN_MAX_AGE"], entry["CONN_HEALTH_CHECKS"]) == (60, True)
    assert entry["OPTIONS"]["sslmode"] == "disable"
    assert entry["OPTIONS"]["connect_timeout"] == 5
    assert "application_name" in entry["OPTIONS"]
    assert "pool" not in entry["OPTIONS"]
    assert entry["PGMUX"] == {
        "POOL_MODE": "transaction",
        "REPLICA": False,
        "ADMIN_DATABASE": "pgmux",
    }


def test_database_from_a_direct_entry_and_session_mode() -> None:
    direct = {
        "ENGINE": "x",
        "NAME": "shop",
        "USER": "u",
        "HOST": "10.0.0.5",
        "PORT": 5432,
        "OPTIONS": {"application_name": "web"},
        "ATOMIC_REQUESTS": True,
    }
    entry = database(
        direct, host="127.0.0.1", port=6432, pool_mode="session", conn_max_age=0, replica=True
    )
    assert (entry["HOST"], entry["PORT"], entry["ATOMIC_REQUESTS"]) == ("127.0.0.1", 6432, True)
    assert entry["DISABLE_SERVER_SIDE_CURSORS"] is False
    assert entry["OPTIONS"]["application_name"] == "web"
    assert entry["CONN_MAX_AGE"] == 0 and entry["PGMUX"]["REPLICA"] is True
    assert direct["OPTIONS"] == {"application_name": "web"}  # the input is not modified


def test_database_rejects_bad_input() -> None:
    with pytest.raises(SettingsError, match="pool_mode"):
        database("postgres://h/db", pool_mode="txn")
    with pytest.raises(SettingsError, match="scheme"):
        parse_url("mysql://h/db")
    with pytest.raises(SettingsError, match="database name"):
        parse_url("postgres://h:6432")
    assert parse_url("postgres://u@%2Frun%2Fpgmux:6432/db")["HOST"] == "/run/pgmux"


def test_ini_plan_renames_clashing_names_and_skips_pooled() -> None:
    databases = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "app",
            "USER": "u",
            "PASSWORD": 'p"w',
            "HOST": "10.0.0.1",
            "PORT": 5432,
        },
        "replica": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "app",
            "USER": "u",
            "HOST": "10.0.0.2",
            "PORT": 5432,
        },
        "pooled": {"ENGINE": "django.db.backends.postgresql", "NAME": "x", "PGMUX": {}},
        "legacy": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"},
    }
    result = plan(databases)
    assert result.databases == {
        "app": ("default", "host=10.0.0.1 port=5432 dbname=app"),
        "app_replica": ("replica", "host=10.0.0.2 port=5432 dbname=app"),
    }
    text = render(result, IniOptions())
    assert "* = host=10.0.0.1 port=5432" in text
    assert "admin_users = u" in text
    assert "{**DATABASES['replica'], 'NAME': 'app_replica'}" in text
    assert "; skipped pooled: already goes through pgmux" in text
    assert render_userlist(result) == '"u" "p""w"\n'


def _request(route: str, view: str) -> Any:
    match = SimpleNamespace(route=route, view_name=view, _func_path="shop.views.f")
    return SimpleNamespace(resolver_match=match)


def test_sqlcommenter_comment() -> None:
    assert comment_for(SimpleNamespace(resolver_match=None)) is None
    comment = comment_for(_request("products/<int:pk>/", "it's"))
    assert comment == "/*route='products/%3Cint:pk%3E/',view='it%27s'*/"


def test_tag_queries_doubles_percent_only_with_params() -> None:
    seen: list[str] = []

    def execute(sql: str, params: Any, many: bool, context: Any) -> None:
        seen.append(sql)

    token = scope.enter(scope.RequestScope(request=_request("a/<int:pk>/", "v")))
    try:
        tag_queries(execute, "SELECT 1", None, False, {})
        tag_queries(execute, "SELECT %s", (1,), False, {})
    finally:
        scope.leave(token)
    tag_queries(execute, "SELECT 2", None, False, {})  # no request: untouched
    assert seen == [
        "SELECT 1 /*route='a/%3Cint:pk%3E/',view='v'*/",
        "SELECT %s /*route='a/%%3Cint:pk%%3E/',view='v'*/",
        "SELECT 2",
    ]


def test_scope_pins_after_a_write_and_with_use_primary() -> None:
    token = scope.enter(scope.RequestScope())
    try:
        assert not scope.pinned()
        with scope.use_primary():
            assert scope.pinned()
        assert not scope.pinned()
        scope.mark_write()
        assert scope.pinned()
    finally:
        scope.leave(token)


def test_format_table_aligns_numbers_right() -> None:
    text = format_table(("name", "n"), [{"name": "a", "n": 5}, {"name": "bbb", "n": 12}])
    assert text.splitlines() == ["name |  n", "-----+---", "a    |  5", "bbb  | 12", "(2 rows)"]


def test_percentile_and_table() -> None:
    assert percentile([], 0.5) == 0.0
    assert percentile([float(n) for n in range(1, 101)], 0.99) == 99.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    load = LoadResult(seconds=2.0, ok=10, latencies=[0.01] * 10)
    load.record_error("HTTP 500: OperationalError: FATAL: sorry, too many clients already")
    row = Row.build("direct", "direct", load, 30, 20, 1, load_seconds=2.0, pool_size=None)
    assert (row.requests, row.errors, row.requests_per_s, row.pg_connections_per_s) == (
        11,
        1,
        5.0,
        10.0,
    )
    assert row.error_kinds == {"too many clients": 1}
    table = render_table([row])
    assert "| direct | " in table and "first error: HTTP 500" in table


def test_shop_mix_and_response_parsing() -> None:
    rng = random.Random(1)
    methods = {shop_mix(rng).method for _ in range(200)}
    assert methods == {"GET", "POST"}

    async def parse(raw: bytes) -> tuple[int, bytes, bool]:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        return await _response(reader)

    raw = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    assert asyncio.run(parse(raw)) == (201, b"{}", False)
