"""The ``pgmux`` command: run, check, bench, demo.

``pgmux run`` exits 0 after a shutdown, 2 when the configuration (or the auth_file it names)
cannot be used, and 1 when pgmux cannot start serving it (the port is taken, say); ``pgmux
check`` exits 1 on what ``run`` would exit 2 on. Every such message names file, line and key.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from pgmux import __version__

if TYPE_CHECKING:
    from pgmux.config import Config


def _load(path: str) -> Config:
    """The config and the auth_file it names: all that ``run`` reads before it starts."""
    from pgmux.auth.userlist import UserlistError, load_userlist
    from pgmux.config import ConfigError, load_config

    config = load_config(path)
    auth_file = config.get_str("auth_file")
    if auth_file:
        try:
            load_userlist(auth_file)
        except OSError as exc:
            message = f"cannot read {auth_file}: {exc.strerror}"
            raise ConfigError(message, path=path, key="auth_file") from None
        except UserlistError as exc:
            raise ConfigError(str(exc), path=path, key="auth_file") from None
    return config


def _run(args: argparse.Namespace) -> int:
    from pgmux.config import ConfigError
    from pgmux.proxy.runner import StartupError, configure_logging, run

    try:
        config = _load(args.config)
    except (ConfigError, OSError) as exc:
        print(f"pgmux: {exc}", file=sys.stderr)
        return 2
    verbose = max(config.get_int("verbose"), args.verbose)
    configure_logging(verbose, config.get_str("logfile"))
    try:
        return run(config)
    except StartupError as exc:
        logging.getLogger("pgmux").error("%s", exc)
        if config.get_str("logfile"):
            print(f"pgmux: {exc}", file=sys.stderr)  # the operator is looking here
        return 1


def _check(args: argparse.Namespace) -> int:
    from pgmux.config import ConfigError

    try:
        config = _load(args.config)
    except (ConfigError, OSError) as exc:
        print(f"pgmux check: {exc}", file=sys.stderr)
        return 1
    for warning in config.warnings:
        print(f"warning: {warning}")
    print(f"{args.config}: OK ({len(config.databases)} databases, {len(config.users)} users)")
    return 0


def _bench(rest: list[str]) -> int:
    from pgmux.bench import main as bench_main

    return bench_main(rest)


def _demo(rest: list[str]) -> int:
    from pgmux.demo import main as demo_main

    return demo_main(rest)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        return _bench(argv[1:])
    if argv and argv[0] == "demo":
        return _demo(argv[1:])
    parser = argparse.ArgumentParser(prog="pgmux", description="PostgreSQL connection pooler")
    parser.add_argument("--version", action="version", version=f"pgmux {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run the pooler with CONFIG (pgbouncer.ini or .toml)")
    run_p.add_argument("config")
    run_p.add_argument("-v", "--verbose", action="count", default=0)
    check_p = sub.add_parser("check", help="validate CONFIG and list warnings")
    check_p.add_argument("config")
    sub.add_parser("bench", help="benchmark against PostgreSQL and PgBouncer (see --help)")
    sub.add_parser("demo", help="the Django demo (see --help)")
    args = parser.parse_args(argv)
    if args.command == "run":
        return _run(args)
    return _check(args)
