"""Configuration: every pgmux setting declared once, and the two file formats that set them.

Concern: turn a ``pgbouncer.ini`` (read the way PgBouncer reads it) or a pgmux TOML file into a
typed, validated :class:`Config`.

The :data:`SETTINGS` table is the only declaration of a ``[pgbouncer]``/``[pgmux]`` key: its name,
type, default, whether RELOAD may change it, and its documentation. Both parsers, validation,
``SHOW CONFIG`` (:func:`format_value`, :func:`show_config_rows`), reload rules
(:func:`diff_for_reload`) and ``docs/config.md`` (:func:`render_docs`) are derived from it, as the
``[databases]`` and ``[users]`` parameters are derived from :data:`DATABASE_PARAMS` and
:data:`USER_PARAMS`.

Contract:

* A bad value for a key pgmux knows raises :class:`ConfigError` naming file, line and key.
* A key PgBouncer knows but pgmux does not implement, or a key nobody knows, never fails the load
  (an existing pgbouncer.ini must be readable as it is) and is never dropped silently: each adds
  a line to ``Config.warnings``.
* The only I/O is reading the named file and the files it names in ``%include`` lines.
"""

from __future__ import annotations

import math
import os
import re
import textwrap
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast


class ConfigError(Exception):
    """A configuration that cannot be used, with where it went wrong."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.key = key

    def __str__(self) -> str:
        parts = [_where(self.path, self.line), self.key or "", self.message]
        return ": ".join(part for part in parts if part)


def _where(path: str | None, line: int | None) -> str:
    if path is not None and line is not None:
        return f"{path} line {line}"
    if line is not None:
        return f"line {line}"
    return path or ""


@dataclass(frozen=True)
class Setting:
    """One declared key. ``type`` is one of the kinds in :data:`KINDS`."""

    name: str
    type: str
    default: object
    reloadable: bool
    doc: str
    choices: tuple[str, ...] = ()
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None


# Kind -> how the docs name it. The Python value each kind produces: int -> int, bool -> bool,
# str/enum -> str, list -> tuple[str, ...], seconds -> float, mode -> int (file permission bits).
KINDS: dict[str, str] = {
    "int": "integer",
    "bool": "boolean",
    "str": "string",
    "enum": "enum",
    "list": "list",
    "seconds": "seconds",
    "mode": "octal mode",
}

_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_DEFAULT_AUTH_QUERY = (
    "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END "
    "FROM pg_authid WHERE rolname=$1 AND rolcanlogin"
)
_POOL_MODES = ("session", "transaction", "statement")


def _secs(name: str, default: float, doc: str, reloadable: bool = True) -> Setting:
    return Setting(name, "seconds", float(default), reloadable, doc, unit="seconds", minimum=0)


def _count(name: str, default: int, doc: str, reloadable: bool = True, minimum: int = 0) -> Setting:
    return Setting(name, "int", default, reloadable, doc, minimum=minimum)


# fmt: off
# The tables below are laid out by hand: one declaration per setting reads as a table.
_LISTENING = (
    Setting("listen_addr", "str", "127.0.0.1", False,
            "Comma-separated addresses to accept TCP connections on. `*` means every address; "
            "empty disables TCP. PgBouncer listens on no TCP address when this is unset; pgmux "
            "defaults to loopback so an unconfigured pooler is reachable only from the same host."),
    Setting("listen_port", "int", 6432, False,
            "Port for TCP connections, also used in the Unix socket's file name "
            "(`.s.PGSQL.<port>`).",
            minimum=1, maximum=65535),
    Setting("unix_socket_dir", "str", "/tmp", False,
            "Directory for the listening Unix socket; empty disables it. Databases without `host` "
            "connect through a socket in this directory."),
    Setting("unix_socket_mode", "mode", 0o777, False,
            "Permission bits of the listening Unix socket, in octal.",
            maximum=0o777, minimum=0),
    Setting("so_reuseport", "bool", False, False,
            "Set `SO_REUSEPORT` on TCP listening sockets, so that several pooler processes can "
            "share one port."),
    _count("workers", 1,
           "pgmux only. Number of worker processes serving clients; 1 runs a single process.",
           reloadable=False, minimum=1),
    Setting("tcp_keepalive", "bool", True, True,
            "Turn on TCP keepalive, with the operating system's timings, on client and server "
            "sockets."),
    Setting("pkt_buf", "int", 4096, False,
            "Size of the buffer packets are read into and written from.",
            unit="bytes", minimum=512),
    Setting("max_packet_size", "int", 2147483647, True,
            "Largest protocol message relayed; a client or server sending a larger one is "
            "disconnected. A query or a result row is one message. Before a client has logged "
            "in, its password or SASL messages may be at most 65535 bytes, as in PostgreSQL.",
            unit="bytes", minimum=1024, maximum=2147483647),
    Setting("user", "str", "", False,
            "If set, the Unix user to switch to after startup; possible only when started as "
            "root."),
    Setting("pidfile", "str", "", False,
            "File to write the process ID to; empty writes none."),
    Setting("conffile", "str", "", True,
            "The configuration file the next RELOAD reads. Shows the file in use; set it to "
            "switch files at the next RELOAD."),
)

_AUTHENTICATION = (
    Setting("auth_type", "enum", "scram-sha-256", True,
            "How clients prove who they are. `scram-sha-256`: SCRAM; `auth_file` must hold SCRAM "
            "secrets or plain-text passwords. `md5`: MD5 challenge, or SCRAM for users whose "
            "stored secret is a SCRAM secret. `plain`: clear-text password, to be avoided. "
            "`trust`: no password, but the user must be known. `any`: no password and the user "
            "name is not checked; every database then needs a fixed `user`. pgmux defaults to "
            "`scram-sha-256` where PgBouncer defaults to `md5`. PgBouncer's `cert`, `hba`, `pam` "
            "and `ldap` are refused rather than weakened.",
            choices=("scram-sha-256", "md5", "plain", "trust", "any")),
    Setting("auth_file", "str", "", True,
            "File of user names and password secrets in PgBouncer's `userlist.txt` format: "
            "`\"user\" \"secret\"` per line."),
    Setting("auth_user", "str", "", True,
            "User that runs `auth_query` to look up clients missing from `auth_file`. Its own "
            "password comes from `auth_file`."),
    Setting("auth_query", "str", _DEFAULT_AUTH_QUERY, True,
            "Query returning a user's name and password secret, with the user name as `$1`. It "
            "runs as `auth_user` in `auth_dbname`, or in the database the client asked for."),
    Setting("auth_dbname", "str", "", True,
            "The `[databases]` entry in which `auth_query` runs; empty means the database the "
            "client asked for."),
    Setting("admin_users", "list", (), True,
            "Users allowed every command on the admin console (database `pgbouncer` or `pgmux`)."),
    Setting("stats_users", "list", (), True,
            "Users allowed the read-only `SHOW` commands on the admin console."),
)

_POOLS = (
    Setting("pool_mode", "enum", "session", True,
            "When a server connection goes back to its pool: `session` when the client "
            "disconnects; `transaction` when a transaction ends; `statement` after every "
            "statement, so multi-statement transactions are refused. Can be set per database and "
            "per user.",
            choices=_POOL_MODES),
    _count("default_pool_size", 20,
           "Server connections allowed per (database, user) pool, unless the database or the user "
           "sets `pool_size`."),
    _count("min_pool_size", 0,
           "Server connections each pool keeps open even when idle, so that load arriving after a "
           "quiet period does not wait for logins. 0 keeps none."),
    _count("reserve_pool_size", 0,
           "Extra server connections a pool may open once a client has waited "
           "`reserve_pool_timeout`. 0 disables the reserve."),
    _secs("reserve_pool_timeout", 5,
          "How long a client waits before the pool's reserve may be used."),
    _count("max_client_conn", 100,
           "Client connections accepted in total. Raise the file descriptor limit to match.",
           minimum=1),
    _count("max_db_connections", 0,
           "Server connections allowed per database, over all of its pools. 0 means no limit."),
    _count("max_user_connections", 0,
           "Server connections allowed per user, over all of its pools. 0 means no limit."),
    Setting("server_round_robin", "bool", False, True,
            "Hand out idle server connections in turn instead of reusing the most recently used "
            "one first. Useful when one address spreads connections over several servers."),
    _count("max_prepared_statements", 200,
           "In transaction and statement mode: protocol-level named prepared statements kept "
           "prepared on each server connection (least recently used are closed first). A client's "
           "statement is prepared again on whichever server connection it lands on. 0 turns this "
           "tracking off."),
    _count("max_client_prepared_statements", 10000,
           "pgmux-only. Named prepared statements one client may hold at once in transaction and "
           "statement mode; a client going past it is disconnected with an error naming this "
           "setting, so that no client can make pgmux's memory grow without bound."),
    Setting("session_state", "enum", "pin", True,
            "pgmux-only. What transaction and statement mode do when a client runs something "
            "whose effect outlives the transaction (SET other than the tracked parameters, "
            "LISTEN, session advisory locks, temporary tables, WITH HOLD cursors, SQL PREPARE, "
            "LOAD): `pin` keeps that server connection for the client until it disconnects or "
            "releases the state, and runs `server_reset_query` on it before anyone else gets it "
            "(also after a release, which pgmux sees sent but not whether it took effect); "
            "`error` refuses the statement; `allow` lets it through as PgBouncer does, so the "
            "state may reach the next client.",
            choices=("pin", "error", "allow")),
)

_SERVERS = (
    Setting("server_reset_query", "str", "DISCARD ALL", True,
            "Query run on a server connection released by a session-mode client, or by a "
            "client pinned for session state in transaction or statement mode, to clear its "
            "session state. Empty runs none; a pinned client's server connection is then closed "
            "instead of reused."),
    Setting("server_reset_query_always", "bool", False, True,
            "Run `server_reset_query` in transaction and statement mode too: a workaround for "
            "applications that keep session state where they should not."),
    Setting("server_check_query", "str", "<empty>", True,
            "Query run on a server connection idle longer than `server_check_delay` before it is "
            "reused. The literal `<empty>` sends an empty query (PgBouncer 1.25's default; "
            "PgBouncer 1.18 to 1.24 used `select 1`). An empty value disables the check."),
    _secs("server_check_delay", 30,
          "Server connections used more recently than this are reused without "
          "`server_check_query`. 0 always checks."),
    _secs("server_lifetime", 3600,
          "Close an unused server connection that has been open this long. 0 uses each connection "
          "once."),
    _secs("server_idle_timeout", 600,
          "Close a server connection that has been idle this long. 0 disables."),
    _secs("server_connect_timeout", 15,
          "Abandon a server connection whose connect and login take longer than this."),
    _secs("server_login_retry", 15,
          "After a failed server login, wait this long before trying again; meanwhile that pool's "
          "new clients get an error at once."),
    Setting("application_name_add_host", "bool", False, True,
            "Append the client's address and port to `application_name` when a client connects, to"
            " trace queries back to their source."),
    Setting("track_extra_parameters", "list", ("IntervalStyle",), True,
            "Parameters tracked per client and restored on whichever server connection it gets, "
            "besides `client_encoding`, `DateStyle`, `TimeZone`, `standard_conforming_strings` and"
            " `application_name`. Only parameters the server reports in ParameterStatus can be "
            "tracked."),
    Setting("ignore_startup_parameters", "list", (), True,
            "Startup parameters accepted from clients and ignored, instead of refusing the "
            "connection; for example `extra_float_digits` or `options`."),
)

_TIMEOUTS = (
    _secs("client_login_timeout", 60,
          "Disconnect a client that has not finished logging in after this long."),
    _secs("client_idle_timeout", 0,
          "Disconnect a client idle longer than this. 0 disables. Meant for vanished network "
          "peers, not as a session limit."),
    _secs("idle_transaction_timeout", 0,
          "Disconnect a client that stays idle inside a transaction longer than this. 0 disables."),
    _secs("query_timeout", 0,
          "Cancel a query running longer than this. 0 disables. A guard against lost networks: "
          "PostgreSQL's `statement_timeout` is the place for ordinary limits."),
    _secs("query_wait_timeout", 120,
          "Disconnect a client whose query has waited this long for a server connection. 0 waits "
          "indefinitely."),
    _secs("cancel_wait_timeout", 10,
          "Drop a cancel request that could not be forwarded to a server within this time. 0 waits"
          " indefinitely."),
    _secs("suspend_timeout", 10,
          "How long SUSPEND waits for buffers to be flushed before closing connections."),
    _secs("shutdown_timeout", 30,
          "pgmux only. How long a graceful shutdown waits for clients to finish before closing "
          "them. 0 waits indefinitely, as PgBouncer does on SIGTERM."),
)

_LOGGING = (
    Setting("logfile", "str", "", True,
            "File to append log messages to; empty writes no log file."),
    Setting("log_connections", "bool", True, True,
            "Log successful client logins."),
    Setting("log_disconnections", "bool", True, True,
            "Log disconnections, with their reason."),
    Setting("log_pooler_errors", "bool", True, True,
            "Log the errors the pooler itself sends to clients."),
    _count("verbose", 0,
           "Log verbosity; each step adds detail, like each `-v` on the command line."),
    Setting("stats_period", "seconds", 60.0, True,
            "Period over which the averages shown by `SHOW STATS` are computed.",
            unit="seconds", minimum=1),
)

_TLS = (
    Setting("client_tls_sslmode", "enum", "disable", True,
            "TLS for connections from clients. pgmux does not implement TLS yet: values other than"
            " `disable` are accepted with a warning, and connections stay unencrypted.",
            choices=_SSLMODES),
    Setting("server_tls_sslmode", "enum", "disable", True,
            "TLS for connections to PostgreSQL. pgmux does not implement TLS yet: values other "
            "than `disable` are accepted with a warning, and connections stay unencrypted. "
            "(PgBouncer's current default is `prefer`.)",
            choices=_SSLMODES),
)
SETTING_GROUPS: tuple[tuple[str, tuple[Setting, ...]], ...] = (
    ("Listening and process", _LISTENING),
    ("Authentication and admin console access", _AUTHENTICATION),
    ("Pool sizes and limits", _POOLS),
    ("Server connections", _SERVERS),
    ("Client timeouts", _TIMEOUTS),
    ("Logging and statistics", _LOGGING),
    ("TLS", _TLS),
)
SETTINGS: tuple[Setting, ...] = tuple(s for _, group in SETTING_GROUPS for s in group)
SETTINGS_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}

# [pgbouncer] keys that PgBouncer (up to 1.25) documents and pgmux does not implement.
KNOWN_UNSUPPORTED: frozenset[str] = frozenset(
    {
        "auth_hba_file", "auth_ident_file", "auth_ldap_options", "autodb_idle_timeout",
        "client_tls13_ciphers", "client_tls_ca_file", "client_tls_cert_file",
        "client_tls_ciphers", "client_tls_dheparams", "client_tls_ecdhcurve",
        "client_tls_key_file", "client_tls_protocols", "disable_pqexec", "dns_max_ttl",
        "dns_nxdomain_ttl", "dns_zone_check_period", "job_name", "listen_backlog", "log_stats",
        "login_notify_message", "max_db_client_connections", "max_user_client_connections",
        "peer_id", "pool_idle_timeout", "query_wait_notify", "resolv_conf", "sbuf_loopcnt",
        "scram_iterations", "server_fast_close", "server_tls13_ciphers", "server_tls_ca_file",
        "server_tls_cert_file", "server_tls_ciphers", "server_tls_key_file",
        "server_tls_protocols", "service_name", "syslog", "syslog_facility", "syslog_ident",
        "tcp_defer_accept", "tcp_keepcnt", "tcp_keepidle", "tcp_keepintvl",
        "tcp_socket_buffer", "tcp_user_timeout", "transaction_timeout", "unix_socket_group",
    }
)

# auth_type values PgBouncer accepts that pgmux refuses: accepting them as something weaker
# would silently change who can log in.
_REFUSED_CHOICES: dict[str, tuple[str, ...]] = {"auth_type": ("cert", "hba", "pam", "ldap")}


def _param(name: str, kind: str, doc: str, choices: tuple[str, ...] = ()) -> Setting:
    unit = "seconds" if kind == "seconds" else ""
    minimum = 0 if kind in ("int", "seconds") else None
    return Setting(name, kind, None, True, doc, choices, unit, minimum)


DATABASE_PARAMS: tuple[Setting, ...] = (
    _param("dbname", "str", "Database name on the server. Not set: the name the client asked for."),
    _param("host", "str",
           "Server host name or IP address, or the directory (starting with `/`) of the server's "
           "Unix socket. Not set: a Unix socket in `unix_socket_dir`, or localhost when that is "
           "empty. Host lists are not supported."),
    Setting("port", "int", 5432, True, "Server port.", minimum=1, maximum=65535),
    _param("user", "str",
           "Log in to the server as this user for every client, giving the database a single "
           "pool. Not set: each client's own user name."),
    _param("password", "str", "Password for `user`. Not set: taken from `auth_file`."),
    _param("auth_user", "str", "Overrides the global `auth_user` for this database."),
    _param("pool_size", "int", "Overrides `default_pool_size`."),
    _param("min_pool_size", "int", "Overrides `min_pool_size`."),
    _param("reserve_pool_size", "int",
           "Overrides `reserve_pool_size`. PgBouncer's older spelling `reserve_pool` is accepted."),
    _param("pool_mode", "enum", "Overrides `pool_mode`.", _POOL_MODES),
    _param("max_db_connections", "int", "Overrides `max_db_connections`."),
    _param("connect_query", "str",
           "Query run once on each new server connection before any client uses it."),
    _param("client_encoding", "str", "`client_encoding` requested from the server."),
    _param("datestyle", "str", "`DateStyle` requested from the server."),
    _param("timezone", "str", "`TimeZone` requested from the server."),
    _param("application_name", "str", "`application_name` set on server connections."),
)
DATABASE_ALIASES: dict[str, str] = {"reserve_pool": "reserve_pool_size"}
DATABASE_UNSUPPORTED: frozenset[str] = frozenset(
    {"auth_query", "auth_dbname", "query_wait_timeout", "load_balance_hosts",
     "target_session_attrs", "max_db_client_connections", "server_lifetime"}
)

USER_PARAMS: tuple[Setting, ...] = (
    _param("pool_mode", "enum", "Overrides `pool_mode` for this user's pools.", _POOL_MODES),
    _param("pool_size", "int", "Overrides the database's `pool_size` or `default_pool_size`."),
    _param("reserve_pool_size", "int", "Overrides the reserve pool size."),
    _param("max_user_connections", "int", "Overrides `max_user_connections`."),
    _param("query_timeout", "seconds", "Overrides `query_timeout`."),
    _param("idle_transaction_timeout", "seconds", "Overrides `idle_transaction_timeout`."),
    _param("client_idle_timeout", "seconds", "Overrides `client_idle_timeout`."),
)
USER_UNSUPPORTED: frozenset[str] = frozenset(
    {"query_wait_timeout", "transaction_timeout", "max_user_client_connections"}
)
# fmt: on

RESERVED_DATABASES: frozenset[str] = frozenset({"pgbouncer", "pgmux"})


@dataclass
class DatabaseEntry:
    """One ``[databases]`` entry. ``None`` means "not set": the global setting applies."""

    name: str
    host: str | None = None
    port: int = 5432
    dbname: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    auth_user: str | None = None
    pool_size: int | None = None
    min_pool_size: int | None = None
    reserve_pool_size: int | None = None
    pool_mode: str | None = None
    max_db_connections: int | None = None
    connect_query: str | None = None
    client_encoding: str | None = None
    datestyle: str | None = None
    timezone: str | None = None
    application_name: str | None = None


@dataclass
class UserEntry:
    """One ``[users]`` entry. ``None`` means "not set": the database or global setting applies."""

    name: str
    pool_mode: str | None = None
    pool_size: int | None = None
    reserve_pool_size: int | None = None
    max_user_connections: int | None = None
    query_timeout: float | None = None
    idle_transaction_timeout: float | None = None
    client_idle_timeout: float | None = None


@dataclass
class Config:
    """A loaded configuration. Settings are also attributes: ``cfg.listen_port``."""

    settings: dict[str, object]
    databases: dict[str, DatabaseEntry] = field(default_factory=dict)
    users: dict[str, UserEntry] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    path: str | None = None

    def get(self, name: str) -> object:
        return self.settings[name]

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails. Read through __dict__ so that a half-built
        # instance (copy, pickle) raises AttributeError instead of recursing.
        settings = self.__dict__.get("settings")
        if settings is None or name not in settings:
            raise AttributeError(f"{type(self).__name__!r} has no attribute or setting {name!r}")
        return settings[name]

    def get_int(self, name: str) -> int:
        value = self.settings[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"setting {name!r} is not an integer")
        return value

    def get_float(self, name: str) -> float:
        value = self.settings[name]
        if not isinstance(value, float):
            raise TypeError(f"setting {name!r} is not a number of seconds")
        return value

    def get_bool(self, name: str) -> bool:
        value = self.settings[name]
        if not isinstance(value, bool):
            raise TypeError(f"setting {name!r} is not a boolean")
        return value

    def get_str(self, name: str) -> str:
        value = self.settings[name]
        if not isinstance(value, str):
            raise TypeError(f"setting {name!r} is not a string")
        return value

    def get_list(self, name: str) -> tuple[str, ...]:
        value = self.settings[name]
        if not isinstance(value, tuple):
            raise TypeError(f"setting {name!r} is not a list")
        return cast(tuple[str, ...], value)


# --- values ---------------------------------------------------------------------------------


class _Invalid(Exception):
    """A value problem without its location; the caller adds file, line and key."""


_INT_RE = re.compile(r"[+-]?[0-9]+")
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_OCTAL_RE = re.compile(r"(?:0o?)?([0-7]+)")
_TRUE = frozenset({"1", "yes", "true", "on"})
_FALSE = frozenset({"0", "no", "false", "off"})


def split_list(text: str) -> tuple[str, ...]:
    """Split a comma-separated value (``admin_users``, ``listen_addr`` …), dropping blanks."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _comment_hint(text: str) -> str:
    # PgBouncer only treats ';' and '#' as comments at the start of a line.
    if ";" in text or "#" in text:
        return " (comments must be on a line of their own)"
    return ""


