"""The Django ORM through pgmux in transaction mode, as a Django project would use it.

Django is configured in this process (``settings.configure`` may run once per process, so it is
guarded, and the pgmux database is added under its own alias whoever configured Django first),
with ``DISABLE_SERVER_SIDE_CURSORS`` as transaction pooling requires. A model defined here gets
its table from a schema editor; then rows are created, read, updated and deleted, a
``transaction.atomic`` block rolls back to a savepoint, and ``select_for_update`` holds a row
lock that another client (through pgmux too) runs into. Both of Django's psycopg modes are used:
client-side binding (the default) and server-side binding (unnamed statements only:
``prepare_threshold=None``, since named prepared statements in transaction mode are a later
issue).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import django
import psycopg
import pytest
from django.apps import apps
from django.conf import settings
from django.db import IntegrityError, connections, models, transaction
from django.db.models import F, Sum
from psycopg import errors

from pgmux.testing import PostgresCluster
from pgmux.testing.pooler import PgmuxProcess

USER, PASSWORD = "scram_user", "scram_pw"
TABLE = "orm_item"
_models: dict[str, Any] = {}


class Rollback(Exception):
    pass


def configure_django() -> None:
    """Configure Django unless someone already has; our database gets its own alias later."""
    if not settings.configured:
        settings.configure(
            DATABASES={},  # the default is Django's dummy backend; see database_alias()
            INSTALLED_APPS=[],
            USE_TZ=True,
            TIME_ZONE="UTC",
            DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        )
    if not apps.ready:
        django.setup()


def item_model() -> Any:
    """The test model, defined once per process (Django warns when a model is redefined)."""
    if "Item" not in _models:

        class Item(models.Model):
            name: Any = models.CharField(max_length=50, unique=True)
            quantity: Any = models.IntegerField(default=0)
            created: Any = models.DateTimeField(auto_now_add=True)

            class Meta:
                app_label = "pgmux_orm_tests"
                db_table = TABLE

        _models["Item"] = Item
    return _models["Item"]


@pytest.fixture(scope="module")
def pgmux(pg: PostgresCluster, pg_passwords: dict[str, str | None]) -> Iterator[PgmuxProcess]:
    userlist = {user: pw for user, pw in pg_passwords.items() if pw is not None}
    databases = {"app": f"host={pg.host} port={pg.port} dbname=app"}
    settings_ = {"auth_type": "scram-sha-256", "pool_mode": "transaction", "default_pool_size": 3}
    with PgmuxProcess(databases, settings_, userlist=userlist) as process:
        yield process


@pytest.fixture(scope="module", params=["client", "server"])
def alias(request: pytest.FixtureRequest, pgmux: PgmuxProcess) -> Iterator[str]:
    """A Django database alias pointing at pgmux, with the model's table created through it."""
    configure_django()
    name = f"pgmux_{request.param}_binding"
    options: dict[str, object] = {}
    if request.param == "server":
        options = {"server_side_binding": True, "prepare_threshold": None}
    database = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "app",
        "USER": USER,
        "PASSWORD": PASSWORD,
        "HOST": pgmux.host,
        "PORT": str(pgmux.port),
        "DISABLE_SERVER_SIDE_CURSORS": True,
        "OPTIONS": options,
    }
    connections.settings[name] = connections.configure_settings({"default": {}, name: database})[
        name
    ]
    model = item_model()
    with connections[name].cursor() as cursor:
        cursor.execute(f"drop table if exists {TABLE}")
    with connections[name].schema_editor() as editor:
        editor.create_model(model)
    try:
        yield name
    finally:
        with connections[name].schema_editor() as editor:
            editor.delete_model(model)
        connections[name].close()
        del connections[name]
        del connections.settings[name]


@pytest.fixture
def items(alias: str) -> Iterator[Any]:
    """The model's manager on our alias, with an empty table."""
    manager = item_model().objects.db_manager(alias)
    manager.all().delete()
    yield manager
    manager.all().delete()


def names(items: Any) -> list[str]:
    return list(items.order_by("name").values_list("name", flat=True))


def test_create_read_update_delete(items: Any, alias: str) -> None:
    first = items.create(name="first", quantity=1)
    items.bulk_create([items.model(name=f"bulk {i}", quantity=i) for i in range(20)])
    assert items.count() == 21
    fetched = items.get(pk=first.pk)
    assert (fetched.name, fetched.quantity) == ("first", 1)
    assert fetched.created.tzinfo is not None and fetched.created == first.created

    fetched.quantity = 5
    fetched.save(using=alias)
    assert items.get(name="first").quantity == 5
    assert items.filter(name__startswith="bulk").update(quantity=F("quantity") + 100) == 20
    assert items.aggregate(total=Sum("quantity"))["total"] == 5 + sum(range(20)) + 20 * 100
    # DISABLE_SERVER_SIDE_CURSORS: iterator() fetches with a client-side cursor.
    assert sum(1 for _ in items.all().iterator(chunk_size=3)) == 21

    assert items.filter(quantity__gte=110).delete()[0] == 10
    first.delete(using=alias)
    assert items.count() == 10
    assert not items.filter(name="first").exists()


def test_atomic_rolls_back_to_savepoint(items: Any, alias: str) -> None:
    with transaction.atomic(using=alias):
        items.create(name="outer")
        try:
            with transaction.atomic(using=alias):
                items.create(name="inner")
                assert names(items) == ["inner", "outer"]
                raise Rollback
        except Rollback:
            pass
        with pytest.raises(IntegrityError), transaction.atomic(using=alias):
            items.create(name="outer")  # unique violation: only this savepoint is lost
        items.create(name="after")
    assert names(items) == ["after", "outer"]

    with pytest.raises(Rollback), transaction.atomic(using=alias):
        items.create(name="whole block")
        raise Rollback
    assert names(items) == ["after", "outer"]


def test_select_for_update_locks_the_row(items: Any, alias: str, pgmux: PgmuxProcess) -> None:
    item = items.create(name="locked", quantity=1)
    lock_sql = f"select quantity from {TABLE} where id = %s for update nowait"
    with psycopg.connect(pgmux.dsn(USER, PASSWORD), autocommit=True,
                         prepare_threshold=None) as other:  # fmt: skip
        with transaction.atomic(using=alias):
            row = items.select_for_update().get(pk=item.pk)
            with pytest.raises(errors.LockNotAvailable):
                other.execute(lock_sql, (item.pk,))
            row.quantity = 2
            row.save(using=alias)
        # Committed: the lock is gone and the update is visible.
        assert other.execute(lock_sql, (item.pk,)).fetchone() == (2,)
    assert items.get(pk=item.pk).quantity == 2
