"""The primary/replica router against real streaming replicas, through pgmux.

Run by tests/django/test_router.py as ``python -m unittest cases.case_router`` in the example
project with DJANGOAPP_REPLICA_URLS naming two live replicas and a dead one (aliases replica1,
replica2, replica3). CASE_REPLICA_DSNS holds superuser DSNs of the live replicas so that replay
can be paused: then a row written to the primary is certainly missing on the replicas, and
finding it proves the read went to the primary.
"""

from __future__ import annotations

import os
import time
import unittest
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal

import django
import psycopg

django.setup()

from asgiref.sync import async_to_sync  # noqa: E402
from django.db import connections, router, transaction  # noqa: E402
from django.test import AsyncClient, Client  # noqa: E402
from shop.models import Customer, Product  # noqa: E402

from pgmux.django import scope  # noqa: E402
from pgmux.django.router import replica_health  # noqa: E402

REPLICA_DSNS = os.environ["CASE_REPLICA_DSNS"].split("|")


@contextmanager
def replay_paused() -> Iterator[None]:
    for dsn in REPLICA_DSNS:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")
    try:
        yield
    finally:
        for dsn in REPLICA_DSNS:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SELECT pg_wal_replay_resume()")


def wait_for(predicate: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


def in_recovery(alias: str) -> bool:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        return bool(cursor.fetchone()[0])


class RouterTests(unittest.TestCase):
    def setUp(self) -> None:
        # Each test is a fresh "request": a write in one must not pin the next.
        self._token = scope.enter(scope.RequestScope())

    def tearDown(self) -> None:
        scope.leave(self._token)

    def test_writes_and_migrations_go_to_the_primary(self) -> None:
        self.assertEqual(router.db_for_write(Product), "default")
        self.assertTrue(router.allow_migrate("default", "shop"))
        self.assertFalse(router.allow_migrate("replica1", "shop"))
        self.assertFalse(in_recovery("default"))

    def test_reads_are_balanced_over_healthy_replicas(self) -> None:
        reads = Counter(Product.objects.all().db for _ in range(8))
        self.assertEqual(reads, Counter({"replica1": 4, "replica2": 4}))
        self.assertTrue(in_recovery("replica1") and in_recovery("replica2"))
        health = replica_health.status()
        self.assertFalse(health["replica3"][0], health)
        self.assertTrue(health["replica1"][0] and health["replica2"][0], health)

    def test_relations_across_aliases(self) -> None:
        primary = Product.objects.using("default").first()
        replica = Customer.objects.using("replica1").first()
        assert primary is not None and replica is not None
        self.assertTrue(router.allow_relation(primary, replica))

    def test_replicas_really_replicate(self) -> None:
        Product.objects.create(sku="REPL1", name="replicated", price=Decimal("1"))
        for alias in ("replica1", "replica2"):
            wait_for(lambda a=alias: Product.objects.using(a).filter(sku="REPL1").exists())

    def test_read_your_writes_in_the_request_and_the_window(self) -> None:
        customer = Customer.objects.using("default").first()
        product = Product.objects.using("default").first()
        assert customer is not None and product is not None
        with replay_paused():
            client = Client()
            created = client.post("/orders/", {"customer": customer.pk, "product": product.pk})
            # The view reads its order back after the write: only the primary has it.
            self.assertEqual(created.status_code, 201, created.content)
            order = created.json()["id"]
            self.assertIn("pgmux_pin", created.cookies)
            self.assertEqual(client.get(f"/orders/{order}/").status_code, 200)
            # Another client reads from a replica, which has not replayed the write.
            other = Client().get(f"/orders/{order}/")
            self.assertEqual(other.status_code, 404, other.content)
            time.sleep(2.2)  # DJANGOAPP_READ_YOUR_WRITES_SECONDS=2
            self.assertEqual(client.get(f"/orders/{order}/").status_code, 404)
        wait_for(lambda: Client().get(f"/orders/{order}/").status_code == 200)

    def test_read_your_writes_with_async_views(self) -> None:
        customer = Customer.objects.using("default").first()
        product = Product.objects.using("default").first()
        assert customer is not None and product is not None

        async def post() -> dict[str, object]:
            response = await AsyncClient().post(
                "/async/orders/", {"customer": customer.pk, "product": product.pk}
            )
            self.assertEqual(response.status_code, 201, response.content)
            data: dict[str, object] = response.json()
            return data

        with replay_paused():
            self.assertEqual(async_to_sync(post)()["found"], True)

    def test_using_and_use_primary_override_the_router(self) -> None:
        Product.objects.filter(sku="nothing").update(stock=0)  # a write: reads now pinned
        self.assertEqual(Product.objects.all().db, "default")
        self.assertEqual(Product.objects.using("replica2").all().db, "replica2")

    def test_use_primary_and_atomic_keep_reads_on_the_primary(self) -> None:
        with scope.use_primary():
            self.assertEqual(Product.objects.all().db, "default")
        with transaction.atomic(using="default"):
            self.assertEqual(Product.objects.all().db, "default")
        self.assertIn(Product.objects.all().db, ("replica1", "replica2"))


if __name__ == "__main__":
    unittest.main()
