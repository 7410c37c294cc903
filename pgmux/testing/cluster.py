"""Throwaway PostgreSQL clusters for tests, benchmarks and the demo.

Contract: a ``PostgresCluster`` owns one data directory and at most one postmaster. ``start()``
runs initdb (first time only) and ``pg_ctl start -w``; ``stop()`` shuts the server down (fast,
then immediate, then SIGKILL) and removes the directory if the cluster created it. The server
listens on 127.0.0.1 and on a unix socket inside the cluster's directory, and is tuned for speed,
not durability (fsync, full_page_writes and synchronous_commit are off). ``start_replica()``
adds a hot-standby streaming replica of a running cluster (``pg_basebackup -R``).

PostgreSQL refuses to run as root, so when we are root every PostgreSQL binary runs through
``runuser -u postgres --`` on a directory owned by that OS user. Two safety nets keep a crashed
run from leaving servers behind: an ``atexit`` handler, and a small watchdog process that stops
the server when our end of a pipe closes, which also covers SIGKILL of the test runner.

Only the standard library is used, so benchmarks and the demo can import this without extras.
"""

from __future__ import annotations

import atexit
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Final

__all__ = ["ClusterError", "PostgresCluster", "find_pg_bindir", "free_port"]

PG_OS_USER: Final = "postgres"
HBA_METHODS: Final = frozenset({"trust", "password", "md5", "scram-sha-256"})
_INSTALL_HINT: Final = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found via pg_config, PATH or "
    "/usr/lib/postgresql/*/bin. Install them, e.g. `apt-get install -y postgresql` "
    "on Debian/Ubuntu."
)
# sun_path is 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH: Final = 107
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")

# Runs detached from our session, so terminal signals do not reach it. It blocks on stdin until
# we either write "disarm" (a clean stop already happened) or die, which closes the pipe.
_WATCHDOG: Final = """
import json, shutil, subprocess, sys
stop_cmd, remove = json.loads(sys.argv[1]), sys.argv[2]
if sys.stdin.buffer.read() != b"disarm":
    try:
        subprocess.run(stop_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    finally:
        if remove:
            shutil.rmtree(remove, ignore_errors=True)
"""


class ClusterError(RuntimeError):
    """A PostgreSQL tool (initdb, pg_ctl, psql) failed; carries its exit status and output."""

    def __init__(self, cmd: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.cmd = list(cmd)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        detail = stderr.strip() or stdout.strip() or "(no output)"
        super().__init__(f"{Path(self.cmd[0]).name} exited with status {returncode}: {detail}")


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago.

    Another process may grab it before the caller binds; ``PostgresCluster.start`` retries with a
    fresh port when that happens to an automatically chosen one.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _has_server_binaries(bindir: Path) -> bool:
    return all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres"))


def _version_key(bindir: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin: sort "9.6" < "15" numerically, not as strings.
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))


def find_pg_bindir() -> Path:
    """Locate the directory holding initdb, pg_ctl and postgres.

    Tried in order: ``pg_config --bindir``, the directory of ``initdb``/``pg_ctl`` on PATH, then
    the newest ``/usr/lib/postgresql/*/bin``. Raises RuntimeError saying how to install.
    """
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        # libpq-dev ships a pg_config without the server, so check what it points at.
        if out and _has_server_binaries(Path(out)):
            return Path(out)
    for tool in ("initdb", "pg_ctl"):
        found = shutil.which(tool)
        if found and _has_server_binaries(Path(found).resolve().parent):
            return Path(found).resolve().parent
    candidates = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if _has_server_binaries(p)]
    if candidates:
        return max(candidates, key=_version_key)
    raise RuntimeError(_INSTALL_HINT)


def _conf_literal(value: str) -> str:
    # postgresql.conf accepts a quoted string for every type, and de-escapes backslashes in it.
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _sql_literal(value: str) -> str:
    # standard_conforming_strings is on (the default since 9.1), so only quotes need doubling.
    return "'" + value.replace("'", "''") + "'"


