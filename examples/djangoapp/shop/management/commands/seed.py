"""``manage.py seed``: customers, products and a few orders (idempotent)."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from shop.models import Customer, Order, OrderLine, Product


class Command(BaseCommand):
    help = "Fill the shop with customers, products and orders (skipped if already there)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--products", type=int, default=1000)
        parser.add_argument("--customers", type=int, default=200)
        parser.add_argument("--orders", type=int, default=500)

    def handle(self, *args: Any, **options: Any) -> None:
        if Product.objects.exists():
            self.stdout.write("already seeded")
            return
        rng = random.Random(42)  # the same data on every run, so runs compare
        with transaction.atomic():
            Customer.objects.bulk_create(
                Customer(name=f"Customer {i}", email=f"customer{i}@example.com")
                for i in range(options["customers"])
            )
            Product.objects.bulk_create(
                Product(
                    sku=f"SKU{i:06d}",
                    name=f"Product {rng.randrange(10**6):06d}",
                    price=Decimal(rng.randrange(100, 100_000)) / 100,
                    stock=10**9,
                )
                for i in range(options["products"])
            )
            customers = list(Customer.objects.values_list("pk", flat=True))
            products = list(Product.objects.all())
            orders = Order.objects.bulk_create(
                Order(customer_id=rng.choice(customers)) for _ in range(options["orders"])
            )
            lines = []
            for order in orders:
                product = rng.choice(products)
                lines.append(
                    OrderLine(order=order, product=product, quantity=1, price=product.price)
                )
                order.total = product.price
            OrderLine.objects.bulk_create(lines)
            Order.objects.bulk_update(orders, ["total"])
        self.stdout.write(
            f"seeded {len(customers)} customers, {len(products)} products, {len(orders)} orders"
        )