def _parse_text(setting: Setting, text: str) -> object:
    """Turn the text of a value, as written in pgbouncer.ini, into the setting's Python value."""
    kind = setting.type
    text = text.strip()
    if kind == "str":
        return text
    if kind == "list":
        return split_list(text)
    if kind == "bool":
        lowered = text.lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
        raise _Invalid(f"expected a boolean (0/1, yes/no, true/false, on/off), got {text!r}")
    if kind == "enum":
        return _parse_choice(setting, text)
    if kind == "int" and _INT_RE.fullmatch(text):
        return _check_bounds(setting, int(text))
    if kind == "seconds" and _NUMBER_RE.fullmatch(text):
        return _check_bounds(setting, float(text))
    if kind == "mode" and (match := _OCTAL_RE.fullmatch(text)):
        return _check_bounds(setting, int(match.group(1), 8))
    expected = {"int": "an integer", "seconds": "a number of seconds", "mode": "an octal mode"}
    raise _Invalid(f"expected {expected[kind]}, got {text!r}{_comment_hint(text)}")


def _parse_choice(setting: Setting, text: str) -> str:
    lowered = text.lower()
    if lowered in setting.choices:
        return lowered
    allowed = ", ".join(setting.choices)
    if lowered in _REFUSED_CHOICES.get(setting.name, ()):
        raise _Invalid(
            f"{text!r} is a PgBouncer method pgmux does not support; use one of {allowed}"
        )
    raise _Invalid(f"expected one of {allowed}, got {text!r}")


