"""The pooler end to end with psycopg: login, a query, pooling of server connections."""

from __future__ import annotations

import psycopg
import pytest


@pytest.mark.parametrize("mode", ["session", "transaction", "statement"])
def test_query_through_each_mode(pgmux_factory, mode: str) -> None:
    pgmux = pgmux_factory(pool_mode=mode, default_pool_size=2)
    with psycopg.connect(pgmux.dsn("scram_user", "scram_pw"), autocommit=True) as conn:
        assert conn.execute("select 41 + 1").fetchone() == (42,)
        assert conn.execute("select current_user").fetchone() == ("scram_user",)
