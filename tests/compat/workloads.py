"""What each client of the compatibility matrix does, written once per client library.

Every workload runs ``clients`` concurrent clients against one target (PostgreSQL itself or a
pgmux) and returns, per client, everything that client saw. Client ``c`` works only on its own
rows of ``compat_accounts``, so the results do not depend on how the clients interleave: a
direct run and a run through pgmux must return equal lists. The order of the queries rotates
with ``c``, so that drivers which number their prepared statements (``_pg3_0``,
``__asyncpg_stmt_1__``) give the same name to different queries on different clients.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
import psycopg
import pytest
from psycopg import errors

ACCOUNTS = "compat_accounts"
N_ACCOUNTS = 4
ROUNDS = 8  # more than psycopg's prepare_threshold (5)
T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    """Where clients connect: PostgreSQL directly or a pgmux."""

    host: str
    port: int
    user: str
    password: str
    dbname: str = "app"

    @property
    def dsn(self) -> str:
        return (
            f"host={self.host} port={self.port} user={self.user} password={self.password} "
            f"dbname={self.dbname}"
        )

    def url(self, driver: str) -> str:
        return (
            f"postgresql+{driver}://{self.user}:{self.password}@{self.host}:{self.port}/"
            f"{self.dbname}"
        )


def account_id(client: int, k: int) -> int:
    return client * 100 + k


def reset_accounts(direct: Target, clients: int) -> None:
    with psycopg.connect(direct.dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {ACCOUNTS} (id int PRIMARY KEY, owner int NOT NULL, "
            "balance bigint NOT NULL)"
        )
        conn.execute(f"TRUNCATE {ACCOUNTS}")
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {ACCOUNTS} VALUES (%s, %s, %s)",
                [
                    (account_id(c, k), c, 1000 * k)
                    for c in range(clients)
                    for k in range(N_ACCOUNTS)
                ],
            )


# -- the ledger: the same queries in every library's placeholder style -------------------------

UPDATE = f"UPDATE {ACCOUNTS} SET balance = balance + $1 WHERE id = $2 RETURNING balance"
TOTAL = f"SELECT sum(balance), count(*) FROM {ACCOUNTS} WHERE owner = $1"
ECHO = "SELECT $1::int * 2, $2::text || '-' || $3::int, $4::numeric(10,2)"
ZERO = f"UPDATE {ACCOUNTS} SET balance = 0 WHERE owner = $1"
FAIL = "SELECT 1 / ($1::int - $2::int)"


def ledger(client: int, i: int) -> list[tuple[str, tuple[Any, ...]]]:
    """Round ``i`` of client ``client``: (query, parameters), in the client's own order."""
    steps = [
        (UPDATE, (i + client, account_id(client, i % N_ACCOUNTS))),
        (TOTAL, (client,)),
        (ECHO, (client, f"client{client}", i, Decimal(i) / 4)),
    ]
    shift = client % len(steps)
    return steps[shift:] + steps[:shift]


def percent(sql: str) -> str:
    """$n placeholders as psycopg's %s (each query uses each parameter once, in order)."""
    for n in range(9, 0, -1):
        sql = sql.replace(f"${n}", "%s")
    return sql


# -- running many clients ------------------------------------------------------------------------


def run_threads(clients: int, work: Callable[[int], T]) -> list[T]:
    with ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(work, range(clients)))


def run_tasks(clients: int, work: Callable[[int], Any]) -> list[Any]:
    async def main() -> list[Any]:
        return list(await asyncio.gather(*(work(c) for c in range(clients))))

    return asyncio.run(main())


# -- psycopg 3 -----------------------------------------------------------------------------------


def psycopg_sync(
    target: Target, clients: int, *, prepare: bool | None = None, pipeline: bool = False
) -> list[Any]:
    def client(c: int) -> list[Any]:
        seen: list[Any] = []
        with psycopg.connect(target.dsn) as conn:
            for i in range(ROUNDS):
                with conn.transaction():
                    seen.append(_sync_round(conn, ledger(c, i), prepare, pipeline))
            try:
                with conn.transaction():
                    steps = [(ZERO, (c,)), (FAIL, (c, c)), (TOTAL, (c,))]
                    _sync_round(conn, steps, prepare, pipeline)
            except errors.DivisionByZero as error:
                seen.append(error.sqlstate)
            conn.autocommit = True  # statements (and pipelines) outside a transaction block
            for i in range(ROUNDS):
                seen.append(_sync_round(conn, ledger(c, i), prepare, pipeline))
        return seen

    return run_threads(clients, client)


