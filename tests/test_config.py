"""pgmux.config: both file formats, errors and warnings that name file and line, and the settings
table as the one source of SHOW CONFIG, reload rules and docs/config.md."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgmux.config import (
    DATABASE_PARAMS,
    KINDS,
    KNOWN_UNSUPPORTED,
    SETTINGS,
    SETTINGS_BY_NAME,
    USER_PARAMS,
    Config,
    ConfigError,
    DatabaseEntry,
    UserEntry,
    diff_for_reload,
    format_value,
    load_config,
    parse_connstring,
    parse_ini,
    parse_toml,
    render_docs,
    show_config_rows,
)

REPO = Path(__file__).resolve().parent.parent
DEBIAN_EXAMPLE = Path("/usr/share/doc/pgbouncer/examples/pgbouncer.ini")

MAIN_INI = '''\
;;; a pgbouncer.ini as operators write them
[databases]
; over the default Unix socket
foodb =
bardb = host=db1.internal port=5433 dbname=bazdb pool_size=50 reserve_pool=10 pool_mode=transaction
forcedb = host=/var/run/postgresql user=baz password='se cr\\'et' connect_query='SELECT 1'
"my db" = host=127.0.0.1 dbname=my_db client_encoding=UTF8 datestyle=ISO timezone=UTC
"say ""hi""" = dbname=hi
* = host=fallback.internal

[users]
report = pool_mode=session max_user_connections=10 query_timeout=2.5

