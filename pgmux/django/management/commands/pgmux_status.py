"""``manage.py pgmux_status``: pgmux's pools, clients and servers as tables."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pgmux.django.conf import pgmux_aliases
from pgmux.django.console import ConsoleError, Endpoint, endpoint_for
from pgmux.django.status import SECTIONS, render_status


class Command(BaseCommand):
    help = "Show pgmux's pools, clients and servers (from its admin console)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            action="append",
            dest="aliases",
            metavar="ALIAS",
            help="only the pgmux behind this alias (repeatable)",
        )
        parser.add_argument(
            "--show",
            action="append",
            choices=sorted(SECTIONS),
            dest="sections",
            help="only these tables (repeatable); default: all",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        aliases = options["aliases"] or pgmux_aliases()
        if not aliases:
            raise CommandError("no DATABASES entry goes through pgmux (see pgmux.django.database)")
        by_endpoint: dict[Endpoint, list[str]] = {}
        for alias in aliases:
            by_endpoint.setdefault(endpoint_for(alias), []).append(alias)
        sections = options["sections"] or list(SECTIONS)
        for endpoint, names in by_endpoint.items():
            try:
                self.stdout.write(render_status(endpoint, names, sections))
            except ConsoleError as exc:
                raise CommandError(str(exc)) from exc
