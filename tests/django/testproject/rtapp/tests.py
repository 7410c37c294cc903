"""The project's own test suite, run by ``manage.py test`` through pgmux.

Every test records the database it ran on (``RTPROJECT_TRACE_DIR``), so that the test driving
this suite can tell that ``--parallel`` workers ran on their clones of the test database.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Permission
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.test import TestCase, TransactionTestCase

from rtapp.models import Item, Shelf


def current_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("select current_database()")
        row = cursor.fetchone()
    assert row is not None
    return str(row[0])


class Traced:
    """Record, per worker process, which database each test ran on."""

    def setUp(self) -> None:
        super().setUp()  # type: ignore[misc]
        name = current_database()
        assert name == connection.settings_dict["NAME"], name
        if settings.RTPROJECT_TRACE_DIR:
            with Path(settings.RTPROJECT_TRACE_DIR, f"{os.getpid()}.txt").open("a") as f:
                f.write(name + "\n")


class ShelfTests(Traced, TestCase):
    shelf: Shelf

    @classmethod
    def setUpTestData(cls) -> None:
        cls.shelf = Shelf.objects.create(name="top")

    def test_create_and_read(self) -> None:
        Item.objects.create(shelf=self.shelf, name="bolt", quantity=3)
        self.assertEqual(list(self.shelf.items.values_list("name", "quantity")), [("bolt", 3)])

    def test_unique_violation_rolls_back_to_the_savepoint(self) -> None:
        Item.objects.create(shelf=self.shelf, name="nut")
        with self.assertRaises(IntegrityError), transaction.atomic():
            Item.objects.create(shelf=self.shelf, name="nut")
        self.assertEqual(Item.objects.count(), 1)

    def test_each_test_starts_from_the_class_data(self) -> None:
        self.assertEqual(Shelf.objects.count(), 1)
        self.assertEqual(Item.objects.count(), 0)


class QueryTests(Traced, TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        shelf = Shelf.objects.create(name="bottom")
        Item.objects.bulk_create(
            Item(shelf=shelf, name=f"item{i}", quantity=i) for i in range(1, 11)
        )

    def test_aggregate(self) -> None:
        self.assertEqual(Item.objects.aggregate(total=Sum("quantity"))["total"], 55)

    def test_select_for_update(self) -> None:
        with transaction.atomic():
            item = Item.objects.select_for_update().get(name="item5")
            item.quantity += 1
            item.save()
        self.assertEqual(Item.objects.get(name="item5").quantity, 6)

    def test_iterator(self) -> None:
        names = [item.name for item in Item.objects.order_by("quantity").iterator(chunk_size=3)]
        self.assertEqual(names, [f"item{i}" for i in range(1, 11)])


class CommitTests(Traced, TransactionTestCase):
    def test_commit_is_visible(self) -> None:
        Shelf.objects.create(name="committed")
        self.assertTrue(Shelf.objects.filter(name="committed").exists())

    def test_rollback(self) -> None:
        with self.assertRaises(ZeroDivisionError), transaction.atomic():
            Shelf.objects.create(name="rolled back")
            1 / 0  # noqa: B018
        self.assertFalse(Shelf.objects.exists())

    def test_flushed_between_tests(self) -> None:
        self.assertEqual(Shelf.objects.count(), 0)


class DatabaseTests(Traced, TestCase):
    def test_runs_on_a_test_database(self) -> None:
        self.assertTrue(current_database().startswith("test_"))

    def test_migrations_applied(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("select name from django_migrations where app = 'rtapp'")
            self.assertEqual(cursor.fetchall(), [("0001_initial",)])

    def test_post_migrate_created_permissions(self) -> None:
        count = Permission.objects.filter(content_type__app_label="rtapp").count()
        self.assertEqual(count, 8)  # add, change, delete, view for each model
