"""One pool of server connections per (database, user), and its waiting clients.

State is membership: a connection's state is the dict it sits in (insertion-ordered, so a dict
is both a FIFO queue and, with ``popitem``, a LIFO stack), and :meth:`Pool.move` is the only
place that changes it. ``SHOW POOLS`` and the metrics are then just sizes.

The pool decides; it does no I/O. Opening a server connection, running a check query and
closing are callbacks into the connection objects (duck-typed, see :class:`ServerLike` and
:class:`ClientLike`) and into ``launch``, all supplied by the asyncio layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pgmux.pool.stats import PoolStats

Members = dict[Any, None]


class ServerLike(Protocol):
    members: Members
    idle_since: float
    connect_time: float
    generation: int
    close_needed: bool

    def close(self, reason: str) -> None: ...
    def start_check(self) -> None: ...


class ClientLike(Protocol):
    members: Members
    wait_start: float

    def assign(self, server: Any) -> None: ...


@dataclass
class PoolSettings:
    """The effective limits and timeouts of one pool, resolved from global/db/user config."""

    pool_mode: str = "session"
    pool_size: int = 20
    min_pool_size: int = 0
    reserve_pool_size: int = 0
    reserve_pool_timeout: float = 5.0
    max_db_connections: int = 0
    max_user_connections: int = 0
    server_lifetime: float = 3600.0
    server_idle_timeout: float = 600.0
    server_check_delay: float = 30.0
    server_check_query: str = "SELECT 1"
    server_round_robin: bool = False
    query_timeout: float = 0.0
    query_wait_timeout: float = 120.0
    idle_transaction_timeout: float = 0.0
    client_idle_timeout: float = 0.0
    server_login_retry: float = 15.0
    session_state: str = "pin"


@dataclass
class Counters:
    """Server connection counts shared by every pool of one database or one user.

    ``pools`` lists every pool sharing these counts, so that a pool blocked by
    max_db_connections or max_user_connections can close an idle server of a sibling pool.
    """

    by_db: dict[str, int] = field(default_factory=dict)
    by_user: dict[str, int] = field(default_factory=dict)
    pools: list[Pool] = field(default_factory=list)


class Pool:
    """Server connections for one (database, user) pair and the clients that use them."""

    def __init__(
        self,
        database: str,
        user: str,
        settings: PoolSettings,
        counters: Counters,
        launch: Callable[[Pool], None],
    ) -> None:
        self.database = database
        self.user = user
        self.settings = settings
        self.counters = counters
        self._launch = launch
        self.stats = PoolStats()
        self.generation = 0
        self.paused = False
        self.closed = False
        # Clients: logged in (linked or not), and waiting for a server (FIFO).
        self.cl_active: Members = {}
        self.cl_waiting: Members = {}
        # Servers, named as in PgBouncer's SHOW POOLS.
        self.sv_active: Members = {}
        self.sv_idle: Members = {}
        self.sv_used: Members = {}
        self.sv_tested: Members = {}
        self.sv_login: Members = {}
        # What the first server told us at login (server_version, ...): replayed to clients.
        self.server_params: dict[str, str] = {}
        # Startup parameters already validated on a server -> PostgreSQL's spelling of them.
        self.parameter_cache: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        self.status_blocks: dict[tuple[tuple[str, str], ...], bytes] = {}  # welcome messages
        self.last_login_error: Exception | None = None
        self.last_login_error_at = 0.0
        counters.pools.append(self)

    def server_params_for(self, wanted: dict[str, str]) -> dict[str, str]:
        """The server defaults for the names in ``wanted`` (to tell whether it differs)."""
        defaults = self.server_params
        return {name: defaults[name] for name in wanted if name in defaults}

    # -- membership ----------------------------------------------------------------------

    @staticmethod
    def move(conn: Any, destination: Members) -> None:
        """Move ``conn`` to ``destination``: the one function that changes a state."""
        current = conn.members
        if current is destination:
            return
        current.pop(conn, None)
        destination[conn] = None
        conn.members = destination

    def add_server(self, server: Any) -> None:
        server.members = self.sv_login
        self.sv_login[server] = None
        self._count(+1)

    def remove_server(self, server: Any) -> None:
        if server.members.pop(server, 0) is None:
            self._count(-1)
        server.members = {}

    def add_client(self, client: Any) -> None:
        client.members = self.cl_active
        self.cl_active[client] = None

    def remove_client(self, client: Any) -> None:
        client.members.pop(client, None)
        client.members = {}

    def _count(self, delta: int) -> None:
        by_db, by_user = self.counters.by_db, self.counters.by_user
        by_db[self.database] = by_db.get(self.database, 0) + delta
        by_user[self.user] = by_user.get(self.user, 0) + delta

    @property
    def server_count(self) -> int:
        return (
            len(self.sv_active)
            + len(self.sv_idle)
            + len(self.sv_used)
            + len(self.sv_tested)
            + len(self.sv_login)
        )

    # -- handing servers to clients --------------------------------------------------------

    def acquire(self, client: Any, now: float) -> Any | None:
        """A ready server for ``client`` now, or None after queueing it (FIFO) as a waiter."""
        if not self.paused and not self.cl_waiting:
            server = self._take_idle(now)
            if server is not None:
                self.move(server, self.sv_active)
                return server
        client.wait_start = now
        self.move(client, self.cl_waiting)
        self.grow(now)
        return None

    def _take_idle(self, now: float) -> Any | None:
        idle = self.sv_idle
        while idle:
            # LIFO unless server_round_robin: the warmest connection first.
            server = next(iter(idle)) if self.settings.server_round_robin else next(reversed(idle))
            if self._must_close(server, now):
                self.remove_server(server)
                server.close("server_lifetime" if not server.close_needed else "reconnect")
                continue
            delay = self.settings.server_check_delay
            if self.settings.server_check_query and now - server.idle_since >= delay:
                self.move(server, self.sv_tested)
                server.start_check()
                continue
            return server
        return None

    def _must_close(self, server: Any, now: float) -> bool:
        if server.close_needed or server.generation != self.generation:
            return True
        lifetime = self.settings.server_lifetime
        return lifetime > 0 and now - server.connect_time >= lifetime

    def server_ready(self, server: Any, now: float) -> None:
        """The decision point for a server that just became free (login, release, check)."""
        if self.closed or self._must_close(server, now):
            self.remove_server(server)
            server.close("pool closed" if self.closed else "server_lifetime")
            self.grow(now)
            return
        if self.cl_waiting and not self.paused:
            client = next(iter(self.cl_waiting))
            self.move(client, self.cl_active)
            self.move(server, self.sv_active)
            self.stats.wait_time_us += int((now - client.wait_start) * 1_000_000)
            client.assign(server)
            return
        server.idle_since = now
        self.move(server, self.sv_idle)

    def client_unlinked(self, client: Any) -> None:
        """A client left the waiting list some other way (gave up, timed out, was killed)."""
        if client.members is self.cl_waiting:
            self.move(client, self.cl_active)

    # -- growing -----------------------------------------------------------------------------

    def limit_reached(self, now: float) -> bool:
        return self._pool_full(now) or self._shared_full()

    def _pool_full(self, now: float) -> bool:
        size = self.settings.pool_size
        return size > 0 and self.server_count >= size and not self._reserve_allowed(now)

    def _shared_full(self) -> bool:
        settings, counters = self.settings, self.counters
        db_limit, user_limit = settings.max_db_connections, settings.max_user_connections
        return (0 < db_limit <= counters.by_db.get(self.database, 0)) or (
            0 < user_limit <= counters.by_user.get(self.user, 0)
        )

    def _evict_sibling_idle(self) -> bool:
        """Close an idle server of a sibling pool that frees a slot of the full limit(s)."""
        settings, counters = self.settings, self.counters
        db_full = 0 < settings.max_db_connections <= counters.by_db.get(self.database, 0)
        user_full = 0 < settings.max_user_connections <= counters.by_user.get(self.user, 0)
        for other in counters.pools:
            if other is self or not other.sv_idle:
                continue
            if (not db_full or other.database == self.database) and (
                not user_full or other.user == self.user
            ):
                server = next(iter(other.sv_idle))  # the one idle the longest
                other.remove_server(server)
                server.close("evicted: max_db_connections/max_user_connections reached")
                return True
        return False

    def _reserve_allowed(self, now: float) -> bool:
        settings = self.settings
        if settings.reserve_pool_size <= 0 or not self.cl_waiting:
            return False
        if self.server_count >= settings.pool_size + settings.reserve_pool_size:
            return False
        oldest_start: float = next(iter(self.cl_waiting)).wait_start
        return now - oldest_start >= settings.reserve_pool_timeout

    def in_login_retry(self, now: float) -> bool:
        return (
            self.last_login_error is not None
            and now - self.last_login_error_at < self.settings.server_login_retry
        )

    def grow(self, now: float) -> None:
        """Open server connections for waiting clients (and min_pool_size) within the limits."""
        if self.closed or self.paused or self.in_login_retry(now):
            return
        wanted = len(self.cl_waiting) - len(self.sv_login) - len(self.sv_tested)
        wanted = max(wanted, self.settings.min_pool_size - self.server_count)
        while wanted > 0 and not self._pool_full(now):
            if self._shared_full() and not (self.cl_waiting and self._evict_sibling_idle()):
                break
            self._launch(self)
            wanted -= 1

    def login_failed(self, error: Exception, now: float) -> None:
        self.last_login_error = error
        self.last_login_error_at = now

    def login_succeeded(self) -> None:
        self.last_login_error = None

    def max_wait(self, now: float) -> float:
        if not self.cl_waiting:
            return 0.0
        oldest_start: float = next(iter(self.cl_waiting)).wait_start
        return now - oldest_start
