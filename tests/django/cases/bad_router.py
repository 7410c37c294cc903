"""A router with the classic mistake: it sends everything, writes included, to the replica."""

from __future__ import annotations

from typing import Any


class EverythingToReplicaRouter:
    def db_for_read(self, model: type[Any], **hints: Any) -> str:
        return "replica1"

    def db_for_write(self, model: type[Any], **hints: Any) -> str:
        return "replica1"
