"""The client compatibility matrix: one declaration per row, rendered into docs/compatibility.md.

Every :class:`Row` here is one parametrized test in ``test_matrix.py`` per pool mode, and
``test_matrix.py`` checks both directions: each row has a runner and each runner a row, and the
published page is exactly what :func:`render` makes of ``ROWS``. A mode's status is ``WORKS``
or a string starting with ``"pgmux bug: "``, which the test turns into a strict xfail (so the
page cannot say "works" for a row that fails, nor keep a bug listed once it is fixed).

    python tests/compat/render_matrix.py           # rewrite docs/compatibility.md
    python tests/compat/render_matrix.py --check   # exit 1 if it is out of date

This module imports nothing from the tests (it runs as a script too).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

WORKS = "works"
BUG = "pgmux bug: "
MODES = ("transaction", "session")
POOL_SIZE = 5  # server connections per pool in both modes (pgbench in session mode aside)
DOC = Path(__file__).resolve().parents[2] / "docs" / "compatibility.md"


@dataclass(frozen=True)
class Row:
    id: str  # the test id: test_matrix.py[<id>-<mode>]
    named: bool  # sends protocol-level named prepared statements (checked in transaction mode)
    client: str
    usage: str  # what the row exercises
    clients: int  # concurrent clients
    how: str  # what to set, or what to know, to use the client through pgmux
    transaction: str = WORKS
    session: str = WORKS

    def status(self, mode: str) -> str:
        return self.transaction if mode == "transaction" else self.session


PSYCOPG_USAGE = (
    "transactions with UPDATE … RETURNING, aggregates and typed parameters, each query run "
    "8 times, an error that rolls a transaction back"
)

ROWS: tuple[Row, ...] = (
    Row("psycopg-sync-default", True, "psycopg 3 (sync)",
        f"default `prepare_threshold` (5): {PSYCOPG_USAGE}; statement order varies per client, "
        "so the same names (`_pg3_0`, …) mean different queries on different clients",
        50, "nothing to set"),
    Row("psycopg-sync-prepare", True, "psycopg 3 (sync)",
        "`execute(..., prepare=True)`: every query a named prepared statement from its first run",
        50, "nothing to set"),
    Row("psycopg-sync-pipeline", True, "psycopg 3 (sync)",
        "`with conn.pipeline()`, inside a transaction and in autocommit, past "
        "`prepare_threshold`, including a failing statement followed by others in one pipeline",
        50, "nothing to set"),
    Row("psycopg-async-default", True, "psycopg 3 (async)",
        f"`AsyncConnection`, default `prepare_threshold`: {PSYCOPG_USAGE}",
        50, "nothing to set"),
    Row("psycopg-async-prepare", True, "psycopg 3 (async)",
        "`await conn.execute(..., prepare=True)`", 50, "nothing to set"),
    Row("psycopg-async-pipeline", True, "psycopg 3 (async)",
        "`async with conn.pipeline()`, including a failing statement followed by others",
        50, "nothing to set"),
    Row("asyncpg-default", True, "asyncpg",
        "default statement cache (100 named statements per connection): `fetch`/`fetchrow` in "
        "transactions, `executemany`, an explicit `prepare()`, a rolled-back transaction",
        50, "nothing to set: no `statement_cache_size=0` needed"),
    Row("pgbench-simple", False, "pgbench", "`-M simple`, TPC-B-like, `-c 50 -t 10`",
        50, "session mode: a pool of at least `-c` (pgbench holds every connection throughout)"),
    Row("pgbench-extended", False, "pgbench", "`-M extended` (unnamed statements), `-c 50 -t 10`",
        50, "as `-M simple`"),
    Row("pgbench-prepared", True, "pgbench", "`-M prepared` (named statements), `-c 50 -t 10`",
        50, "with `-c` larger than the pool, give every client its own thread (`-j` = `-c`): "
        "pgbench 15 prepares with a blocking `PQprepare` in a client's first transaction, which "
        "stalls the other clients of that thread while they hold server connections (any "
        "transaction pooler, a deadlock until `query_wait_timeout`)"),
    Row("psql", False, "psql",
        "a script: a transaction, `\\copy` from a file, `COPY FROM STDIN` inline, "
        "`\\copy (query) TO STDOUT`, `\\watch` repeating a query until it fails",
        10, "nothing to set"),
    Row("django-orm-unnamed", False, "Django ORM (psycopg 3)",
        "`OPTIONS: {\"server_side_binding\": True}` with `DISABLE_SERVER_SIDE_CURSORS: True`: "
        "CRUD, `bulk_create`, repeated `get()`, `transaction.atomic` with savepoints rolled "
        "back, `select_for_update` (another session's NOWAIT fails), `.iterator()` outside "
        "`atomic()` (fetched client-side). Django sets `prepare_threshold=None` unless OPTIONS "
        "say otherwise, so every statement is unnamed",
        10, "`DISABLE_SERVER_SIDE_CURSORS: True` (Django's advice for transaction pooling)"),
    Row("django-orm", True, "Django ORM (psycopg 3)",
        "as above with `OPTIONS: {\"server_side_binding\": True, \"prepare_threshold\": 5}`: "
        "the repeated queries become named prepared statements (and psycopg sends `DEALLOCATE "
        "ALL` inside the transaction after each rolled-back savepoint)",
        10, "`DISABLE_SERVER_SIDE_CURSORS: True`; `prepare_threshold` may be set, pgmux keeps "
        "named statements working in transaction mode"),
    Row("django-server-cursor-atomic", True, "Django ORM (psycopg 3)",
        "as above with `DISABLE_SERVER_SIDE_CURSORS: False`; `.iterator()` inside `atomic()`: "
        "`DECLARE … WITHOUT HOLD` and `FETCH` in one transaction",
        10, "nothing to set"),
    Row("django-server-cursor-autocommit", True, "Django ORM (psycopg 3)",
        "`DISABLE_SERVER_SIDE_CURSORS: False`; `.iterator()` outside `atomic()`: Django declares "
        "the cursor `WITH HOLD` and fetches in later autocommit statements",
        10, "works in transaction mode because `session_state = pin` (the default) keeps the "
        "server connection for the client until the cursor is closed (when the iteration "
        "ends) or the client disconnects; with `session_state = allow` "
        "(PgBouncer's behaviour) the fetches can land on another server connection "
        "(\"cursor does not exist\"): set `DISABLE_SERVER_SIDE_CURSORS: True` or iterate inside "
        "`atomic()`"),
    Row("sqlalchemy-psycopg", True, "SQLAlchemy 2 (`postgresql+psycopg`)",
        "`NullPool`; ORM `Session`: a failing transaction, transactions each on a new "
        "connection, then 8 on one connection (`get()`, flush, `select()` aggregates) past "
        "psycopg's `prepare_threshold`",
        50, "`poolclass=NullPool`: let pgmux do the pooling"),
    Row("sqlalchemy-asyncpg", True, "SQLAlchemy 2 (`postgresql+asyncpg`)",
        "`NullPool`, `AsyncSession`: as above, through SQLAlchemy's own prepared-statement "
        "cache on top of asyncpg's named statements",
        50, "`poolclass=NullPool`; no `prepared_statement_name_func` or `statement_cache_size=0` "
        "needed"),
)  # fmt: skip


# pgmux bugs that tests in test_prepared.py mark as strict xfails, reason taken from here: fixing
# one makes its test XPASS (a failure) until the entry, and so the page, loses it.
KNOWN_ISSUES: dict[str, str] = {}


def _status_cell(status: str) -> str:
    return "works" if status == WORKS else f"**fails** ({status})"


def _known_issues() -> list[str]:
    if not KNOWN_ISSUES:
        return []
    lines = ["### Known issues", ""]
    lines += [
        f"- {text} (`test_prepared.py`, an expected failure)" for text in KNOWN_ISSUES.values()
    ]
    return [*lines, ""]


def render() -> str:
    lines = [
        "# Client compatibility",
        "",
        "<!-- Generated by tests/compat/render_matrix.py from the rows that tests/compat/"
        "test_matrix.py runs; do not edit by hand. -->",
        "",
        "Each row is an automated test (`tests/compat/test_matrix.py`), run once through a "
        "pgmux in transaction mode and once in session mode, both with pools of "
        f"{POOL_SIZE} server connections and more concurrent clients than that (pgbench in "
        "session mode aside: it holds every connection throughout, so there the pool is as "
        "large as `-c`). A row passes "
        "when every client gets exactly the results that the same workload gets on a direct "
        "connection to PostgreSQL (for pgbench: no failed transaction, every transaction "
        "processed, and the TPC-B balances still adding up). *Named statements* says whether "
        "the client uses protocol-level named prepared statements; in transaction mode the "
        "test also checks that exactly those rows left pgmux's shared statements "
        "(`PGMUX_<n>`) prepared on its server connections.",
        "",
        "| Client | What the test does | Named statements | Clients | Transaction mode "
        "| Session mode | How |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in ROWS:
        cells = (
            row.client,
            row.usage,
            "yes" if row.named else "no",
            str(row.clients),
            _status_cell(row.transaction),
            _status_cell(row.session),
            row.how,
        )
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    lines += [
        "",
        "## Named prepared statements in transaction mode",
        "",
        "pgmux keeps protocol-level named prepared statements working whichever server "
        "connection a client's transaction lands on (`tests/compat/test_prepared.py`):",
        "",
        "- Each distinct query (text and parameter types) is prepared once per server "
        "connection under a name pgmux chooses (`PGMUX_<n>`), shared by all clients; each "
        "client keeps its own names, so two clients may use the same name for different "
        "queries.",
        "- A server connection keeps at most `max_prepared_statements` of them; the least "
        "recently used is closed on the server (`Close`) to make room.",
        "- A client may hold at most `max_client_prepared_statements` names; the next Parse "
        "gets SQLSTATE 54000 naming that setting and the client is disconnected.",
        "- A Bind or Describe of a name the client never prepared gets PostgreSQL's own "
        "error (26000); a Parse of a name the client already holds gets 42P05.",
        "- A Parse that fails, or that PostgreSQL skips after an earlier error in the same "
        "pipeline, leaves no name behind, and requests the server skips until the Sync are "
        "neither answered nor counted (an eviction's `Close` among them).",
        "- `Close`, `DEALLOCATE name`, `DEALLOCATE ALL` and `DISCARD ALL` drop the client's "
        "names (psycopg itself sends `DEALLOCATE ALL` after a rolled-back savepoint); "
        "`DEALLOCATE ALL` and `DISCARD ALL` also drop that server connection's shared "
        "statements, which other clients' names then prepare again where they land. Unnamed "
        "statements are passed through untouched.",
        "",
        *_known_issues(),
        "## Django and `DISABLE_SERVER_SIDE_CURSORS`",
        "",
        "`QuerySet.iterator()` on PostgreSQL declares a server-side cursor. Inside "
        "`atomic()` the cursor lives in the transaction, which keeps its server connection, "
        "so it works in any mode. Outside `atomic()` Django declares it `WITH HOLD` and "
        "fetches from it in later autocommit statements: with PgBouncer in transaction mode "
        "those can reach a server connection that does not have the cursor. pgmux pins the "
        "client to its server connection instead (`session_state = pin`), so it works, at "
        "the price of one server connection per such client until the cursor is closed "
        "(Django closes it when the iteration ends or the iterator is dropped). "
        "`DISABLE_SERVER_SIDE_CURSORS: True` makes `.iterator()` fetch client-side (no "
        "cursor, no pinning): the recommended setting for transaction pooling.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC} is out of date: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