def _sql_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _conninfo_value(value: str) -> str:
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ensure_pg_os_user() -> pwd.struct_passwd:
    """Return the ``postgres`` OS user, creating a system user when the distro package did not."""
    try:
        return pwd.getpwnam(PG_OS_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise RuntimeError(f"no OS user {PG_OS_USER!r} and no useradd to create it")
    subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--shell", "/bin/sh", PG_OS_USER],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return pwd.getpwnam(PG_OS_USER)


def _check_traversable(path: Path, user: pwd.struct_passwd) -> None:
    """Fail early, with a useful message, when ``user`` cannot reach ``path``.

    Otherwise initdb fails later with a bare "Permission denied" (a TMPDIR under /root, say).
    """
    for parent in path.parents:
        st = parent.stat()
        if st.st_uid == user.pw_uid or st.st_mode & stat.S_IXOTH:
            continue
        if st.st_gid == user.pw_gid and st.st_mode & stat.S_IXGRP:
            continue
        raise RuntimeError(
            f"OS user {user.pw_name!r} cannot traverse {parent}, a parent of {path}; "
            "pass a base_dir under a world-traversable directory such as /tmp"
        )


class PostgresCluster:
    """One throwaway PostgreSQL server; see the module docstring for the contract."""

    host: str = "127.0.0.1"
    superuser: str = "postgres"
    superuser_password: str = "postgres"

    def __init__(
        self,
        *,
        base_dir: str | Path | None = None,
        port: int | None = None,
        settings: dict[str, str] | None = None,
        max_connections: int = 100,
    ) -> None:
        self.bindir: Path = find_pg_bindir()
        self.settings: dict[str, str] = dict(settings or {})
        for name in self.settings:
            if not _SETTING_NAME.match(name):
                raise ValueError(f"invalid PostgreSQL setting name: {name!r}")
        self.max_connections = max_connections
        self._auto_port = port is None
        self.port: int = free_port(self.host) if port is None else port
        self._as_root = os.geteuid() == 0
        self._pg_user = _ensure_pg_os_user() if self._as_root else None
        if base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="pgmux-pg-"))
            self._owns_base_dir = True
        else:
            self.base_dir = Path(base_dir).absolute()
            self._owns_base_dir = not self.base_dir.exists()
        self.data_dir: Path = self.base_dir / "data"
        self.socket_dir: str = str(self.base_dir / "sock")
        self.log_file: Path = self.data_dir / "postgres.log"
        if len(f"{self.socket_dir}/.s.PGSQL.{self.port}") > _MAX_SOCKET_PATH:
            raise ValueError(f"base_dir {self.base_dir} is too long for a unix socket path")
        # user -> pg_hba method for users added with add_user, in insertion order.
        self._hba: dict[str, str] = {}
        self._running = False
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._owner_pid = os.getpid()
        self._register_atexit()
        self._prepare_dirs()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> PostgresCluster:
        """initdb (first time only) and start the server; a no-op when already running."""
        if self._running:
            return self
        self._prepare_dirs()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        for attempt in range(5):
            self._write_config_files()
            log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            try:
                self._pg_ctl("start", "-l", str(self.log_file), timeout=60)
                break
            except ClusterError as exc:
                log = self._log_since(log_offset)
                port_taken = "could not bind" in log or "Address already in use" in log
                if not (self._auto_port and attempt < 4 and port_taken):
                    # pg_ctl only says "examine the log output"; the reason is in the log.
                    raise ClusterError(exc.cmd, exc.returncode, exc.stdout, log) from None
                # Someone took the port between free_port() and the postmaster's bind.
                self.port = free_port(self.host)
        self._running = True
        self._register_atexit()
        self._arm_watchdog()
        return self

    def stop(self) -> None:
        """Stop the server (fast, then immediate, then SIGKILL) and remove a directory we made."""
        if self._running or self._postmaster_pid() is not None:
            self._shutdown()
        self._running = False
        self._disarm_watchdog()
        if self._owns_base_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        atexit.unregister(self._atexit)

    def restart(self) -> None:
        """Rewrite the config files and restart; needed after changing restart-only settings."""
        if not self._running:
            self.start()
            return
        self._write_config_files()
        self._pg_ctl("restart", "-m", "fast", "-l", str(self.log_file), timeout=60)

    def reload(self) -> None:
        """Rewrite the config files and reload them, returning once new sessions see them.

        ``pg_reload_conf()`` only signals the postmaster, so we poll ``pg_conf_load_time()``
        from new sessions: once it moves, new connections are checked against the new pg_hba.
        """
        self._write_config_files()
        if not self._running:
            return
        errors = self.psql(
            "SELECT sourcefile || ':' || sourceline || ': ' || error FROM pg_file_settings"
            " WHERE error IS NOT NULL AND error <> 'setting could not be applied'"
            " UNION ALL SELECT 'pg_hba.conf:' || line_number || ': ' || error"
            " FROM pg_hba_file_rules WHERE error IS NOT NULL"
        ).strip()
        if errors:
            raise RuntimeError(f"PostgreSQL rejected the generated configuration:\n{errors}")
        before = self.psql("SELECT pg_conf_load_time()").strip()
        self.psql("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 10
        check = f"SELECT pg_conf_load_time() > {_sql_literal(before)}::timestamptz"
        while self.psql(check).strip() != "t":
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not reload its configuration within 10 s")
            time.sleep(0.01)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- using the server --------------------------------------------------------------------

    def dsn(
        self,
        dbname: str = "postgres",
        user: str | None = None,
        password: str | None = None,
        host: str | None = None,
        port: int | None = None,
    ) -> str:
        """A libpq key=value DSN; TCP by default, ``host=cluster.socket_dir`` for the socket.

        Without ``user`` it is the superuser with the superuser's password.
        """
        if user is None:
            user = self.superuser
            if password is None:
                password = self.superuser_password
        parts = {
            "host": self.host if host is None else host,
            "port": str(self.port if port is None else port),
            "dbname": dbname,
            "user": user,
        }
        if password is not None:
            parts["password"] = password
        return " ".join(f"{key}={_conninfo_value(value)}" for key, value in parts.items())

    def psql(self, sql: str, dbname: str = "postgres", user: str | None = None) -> str:
        """Run ``sql`` through psql over the unix socket (trusted) and return its stdout.

        The script is fed on stdin so that psql sends each statement on its own (CREATE DATABASE
        cannot run in a multi-statement query) and psql meta-commands work. Output is unaligned
        and tuples-only; raises ClusterError, carrying stderr, on the first failing statement.
        """
        self._require_running()
        psql = self.bindir / "psql"
        argv = [
            str(psql) if psql.is_file() else shutil.which("psql") or "psql",
            "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
            "-h", self.socket_dir, "-p", str(self.port),
            "-U", user or self.superuser, "-d", dbname, "-f", "-",
        ]  # fmt: skip
        return self._run(argv, stdin=sql).stdout

    def add_user(
        self,
        name: str,
        password: str | None,
        *,
        method: str = "scram-sha-256",
        superuser: bool = False,
    ) -> None:
        """Create (or update) a login role and let it in over TCP with pg_hba ``method``.

        The password is stored in that method's format: md5 for ``md5``, SCRAM otherwise (the
        server can check a cleartext ``password`` against a SCRAM verifier).
        """
        if method not in HBA_METHODS:
            raise ValueError(f"method must be one of {sorted(HBA_METHODS)}, not {method!r}")
        if password is None and method != "trust":
            raise ValueError(f"a user with method {method!r} needs a password")
        if not name or re.search(r'["\x00-\x1f]', name):
            raise ValueError(f"user name {name!r} cannot be written to pg_hba.conf")
        encryption = "md5" if method == "md5" else "scram-sha-256"
        options = "LOGIN {} PASSWORD {}".format(
            "SUPERUSER" if superuser else "NOSUPERUSER",
            "NULL" if password is None else _sql_literal(password),
        )
        self.psql(
            f"SET password_encryption = {_sql_literal(encryption)};\n"
            f"SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {_sql_literal(name)})"
            " AS missing \\gset\n"
            f"\\if :missing\nCREATE ROLE {_sql_ident(name)} {options};\n"
            f"\\else\nALTER ROLE {_sql_ident(name)} {options};\n\\endif\n"
        )
        self._hba[name] = method
        self.reload()

    def start_replica(
        self,
        *,
        base_dir: str | Path | None = None,
        port: int | None = None,
        settings: dict[str, str] | None = None,
    ) -> PostgresCluster:
        """Start and return a hot-standby streaming replica of this running cluster.

        ``pg_basebackup -R`` copies the data directory and writes ``standby.signal`` and a
        ``primary_conninfo`` that follows this server over its unix socket as the superuser
        (pg_hba's trusted ``local replication`` line). The replica is a separate
        ``PostgresCluster`` with the same settings (plus ``settings``), users and
        ``max_connections`` (a standby may not have fewer); stop it before the primary.
        """
        self._require_running()
        replica = PostgresCluster(
            base_dir=base_dir,
            port=port,
            settings={**self.settings, **(settings or {})},
            max_connections=self.max_connections,
        )
        replica._hba = dict(self._hba)
        try:
            replica._run([
                str(self._tool("pg_basebackup")), "-D", str(replica.data_dir),
                "-h", self.socket_dir, "-p", str(self.port), "-U", self.superuser,
                "-R", "-X", "stream",
                # A fast checkpoint: the default "spread" one can take minutes to start.
                "-c", "fast", "--no-sync",
            ], timeout=120)  # fmt: skip
            replica.start()
        except BaseException:
            replica.stop()
            raise
        return replica

    def _tool(self, name: str) -> Path:
        path = self.bindir / name
        if path.is_file():
            return path
        found = shutil.which(name)
        if found is None:
            raise RuntimeError(f"{name} was found neither in {self.bindir} nor on PATH")
        return Path(found)

    def create_database(self, name: str, owner: str | None = None) -> None:
        sql = f"CREATE DATABASE {_sql_ident(name)}"
        if owner is not None:
            sql += f" OWNER {_sql_ident(owner)}"
        self.psql(sql + ";\n")

    # -- internals ---------------------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        self.base_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        Path(self.socket_dir).mkdir(mode=0o700, exist_ok=True)
        if self._pg_user is not None:
            _check_traversable(self.base_dir, self._pg_user)
            for path in (self.base_dir, Path(self.socket_dir)):
                os.chown(path, self._pg_user.pw_uid, self._pg_user.pw_gid)
        # Other local users (a pgbouncer under test, say) may use the socket; the data
        # directory itself stays 0700 as the server insists.
        self.base_dir.chmod(0o755)
        Path(self.socket_dir).chmod(0o755)

    def _initdb(self) -> None:
        pwfile = self.base_dir / "pwfile"
        self._write_file(pwfile, self.superuser_password + "\n", mode=0o600)
        try:
            self._run([
                str(self.bindir / "initdb"), "-D", str(self.data_dir),
                "--auth-local=trust", "--auth-host=scram-sha-256",
                "-U", self.superuser, f"--pwfile={pwfile}",
                "-E", "UTF8", "--locale=C",
                # Skipping the final fsync halves initdb's time; durability is moot here.
                "--no-sync",
            ], timeout=120)  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a", encoding="utf-8") as f:
            f.write("\n# Settings owned by pgmux.testing.cluster (rewritten on each start).\n")
            f.write("include 'pgmux.conf'\n")

    def _config_text(self) -> str:
        values = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": self.socket_dir,
            "max_connections": str(self.max_connections),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "128MB",
            "logging_collector": "off",
            **self.settings,
        }
        return "".join(f"{key} = {_conf_literal(value)}\n" for key, value in values.items())

    def _hba_text(self) -> str:
        addresses = ("127.0.0.1/32", "::1/128")
        lines = [
            "# Written by pgmux.testing.cluster. pg_hba.conf is first-match, so the per-user",
            "# lines must precede the catch-all ones.",
            "local all all trust",
            "local replication all trust",
        ]
        for user, method in self._hba.items():
            lines += [f'host all "{user}" {addr} {method}' for addr in addresses]
        lines += [f"host all all {addr} scram-sha-256" for addr in addresses]
        lines += [f"host replication all {addr} scram-sha-256" for addr in addresses]
        return "\n".join(lines) + "\n"

    def _write_config_files(self) -> None:
        self._write_file(self.data_dir / "pgmux.conf", self._config_text())
        self._write_file(self.data_dir / "pg_hba.conf", self._hba_text())

    def _write_file(self, path: Path, text: str, mode: int = 0o644) -> None:
        path.write_text(text, encoding="utf-8")
        path.chmod(mode)
        if self._pg_user is not None:
            os.chown(path, self._pg_user.pw_uid, self._pg_user.pw_gid)

    def _argv(self, argv: Sequence[str]) -> list[str]:
        if self._as_root:
            return ["runuser", "-u", PG_OS_USER, "--", *argv]
        return list(argv)

    def _run(
        self,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        timeout: float = 60,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        # Our PG* variables must not redirect the tools; English messages keep errors greppable.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", PGCLIENTENCODING="UTF8")
        result = subprocess.run(
            self._argv(argv),
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=env,
            # A cwd postgres can enter; the caller's may be /root. A new session keeps the
            # postmaster out of the terminal's process group: Ctrl-C then reaches only the test
            # runner, whose teardown stops the server in order.
            cwd=self.base_dir,
            start_new_session=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise ClusterError(argv, result.returncode, result.stdout, result.stderr)
        return result

    def _pg_ctl(self, action: str, *args: str, timeout: float, check: bool = True) -> int:
        argv = [str(self.bindir / "pg_ctl"), action, "-D", str(self.data_dir), "-w"]
        argv += ["-t", str(int(timeout)), *args]
        return self._run(argv, timeout=timeout + 10, check=check).returncode

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_file.open("rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _postmaster_pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def _shutdown(self) -> None:
        if self._pg_ctl("stop", "-m", "fast", timeout=30, check=False) == 0:
            return
        if self._postmaster_pid() is None:
            return
        self._pg_ctl("stop", "-m", "immediate", timeout=10, check=False)
        pid = self._postmaster_pid()
        if pid is not None:
            # Backends notice the postmaster's death and exit on their own.
            os.kill(pid, signal.SIGKILL)

    def _require_running(self) -> None:
        if not self._running:
            raise RuntimeError("the cluster is not running; call start() first")

    def _register_atexit(self) -> None:
        # unregister first: registering a bound method twice would run stop() twice.
        atexit.unregister(self._atexit)
        atexit.register(self._atexit)

    def _atexit(self) -> None:
        # A forked child (multiprocessing) inherits this handler but does not own the server.
        if os.getpid() == self._owner_pid:
            self.stop()

    def _arm_watchdog(self) -> None:
        if self._watchdog is not None:
            return
        stop_cmd = self._argv([
            str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data_dir),
            "-m", "immediate", "-w", "-t", "30",
        ])  # fmt: skip
        remove = str(self.base_dir) if self._owns_base_dir else ""
        self._watchdog = subprocess.Popen(
            [sys.executable, "-I", "-c", _WATCHDOG, json.dumps(stop_cmd), remove],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            start_new_session=True,
        )

    def _disarm_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is None or watchdog.stdin is None:
            return
        try:
            watchdog.stdin.write(b"disarm")
            watchdog.stdin.close()
            watchdog.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            watchdog.kill()
            watchdog.wait()