[pgbouncer]
listen_addr = *
listen_port = 6543
auth_type = md5
auth_file = userlist.txt
admin_users = admin, ops
stats_users =
pool_mode = transaction
server_lifetime = 1800
reserve_pool_timeout = 0.5
log_connections = no
unix_socket_mode = 0700
ignore_startup_parameters = extra_float_digits,options
%include conf.d/extra.ini
'''

# Continues in [pgbouncer], then switches section, as PgBouncer's %include does; its own
# %include is relative to conf.d/.
EXTRA_INI = """\
default_pool_size = 30
%include more.ini
"""
MORE_INI = """\
[databases]
included_db = host=db2.internal
"""

MAIN_TOML = """\
[pgmux]
listen_addr = "*"
listen_port = 6543
auth_type = "md5"
auth_file = "userlist.txt"
admin_users = ["admin", "ops"]
stats_users = []
pool_mode = "transaction"
server_lifetime = 1800
reserve_pool_timeout = 0.5
log_connections = false
unix_socket_mode = 0o700
ignore_startup_parameters = "extra_float_digits, options"
default_pool_size = 30

[databases]
foodb = ""
forcedb = "host=/var/run/postgresql user=baz password='se cr\\\\'et' connect_query='SELECT 1'"

[databases.bardb]
host = "db1.internal"
port = 5433
dbname = "bazdb"
pool_size = 50
reserve_pool_size = 10
pool_mode = "transaction"

[databases."my db"]
host = "127.0.0.1"
dbname = "my_db"
client_encoding = "UTF8"
datestyle = "ISO"
timezone = "UTC"

[databases.'say "hi"']
dbname = "hi"

[databases."*"]
host = "fallback.internal"

[databases.included_db]
host = "db2.internal"

[users.report]
pool_mode = "session"
max_user_connections = 10
query_timeout = 2.5
"""


def write_main_ini(directory: Path) -> Path:
    (directory / "conf.d").mkdir()
    (directory / "conf.d" / "extra.ini").write_text(EXTRA_INI)
    (directory / "conf.d" / "more.ini").write_text(MORE_INI)
    path = directory / "pgbouncer.ini"
    path.write_text(MAIN_INI)
    return path


def parse_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_ini(text, path="pgbouncer.ini")
    return str(info.value)


# --- pgbouncer.ini -------------------------------------------------------------------------


def test_realistic_ini(tmp_path: Path) -> None:
    path = write_main_ini(tmp_path)
    cfg = load_config(path)

    assert cfg.warnings == []
    assert cfg.path == str(path)
    assert cfg.listen_addr == "*"
    assert cfg.listen_port == 6543
    assert cfg.auth_type == "md5"
    assert cfg.admin_users == ("admin", "ops")
    assert cfg.stats_users == ()
    assert cfg.pool_mode == "transaction"
    assert cfg.server_lifetime == 1800.0
    assert cfg.reserve_pool_timeout == 0.5
    assert cfg.log_connections is False
    assert cfg.unix_socket_mode == 0o700
    assert cfg.ignore_startup_parameters == ("extra_float_digits", "options")
    assert cfg.default_pool_size == 30  # from the included file
    assert cfg.server_idle_timeout == 600.0  # default filled in
    assert cfg.conffile == str(path)

    assert cfg.databases["foodb"] == DatabaseEntry("foodb")
    assert cfg.databases["bardb"] == DatabaseEntry(
        "bardb",
        host="db1.internal",
        port=5433,
        dbname="bazdb",
        pool_size=50,
        reserve_pool_size=10,
        pool_mode="transaction",
    )
    forcedb = cfg.databases["forcedb"]
    assert (forcedb.host, forcedb.user, forcedb.password) == (
        "/var/run/postgresql",
        "baz",
        "se cr'et",
    )
    assert forcedb.connect_query == "SELECT 1"
    assert "se cr" not in repr(forcedb)  # passwords stay out of logs
    my_db = cfg.databases["my db"]
    assert (my_db.dbname, my_db.client_encoding, my_db.datestyle, my_db.timezone) == (
        "my_db",
        "UTF8",
        "ISO",
        "UTC",
    )
    assert cfg.databases['say "hi"'].dbname == "hi"
    assert cfg.databases["*"].host == "fallback.internal"
    assert cfg.databases["included_db"].host == "db2.internal"
    assert cfg.users == {
        "report": UserEntry(
            "report", pool_mode="session", max_user_connections=10, query_timeout=2.5
        )
    }


@pytest.mark.skipif(not DEBIAN_EXAMPLE.exists(), reason="PgBouncer's example file not installed")
def test_pgbouncer_example_file_reads_as_is() -> None:
    cfg = load_config(DEBIAN_EXAMPLE)
    assert cfg.warnings == []
    assert (cfg.listen_addr, cfg.listen_port, cfg.auth_type) == ("localhost", 6432, "md5")
    assert cfg.unix_socket_dir == "/var/run/postgresql"


def test_empty_ini_is_all_defaults() -> None:
    cfg = parse_ini("")
    assert cfg.settings == {s.name: s.default for s in SETTINGS}
    assert cfg.databases == {} and cfg.users == {}


def test_keys_case_and_spacing() -> None:
    cfg = parse_ini("  [PgBouncer]  \n\tLISTEN_PORT=7000   \r\nPool_Mode =Statement\n")
    assert (cfg.listen_port, cfg.pool_mode) == (7000, "statement")


def test_pgmux_section_is_an_alias() -> None:
    assert parse_ini("[pgmux]\nworkers = 4\n").workers == 4


def test_later_value_wins() -> None:
    cfg = parse_ini(
        "[pgbouncer]\nlisten_port = 1\nlisten_port = 2\n[databases]\na=port=1\na=port=2"
    )
    assert cfg.listen_port == 2
    assert cfg.databases["a"].port == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[pgbouncer]\nlisten_port = abc\n",
            "pgbouncer.ini line 2: listen_port: expected an integer, got 'abc'",
        ),
        (
            "[pgbouncer]\n\nlisten_port = 6432 ; the port\n",
            "pgbouncer.ini line 3: listen_port: expected an integer, got '6432 ; the port'"
            " (comments must be on a line of their own)",
        ),
        (
            "[pgbouncer]\nlisten_port = 70000\n",
            "pgbouncer.ini line 2: listen_port: must be at most 65535, got 70000",
        ),
        (
            "[pgbouncer]\nserver_lifetime = -1\n",
            "pgbouncer.ini line 2: server_lifetime: must be at least 0, got -1",
        ),
        (
            "[pgbouncer]\nquery_timeout = soon\n",
            "pgbouncer.ini line 2: query_timeout: expected a number of seconds, got 'soon'",
        ),
        (
            "[pgbouncer]\nquery_timeout = inf\n",
            "pgbouncer.ini line 2: query_timeout: expected a number of seconds, got 'inf'",
        ),
        (
            "[pgbouncer]\nlog_connections = maybe\n",
            "pgbouncer.ini line 2: log_connections: expected a boolean"
            " (0/1, yes/no, true/false, on/off), got 'maybe'",
        ),
        (
            "[pgbouncer]\npool_mode = sessions\n",
            "pgbouncer.ini line 2: pool_mode: expected one of session, transaction, statement,"
            " got 'sessions'",
        ),
        (
            "[pgbouncer]\nauth_type = hba\n",
            "pgbouncer.ini line 2: auth_type: 'hba' is a PgBouncer method pgmux does not support;"
            " use one of scram-sha-256, md5, plain, trust, any",
        ),
        (
            "[pgbouncer]\nunix_socket_mode = 0999\n",
            "pgbouncer.ini line 2: unix_socket_mode: expected an octal mode, got '0999'",
        ),
        (
            "[pgbouncer]\nunix_socket_mode = 1777\n",
            "pgbouncer.ini line 2: unix_socket_mode: must be at most 0777, got 01777",
        ),
        (
            "[pgbouncer]\nworkers = 0\n",
            "pgbouncer.ini line 2: workers: must be at least 1, got 0",
        ),
        (
            "[databases]\nfoo = host=x port=x\n",
            "pgbouncer.ini line 2: databases.foo.port: expected an integer, got 'x'",
        ),
        (
            "[databases]\nfoo = pool_mode=fast\n",
            "pgbouncer.ini line 2: databases.foo.pool_mode: expected one of session, transaction,"
            " statement, got 'fast'",
        ),
        (
            "[databases]\nfoo = connect_query='SELECT 1\n",
            "pgbouncer.ini line 2: databases.foo: connection string: unterminated quoted value"
            " for 'connect_query'",
        ),
        (
            "[databases]\nfoo = host x\n",
            "pgbouncer.ini line 2: databases.foo: connection string: expected '=' after 'host'",
        ),
        (
            "[databases]\npgbouncer = host=x\n",
            "pgbouncer.ini line 2: databases.pgbouncer: database name 'pgbouncer' is reserved"
            " for the admin console",
        ),
        (
            "[databases]\npgmux =\n",
            "pgbouncer.ini line 2: databases.pgmux: database name 'pgmux' is reserved"
            " for the admin console",
        ),
        (
            "[databases]\nfoo = host=a,b\n",
            "pgbouncer.ini line 2: databases.foo.host: host lists are not supported by pgmux;"
            " give a single host",
        ),
        (
            "[users]\nbob = pool_size=-1\n",
            "pgbouncer.ini line 2: users.bob.pool_size: must be at least 0, got -1",
        ),
        (
            "[users]\nbob = query_timeout=never\n",
            "pgbouncer.ini line 2: users.bob.query_timeout: expected a number of seconds,"
            " got 'never'",
        ),
        (
            "; leading comment\nlisten_port = 1\n",
            "pgbouncer.ini line 2: 'listen_port = 1' is outside any section",
        ),
        ("[pgbouncer\n", "pgbouncer.ini line 1: unterminated section header '[pgbouncer'"),
        (
            "[pgbouncer]\njust words\n",
            "pgbouncer.ini line 2: expected 'key = value', got 'just words'",
        ),
        (
            "[databases]\nmy db = host=x\n",
            "pgbouncer.ini line 2: name 'my db' must be double-quoted: it contains characters"
            " other than letters, digits, '_', '.', '-' and '*'",
        ),
        (
            '[databases]\n"my db = host=x\n',
            "pgbouncer.ini line 2: unterminated quoted name in '\"my db = host=x'",
        ),
        (
            '[databases]\n"my db" host=x\n',
            "pgbouncer.ini line 2: expected '=' after the quoted name 'my db'",
        ),
    ],
)
def test_errors_name_file_line_and_key(text: str, message: str) -> None:
    assert parse_error(text) == message


def test_error_attributes() -> None:
    with pytest.raises(ConfigError) as info:
        parse_ini("[pgbouncer]\n\nlisten_port = abc\n", path="pgbouncer.ini")
    error = info.value
    assert (error.path, error.line, error.key) == ("pgbouncer.ini", 3, "listen_port")
    assert error.message == "expected an integer, got 'abc'"
    assert str(ConfigError("boom")) == "boom"


def test_warnings_for_unsupported_and_unknown_keys() -> None:
    text = """\
[pgbouncer]
tcp_keepcnt = 5
frobnicate = 1
[databases]
foo = host=x target_session_attrs=read-write bogus=1
[users]
bob = transaction_timeout=5 pool_size=3
[peers]
1 = host=/tmp/pgb1
[weird]
x = 1
"""
    cfg = parse_ini(text, path="pgbouncer.ini")
    assert cfg.warnings == [
        "pgbouncer.ini line 2: unsupported key 'tcp_keepcnt' is ignored",
        "pgbouncer.ini line 3: unknown key 'frobnicate' is ignored",
        "pgbouncer.ini line 5: [databases] foo: unsupported parameter 'target_session_attrs'"
        " is ignored",
        "pgbouncer.ini line 5: [databases] foo: unknown parameter 'bogus' is ignored",
        "pgbouncer.ini line 7: [users] bob: unsupported parameter 'transaction_timeout' is ignored",
        "pgbouncer.ini line 8: section [peers] is not supported; its entries are ignored",
        "pgbouncer.ini line 10: unknown section [weird]; its entries are ignored",
        "pgbouncer.ini: auth_type = scram-sha-256 looks users up in auth_file or through"
        " auth_user, and neither is set",
    ]
    assert cfg.databases["foo"].host == "x"
    assert cfg.users["bob"].pool_size == 3


def test_every_known_unsupported_key_warns() -> None:
    text = "[pgbouncer]\nauth_type = any\n" + "".join(f"{k} = 0\n" for k in KNOWN_UNSUPPORTED)
    cfg = parse_ini(text)
    assert len(cfg.warnings) == len(KNOWN_UNSUPPORTED)
    assert all("unsupported key" in warning for warning in cfg.warnings)


@pytest.mark.parametrize("name", ["client_tls_sslmode", "server_tls_sslmode"])
def test_tls_modes_are_accepted_with_a_warning(name: str) -> None:
    cfg = parse_ini(f"[pgbouncer]\nauth_type = any\n{name} = require\n", path="p.ini")
    assert cfg.settings[name] == "require"
    assert cfg.warnings == [
        f"p.ini line 3: {name} = require: TLS is not implemented by pgmux yet;"
        " connections will not be encrypted"
    ]
    assert parse_ini(f"[pgbouncer]\nauth_type = any\n{name} = disable\n").warnings == []


def test_include_errors(tmp_path: Path) -> None:
    main = tmp_path / "pgbouncer.ini"
    main.write_text("[pgbouncer]\n%include missing.ini\n")
    with pytest.raises(ConfigError) as info:
        load_config(main)
    assert str(info.value) == (
        f"{main} line 2: cannot read included file {tmp_path / 'missing.ini'}:"
        " No such file or directory"
    )

    (tmp_path / "a.ini").write_text("%include b.ini\n")
    (tmp_path / "b.ini").write_text("\n%include a.ini\n")
    main.write_text("[pgbouncer]\n%include a.ini\n")
    with pytest.raises(ConfigError) as info:
        load_config(main)
    assert str(info.value) == (
        f"{tmp_path / 'b.ini'} line 2: %include a.ini: includes itself, directly or indirectly"
    )

    main.write_text("%include pgbouncer.ini\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(main)


def test_error_inside_included_file_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "extra.ini").write_text("; extra\nlisten_port = x\n")
    main = tmp_path / "pgbouncer.ini"
    main.write_text("[pgbouncer]\n%include extra.ini\n")
    with pytest.raises(ConfigError) as info:
        load_config(main)
    assert (info.value.path, info.value.line) == (str(tmp_path / "extra.ini"), 2)


def test_load_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.ini")
    assert str(info.value) == (
        f"{tmp_path / 'absent.ini'}: cannot read configuration: No such file or directory"
    )
    binary = tmp_path / "binary.ini"
    binary.write_bytes(b"\xff\xfe[pgbouncer]")
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load_config(binary)


# --- TOML ----------------------------------------------------------------------------------


def test_toml_equals_ini(tmp_path: Path) -> None:
    ini = load_config(write_main_ini(tmp_path))
    toml_path = tmp_path / "pgmux.toml"
    toml_path.write_text(MAIN_TOML)
    toml = load_config(toml_path)

    assert toml.warnings == []
    assert toml.conffile == str(toml_path)
    assert {**toml.settings, "conffile": ""} == {**ini.settings, "conffile": ""}
    assert toml.databases == ini.databases
    assert toml.users == ini.users


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[pgmux]\nworkers = 2\nlisten_port = "abc"\n',
            "pgmux.toml line 3: listen_port: expected an integer, got 'abc'",
        ),
        (
            "[pgmux]\nlisten_port = 1.5\n",
            "pgmux.toml line 2: listen_port: expected integer, got float 1.5",
        ),
        (
            "[pgmux]\nlog_connections = 2\n",
            "pgmux.toml line 2: log_connections: expected boolean, got int 2",
        ),
        (
            "[pgmux]\nadmin_users = [1]\n",
            "pgmux.toml line 2: admin_users: expected list, got list [1]",
        ),
        (
            "[databases.app]\nhost = 'x'\nport = 'x'\n",
            "pgmux.toml line 3: databases.app.port: expected an integer, got 'x'",
        ),
        (
            '[databases]\napp = "port=x"\n',
            "pgmux.toml line 2: databases.app.port: expected an integer, got 'x'",
        ),
        (
            "[databases]\napp = 5\n",
            "pgmux.toml line 2: databases.app: expected a table or a connection string",
        ),
        (
            "[databases.pgbouncer]\nhost = 'x'\n",
            "pgmux.toml line 1: databases.pgbouncer: database name 'pgbouncer' is reserved"
            " for the admin console",
        ),
        (
            "[users.bob]\n\npool_mode = 'fast'\n",
            "pgmux.toml line 3: users.bob.pool_mode: expected one of session, transaction,"
            " statement, got 'fast'",
        ),
        ("pgmux = 5\n", "pgmux.toml line 1: pgmux: expected a table, got int"),
    ],
)
def test_toml_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_toml(text, path="pgmux.toml")
    assert str(info.value) == message


def test_toml_syntax_error_has_a_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_toml("[pgmux]\nlisten_port = = 1\n", path="pgmux.toml")
    assert info.value.line == 2
    assert str(info.value).startswith("pgmux.toml line 2: invalid TOML: ")


def test_toml_warnings_and_native_values() -> None:
    text = """\
[pgmux]
auth_type = "any"
tcp_keepidle = 5
so_reuseport = 1
server_check_delay = 10

[extra]
x = 1

[databases.app]
load_balance_hosts = "round-robin"
"""
    cfg = parse_toml(text, path="pgmux.toml")
    assert cfg.so_reuseport is True
    assert cfg.server_check_delay == 10.0 and isinstance(cfg.server_check_delay, float)
    assert cfg.warnings == [
        "pgmux.toml line 3: unsupported key 'tcp_keepidle' is ignored",
        "pgmux.toml line 7: unknown table [extra] is ignored",
        "pgmux.toml line 11: [databases] app: unsupported parameter 'load_balance_hosts'"
        " is ignored",
    ]


# --- connection strings --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("   ", {}),
        ("host=localhost port=5432", {"host": "localhost", "port": "5432"}),
        ("host = localhost   port =5432 ", {"host": "localhost", "port": "5432"}),
        ("HOST=x", {"host": "x"}),
        ("password='a b c'", {"password": "a b c"}),
        ("password='it\\'s' user=x", {"password": "it's", "user": "x"}),
        ("path='C:\\\\dir'", {"path": "C:\\dir"}),
        ("password=a\\ b", {"password": "a b"}),
        ("password=''", {"password": ""}),
        ("connect_query='SELECT 1; SELECT 2'", {"connect_query": "SELECT 1; SELECT 2"}),
        ("dbname=a dbname=b", {"dbname": "b"}),
        ("a='x'b=1", {"a": "x", "b": "1"}),  # libpq needs no space after a quoted value
        ("host=", {"host": ""}),
    ],
)
def test_parse_connstring(text: str, expected: dict[str, str]) -> None:
    assert parse_connstring(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("host", "connection string: expected '=' after 'host'"),
        ("=x", "connection string: expected a parameter name at '=x'"),
        ("host='x", "connection string: unterminated quoted value for 'host'"),
        ("a=1 'b'=2", "connection string: expected a parameter name at \"'b'=2\""),
    ],
)
def test_parse_connstring_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_connstring(text)
    assert str(info.value) == message


def quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@given(
    st.dictionaries(
        st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True),
        st.text(st.characters(exclude_categories=["Cs"])),
    )
)
def test_parse_connstring_round_trip(params: dict[str, str]) -> None:
    text = " ".join(f"{key}={quote(value)}" for key, value in params.items())
    assert parse_connstring(text) == params


# --- the table: SHOW CONFIG, reload, docs --------------------------------------------------


def test_table_is_consistent() -> None:
    assert len(SETTINGS_BY_NAME) == len(SETTINGS), "a setting is declared twice"
    assert not KNOWN_UNSUPPORTED & SETTINGS_BY_NAME.keys()
    config_attributes = set(Config.__dataclass_fields__) | set(dir(Config))
    assert not config_attributes & SETTINGS_BY_NAME.keys(), "cfg.<name> would be shadowed"
    for setting in (*SETTINGS, *DATABASE_PARAMS, *USER_PARAMS):
        assert setting.type in KINDS, setting.name
        assert setting.doc.endswith((".", ")")), setting.name
        assert bool(setting.choices) == (setting.type == "enum"), setting.name
        if setting.choices and setting.default is not None:
            assert setting.default in setting.choices, setting.name


def test_defaults_survive_show_config_round_trip() -> None:
    # What SHOW CONFIG prints is valid pgbouncer.ini that reads back to the same value.
    lines = [f"{s.name} = {format_value(s, s.default)}" for s in SETTINGS]
    cfg = parse_ini("[pgbouncer]\n" + "\n".join(lines) + "\n")
    assert cfg.settings == {s.name: s.default for s in SETTINGS}
    for s in SETTINGS:
        assert type(cfg.settings[s.name]) is type(s.default), s.name


@given(st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False))
def test_seconds_round_trip(value: float) -> None:
    setting = SETTINGS_BY_NAME["query_timeout"]
    cfg = parse_ini(f"[pgbouncer]\nquery_timeout = {format_value(setting, value)}\n")
    assert math.isclose(cfg.query_timeout, value, rel_tol=1e-15)


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("log_connections", True, "1"),
        ("so_reuseport", False, "0"),
        ("server_lifetime", 3600.0, "3600"),
        ("reserve_pool_timeout", 0.5, "0.5"),
        ("unix_socket_mode", 0o777, "0777"),
        ("unix_socket_mode", 0o600, "0600"),
        ("admin_users", ("a", "b"), "a,b"),
        ("admin_users", (), ""),
        ("listen_port", 6432, "6432"),
        ("pool_mode", "session", "session"),
    ],
)
def test_format_value(name: str, value: object, text: str) -> None:
    assert format_value(SETTINGS_BY_NAME[name], value) == text


def test_show_config_rows() -> None:
    cfg = parse_ini("[pgbouncer]\nlisten_port = 7000\nreserve_pool_timeout = 0.5\n", path="x.ini")
    rows = {row[0]: row for row in show_config_rows(cfg)}
    assert [row[0] for row in show_config_rows(cfg)] == sorted(rows)
    assert rows["listen_port"] == ("listen_port", "7000", "6432", "no")
    assert rows["reserve_pool_timeout"] == ("reserve_pool_timeout", "0.5", "5", "yes")
    assert rows["log_connections"] == ("log_connections", "1", "1", "yes")
    assert rows["conffile"] == ("conffile", "x.ini", "", "yes")


def test_diff_for_reload() -> None:
    old = parse_ini("[pgbouncer]\npool_mode = session\nlisten_port = 6432\n")
    same = parse_ini("[pgbouncer]\nlisten_port = 6432\n")
    new = parse_ini(
        "[pgbouncer]\npool_mode = transaction\nlisten_port = 7000\n"
        "admin_users = root\npkt_buf = 8192\n"
    )
    assert diff_for_reload(old, same) == ([], [])
    assert diff_for_reload(old, new) == (["admin_users", "pool_mode"], ["listen_port", "pkt_buf"])


def test_config_access() -> None:
    cfg = parse_ini("[pgbouncer]\nlisten_port = 7000\n")
    assert cfg.listen_port == cfg.get("listen_port") == cfg.get_int("listen_port") == 7000
    assert cfg.get_float("query_wait_timeout") == 120.0
    assert cfg.get_bool("log_connections") is True
    assert cfg.get_str("pool_mode") == "session"
    assert cfg.get_list("track_extra_parameters") == ("IntervalStyle",)
    with pytest.raises(TypeError):
        cfg.get_int("pool_mode")
    with pytest.raises(AttributeError):
        _ = cfg.no_such_setting
    clone = copy.deepcopy(cfg)
    assert clone == cfg and clone.listen_port == 7000


def test_docs_are_generated_from_the_table() -> None:
    committed = (REPO / "docs" / "config.md").read_text()
    assert committed == render_docs(), (
        'docs/config.md is stale; regenerate it with: python -c "import pgmux.config as c; '
        "open('docs/config.md', 'w').write(c.render_docs())\""
    )
    for setting in SETTINGS:
        assert f"#### {setting.name}\n" in committed


def test_docs_toml_example_parses() -> None:
    docs = render_docs()
    example = docs.split("```toml\n", 1)[1].split("```", 1)[0]
    cfg = parse_toml(example)
    assert cfg.pool_mode == "transaction"
    assert cfg.databases["app"].pool_size == 40
    assert cfg.databases["*"].host == "/var/run/postgresql"
    assert cfg.users["reporting"].pool_mode == "session"