def _sync_round(
    conn: psycopg.Connection[Any],
    steps: Sequence[tuple[str, tuple[Any, ...]]],
    prepare: bool | None,
    pipeline: bool,
) -> list[Any]:
    if not pipeline:
        return [_rows(conn.execute(percent(sql), p, prepare=prepare)) for sql, p in steps]
    with conn.pipeline():
        cursors = [conn.execute(percent(sql), p, prepare=prepare) for sql, p in steps]
    return [_rows(cur) for cur in cursors]


def _rows(cur: psycopg.Cursor[Any]) -> Any:
    return cur.fetchall() if cur.description is not None else cur.rowcount


async def _arows(cur: psycopg.AsyncCursor[Any]) -> Any:
    return await cur.fetchall() if cur.description is not None else cur.rowcount


def psycopg_async(
    target: Target, clients: int, *, prepare: bool | None = None, pipeline: bool = False
) -> list[Any]:
    async def client(c: int) -> list[Any]:
        seen: list[Any] = []
        async with await psycopg.AsyncConnection.connect(target.dsn) as conn:
            for i in range(ROUNDS):
                async with conn.transaction():
                    seen.append(await _async_round(conn, ledger(c, i), prepare, pipeline))
            try:
                async with conn.transaction():
                    steps = [(ZERO, (c,)), (FAIL, (c, c)), (TOTAL, (c,))]
                    await _async_round(conn, steps, prepare, pipeline)
            except errors.DivisionByZero as error:
                seen.append(error.sqlstate)
            await conn.set_autocommit(True)
            for i in range(ROUNDS):
                seen.append(await _async_round(conn, ledger(c, i), prepare, pipeline))
        return seen

    return run_tasks(clients, client)


async def _async_round(
    conn: psycopg.AsyncConnection[Any],
    steps: Sequence[tuple[str, tuple[Any, ...]]],
    prepare: bool | None,
    pipeline: bool,
) -> list[Any]:
    if not pipeline:
        return [
            await _arows(await conn.execute(percent(sql), p, prepare=prepare)) for sql, p in steps
        ]
    async with conn.pipeline():
        cursors = [await conn.execute(percent(sql), p, prepare=prepare) for sql, p in steps]
    return [await _arows(cur) for cur in cursors]


# -- asyncpg -------------------------------------------------------------------------------------


def asyncpg_default(target: Target, clients: int) -> list[Any]:
    async def client(c: int) -> list[Any]:
        seen: list[Any] = []
        conn = await asyncpg.connect(
            host=target.host,
            port=target.port,
            user=target.user,
            password=target.password,
            database=target.dbname,
        )
        try:
            for i in range(ROUNDS):
                async with conn.transaction():
                    seen.append(
                        [[tuple(r) for r in await conn.fetch(sql, *p)] for sql, p in ledger(c, i)]
                    )
            try:
                async with conn.transaction():
                    await conn.execute(ZERO, c)
                    await conn.fetchval(FAIL, c, c)
            except asyncpg.DivisionByZeroError as error:
                seen.append(error.sqlstate)
            await conn.executemany(UPDATE, [(k, account_id(c, k)) for k in range(N_ACCOUNTS)])
            statement = await conn.prepare(TOTAL)
            seen.append([tuple(await statement.fetchrow(c)) for _ in range(3)])
            for i in range(ROUNDS):  # autocommit
                seen.append([tuple(await conn.fetchrow(sql, *p)) for sql, p in ledger(c, i)])
        finally:
            await conn.close()
        return seen

    return run_tasks(clients, client)


# -- SQLAlchemy 2 --------------------------------------------------------------------------------

_orm: dict[str, Any] = {}


