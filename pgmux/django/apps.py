"""The Django app: ``INSTALLED_APPS += ["pgmux.django"]`` (label ``pgmux``)."""

from __future__ import annotations

from django.apps import AppConfig
from django.db.backends.signals import connection_created


class PgmuxConfig(AppConfig):
    name = "pgmux.django"
    label = "pgmux"
    verbose_name = "pgmux"

    def ready(self) -> None:
        from pgmux.django.checks import register_checks
        from pgmux.django.tagging import install

        register_checks()
        # dispatch_uid: ready() may run more than once in tests; one receiver is enough.
        connection_created.connect(install, dispatch_uid="pgmux.django.tagging")
