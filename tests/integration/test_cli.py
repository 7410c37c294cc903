"""The ``pgmux`` command: ``check`` and ``run`` on real files, as an operator would use them.

A pgbouncer.ini in PgBouncer's own format (comments, ``%include``, quoted names, ``[users]``), its
TOML twin and a userlist.txt of md5 and SCRAM secrets taken from PostgreSQL must all serve
clients; a bad file must say where it is bad, without a traceback.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from pgmux.testing.pooler import PgmuxProcess


def pgmux_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pgmux", *args], capture_output=True,
                          text=True, timeout=30)


@pytest.fixture
def launch(pg) -> Iterator[Callable[[str, dict[str, str]], PgmuxProcess]]:
    """``launch(main, files)`` writes ``files`` into a fresh directory and runs pgmux on ``main``.

    The texts are formatted with ``port`` and ``dir`` (pgmux's own) and ``pg_host``, ``pg_port``.
    """
    started: list[PgmuxProcess] = []

    def launch(main: str, files: dict[str, str]) -> PgmuxProcess:
        process = PgmuxProcess({}, {})  # for its directory, port and start/stop
        started.append(process)
        values = {"port": process.port, "dir": process.dir, "pg_host": pg.host,
                  "pg_port": pg.port}
        for name, text in files.items():
            (process.dir / name).write_text(text.format(**values))
        process.ini_path = process.dir / main
        return process.start()

    yield launch
    for process in started:
        process.stop()


def admin_rows(process: PgmuxProcess, command: str) -> list[dict[str, Any]]:
    with psycopg.connect(process.dsn("admin", "admin", dbname="pgbouncer"), autocommit=True,
                         row_factory=dict_row) as conn:
        return conn.execute(command).fetchall()


# -- check -----------------------------------------------------------------------------------


def test_check_accepts_a_good_ini_and_warns_about_unsupported_keys(tmp_path: Path) -> None:
    text = (
        "[databases]\n"
        "app = host=127.0.0.1 port=5432 dbname=app\n"
        "\n"
        "[pgbouncer]\n"
        "listen_port = 6432\n"
        "tcp_keepcnt = 5\n"
        "frobnicate = yes\n"
    )
    (tmp_path / "good.ini").write_text(text)
    result = pgmux_command("check", str(tmp_path / "good.ini"))
    assert result.returncode == 0, result.stderr
    assert "good.ini line 6: unsupported key 'tcp_keepcnt' is ignored" in result.stdout
    assert "good.ini line 7: unknown key 'frobnicate' is ignored" in result.stdout
    assert "OK (1 databases" in result.stdout


@pytest.mark.parametrize(("name", "text", "line"), [
    ("bad.ini", "[databases]\napp = host=127.0.0.1\n\n[pgbouncer]\nlisten_port = abc\n", 5),
    ("bad.toml", '[pgmux]\npool_mode = "session"\nlisten_port = "abc"\n', 3),
], ids=["ini", "toml"])
def test_check_and_run_name_the_line_and_key_of_a_bad_value(
    tmp_path: Path, name: str, text: str, line: int
) -> None:
    path = tmp_path / name
    path.write_text(text)
    expected = f"{path} line {line}: listen_port: expected an integer, got 'abc'"
    checked = pgmux_command("check", str(path))
    assert checked.returncode == 1
    assert expected in checked.stderr
    ran = pgmux_command("run", str(path))
    assert ran.returncode == 2
    assert expected in ran.stderr
    assert "Traceback" not in checked.stderr + ran.stderr


def test_check_and_run_name_a_missing_or_broken_auth_file(tmp_path: Path) -> None:
    ini = tmp_path / "pgbouncer.ini"
    users = tmp_path / "userlist.txt"
    ini.write_text(f"[databases]\n* = host=127.0.0.1\n[pgbouncer]\nauth_file = {users}\n")
    for problem in ("No such file or directory", f"{users} line 2: expected"):
        checked, ran = pgmux_command("check", str(ini)), pgmux_command("run", str(ini))
        assert (checked.returncode, ran.returncode) == (1, 2)
        for output in (checked.stderr, ran.stderr):
            assert f"{ini}: auth_file: " in output and problem in output
            assert "Traceback" not in output
        users.write_text('"admin" "admin"\nadmin admin\n')  # then a malformed line


def test_run_says_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        ini = tmp_path / "pgbouncer.ini"
        ini.write_text(f"[databases]\n* = host=127.0.0.1\n[pgbouncer]\nauth_type = any\n"
                       f"listen_port = {port}\nunix_socket_dir =\n")
        ran = pgmux_command("run", str(ini))
    assert ran.returncode == 1
    assert "cannot listen" in ran.stderr and "address already in use" in ran.stderr
    assert "Traceback" not in ran.stderr


# -- run -------------------------------------------------------------------------------------

PGBOUNCER_INI = """\
;; pgbouncer.ini as PgBouncer's own packaging lays it out
[databases]
; a name with a space must be quoted
"my app" = host={pg_host} port={pg_port} dbname=app
reports = host={pg_host} port={pg_port} dbname=app pool_size=2 pool_mode=session

[users]
plain_user = pool_mode=session

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {dir}
logfile = {dir}/pgmux.log
auth_type = scram-sha-256
auth_file = {dir}/userlist.txt
admin_users = admin
%include {dir}/pools.ini
"""
POOLS_INI = """\
# included: the pool settings
pool_mode = transaction
default_pool_size = 3
"""
PGMUX_TOML = """\
[pgmux]
listen_addr = "127.0.0.1"
listen_port = {port}
unix_socket_dir = "{dir}"
logfile = "{dir}/pgmux.log"
auth_type = "scram-sha-256"
auth_file = "{dir}/userlist.txt"
admin_users = ["admin"]
pool_mode = "transaction"
default_pool_size = 3

[databases."my app"]
host = "{pg_host}"
port = {pg_port}
dbname = "app"

[databases.reports]
host = "{pg_host}"
port = {pg_port}
dbname = "app"
pool_size = 2
pool_mode = "session"

[users.plain_user]
pool_mode = "session"
"""
USERLIST = '"scram_user" "scram_pw"\n"plain_user" "plain_pw"\n"admin" "admin"\n'


def check_served(process: PgmuxProcess) -> None:
    """What both config files say: two databases, per-user and per-database pool modes."""
    with psycopg.connect(process.dsn("scram_user", "scram_pw", dbname="my app")) as conn:
        assert conn.execute("select current_database()").fetchone() == ("app",)
    with psycopg.connect(process.dsn("plain_user", "plain_pw", dbname="my app")) as conn:
        assert conn.execute("select current_user").fetchone() == ("plain_user",)
    with psycopg.connect(process.dsn("scram_user", "scram_pw", dbname="reports")) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    modes = {(r["database"], r["user"]): r["pool_mode"]
             for r in admin_rows(process, "SHOW POOLS")}
    assert modes == {("my app", "scram_user"): "transaction", ("my app", "plain_user"): "session",
                     ("reports", "scram_user"): "session"}
    sizes = {r["name"]: r["pool_size"] for r in admin_rows(process, "SHOW DATABASES")}
    assert sizes == {"my app": 3, "reports": 2}
    config = {r["key"]: r["value"] for r in admin_rows(process, "SHOW CONFIG")}
    assert config["default_pool_size"] == "3" and config["pool_mode"] == "transaction"


def test_pgbouncer_ini_in_pgbouncers_own_format(launch) -> None:
    process = launch("pgbouncer.ini", {"pgbouncer.ini": PGBOUNCER_INI, "pools.ini": POOLS_INI,
                                       "userlist.txt": USERLIST})
    check_served(process)


def test_toml_config_serves_the_same(launch) -> None:
    process = launch("pgmux.toml", {"pgmux.toml": PGMUX_TOML, "userlist.txt": USERLIST})
    check_served(process)


def test_userlist_with_md5_and_scram_secrets(pg, launch) -> None:
    """Secrets as PostgreSQL stores them: md5 for md5_user, SCRAM for scram_user."""
    secrets = dict(
        line.split("|") for line in pg.psql(
            "SELECT rolname, rolpassword FROM pg_authid "
            "WHERE rolname IN ('md5_user', 'scram_user')").splitlines()
    )
    assert secrets["md5_user"].startswith("md5")
    assert secrets["scram_user"].startswith("SCRAM-SHA-256$")
    userlist = "".join(f'"{user}" "{secret}"\n' for user, secret in secrets.items())
    ini = (
        "[databases]\napp = host={pg_host} port={pg_port} dbname=app\n"
        "[pgbouncer]\nlisten_port = {port}\nunix_socket_dir = {dir}\n"
        "logfile = {dir}/pgmux.log\nauth_file = {dir}/userlist.txt\n"
        "auth_type = md5\npool_mode = transaction\n"
    )
    process = launch("pgbouncer.ini", {"pgbouncer.ini": ini, "userlist.txt": userlist})
    for user, password in (("md5_user", "md5_pw"), ("scram_user", "scram_pw")):
        with psycopg.connect(process.dsn(user, password)) as conn:
            assert conn.execute("select current_user").fetchone() == (user,)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(process.dsn(user, "wrong"))
