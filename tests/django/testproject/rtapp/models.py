"""Two related models: enough for migrations, constraints, transactions and locks."""

from __future__ import annotations

from django.db import models


class Shelf(models.Model):
    name = models.CharField(max_length=50, unique=True)


class Item(models.Model):
    shelf = models.ForeignKey(Shelf, on_delete=models.CASCADE, related_name="items")
    name = models.CharField(max_length=50)
    quantity = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = (
            models.UniqueConstraint(fields=["shelf", "name"], name="item_unique_per_shelf"),
        )
