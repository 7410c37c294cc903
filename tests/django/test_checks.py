"""Every pgmux system check firing on a bad configuration and silent on a good one.

Each scenario runs ``manage.py check`` in a subprocess with the example project's settings
patched (cases/check_settings.py). The pool mode comes from the pgmux the settings point at:
the same settings are fine on a session-mode pgmux, a warning on a transaction-mode one that pins
session state, and an error on one that lets it through (session_state = allow).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django_support import DB, HERE, DjangoEnv, start_pgmux

from pgmux.testing import free_port
from pgmux.testing.pooler import PgmuxProcess


@pytest.fixture(scope="module")
def other_pgmux(django_env: DjangoEnv) -> Iterator[dict[str, PgmuxProcess]]:
    cluster = django_env.cluster
    only_db = {DB: f"host={cluster.host} port={cluster.port} dbname={DB}"}  # no "*" fallback
    started = {
        "session": start_pgmux(cluster, only_db, pool_mode="session"),
        "statement": start_pgmux(cluster, only_db, pool_mode="statement"),
        "allow": start_pgmux(cluster, only_db, session_state="allow"),
    }
    try:
        yield started
    finally:
        for process in started.values():
            process.stop()


REPLICA = {"PGMUX": {"REPLICA": True}}
SCENARIOS: list[tuple[str, str, dict[str, Any], set[str]]] = [
    # (name, which pgmux, overrides, expected ids); every other pgmux id must stay silent.
    ("good", "transaction", {}, set()),
    (
        "good-with-replica",
        "transaction",
        {
            "DATABASES": {"replica1": REPLICA},
            "DATABASE_ROUTERS": ["pgmux.django.router.PrimaryReplicaRouter"],
        },
        set(),
    ),
    (
        "server-side-cursors-pinned",
        "transaction",
        {"DATABASES": {"default": {"DISABLE_SERVER_SIDE_CURSORS": False}}},
        {"pgmux.W004"},
    ),
    (
        "server-side-cursors-not-pinned",
        "allow",
        {"DATABASES": {"default": {"DISABLE_SERVER_SIDE_CURSORS": False}}},
        {"pgmux.E001"},
    ),
    (
        "assume-role-pinned",
        "transaction",
        {"DATABASES": {"default": {"OPTIONS": {"assume_role": "app"}}}},
        {"pgmux.W005"},
    ),
    (
        "assume-role-leaks",
        "allow",
        {"DATABASES": {"default": {"OPTIONS": {"assume_role": "app"}}}},
        {"pgmux.E006"},
    ),
    (
        "server-side-cursors-session-mode",
        "session",
        {"DATABASES": {"default": {"DISABLE_SERVER_SIDE_CURSORS": False}}},
        set(),
    ),
    ("statement-mode", "statement", {}, {"pgmux.E002"}),
    (
        "writable-replica",
        "transaction",
        {
            "DATABASES": {"replica1": REPLICA},
            "DATABASE_ROUTERS": ["bad_router.EverythingToReplicaRouter"],
        },
        {"pgmux.E003"},
    ),
    ("replica-without-router", "transaction", {"DATABASES": {"replica1": REPLICA}}, {"pgmux.E003"}),
    ("unknown-replica-alias", "transaction", {"PGMUX_REPLICAS": ["nope"]}, {"pgmux.E004"}),
    (
        "database-unknown-to-pgmux",
        "session",
        {"DATABASES": {"default": {"NAME": "nosuchdb"}}},
        {"pgmux.E005"},
    ),
    ("console-unreachable", "nowhere", {}, {"pgmux.W001"}),
    (
        "native-pool-on-top",
        "transaction",
        {"DATABASES": {"default": {"OPTIONS": {"pool": True}, "CONN_MAX_AGE": 0}}},
        {"pgmux.W002"},
    ),
    (
        "persistent-without-health-checks",
        "transaction",
        {"DATABASES": {"default": {"CONN_HEALTH_CHECKS": False}}},
        {"pgmux.W003"},
    ),
]
ALL_IDS = {f"pgmux.E00{n}" for n in range(1, 7)} | {f"pgmux.W00{n}" for n in range(1, 6)}


def _run_scenario(
    django_env: DjangoEnv,
    other_pgmux: dict[str, PgmuxProcess],
    target: str,
    overrides: dict[str, Any],
) -> subprocess.CompletedProcess[str]:
    if target == "transaction":
        url = django_env.url()
    elif target == "nowhere":
        url = f"postgres://app:x@127.0.0.1:{free_port()}/{DB}"
    else:
        url = django_env.url(other_pgmux[target])
    env = django_env.env(
        DJANGO_SETTINGS_MODULE="check_settings",
        DJANGOAPP_DATABASE_URL=url,
        CASE_OVERRIDES=json.dumps(overrides),
    )
    env["PYTHONPATH"] += os.pathsep + str(HERE / "cases")
    return django_env.run("check", env=env)


@pytest.fixture(scope="module")
def outcomes(
    django_env: DjangoEnv,
    other_pgmux: dict[str, PgmuxProcess],
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every scenario's ``manage.py check``, run a few at a time: each is mostly start-up."""
    with ThreadPoolExecutor(4) as pool:
        futures = {
            name: pool.submit(_run_scenario, django_env, other_pgmux, target, overrides)
            for name, target, overrides, _ in SCENARIOS
        }
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize(
    ("name", "expected"), [(s[0], s[3]) for s in SCENARIOS], ids=[s[0] for s in SCENARIOS]
)
def test_check(
    outcomes: dict[str, subprocess.CompletedProcess[str]], name: str, expected: set[str]
) -> None:
    result = outcomes[name]
    output = result.stdout + result.stderr
    found = {i for i in ALL_IDS if f"({i})" in output}
    assert found == expected, output
    errors = any(i.startswith("pgmux.E") for i in expected)
    assert (result.returncode != 0) == errors, output
    if not expected:
        assert "System check identified no issues" in output, output
