"""``manage.py pgmux_status`` and ``manage.py pgmux_config`` in the example project."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from django_support import DB, DjangoEnv

from pgmux.config import load_config


def test_pgmux_status_shows_pools_clients_and_servers(django_env: DjangoEnv) -> None:
    result = django_env.run("pgmux_status")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"pgmux at 127.0.0.1:{django_env.pgmux.port} (DATABASES: default)" in out
    for section in ("POOLS", "CLIENTS", "SERVERS"):
        assert f"\n{section}\n" in out
    pools = out.split("\nPOOLS\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert pools[0].split(" | ")[:3] == ["database ", "user", "pool_mode  "]
    assert any(line.startswith(f"{DB} ") and "transaction" in line for line in pools), out
    only = django_env.run("pgmux_status", "--show", "pools")
    assert "\nCLIENTS\n" not in only.stdout and "\nPOOLS\n" in only.stdout


def test_pgmux_status_names_an_unreachable_pgmux(django_env: DjangoEnv) -> None:
    env = django_env.env(DJANGOAPP_DATABASE_URL=f"postgres://app:x@127.0.0.1:1/{DB}")
    result = django_env.run("pgmux_status", env=env)
    assert result.returncode == 1
    assert "pgmux console at 127.0.0.1:1" in result.stderr


def test_pgmux_config_from_direct_settings(django_env: DjangoEnv, tmp_path: Path) -> None:
    cluster = django_env.cluster
    env = django_env.env(DJANGOAPP_MODE="direct", DJANGOAPP_DATABASE_URL=django_env.direct_url())
    userlist = tmp_path / "userlist.txt"
    result = django_env.run(
        "pgmux_config", "--listen-port", "6543", "--write-userlist", str(userlist), env=env
    )
    assert result.returncode == 0, result.stderr
    ini = tmp_path / "pgbouncer.ini"
    ini.write_text(result.stdout.replace("auth_file = userlist.txt", f"auth_file = {userlist}"))
    config = load_config(ini)
    assert config.databases[DB].port == cluster.port
    assert config.databases[DB].dbname == DB
    assert "*" in config.databases
    assert config.get("pool_mode") == "transaction"
    assert config.get("listen_port") == 6543
    assert userlist.read_text() == '"app" "app-pw"\n'
    assert "pgmux.django.database(DATABASES['default'], host='127.0.0.1', port=6543)" in (
        result.stdout
    )
    check = subprocess.run(
        [sys.executable, "-m", "pgmux", "check", str(ini)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_pgmux_config_refuses_settings_already_pooled(django_env: DjangoEnv) -> None:
    result = django_env.run("pgmux_config")
    assert result.returncode == 1
    assert "no direct PostgreSQL entry" in result.stderr
