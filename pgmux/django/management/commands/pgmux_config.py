"""``manage.py pgmux_config``: print a pgmux ``pgbouncer.ini`` for settings.DATABASES."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pgmux.django.iniconfig import IniOptions, plan, render, render_userlist


class Command(BaseCommand):
    help = (
        "Print a pgmux configuration (pgbouncer.ini) that pools the databases in "
        "settings.DATABASES."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        defaults = IniOptions()
        parser.add_argument("--listen-addr", default=defaults.listen_addr)
        parser.add_argument("--listen-port", type=int, default=defaults.listen_port)
        parser.add_argument(
            "--pool-mode",
            default=defaults.pool_mode,
            choices=("session", "transaction", "statement"),
        )
        parser.add_argument(
            "--pool-size",
            type=int,
            default=defaults.default_pool_size,
            help="default_pool_size: server connections per (database, user)",
        )
        parser.add_argument("--max-client-conn", type=int, default=defaults.max_client_conn)
        parser.add_argument("--auth-file", default=defaults.auth_file)
        parser.add_argument("--admin-user", default=None)
        parser.add_argument(
            "--write-userlist",
            metavar="PATH",
            help="also write the auth_file, with the passwords from DATABASES",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        result = plan(settings.DATABASES)
        if not result.databases:
            raise CommandError("no direct PostgreSQL entry in DATABASES to derive pgmux from")
        ini_options = IniOptions(
            listen_addr=options["listen_addr"],
            listen_port=options["listen_port"],
            pool_mode=options["pool_mode"],
            default_pool_size=options["pool_size"],
            max_client_conn=options["max_client_conn"],
            auth_file=options["auth_file"],
            admin_user=options["admin_user"],
        )
        self.stdout.write(render(result, ini_options), ending="")
        if options["write_userlist"]:
            path = Path(options["write_userlist"])
            path.write_text(render_userlist(result))
            path.chmod(0o600)
            self.stderr.write(f"wrote {path} ({len(result.users)} users)")