def _check_bounds(setting: Setting, value: float) -> Any:
    if not math.isfinite(value):
        raise _Invalid(f"expected a finite number, got {value!r}")
    shown = format_value(setting, value)
    if setting.minimum is not None and value < setting.minimum:
        limit = format_value(setting, setting.minimum)
        raise _Invalid(f"must be at least {limit}, got {shown}")
    if setting.maximum is not None and value > setting.maximum:
        limit = format_value(setting, setting.maximum)
        raise _Invalid(f"must be at most {limit}, got {shown}")
    return value


def _coerce(setting: Setting, value: object) -> object:
    """Convert a value from either format: text (INI, or a TOML string) or a native TOML value."""
    if isinstance(value, str):
        return _parse_text(setting, value)
    kind = setting.type
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "bool" and (isinstance(value, bool) or value in (0, 1)):
        return bool(value)  # 0 and 1 too: that is how pgbouncer.ini spells booleans
    if kind in ("int", "mode") and is_number and isinstance(value, int):
        return _check_bounds(setting, value)
    if kind == "seconds" and is_number:
        return _check_bounds(setting, float(cast(float, value)))
    if kind == "list" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return split_list(",".join(value))
    raise _Invalid(f"expected {KINDS[kind]}, got {type(value).__name__} {value!r}")


