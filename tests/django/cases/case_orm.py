"""The ORM, the test client and a live server, all through pgmux in transaction mode.

Run by tests/django/test_orm.py as ``python -m django test cases.case_orm``: Django's own test
runner creates ``test_djangoapp`` through pgmux's ``*`` entry and migrates it there.
"""

from __future__ import annotations

import json
import urllib.request
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Sum
from django.test import LiveServerTestCase, TestCase, TransactionTestCase
from shop.models import Customer, Order, OrderLine, Product


def _product(n: int, stock: int = 10) -> Product:
    return Product(sku=f"T{n:05d}", name=f"Test {n}", price=Decimal("9.99"), stock=stock)


class Recorder:
    """An execute wrapper that keeps the SQL as it reaches the driver."""

    def __init__(self) -> None:
        self.sql: list[str] = []

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.sql.append(sql)
        return execute(sql, params, many, context)


class OrmTests(TestCase):
    def test_the_test_database_came_through_the_wildcard_entry(self) -> None:
        self.assertEqual(connection.settings_dict["NAME"], "test_djangoapp")
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_database()")
            self.assertEqual(cursor.fetchone()[0], "test_djangoapp")
            cursor.execute("SELECT count(*) FROM django_migrations WHERE app = 'shop'")
            self.assertEqual(cursor.fetchone()[0], 1)

    def test_crud(self) -> None:
        product = Product.objects.create(sku="A1", name="Apple", price=Decimal("1.50"), stock=3)
        self.assertEqual(Product.objects.get(sku="A1").name, "Apple")
        Product.objects.filter(pk=product.pk).update(name="Green apple")
        product.refresh_from_db()
        self.assertEqual(product.name, "Green apple")
        product.delete()
        self.assertFalse(Product.objects.filter(sku="A1").exists())

    def test_atomic_and_savepoints(self) -> None:
        customer = Customer.objects.create(name="Ann", email="ann@example.com")
        with transaction.atomic():
            Order.objects.create(customer=customer)
            try:
                with transaction.atomic():  # a savepoint inside the outer transaction
                    Order.objects.create(customer=customer)
                    raise RuntimeError("roll back to the savepoint")
            except RuntimeError:
                pass
            with transaction.atomic():  # another savepoint, rolled back without an exception
                Order.objects.create(customer=customer)
                transaction.set_rollback(True)
        self.assertEqual(customer.orders.count(), 1)

    def test_select_for_update(self) -> None:
        product = Product.objects.create(sku="L1", name="Lock", price=Decimal("2"), stock=5)
        with transaction.atomic():
            locked = Product.objects.select_for_update().get(pk=product.pk)
            Product.objects.filter(pk=locked.pk).update(stock=F("stock") - 2)
        product.refresh_from_db()
        self.assertEqual(product.stock, 3)

    def test_bulk_operations(self) -> None:
        created = Product.objects.bulk_create(_product(n) for n in range(500))
        self.assertEqual(len(created), 500)
        for product in created:
            product.stock = 7
        Product.objects.bulk_update(created, ["stock"], batch_size=100)
        self.assertEqual(Product.objects.filter(sku__startswith="T", stock=7).count(), 500)
        total = Product.objects.filter(sku__startswith="T").aggregate(s=Sum("stock"))["s"]
        self.assertEqual(total, 3500)
        deleted, _ = Product.objects.filter(sku__startswith="T").delete()
        self.assertEqual(deleted, 500)

    def test_iterator_without_server_side_cursors(self) -> None:
        # DISABLE_SERVER_SIDE_CURSORS (set by the settings helper) makes this safe in
        # transaction mode; a named cursor could be fetched on another server connection.
        self.assertTrue(connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"])
        Product.objects.bulk_create(_product(n) for n in range(300))
        names = [p.name for p in Product.objects.filter(sku__startswith="T").iterator(50)]
        self.assertEqual(len(names), 300)

    def test_client_order_round_trip_and_query_tags(self) -> None:
        customer = Customer.objects.create(name="Bo", email="bo@example.com")
        product = Product.objects.create(sku="P1", name="Pear", price=Decimal("3.00"), stock=2)
        recorder = Recorder()
        with connection.execute_wrapper(recorder):
            response = self.client.post(
                "/orders/", {"customer": customer.pk, "product": product.pk, "quantity": 2}
            )
        self.assertEqual(response.status_code, 201, response.content)
        order = response.json()
        self.assertEqual(order["lines"][0]["quantity"], 2)
        product.refresh_from_db()
        self.assertEqual(product.stock, 0)
        self.assertEqual(
            self.client.post(
                "/orders/", {"customer": customer.pk, "product": product.pk}
            ).status_code,
            409,
        )
        self.assertEqual(self.client.get(f"/orders/{order['id']}/").json()["id"], order["id"])
        tagged = [sql for sql in recorder.sql if "/*route=" in sql]
        self.assertTrue(tagged, recorder.sql)
        self.assertIn("route='orders/',view='order-create'", tagged[0])

    async def test_async_views_and_orm(self) -> None:
        customer = await Customer.objects.acreate(name="Cy", email="cy@example.com")
        product = await Product.objects.acreate(
            sku="Q1", name="Quince", price=Decimal("4"), stock=1
        )
        response = await self.async_client.post(
            "/async/orders/", {"customer": customer.pk, "product": product.pk}
        )
        self.assertEqual(response.status_code, 201, response.content)
        self.assertEqual(response.json(), {"id": response.json()["id"], "found": True, "lines": 1})
        self.assertEqual(await OrderLine.objects.filter(product=product).acount(), 1)

    def test_health_view(self) -> None:
        response = self.client.get("/pgmux/health")
        self.assertEqual(response.status_code, 200, response.content)
        report = response.json()
        self.assertEqual(report["status"], "ok")
        (pgmux,) = report["pgmux"]
        self.assertTrue(pgmux["reachable"])
        pools = {(p["database"], p["user"]): p for p in pgmux["pools"]}
        pool = pools[("test_djangoapp", "app")]
        self.assertEqual(pool["pool_mode"], "transaction")
        self.assertEqual(pool["pool_size"], 5)


class CommitTests(TransactionTestCase):
    """Real commits (no wrapping transaction), as a production request makes them."""

    def test_commit_is_visible_to_a_new_connection(self) -> None:
        with transaction.atomic():
            Product.objects.create(sku="C1", name="Committed", price=Decimal("1"), stock=1)
        connection.close()  # the next query gets a new pgmux client and any server connection
        self.assertTrue(Product.objects.filter(sku="C1").exists())

    def test_rollback_leaves_nothing(self) -> None:
        try:
            with transaction.atomic():
                Product.objects.create(sku="R1", name="Rolled back", price=Decimal("1"))
                raise RuntimeError
        except RuntimeError:
            pass
        self.assertFalse(Product.objects.filter(sku="R1").exists())


class LiveServerTests(LiveServerTestCase):
    def _json(self, path: str, data: dict[str, Any] | None = None) -> tuple[int, Any]:
        body = json.dumps(data).encode() if data is not None else None
        request = urllib.request.Request(
            self.live_server_url + path, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())

    def test_pages_and_an_order_through_a_real_server(self) -> None:
        customer = Customer.objects.create(name="Di", email="di@example.com")
        product = Product.objects.create(sku="S1", name="Sloe", price=Decimal("5"), stock=9)
        status, listing = self._json("/products/")
        self.assertEqual(status, 200)
        self.assertEqual([p["sku"] for p in listing["products"]], ["S1"])
        status, order = self._json(
            "/orders/", {"customer": customer.pk, "product": product.pk, "quantity": 4}
        )
        self.assertEqual(status, 201)
        status, detail = self._json(f"/products/{product.pk}/")
        self.assertEqual((detail["stock"], detail["sold"]), (5, 4))
        status, orders = self._json(f"/customers/{customer.pk}/orders/")
        self.assertEqual(orders["recent"][0]["id"], order["id"])