def _account_model() -> Any:
    """The ORM class for compat_accounts, declared once per process."""
    if "Account" not in _orm:
        from sqlalchemy import BigInteger, Column, Integer
        from sqlalchemy.orm import declarative_base

        # Classic columns: this module's postponed annotations would hide Mapped[] from
        # SQLAlchemy, which resolves them in the module's namespace.
        base: Any = declarative_base()
        _orm["Account"] = type(
            "Account",
            (base,),
            {
                "__tablename__": ACCOUNTS,
                "id": Column(Integer, primary_key=True),
                "owner": Column(Integer),
                "balance": Column(BigInteger),
            },
        )
    return _orm["Account"]


def _orm_statements(c: int, i: int) -> list[Any]:
    from sqlalchemy import Integer, Numeric, Text, cast, func, literal, select

    account = _account_model()
    total = select(func.sum(account.balance), func.count()).where(account.owner == c)
    echo = select(
        cast(literal(c), Integer) * 2,
        cast(literal(f"client{c}"), Text) + "-" + cast(literal(i), Text),
        cast(literal(Decimal(i) / 4), Numeric(10, 2)),
    )
    return [total, echo] if c % 2 else [echo, total]


def _orm_round(session: Any, c: int, i: int) -> list[Any]:
    row = session.get(_account_model(), account_id(c, i % N_ACCOUNTS))
    row.balance += i + c
    session.flush()
    return [row.balance] + [tuple(session.execute(s).one()) for s in _orm_statements(c, i)]


async def _async_orm_round(session: Any, c: int, i: int) -> list[Any]:
    row = await session.get(_account_model(), account_id(c, i % N_ACCOUNTS))
    row.balance += i + c
    await session.flush()
    return [row.balance] + [tuple((await session.execute(s)).one()) for s in _orm_statements(c, i)]


def _sqlstate(error: Any) -> Any:
    return getattr(error.orig, "sqlstate", None)


# Each SQLAlchemy client: a transaction that fails, CHURN transactions each on a connection of
# its own (a session on a NullPool engine), then ROUNDS on one connection, long enough for the
# driver to prepare its statements.
CHURN = 3


def sqlalchemy_psycopg(target: Target, clients: int) -> list[Any]:
    pytest.importorskip("sqlalchemy")
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.orm import Session
    from sqlalchemy.pool import NullPool

    engine = create_engine(target.url("psycopg"), poolclass=NullPool)
    engine.connect().close()  # the dialect's first-connect initialisation, once
    fail = text("SELECT 1 / (:c - :c)")
    zero = text(f"UPDATE {ACCOUNTS} SET balance = 0 WHERE owner = :c")

    def client(c: int) -> list[Any]:
        seen: list[Any] = []
        with Session(engine) as session:
            try:
                with session.begin():
                    session.execute(zero, {"c": c})
                    session.execute(fail, {"c": c})
            except DBAPIError as error:
                seen.append(_sqlstate(error))
            for i in range(CHURN):
                with session.begin():
                    seen.append(_orm_round(session, c, i))
        with engine.connect() as conn, Session(bind=conn) as session:
            for i in range(ROUNDS):
                with session.begin():
                    seen.append(_orm_round(session, c, i))
        return seen

    try:
        return run_threads(clients, client)
    finally:
        engine.dispose()


def sqlalchemy_asyncpg(target: Target, clients: int) -> list[Any]:
    pytest.importorskip("sqlalchemy")
    pytest.importorskip("greenlet")  # SQLAlchemy's asyncio layer runs on it
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
    from sqlalchemy.pool import NullPool

    fail = text("SELECT 1 / (:c - :c)")
    zero = text(f"UPDATE {ACCOUNTS} SET balance = 0 WHERE owner = :c")

    async def main() -> list[Any]:
        engine = create_async_engine(target.url("asyncpg"), poolclass=NullPool)
        async with engine.connect():
            pass  # the dialect's first-connect initialisation, once

        async def client(c: int) -> list[Any]:
            seen: list[Any] = []
            async with AsyncSession(engine) as session:
                try:
                    async with session.begin():
                        await session.execute(zero, {"c": c})
                        await session.execute(fail, {"c": c})
                except DBAPIError as error:
                    seen.append(_sqlstate(error))
                for i in range(CHURN):
                    async with session.begin():
                        seen.append(await _async_orm_round(session, c, i))
            async with engine.connect() as conn, AsyncSession(bind=conn) as session:
                for i in range(ROUNDS):
                    async with session.begin():
                        seen.append(await _async_orm_round(session, c, i))
            return seen

        try:
            return list(await asyncio.gather(*(client(c) for c in range(clients))))
        finally:
            await engine.dispose()

    return asyncio.run(main())


