"""Pooler behaviour found while putting Django on pgmux, kept as strict xfails until fixed.

Django's ``QuerySet.iterator()`` (with server-side cursors enabled) declares
``"_django_curs_<n>" CURSOR WITH HOLD`` and, once done, closes it by name. pgmux pins the client
to its server connection on the DECLARE (session_state = pin) but releases the pin only on
``CLOSE ALL`` or ``DISCARD ALL``, so after the cursor is gone the client keeps the server
connection until it disconnects: with ``CONN_MAX_AGE = 60`` that is a server connection out of
the pool for a minute per thread. (pgmux.django's settings helper turns server-side cursors off,
and check pgmux.W004 warns when they are on, so the app itself is not affected.)
"""

from __future__ import annotations

from typing import Any

import psycopg
from django_support import ADMIN, APP, DB, DjangoEnv

PROBE = "pin-probe"


def _pinned(admin: psycopg.Connection[Any], application_name: str) -> list[str]:
    cursor = psycopg.ClientCursor(admin)
    cursor.execute("SHOW CLIENTS")
    names = [column.name for column in cursor.description or ()]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return [
        str(row.get("pinned", "")) for row in rows if row["application_name"] == application_name
    ]


def test_closing_the_last_hold_cursor_by_name_releases_the_pin(django_env: DjangoEnv) -> None:
    pgmux = django_env.pgmux
    with (
        psycopg.connect(pgmux.dsn(ADMIN[0], ADMIN[1], "pgmux"), autocommit=True) as admin,
        psycopg.connect(
            pgmux.dsn(APP[0], APP[1], DB, application_name=PROBE), autocommit=True
        ) as conn,
    ):
        conn.execute('DECLARE "_django_curs_1" NO SCROLL CURSOR WITH HOLD FOR SELECT 1')
        assert _pinned(admin, PROBE) == ["cursor_with_hold"]
        conn.execute('CLOSE "_django_curs_1"')
        assert _pinned(admin, PROBE) == [""]
