"""The Django rows of the compatibility matrix, run as a script so that Django's global settings
stay out of the pytest process (tests/integration/test_django_orm.py configures Django there).

    python django_client.py '{"host": ..., "port": ..., "user": ..., "password": ...,
                              "dbname": ..., "direct_dsn": ..., "clients": 10,
                              "options": {"prepare_threshold": 5},
                              "disable_server_side_cursors": true, "iterate_in_atomic": false}'

Each of ``clients`` threads has its own Django connection and works on its own rows: CRUD,
``bulk_create``, ``get()`` repeated past psycopg's ``prepare_threshold`` (``server_side_binding``
is on: with ``"prepare_threshold"`` in ``options`` those become named prepared statements; Django
itself turns them off), ``transaction.atomic`` with savepoints,
``select_for_update`` checked from a second session (always a direct connection, so that it
never waits for the pool) and ``.iterator()``. Prints one JSON list: what each thread saw.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import django
import psycopg
from django.conf import settings

TABLE = "compat_django_item"
ROUNDS = 8


class Rollback(Exception):
    pass


def configure(config: dict[str, Any]) -> None:
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "HOST": config["host"],
                "PORT": str(config["port"]),
                "NAME": config["dbname"],
                "USER": config["user"],
                "PASSWORD": config["password"],
                "DISABLE_SERVER_SIDE_CURSORS": config["disable_server_side_cursors"],
                "OPTIONS": {"server_side_binding": True, **config["options"]},
            }
        },
        INSTALLED_APPS=[],
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()


def main() -> None:
    config = json.loads(sys.argv[1])
    configure(config)
    from django.db import connection, connections, models

    class Item(models.Model):
        owner: Any = models.IntegerField()
        name: Any = models.CharField(max_length=50, unique=True)
        quantity: Any = models.IntegerField(default=0)

        class Meta:
            app_label = "pgmux_compat"
            db_table = TABLE

    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
    with connection.schema_editor() as editor:
        editor.create_model(Item)
    connections.close_all()

    def thread(w: int) -> list[Any]:
        try:
            return work(Item, w, config)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=config["clients"]) as pool:
        results = list(pool.map(thread, range(config["clients"])))
    print(json.dumps(results))


def work(item: Any, w: int, config: dict[str, Any]) -> list[Any]:
    from django.db import IntegrityError, transaction
    from django.db.models import F, Sum

    objects = item.objects
    mine = objects.filter(owner=w)
    seen: list[Any] = []
    objects.bulk_create([item(owner=w, name=f"w{w}-{i:02}", quantity=i) for i in range(12)])
    seen.append([objects.get(name=f"w{w}-{i:02}").quantity for i in range(ROUNDS)])
    first = objects.create(owner=w, name=f"w{w}-first", quantity=1)
    first.quantity = 5
    first.save()
    seen.append(mine.filter(name__startswith=f"w{w}-0").update(quantity=F("quantity") + 100))
    seen.append(mine.aggregate(total=Sum("quantity"))["total"])

    with transaction.atomic():
        objects.create(owner=w, name=f"w{w}-outer")
        try:
            with transaction.atomic():
                objects.create(owner=w, name=f"w{w}-inner")
                raise Rollback
        except Rollback:
            seen.append("rolled back to a savepoint")
        try:
            with transaction.atomic():
                objects.create(owner=w, name=f"w{w}-outer")
        except IntegrityError:
            seen.append("unique violation, savepoint rolled back")
        objects.create(owner=w, name=f"w{w}-after")
    try:
        with transaction.atomic():
            objects.create(owner=w, name=f"w{w}-whole block")
            raise Rollback
    except Rollback:
        pass
    seen.append(list(mine.order_by("name").values_list("name", flat=True)))

    lock = f"SELECT quantity FROM {TABLE} WHERE id = %s FOR UPDATE NOWAIT"
    with psycopg.connect(config["direct_dsn"], autocommit=True) as other:
        with transaction.atomic():
            row = objects.select_for_update().get(pk=first.pk)
            try:
                other.execute(lock, (first.pk,))
                seen.append("row not locked")
            except psycopg.errors.LockNotAvailable:
                seen.append("row locked")
            row.quantity = 2
            row.save()
        seen.append(other.execute(lock, (first.pk,)).fetchall())

    seen.append(iterate(mine.order_by("name"), config["iterate_in_atomic"]))
    seen.append(mine.filter(quantity__gte=110).delete()[0])
    # psycopg sends DEALLOCATE ALL after a rolled-back savepoint: prepare something again.
    seen.append([mine.count() for _ in range(ROUNDS)])
    return seen


def iterate(queryset: Any, in_atomic: bool) -> list[Any]:
    """Names through ``.iterator()``, and how many server-side cursors were open meanwhile."""
    from django.db import connection, transaction

    def run() -> list[Any]:
        names: list[Any] = []
        for obj in queryset.iterator(chunk_size=3):
            if len(names) == 4:  # between two FETCHes: is our cursor there?
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT count(*) FROM pg_cursors WHERE name LIKE %s", ["_django_curs_%"]
                    )
                    names.append(["cursors open", cursor.fetchone()[0]])
            names.append(obj.name)
        return names

    if in_atomic:
        with transaction.atomic():
            return run()
    return run()


if __name__ == "__main__":
    main()