# -- psql ----------------------------------------------------------------------------------------

COPY_TABLE = "compat_copy"
WATCH_RUNS = 5  # the watched query divides by zero on its 5th run, which ends \watch


def reset_psql(direct: Target, clients: int) -> None:
    with psycopg.connect(direct.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {COPY_TABLE} (owner int, n int, label text)")
        conn.execute(f"TRUNCATE {COPY_TABLE}")
        for c in range(clients):
            conn.execute(f"DROP SEQUENCE IF EXISTS compat_watch_{c}")
            conn.execute(f"CREATE SEQUENCE compat_watch_{c}")


def psql_script(c: int, csv_path: Path) -> str:
    return f"""\\set ON_ERROR_STOP on
BEGIN;
UPDATE {ACCOUNTS} SET balance = balance + 7 WHERE owner = {c} RETURNING id, balance;
SELECT sum(balance) FROM {ACCOUNTS} WHERE owner = {c};
COMMIT;
\\copy {COPY_TABLE} FROM '{csv_path}' WITH (FORMAT csv)
COPY {COPY_TABLE} FROM STDIN WITH (FORMAT csv);
{c},100,"inline, with a comma"
{c},101,plain
\\.
\\copy (SELECT n, label FROM {COPY_TABLE} WHERE owner = {c} ORDER BY n) TO STDOUT WITH (FORMAT csv)
\\set ON_ERROR_STOP off
SELECT n, 10 / ({WATCH_RUNS} - n) AS q, (SELECT sum(balance) FROM {ACCOUNTS} WHERE owner = {c})
  FROM (SELECT nextval('compat_watch_{c}') AS n) s \\watch 0.01
SELECT 'after watch', {c};
"""


def psql(target: Target, clients: int, workdir: Path) -> list[Any]:
    """``clients`` psql processes at once; returns each one's (exit status, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = target.password
    processes = []
    for c in range(clients):
        csv_path = workdir / f"psql_{c}.csv"
        csv_path.write_text("".join(f'{c},{n},"row {n}, ""{c}"""\n' for n in range(1, 21)))
        argv = [
            "psql",
            "-X",
            "-A",
            "-t",
            "-h",
            target.host,
            "-p",
            str(target.port),
            "-U",
            target.user,
            "-d",
            target.dbname,
            "-f",
            "-",
        ]
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        processes.append((process, psql_script(c, csv_path)))

    def communicate(c: int) -> tuple[int, str, str]:
        # All at once: in session mode a psql may hold a server while it waits for its script.
        process, script = processes[c]
        try:
            out, err = process.communicate(script, timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            out = f"TIMED OUT after 30 s; output so far:\n{out[-3000:]}"
        return process.returncode, out, err

    try:
        return run_threads(clients, communicate)
    finally:
        for process, _ in processes:
            process.kill()
            process.wait()


# -- Django (in a subprocess) --------------------------------------------------------------------


def django_orm(
    target: Target,
    clients: int,
    direct: Target,
    *,
    options: dict[str, Any],
    disable_server_side_cursors: bool,
    iterate_in_atomic: bool,
) -> list[Any]:
    config = {
        "options": options,
        "host": target.host,
        "port": target.port,
        "user": target.user,
        "password": target.password,
        "dbname": target.dbname,
        "direct_dsn": direct.dsn,
        "clients": clients,
        "disable_server_side_cursors": disable_server_side_cursors,
        "iterate_in_atomic": iterate_in_atomic,
    }
    script = Path(__file__).with_name("django_client.py")
    result = subprocess.run(
        [sys.executable, str(script), json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    return json.loads(result.stdout)  # type: ignore[no-any-return]