def _format_seconds(value: float) -> str:
    # PgBouncer prints seconds with %g: "3600", "0.5". Whole numbers are printed without a
    # fraction and without %g's exponent so large values stay readable.
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def format_value(setting: Setting, value: object) -> str:
    """Text of a value as ``SHOW CONFIG`` prints it (and as pgbouncer.ini accepts it back)."""
    kind = setting.type
    if value is None:
        return ""
    if kind == "bool":
        return "1" if value else "0"
    if kind == "list" and isinstance(value, tuple | list):
        return ",".join(str(item) for item in value)
    if kind == "seconds" and isinstance(value, int | float):
        return _format_seconds(float(value))
    if kind == "mode" and isinstance(value, int | float):
        # PgBouncer prints the mode in decimal (511); octal is what an operator wrote.
        return f"0{int(value):03o}"
    return _format_seconds(value) if isinstance(value, float) else str(value)


def show_config_rows(cfg: Config) -> list[tuple[str, str, str, str]]:
    """Rows of ``SHOW CONFIG``: key, value, default, changeable; sorted by key as PgBouncer."""
    return [
        (
            s.name,
            format_value(s, cfg.settings[s.name]),
            format_value(s, s.default),
            "yes" if s.reloadable else "no",
        )
        for s in sorted(SETTINGS, key=lambda s: s.name)
    ]


