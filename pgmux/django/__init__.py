"""pgmux.django: run a Django project on pgmux, and see what it does there.

* ``database(url)``: a ``DATABASES`` entry for a database behind pgmux (importable from
  settings.py: this module imports nothing from Django);
* ``pgmux.django.router.PrimaryReplicaRouter``: reads to replicas, read-your-writes;
* ``pgmux.django.middleware.PgmuxMiddleware``: request scope and sqlcommenter query tags;
* ``pgmux.django.views.health``: JSON health for load balancers;
* ``manage.py check`` (ids ``pgmux.E00x``/``W00x``), ``pgmux_status``, ``pgmux_config``.

See docs/django.md.
"""

from __future__ import annotations

from pgmux.django.database import database

__all__ = ["database"]