# --- connection strings ----------------------------------------------------------------------

_CONN_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_connstring(text: str) -> dict[str, str]:
    """Parse libpq ``key=value`` pairs; values may be single-quoted, ``\\`` escapes a character.

    As in libpq, spaces may surround ``=``, and an unquoted value runs to the next space. Keys
    are lowercased; a repeated key keeps its last value.
    """
    result: dict[str, str] = {}
    pos = _skip_spaces(text, 0)
    while pos < len(text):
        match = _CONN_KEY_RE.match(text, pos)
        if match is None:
            raise ConfigError(f"connection string: expected a parameter name at {text[pos:]!r}")
        key = match.group().lower()
        pos = _skip_spaces(text, match.end())
        if not text.startswith("=", pos):
            raise ConfigError(f"connection string: expected '=' after {key!r}")
        value, pos = _read_conn_value(text, _skip_spaces(text, pos + 1), key)
        result[key] = value
        pos = _skip_spaces(text, pos)
    return result


def _skip_spaces(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _read_conn_value(text: str, pos: int, key: str) -> tuple[str, int]:
    quoted = text.startswith("'", pos)
    pos += quoted
    chars: list[str] = []
    while pos < len(text):
        char = text[pos]
        if char == "\\" and pos + 1 < len(text):
            chars.append(text[pos + 1])
            pos += 2
            continue
        if (quoted and char == "'") or (not quoted and char.isspace()):
            return "".join(chars), pos + quoted
        chars.append(char)
        pos += 1
    if quoted:
        raise ConfigError(f"connection string: unterminated quoted value for {key!r}")
    return "".join(chars), pos


# --- building a Config from either format ---------------------------------------------------


@dataclass(frozen=True)
class _Loc:
    path: str | None
    line: int | None

    def error(self, key: str | None, message: str) -> ConfigError:
        return ConfigError(message, path=self.path, line=self.line, key=key)

    def text(self, message: str) -> str:
        where = _where(self.path, self.line)
        return f"{where}: {message}" if where else message


_Locate = Callable[[str], _Loc]
_DB_PARAMS_BY_NAME = {s.name: s for s in DATABASE_PARAMS}
_USER_PARAMS_BY_NAME = {s.name: s for s in USER_PARAMS}


class _Builder:
    """Collects values from one parse, then fills defaults and checks the whole."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.values: dict[str, object] = {}
        self.locs: dict[str, _Loc] = {}
        self.databases: dict[str, DatabaseEntry] = {}
        self.users: dict[str, UserEntry] = {}
        self.warnings: list[str] = []

    def warn(self, loc: _Loc, message: str) -> None:
        self.warnings.append(loc.text(message))

    def set_setting(self, name: str, value: object, loc: _Loc) -> None:
        setting = SETTINGS_BY_NAME.get(name)
        if setting is None:
            what = "unsupported" if name in KNOWN_UNSUPPORTED else "unknown"
            self.warn(loc, f"{what} key {name!r} is ignored")
            return
        try:
            self.values[name] = _coerce(setting, value)
        except _Invalid as exc:
            raise loc.error(name, str(exc)) from None
        self.locs[name] = loc

    def add_database(self, name: str, params: Mapping[str, object], locate: _Locate) -> None:
        if name in RESERVED_DATABASES:
            message = f"database name {name!r} is reserved for the admin console"
            raise locate("").error(f"databases.{name}", message)
        values = self._entry_values("databases", name, params, locate)
        host = values.get("host")
        if isinstance(host, str) and "," in host:
            message = "host lists are not supported by pgmux; give a single host"
            raise locate("host").error(f"databases.{name}.host", message)
        self.databases[name] = DatabaseEntry(name, **values)

    def add_user(self, name: str, params: Mapping[str, object], locate: _Locate) -> None:
        self.users[name] = UserEntry(name, **self._entry_values("users", name, params, locate))

    def _entry_values(
        self, section: str, name: str, params: Mapping[str, object], locate: _Locate
    ) -> dict[str, Any]:
        is_db = section == "databases"
        table = _DB_PARAMS_BY_NAME if is_db else _USER_PARAMS_BY_NAME
        unsupported = DATABASE_UNSUPPORTED if is_db else USER_UNSUPPORTED
        values: dict[str, Any] = {}
        for raw_key, raw_value in params.items():
            key = raw_key.lower()
            key = DATABASE_ALIASES.get(key, key) if is_db else key
            setting = table.get(key)
            if setting is None:
                what = "unsupported" if key in unsupported else "unknown"
                message = f"[{section}] {name}: {what} parameter {raw_key!r} is ignored"
                self.warn(locate(raw_key), message)
                continue
            try:
                value = _coerce(setting, raw_value)
            except _Invalid as exc:
                raise locate(raw_key).error(f"{section}.{name}.{raw_key}", str(exc)) from None
            if value != "":  # an empty string means "not set", as in libpq
                values[key] = value
        return values

    def finish(self) -> Config:
        settings = {s.name: self.values.get(s.name, s.default) for s in SETTINGS}
        if not settings["conffile"] and self.path is not None:
            settings["conffile"] = self.path  # SHOW CONFIG shows the file in use, as PgBouncer
        self._check_whole(settings)
        return Config(settings, self.databases, self.users, self.warnings, self.path)

    def _check_whole(self, settings: dict[str, object]) -> None:
        unset = _Loc(self.path, None)
        for name in ("client_tls_sslmode", "server_tls_sslmode"):
            if settings[name] != "disable":
                message = (
                    f"{name} = {settings[name]}: TLS is not implemented by pgmux yet; "
                    "connections will not be encrypted"
                )
                self.warn(self.locs.get(name, unset), message)
        auth_type = settings["auth_type"]
        if auth_type != "any" and not settings["auth_file"] and not settings["auth_user"]:
            message = (
                f"auth_type = {auth_type} looks users up in auth_file or through auth_user, "
                "and neither is set"
            )
            self.warn(self.locs.get("auth_type", unset), message)


# --- pgbouncer.ini --------------------------------------------------------------------------

_SETTINGS_SECTIONS = frozenset({"pgbouncer", "pgmux"})
_KNOWN_SECTIONS = _SETTINGS_SECTIONS | {"databases", "users"}
_BARE_NAME_RE = re.compile(r"[\w.*-]+")
_MAX_INCLUDE_DEPTH = 16


class _IniReader:
    """Reads lines (following ``%include``) and hands each ``key = value`` to a builder."""

    def __init__(self, builder: _Builder) -> None:
        self.builder = builder
        # The section carries across %include in both directions, as in PgBouncer.
        self.section: str | None = None
        self.including: list[str] = []

    def read(self, text: str, path: str | None) -> None:
        for number, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
            line = raw.strip()
            if line and line[0] not in ";#":
                self._line(line, _Loc(path, number))

    def _line(self, line: str, loc: _Loc) -> None:
        if line.startswith("%include"):
            self._include(line.removeprefix("%include").strip(), loc)
        elif line.startswith("["):
            self._section(line, loc)
        elif self.section is None:
            raise loc.error(None, f"{line!r} is outside any section")
        else:
            key, value = _split_ini_line(line, loc)
            self._entry(key, value, loc)

    def _section(self, line: str, loc: _Loc) -> None:
        if not line.endswith("]"):
            raise loc.error(None, f"unterminated section header {line!r}")
        self.section = line[1:-1].strip().lower()
        if self.section == "peers":
            self.builder.warn(loc, "section [peers] is not supported; its entries are ignored")
        elif self.section not in _KNOWN_SECTIONS:
            self.builder.warn(loc, f"unknown section [{self.section}]; its entries are ignored")

    def _entry(self, key: str, value: str, loc: _Loc) -> None:
        def locate(_param: str) -> _Loc:
            return loc

        if self.section in _SETTINGS_SECTIONS:
            self.builder.set_setting(key.lower(), value, loc)
        elif self.section in ("databases", "users"):
            try:
                params = parse_connstring(value)
            except ConfigError as exc:
                raise loc.error(f"{self.section}.{key}", exc.message) from None
            if self.section == "databases":
                self.builder.add_database(key, params, locate)
            else:
                self.builder.add_user(key, params, locate)

    def _include(self, target: str, loc: _Loc) -> None:
        if not target:
            raise loc.error(None, "%include needs a file name")
        # Relative to the including file, not to the working directory as in PgBouncer: a
        # daemon's working directory is rarely the configuration directory.
        base = os.path.dirname(loc.path) if loc.path else ""
        path = os.path.normpath(os.path.join(base, target))
        if path in self.including:
            raise loc.error(None, f"%include {target}: includes itself, directly or indirectly")
        if len(self.including) >= _MAX_INCLUDE_DEPTH:
            raise loc.error(None, f"%include {target}: nested more than {_MAX_INCLUDE_DEPTH} deep")
        text = _read_text(path, loc)
        self.including.append(path)
        try:
            self.read(text, path)
        finally:
            self.including.pop()


def _split_ini_line(line: str, loc: _Loc) -> tuple[str, str]:
    """Split ``key = value``; a key in double quotes may hold any character (``""`` is ``"``)."""
    if line.startswith('"'):
        name, rest = _read_quoted_name(line, loc)
        rest = rest.lstrip()
        if not rest.startswith("="):
            raise loc.error(None, f"expected '=' after the quoted name {name!r}")
        return name, rest[1:].strip()
    key, equals, value = line.partition("=")
    key = key.strip()
    if not equals:
        raise loc.error(None, f"expected 'key = value', got {line!r}")
    if not _BARE_NAME_RE.fullmatch(key):
        message = (
            f"name {key!r} must be double-quoted: it contains characters other than letters, "
            "digits, '_', '.', '-' and '*'"
        )
        raise loc.error(None, message)
    return key, value.strip()


def _read_quoted_name(line: str, loc: _Loc) -> tuple[str, str]:
    parts: list[str] = []
    pos = 1
    while True:
        end = line.find('"', pos)
        if end < 0:
            raise loc.error(None, f"unterminated quoted name in {line!r}")
        parts.append(line[pos:end])
        if not line.startswith('"', end + 1):
            return "".join(parts), line[end + 1 :]
        parts.append('"')
        pos = end + 2


def _read_text(path: str, loc: _Loc | None = None) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not valid UTF-8"
        if loc is None:
            raise ConfigError(f"cannot read configuration: {reason}", path=path) from None
        raise loc.error(None, f"cannot read included file {path}: {reason}") from None


def parse_ini(text: str, *, path: str | None = None) -> Config:
    """Parse pgbouncer.ini text. ``path`` names it in messages and anchors ``%include``."""
    builder = _Builder(path)
    reader = _IniReader(builder)
    if path is not None:
        reader.including.append(os.path.normpath(path))
    reader.read(text, path)
    return builder.finish()


# --- TOML -----------------------------------------------------------------------------------

_TOML_HEADER_RE = re.compile(r"\s*\[([^\[\]]+)\]\s*(?:#.*)?$")
_TOML_ERROR_LINE_RE = re.compile(r"at line (\d+)")


class _TomlLines:
    """Best-effort line numbers for messages: tomllib does not report where a value was."""

    def __init__(self, text: str, path: str | None) -> None:
        self.lines = text.split("\n")
        self.path = path

    def locate(self, table: str, key: str) -> _Loc:
        """The line of ``key = …`` in ``[table]``, or of the header ``[table.key]``."""
        key_re = re.compile(r"\s*[\"']?" + re.escape(key) + r"[\"']?\s*=")
        own_table = f"{table}.{key}" if table else key
        current = ""
        for number, line in enumerate(self.lines, start=1):
            header = _TOML_HEADER_RE.match(line)
            if header:
                current = re.sub(r"[\"'\s]", "", header.group(1))
                if current == own_table:
                    return _Loc(self.path, number)
            elif current == table and key_re.match(line):
                return _Loc(self.path, number)
        return _Loc(self.path, None)


def parse_toml(text: str, *, path: str | None = None) -> Config:
    """Parse pgmux TOML: ``[pgmux]`` settings, ``[databases.NAME]`` and ``[users.NAME]`` tables."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_ERROR_LINE_RE.search(str(exc))
        line = int(match.group(1)) if match else None
        raise ConfigError(f"invalid TOML: {exc}", path=path, line=line) from None
    builder = _Builder(path)
    lines = _TomlLines(text, path)
    for top, value in data.items():
        loc = lines.locate("", top)
        if top not in _KNOWN_SECTIONS:
            builder.warn(loc, f"unknown table [{top}] is ignored")
        elif not isinstance(value, dict):
            raise loc.error(top, f"expected a table, got {type(value).__name__}")
        elif top in _SETTINGS_SECTIONS:
            for name, item in value.items():
                builder.set_setting(name.lower(), item, lines.locate(top, name))
        else:
            _toml_entries(builder, lines, top, value)
    return builder.finish()


def _toml_entries(
    builder: _Builder, lines: _TomlLines, section: str, table: dict[str, Any]
) -> None:
    for name, spec in table.items():

        def locate(param: str, name: str = name) -> _Loc:
            # The parameter's own line if it has one, else the entry's header or key line.
            loc = lines.locate(f"{section}.{name}", param) if param else _Loc(lines.path, None)
            return loc if loc.line is not None else lines.locate(section, name)

        if isinstance(spec, str):  # `name = "host=... port=..."`, as in pgbouncer.ini
            try:
                spec = parse_connstring(spec)
            except ConfigError as exc:
                raise locate("").error(f"{section}.{name}", exc.message) from None
        if not isinstance(spec, dict):
            message = "expected a table or a connection string"
            raise locate("").error(f"{section}.{name}", message)
        if section == "databases":
            builder.add_database(name, spec, locate)
        else:
            builder.add_user(name, spec, locate)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read a configuration file: TOML if the name ends in ``.toml``, else pgbouncer.ini."""
    name = os.fspath(path)
    text = _read_text(name)
    if name.lower().endswith(".toml"):
        return parse_toml(text, path=name)
    return parse_ini(text, path=name)


def diff_for_reload(old: Config, new: Config) -> tuple[list[str], list[str]]:
    """Changed settings as (applied by RELOAD, needing a restart), in table order.

    ``[databases]`` and ``[users]`` are always reloadable; compare their entries directly.
    """
    reloadable: list[str] = []
    restart: list[str] = []
    for setting in SETTINGS:
        if old.settings.get(setting.name) != new.settings.get(setting.name):
            (reloadable if setting.reloadable else restart).append(setting.name)
    return reloadable, restart


# --- docs/config.md -------------------------------------------------------------------------

_DOCS_INTRO = """\
# pgmux configuration

<!-- Generated from pgmux/config.py by render_docs(); edit the table there, then run:
     python -c "import pgmux.config as c; open('docs/config.md', 'w').write(c.render_docs())" -->

pgmux reads an existing `pgbouncer.ini` as it is, or its own TOML format; a file whose name
ends in `.toml` is read as TOML. `pgmux check FILE` reports errors and warnings without starting.

## pgbouncer.ini

- Sections: `[pgbouncer]` (also accepted as `[pgmux]`), `[databases]`, `[users]`.
  `[peers]` and unknown sections are ignored with a warning.
- Lines starting with `;` or `#` are comments. A `;` or `#` later in a line is part of the value.
- Setting names are not case-sensitive; database and user names are. A database or user name
  with characters other than letters, digits, `_`, `.`, `-` and `*` must be written in double
  quotes, with `""` for a double quote inside.
- `[databases]` lines are `name = key=value ...` in libpq syntax: a value may be single-quoted,
  and a backslash escapes the next character. `*` is the fallback entry used for any database
  not listed. The names `pgbouncer` and `pgmux` are reserved for the admin console.
- `%include FILE` reads another file at that point. A relative name is taken relative to the
  including file's directory (PgBouncer takes it relative to the working directory).
- A setting PgBouncer has but pgmux does not implement, and an unknown setting, is reported as a
  warning with its line and otherwise ignored. A bad value for a known setting is an error.

## TOML

```toml
[pgmux]
listen_port = 6432
pool_mode = "transaction"
admin_users = ["admin"]          # or "admin, ops"
server_idle_timeout = 600.0      # seconds

[databases.app]
host = "10.0.0.5"
dbname = "app_production"
pool_size = 40

[databases."*"]                  # the fallback entry
host = "/var/run/postgresql"

[users.reporting]
pool_mode = "session"
```

A `[databases]` or `[users]` entry may also be a string in the `pgbouncer.ini` syntax:
`app = "host=10.0.0.5 pool_size=40"`. Any value may be written as a string in `pgbouncer.ini`
syntax, so `listen_port = "6432"` is accepted.

## Differences from PgBouncer

- `auth_type` defaults to `scram-sha-256` (PgBouncer: `md5`); `cert`, `hba`, `pam` and `ldap`
  are refused.
- `listen_addr` defaults to `127.0.0.1` (PgBouncer: no TCP listener).
- `server_tls_sslmode` defaults to `disable` (PgBouncer 1.25: `prefer`); TLS is not implemented
  yet, on either side.
- `%include` paths are relative to the including file.
- Unknown settings are warnings, not errors.
- `SHOW CONFIG` prints `unix_socket_mode` in octal.

## Value types

- integer: decimal digits, such as `20`.
- boolean: `1`/`0`, `yes`/`no`, `true`/`false`, `on`/`off`; `SHOW CONFIG` prints `1` or `0`.
- seconds: a number of seconds; fractions are allowed, such as `0.5`.
- list: comma-separated, such as `admin, ops` (a TOML array also works).
- octal mode: file permission bits, such as `0777`.
- string: the rest of the line, with surrounding spaces removed; quotes are kept as written.

## Settings

In `[pgbouncer]` in pgbouncer.ini, or `[pgmux]` in TOML.
"""
_DOCS_WIDTH = 100


def _doc_value(setting: Setting, value: object) -> str:
    text = format_value(setting, value)
    return f"`{text}`" if text else "empty" if value is not None else "not set"


def _doc_kind(setting: Setting) -> str:
    if setting.choices:
        return "one of " + ", ".join(f"`{c}`" for c in setting.choices)
    return KINDS[setting.type]


def _doc_setting(setting: Setting) -> str:
    facts = [f"Type: {_doc_kind(setting)}", f"Default: {_doc_value(setting, setting.default)}"]
    if setting.unit and setting.type != "seconds":
        facts.append(f"Unit: {setting.unit}")
    facts.append("Reload: yes" if setting.reloadable else "Reload: no, needs a restart")
    doc = textwrap.fill(setting.doc, _DOCS_WIDTH, break_on_hyphens=False)
    facts_text = textwrap.fill(". ".join(facts) + ".", _DOCS_WIDTH, break_on_hyphens=False)
    return f"#### {setting.name}\n\n{doc}\n\n{facts_text}\n"


def _doc_params(title: str, intro: str, params: tuple[Setting, ...]) -> str:
    rows = [
        f"## {title}\n\n{intro}\n",
        "| Key | Type | Default | Meaning |",
        "| --- | --- | --- | --- |",
    ]
    for p in params:
        kind = KINDS[p.type] if not p.choices else " / ".join(p.choices)
        rows.append(f"| `{p.name}` | {kind} | {_doc_value(p, p.default)} | {p.doc} |")
    return "\n".join(rows) + "\n"


def _doc_ignored() -> str:
    ignored = {
        "[pgbouncer]": KNOWN_UNSUPPORTED,
        "[databases]": DATABASE_UNSUPPORTED,
        "[users]": USER_UNSUPPORTED,
    }
    lines = ["## PgBouncer keys pgmux ignores, with a warning\n"]
    for section, names in ignored.items():
        text = f"- {section}: " + ", ".join(f"`{n}`" for n in sorted(names))
        lines.append(textwrap.fill(text, _DOCS_WIDTH, subsequent_indent="  "))
    return "\n".join(lines) + "\n"


def render_docs() -> str:
    """The Markdown of ``docs/config.md``, generated from the tables in this module."""
    parts = [_DOCS_INTRO]
    for title, group in SETTING_GROUPS:
        parts.append(f"### {title}\n")
        parts.extend(_doc_setting(s) for s in group)
    db_intro = "Each entry is `name = key=value ...`; keys not given fall back to the settings."
    parts.append(_doc_params("[databases] parameters", db_intro, DATABASE_PARAMS))
    user_intro = "Each entry is `user = key=value ...`."
    parts.append(_doc_params("[users] parameters", user_intro, USER_PARAMS))
    parts.append(_doc_ignored())
    return "\n".join(parts)
