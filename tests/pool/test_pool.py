"""The sans-IO pool with fake connections: hand-off order, limits, lifetimes, and membership.

The fakes carry only what :class:`Pool` duck-types. Time is a number passed in, so every test
is exact. A hypothesis state machine drives two pools that share their counters through random
acquire/release/leave/die/login/check/tick/reconnect steps and checks after each one that every
connection sits in exactly one membership dict and that the counters equal the server counts.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pgmux.pool.pool import Counters, Members, Pool, PoolSettings
from pgmux.pool.stats import PoolStats, averages

_ids = itertools.count(1)


class FakeServer:
    def __init__(self, pool: Pool, now: float) -> None:
        self.id = next(_ids)
        self.pool = pool
        self.members: Members = {}
        self.idle_since = now
        self.connect_time = now
        self.generation = pool.generation
        self.close_needed = False
        self.closed: str | None = None
        self.dead = False
        self.checks = 0
        self.client: FakeClient | None = None

    def close(self, reason: str) -> None:
        assert self.closed is None, "closed twice"
        assert self.members == {}, "closed while still in a state"
        assert self.client is None, "closed under a client"
        self.closed = reason

    def start_check(self) -> None:
        self.checks += 1

    def __repr__(self) -> str:
        return f"S{self.id}"


class FakeClient:
    def __init__(self, pool: Pool) -> None:
        self.id = next(_ids)
        self.pool = pool
        self.members: Members = {}
        self.wait_start = 0.0
        self.waiting = False  # the model's view: acquire() returned None and no hand-off yet
        self.gone = False
        self.server: FakeServer | None = None

    def assign(self, server: FakeServer) -> None:
        assert not self.gone, "a server was handed to a client that left"
        assert self.waiting, "a server was handed to a client that was not waiting"
        assert self.server is None and server.client is None
        assert self.members is self.pool.cl_active
        self.waiting = False
        self.link(server)

    def link(self, server: FakeServer) -> None:
        self.server = server
        server.client = self

    def unlink(self) -> FakeServer:
        server = self.server
        assert server is not None
        self.server = None
        server.client = None
        return server

    def __repr__(self) -> str:
        return f"C{self.id}"


class Launcher:
    """The asyncio layer's ``launch``: a placeholder server enters sv_login at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.servers: list[FakeServer] = []

    def __call__(self, pool: Pool) -> None:
        server = FakeServer(pool, self.now)
        pool.add_server(server)
        self.servers.append(server)

    def count(self, pool: Pool) -> int:
        return sum(1 for server in self.servers if server.pool is pool)


def make_pool(
    launcher: Launcher | None = None,
    counters: Counters | None = None,
    database: str = "db",
    user: str = "user",
    **options: Any,
) -> tuple[Pool, Launcher]:
    options.setdefault("server_check_query", "")
    launcher = launcher or Launcher()
    pool = Pool(database, user, PoolSettings(**options), counters or Counters(), launcher)
    return pool, launcher


def client(pool: Pool) -> FakeClient:
    c = FakeClient(pool)
    pool.add_client(c)
    return c


def request(pool: Pool, c: FakeClient, now: float) -> FakeServer | None:
    server = pool.acquire(c, now)
    if server is None:
        c.waiting = True
    else:
        c.link(server)
    return server


def idle_servers(pool: Pool, count: int, now: float = 0.0) -> list[FakeServer]:
    """``count`` servers that logged in (in order) and went idle at ``now``."""
    servers = []
    for _ in range(count):
        server = FakeServer(pool, now)
        pool.add_server(server)
        pool.server_ready(server, now)
        servers.append(server)
    return servers


# --- membership --------------------------------------------------------------------------------


def test_move_is_the_state_change() -> None:
    pool, _ = make_pool()
    server = FakeServer(pool, 0)
    pool.add_server(server)
    assert server.members is pool.sv_login and server in pool.sv_login
    pool.move(server, pool.sv_idle)
    assert server.members is pool.sv_idle and server not in pool.sv_login
    pool.move(server, pool.sv_idle)  # moving to where it is changes nothing
    assert list(pool.sv_idle) == [server]
    assert pool.server_count == 1


def test_remove_server_counts_once() -> None:
    counters = Counters()
    pool, _ = make_pool(counters=counters)
    server = idle_servers(pool, 1)[0]
    assert counters.by_db == {"db": 1} and counters.by_user == {"user": 1}
    pool.remove_server(server)
    pool.remove_server(server)
    assert counters.by_db == {"db": 0} and counters.by_user == {"user": 0}
    assert server.members == {} and pool.server_count == 0


def test_remove_client_from_any_state() -> None:
    pool, _ = make_pool()
    c = client(pool)
    request(pool, c, 0)
    assert c.members is pool.cl_waiting
    pool.remove_client(c)
    assert c.members == {} and not pool.cl_waiting and not pool.cl_active


# --- handing servers out ---------------------------------------------------------------------


def test_idle_servers_are_reused_lifo() -> None:
    pool, launcher = make_pool()
    first, second, third = idle_servers(pool, 3)
    got = [request(pool, client(pool), 1) for _ in range(3)]
    assert got == [third, second, first]  # the warmest connection first
    assert all(s.members is pool.sv_active for s in (first, second, third))
    assert launcher.servers == []


def test_round_robin_reuses_fifo() -> None:
    pool, _ = make_pool(server_round_robin=True)
    servers = idle_servers(pool, 3)
    assert [request(pool, client(pool), 1) for _ in range(3)] == servers


def test_waiters_are_served_fifo() -> None:
    pool, launcher = make_pool(pool_size=1)
    clients = [client(pool) for _ in range(4)]
    for arrival, c in enumerate(clients):
        assert request(pool, c, float(arrival)) is None
    assert list(pool.cl_waiting) == clients
    assert [c.wait_start for c in clients] == [0.0, 1.0, 2.0, 3.0]
    assert len(launcher.servers) == 1  # pool_size
    server = launcher.servers[0]
    served = []
    for now in (10.0, 11.0, 12.0, 13.0):
        pool.server_ready(server, now)
        holder = server.client
        assert holder is not None
        served.append(holder)
        holder.unlink()
    assert served == clients
    assert pool.stats.wait_time_us == (10 + 10 + 10 + 10) * 1_000_000
    pool.server_ready(server, 14.0)
    assert server.members is pool.sv_idle and server.idle_since == 14.0


def test_new_client_queues_behind_waiters_even_with_an_idle_server() -> None:
    pool, _ = make_pool(pool_size=1)
    first = client(pool)
    request(pool, first, 0)
    pool.paused = True
    pool.server_ready(next(iter(pool.sv_login)), 1)  # paused: the new server stays idle
    pool.paused = False
    late = client(pool)
    assert request(pool, late, 2) is None  # no overtaking the queue
    assert list(pool.cl_waiting) == [first, late]


def test_a_waiter_that_left_is_never_assigned() -> None:
    pool, launcher = make_pool(pool_size=1)
    gone, unlinked, stays = client(pool), client(pool), client(pool)
    for c in (gone, unlinked, stays):
        request(pool, c, 0)
    pool.remove_client(gone)
    gone.gone = True
    pool.client_unlinked(unlinked)  # timed out: back among active clients, no server
    unlinked.waiting = False
    assert unlinked.members is pool.cl_active
    pool.server_ready(launcher.servers[0], 1)
    assert launcher.servers[0].client is stays
    assert gone.server is None and unlinked.server is None


def test_client_unlinked_leaves_active_clients_alone() -> None:
    pool, _ = make_pool()
    c = client(pool)
    pool.client_unlinked(c)
    assert c.members is pool.cl_active


def test_paused_pool_queues_and_does_not_grow() -> None:
    pool, launcher = make_pool()
    server = idle_servers(pool, 1)[0]
    pool.paused = True
    c = client(pool)
    assert request(pool, c, 1) is None
    assert launcher.servers == [] and server.members is pool.sv_idle
    pool.grow(1)
    assert launcher.servers == []


def test_closed_pool_closes_released_servers() -> None:
    pool, _ = make_pool()
    server = FakeServer(pool, 0)
    pool.add_server(server)
    pool.closed = True
    pool.server_ready(server, 1)
    assert server.closed == "pool closed" and pool.server_count == 0


# --- limits ----------------------------------------------------------------------------------


def test_pool_size_limits_launches() -> None:
    pool, launcher = make_pool(pool_size=2)
    for _ in range(5):
        request(pool, client(pool), 0)
    assert len(launcher.servers) == 2 and pool.server_count == 2
    assert pool.limit_reached(0)


def test_grow_counts_logins_and_checks_in_flight() -> None:
    pool, launcher = make_pool(pool_size=10)
    for _ in range(3):
        request(pool, client(pool), 0)
    assert len(launcher.servers) == 3
    pool.grow(1)  # three logins already cover three waiters
    assert len(launcher.servers) == 3


def test_pool_size_zero_means_no_limit() -> None:
    pool, launcher = make_pool(pool_size=0)
    for _ in range(50):
        request(pool, client(pool), 0)
    assert len(launcher.servers) == 50


def test_reserve_pool_after_timeout() -> None:
    pool, launcher = make_pool(pool_size=2, reserve_pool_size=1, reserve_pool_timeout=5.0)
    for now in (0.0, 1.0, 2.0, 3.0):
        request(pool, client(pool), now)
    assert len(launcher.servers) == 2
    pool.grow(4.9)  # the oldest waiter has waited 4.9 s
    assert len(launcher.servers) == 2
    pool.grow(5.0)
    assert len(launcher.servers) == 3
    pool.grow(100.0)  # never beyond pool_size + reserve_pool_size
    assert len(launcher.servers) == 3 and pool.server_count == 3


def test_reserve_needs_a_waiter() -> None:
    pool, launcher = make_pool(
        pool_size=1, reserve_pool_size=5, reserve_pool_timeout=0.0, min_pool_size=3
    )
    pool.grow(0)
    assert len(launcher.servers) == 1  # min_pool_size does not dip into the reserve


def test_min_pool_size_without_clients() -> None:
    pool, launcher = make_pool(min_pool_size=3)
    pool.grow(0)
    assert len(launcher.servers) == 3
    pool.grow(1)
    assert len(launcher.servers) == 3


def test_max_db_connections_is_shared_by_the_pools_of_a_database() -> None:
    counters, launcher = Counters(), Launcher()
    alice, _ = make_pool(launcher, counters, "db", "alice", max_db_connections=3)
    bob, _ = make_pool(launcher, counters, "db", "bob", max_db_connections=3)
    other, _ = make_pool(launcher, counters, "other", "bob", max_db_connections=3)
    for _ in range(2):
        request(alice, client(alice), 0)
    for _ in range(2):
        request(bob, client(bob), 0)
    for _ in range(2):
        request(other, client(other), 0)
    assert (launcher.count(alice), launcher.count(bob), launcher.count(other)) == (2, 1, 2)
    assert counters.by_db == {"db": 3, "other": 2}
    assert counters.by_user == {"alice": 2, "bob": 3}


def test_max_user_connections_is_shared_by_the_pools_of_a_user() -> None:
    counters, launcher = Counters(), Launcher()
    first, _ = make_pool(launcher, counters, "one", "alice", max_user_connections=2)
    second, _ = make_pool(launcher, counters, "two", "alice", max_user_connections=2)
    request(first, client(first), 0)
    for _ in range(3):
        request(second, client(second), 0)
    assert (launcher.count(first), launcher.count(second)) == (1, 1)
    pool = first if first.sv_login else second
    login = next(iter(pool.sv_login))
    pool.remove_server(login)  # a login failed: its slot is free again
    second.grow(1)
    assert launcher.count(second) == 2


def test_a_full_database_makes_room_from_another_pools_idle_server() -> None:
    counters, launcher = Counters(), Launcher()
    busy, _ = make_pool(launcher, counters, "db", "alice", max_db_connections=1)
    idle, _ = make_pool(launcher, counters, "db", "bob", max_db_connections=1)
    parked = idle_servers(idle, 1)[0]
    request(busy, client(busy), 1)
    busy.grow(2)
    assert parked.closed is not None or launcher.count(busy) == 1


def test_login_retry_delays_growth() -> None:
    pool, launcher = make_pool(server_login_retry=15.0)
    pool.login_failed(RuntimeError("password authentication failed"), 0.0)
    request(pool, client(pool), 1.0)
    assert launcher.servers == [] and pool.in_login_retry(14.9)
    pool.grow(15.0)
    assert len(launcher.servers) == 1
    pool.login_failed(RuntimeError("again"), 20.0)
    pool.login_succeeded()
    assert not pool.in_login_retry(20.0)


# --- lifetimes, generations, checks ----------------------------------------------------------


def test_server_ready_closes_a_server_past_its_lifetime_and_replaces_it() -> None:
    pool, launcher = make_pool(pool_size=1, server_lifetime=100.0)
    first, second = client(pool), client(pool)
    request(pool, first, 0)
    old = launcher.servers[0]
    pool.server_ready(old, 0)  # logged in at 0 s, handed to ``first``
    assert old.client is first
    request(pool, second, 50)
    assert len(launcher.servers) == 1  # pool_size: ``second`` waits for ``old``
    first.unlink()
    pool.server_ready(old, 100.0)
    assert old.closed == "server_lifetime" and old.members == {} and old.client is None
    assert second.waiting and second.members is pool.cl_waiting
    assert len(launcher.servers) == 2  # its slot went to a replacement for the waiter
    assert pool.server_count == 1 and pool.counters.by_db == {"db": 1}


def test_lifetime_zero_means_forever() -> None:
    pool, _ = make_pool(server_lifetime=0.0)
    server = idle_servers(pool, 1)[0]
    assert request(pool, client(pool), 1e9) is server


def test_old_generation_is_closed_on_release_and_when_taken() -> None:
    pool, launcher = make_pool()
    idle, busy = idle_servers(pool, 2)
    c = client(pool)
    assert request(pool, c, 1) is busy
    pool.generation += 1  # RECONNECT
    c.unlink()
    pool.server_ready(busy, 2)
    assert busy.closed == "server_lifetime"  # the reason server_ready gives any expiry
    newcomer = client(pool)
    assert request(pool, newcomer, 3) is None
    assert idle.closed == "server_lifetime"
    assert len(launcher.servers) == 1 and launcher.servers[0].generation == 1


def test_close_needed_is_closed_when_taken() -> None:
    pool, _ = make_pool()
    flagged = idle_servers(pool, 1)[0]
    flagged.close_needed = True
    assert request(pool, client(pool), 1) is None
    assert flagged.closed == "reconnect"


def test_idle_server_is_checked_before_reuse() -> None:
    pool, launcher = make_pool(server_check_query="SELECT 1", server_check_delay=30.0)
    fresh_enough, stale = idle_servers(pool, 2, now=0.0)
    stale.idle_since = -10.0
    c = client(pool)
    # LIFO picks ``stale`` (last in), idle 40 s: it goes to sv_tested; then ``fresh_enough``
    # (idle 29 s) is handed out.
    assert request(pool, c, 29.0) is fresh_enough
    assert stale.members is pool.sv_tested and stale.checks == 1
    waiter = client(pool)
    assert request(pool, waiter, 31.0) is None
    assert launcher.servers == []  # the server under test will serve the waiter
    pool.server_ready(stale, 31.5)  # the check passed
    assert stale.client is waiter


def test_server_check_disabled_by_empty_query() -> None:
    pool, _ = make_pool(server_check_query="", server_check_delay=0.0)
    server = idle_servers(pool, 1)[0]
    assert request(pool, client(pool), 1000) is server and server.checks == 0


def test_max_wait() -> None:
    pool, _ = make_pool(pool_size=1)
    assert pool.max_wait(5) == 0.0
    for now in (1.0, 2.0, 3.0):
        request(pool, client(pool), now)
    assert pool.max_wait(10.0) == 9.0


# --- stats --------------------------------------------------------------------------------


def test_stats_snapshot_add_and_averages() -> None:
    old = PoolStats(
        xact_count=10,
        query_count=20,
        server_assignment_count=5,
        received=100,
        sent=200,
        xact_time_us=1000,
        query_time_us=2000,
        wait_time_us=50,
    )
    new = old.snapshot()
    assert new == old and new is not old
    new.add(
        PoolStats(
            xact_count=10,
            query_count=40,
            server_assignment_count=5,
            received=1000,
            sent=2000,
            xact_time_us=5000,
            query_time_us=8000,
            wait_time_us=100,
            client_login_count=4,
        )
    )
    avg = averages(old, new, 2.0)
    assert (avg.xact_count, avg.query_count, avg.server_assignment_count) == (5.0, 20.0, 2.5)
    assert (avg.received, avg.sent, avg.client_login_count) == (500.0, 1000.0, 2.0)
    assert (avg.xact_time_us, avg.query_time_us, avg.wait_time_us) == (500.0, 200.0, 20.0)
    assert averages(old, old, 1.0).xact_time_us == 0.0  # no division by zero transactions
    assert averages(old, new, 0.0) == averages(new, new, 0.0)


# --- shared limits, whatever the sibling pools hold ------------------------------------------

STATES = ("cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login")
POOL_KEYS = (("db", "alice"), ("db", "bob"), ("other", "alice"))


def hold(pool: Pool, count: int, now: float) -> list[FakeClient]:
    """Up to ``count`` clients of ``pool`` holding a server (fewer if a limit says so)."""
    holders = []
    for _ in range(count):
        c = client(pool)
        if request(pool, c, now) is None:
            for server in list(pool.sv_login):
                pool.server_ready(server, now)
        if c.server is None:
            pool.remove_client(c)
            c.gone = True
        else:
            holders.append(c)
    return holders


def test_a_full_database_does_not_borrow_a_slot_from_another_database() -> None:
    """Regression: evicting an idle server of the same *user* on another database freed no
    slot of the full database, yet a server was launched past max_db_connections."""
    counters, launcher = Counters(), Launcher()
    limits = {"max_db_connections": 1, "max_user_connections": 5}
    db_alice, _ = make_pool(launcher, counters, "db", "alice", **limits)
    db_bob, _ = make_pool(launcher, counters, "db", "bob", **limits)
    other_alice, _ = make_pool(launcher, counters, "other", "alice", **limits)
    request(db_bob, client(db_bob), 0)  # the one slot of "db", still logging in
    parked = idle_servers(other_alice, 1)[0]
    request(db_alice, client(db_alice), 1)
    assert counters.by_db["db"] == 1
    assert parked.closed is None  # closing it would not have helped


@settings(max_examples=150, deadline=None)
@given(
    pool_size=st.sampled_from([0, 1, 3]),
    max_db=st.sampled_from([0, 1, 2, 3]),
    max_user=st.sampled_from([0, 1, 2, 3]),
    layout=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=3, max_size=3),
    target=st.integers(0, 2),
)
def test_shared_limits_hold_whatever_the_siblings_hold(
    pool_size: int, max_db: int, max_user: int, layout: list[tuple[int, int]], target: int
) -> None:
    """A new request in one pool, with its siblings holding busy and idle servers: limits hold,
    only an idle server sharing every full limit is evicted, and one is when that would help."""
    counters, launcher = Counters(), Launcher()
    pools = [
        make_pool(
            launcher,
            counters,
            db,
            user,
            pool_size=pool_size,
            max_db_connections=max_db,
            max_user_connections=max_user,
        )[0]
        for db, user in POOL_KEYS
    ]
    for pool, (busy, idle) in zip(pools, layout, strict=True):
        for c in hold(pool, busy + idle, 0.0)[:idle]:
            pool.server_ready(c.unlink(), 0.0)
    pool = pools[target]
    db_full = max_db > 0 and counters.by_db.get(pool.database, 0) >= max_db
    user_full = max_user > 0 and counters.by_user.get(pool.user, 0) >= max_user

    def frees_every_full_limit(other: Pool) -> bool:
        return (not db_full or other.database == pool.database) and (
            not user_full or other.user == pool.user
        )

    helpful = [
        s
        for other in pools
        if other is not pool and frees_every_full_limit(other)
        for s in other.sv_idle
    ]
    room = not (pool_size > 0 and pool.server_count >= pool_size)
    before = {s for s in launcher.servers if s.closed is None}
    waiter = client(pool)
    got = request(pool, waiter, 1.0)

    for other in pools:
        if max_db:
            assert counters.by_db.get(other.database, 0) <= max_db
        if max_user:
            assert counters.by_user.get(other.user, 0) <= max_user
    evicted = [s for s in before if s.closed is not None]
    assert all(frees_every_full_limit(s.pool) for s in evicted)
    assert len(evicted) <= 1
    if got is None and room and (not (db_full or user_full) or helpful):
        assert pool.sv_login, "a waiter was left without a server although one could be opened"


# --- the state machine ---------------------------------------------------------------------


class PoolMachine(RuleBasedStateMachine):
    """Three pools sharing Counters (two per database, two per user) under random events."""

    def __init__(self) -> None:
        super().__init__()
        self.launcher = Launcher()
        self.counters = Counters()
        self.pools: list[Pool] = []
        self.clients: list[FakeClient] = []

    @property
    def now(self) -> float:
        return self.launcher.now

    @initialize(
        pool_size=st.integers(0, 4),
        reserve=st.integers(0, 2),
        max_db=st.sampled_from([0, 1, 2, 3, 6]),  # small limits: sharing them is the point
        max_user=st.sampled_from([0, 1, 2, 3, 6]),
        lifetime=st.sampled_from([0.0, 5.0, 30.0]),
        check_delay=st.sampled_from([None, 0.0, 10.0]),
        round_robin=st.booleans(),
    )
    def make_pools(
        self,
        pool_size: int,
        reserve: int,
        max_db: int,
        max_user: int,
        lifetime: float,
        check_delay: float | None,
        round_robin: bool,
    ) -> None:
        for database, user in POOL_KEYS:
            options = PoolSettings(
                pool_size=pool_size,
                reserve_pool_size=reserve,
                reserve_pool_timeout=2.0,
                max_db_connections=max_db,
                max_user_connections=max_user,
                server_lifetime=lifetime,
                server_check_query="" if check_delay is None else "SELECT 1",
                server_check_delay=check_delay or 0.0,
                server_round_robin=round_robin,
                server_login_retry=3.0,
            )
            self.pools.append(Pool(database, user, options, self.counters, self.launcher))

    # -- helpers ------------------------------------------------------------------------------

    def live_clients(self) -> list[FakeClient]:
        return [c for c in self.clients if not c.gone]

    def servers_in(self, state: str) -> list[FakeServer]:
        return [s for pool in self.pools for s in getattr(pool, state)]

    def leave(self, c: FakeClient, clean: bool) -> None:
        """ClientConnection.close -> Pooler.client_closing."""
        pool = c.pool
        pool.remove_client(c)
        c.gone = True
        c.waiting = False
        if c.server is not None:
            server = c.unlink()
            if clean:
                pool.server_ready(server, self.now)
            else:
                pool.remove_server(server)
                server.close("client left mid-transaction")
                pool.grow(self.now)

    # -- rules ----------------------------------------------------------------------------

    @rule(data=st.data(), query=st.booleans())
    def connect(self, data: st.DataObject, query: bool) -> None:
        """A client logs in, and perhaps sends its first query at once."""
        pool = data.draw(st.sampled_from(self.pools))
        c = client(pool)
        self.clients.append(c)
        if query:
            request(pool, c, self.now)

    @precondition(lambda self: any(c.server is None and not c.waiting for c in self.live_clients()))
    @rule(data=st.data())
    def request(self, data: st.DataObject) -> None:
        c = data.draw(
            st.sampled_from([c for c in self.live_clients() if c.server is None and not c.waiting])
        )
        request(c.pool, c, self.now)

    @precondition(lambda self: any(c.server for c in self.live_clients()))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        """ReadyForQuery idle in transaction mode: the server goes back to the pool."""
        c = data.draw(st.sampled_from([c for c in self.live_clients() if c.server]))
        server = c.unlink()
        c.pool.server_ready(server, self.now)

    @precondition(lambda self: bool(self.live_clients()))
    @rule(data=st.data(), clean=st.booleans())
    def client_leaves(self, data: st.DataObject, clean: bool) -> None:
        self.leave(data.draw(st.sampled_from(self.live_clients())), clean)

    @precondition(lambda self: any(c.waiting for c in self.live_clients()))
    @rule(data=st.data())
    def waiter_times_out(self, data: st.DataObject) -> None:
        c = data.draw(st.sampled_from([c for c in self.live_clients() if c.waiting]))
        c.pool.client_unlinked(c)
        c.waiting = False

    @precondition(lambda self: bool(self.servers_in("sv_login")))
    @rule(data=st.data(), ok=st.booleans())
    def login_ends(self, data: st.DataObject, ok: bool) -> None:
        server = data.draw(st.sampled_from(self.servers_in("sv_login")))
        pool = server.pool
        if ok:
            pool.login_succeeded()
            pool.server_ready(server, self.now)
            return
        pool.remove_server(server)
        server.dead = True
        pool.login_failed(RuntimeError("login failed"), self.now)
        for waiter in list(pool.cl_waiting):  # Pooler._login_failed fails them all
            self.leave(waiter, clean=True)

    @precondition(lambda self: bool(self.servers_in("sv_tested")))
    @rule(data=st.data(), ok=st.booleans())
    def check_ends(self, data: st.DataObject, ok: bool) -> None:
        server = data.draw(st.sampled_from(self.servers_in("sv_tested")))
        if ok:
            server.pool.server_ready(server, self.now)
        else:
            server.pool.remove_server(server)
            server.close("check failed")

    @precondition(lambda self: any(s.members for s in self.launcher.servers))
    @rule(data=st.data())
    def server_dies(self, data: st.DataObject) -> None:
        """Pooler.server_lost: the connection is gone, its client fails, the pool regrows."""
        server = data.draw(st.sampled_from([s for s in self.launcher.servers if s.members]))
        pool = server.pool
        pool.remove_server(server)
        server.dead = True
        holder = server.client
        if holder is not None:
            holder.unlink()
            self.leave(holder, clean=True)
        pool.grow(self.now)

    @rule(data=st.data())
    def reconnect(self, data: st.DataObject) -> None:
        """Lifecycle.reconnect."""
        pool = data.draw(st.sampled_from(self.pools))
        pool.generation += 1
        for server in list(pool.sv_idle) + list(pool.sv_used):
            pool.remove_server(server)
            server.close("pause/reconnect")
        for server in pool.sv_active:
            server.close_needed = True
        pool.grow(self.now)

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.5, 10.0]))
    def tick(self, seconds: float) -> None:
        """Time passes and the janitor sweeps (its growth part)."""
        self.launcher.now += seconds
        for pool in self.pools:
            pool.grow(self.now)
        for pool in self.pools:
            # Nobody waits without a reason: a login or check in flight, a limit, or a pause
            # after a failed login.
            if pool.cl_waiting and not pool.in_login_retry(self.now):
                assert pool.sv_login or pool.sv_tested or pool.limit_reached(self.now)

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def every_connection_is_in_exactly_one_state(self) -> None:
        seen: dict[int, str] = {}
        for pool in self.pools:
            for state in STATES:
                members = getattr(pool, state)
                for conn in members:
                    assert id(conn) not in seen, f"{conn} in {seen[id(conn)]} and {state}"
                    seen[id(conn)] = state
                    assert conn.members is members
                    assert conn.pool is pool
        for c in self.clients:
            assert (id(c) in seen) == (not c.gone)
            if c.gone:
                assert c.members == {} and c.server is None
        for s in self.launcher.servers:
            assert (id(s) in seen) == (s.closed is None and not s.dead)

    @invariant()
    def counters_equal_server_counts(self) -> None:
        by_db: dict[str, int] = {}
        by_user: dict[str, int] = {}
        for pool in self.pools:
            by_db[pool.database] = by_db.get(pool.database, 0) + pool.server_count
            by_user[pool.user] = by_user.get(pool.user, 0) + pool.server_count

        def nonzero(counts: dict[str, int]) -> dict[str, int]:
            return {key: count for key, count in counts.items() if count}

        assert nonzero(self.counters.by_db) == nonzero(by_db)
        assert nonzero(self.counters.by_user) == nonzero(by_user)

    @invariant()
    def links_match_states(self) -> None:
        for pool in self.pools:
            assert set(pool.cl_waiting) == {
                c for c in self.live_clients() if c.pool is pool and c.waiting
            }
            assert set(pool.sv_active) == {
                s for s in self.launcher.servers if s.pool is pool and s.client is not None
            }
            for server in pool.sv_active:
                assert server.client is not None and server.client.server is server
                assert server.client.members is pool.cl_active

    @invariant()
    def limits_hold(self) -> None:
        for pool in self.pools:
            settings_ = pool.settings
            if settings_.pool_size > 0:
                assert pool.server_count <= settings_.pool_size + settings_.reserve_pool_size
            if settings_.max_db_connections > 0:
                assert self.counters.by_db.get(pool.database, 0) <= settings_.max_db_connections
            if settings_.max_user_connections > 0:
                assert self.counters.by_user.get(pool.user, 0) <= settings_.max_user_connections

    @invariant()
    def no_idle_server_while_a_client_waits(self) -> None:
        for pool in self.pools:
            assert not (pool.cl_waiting and pool.sv_idle)


PoolMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_pool_state_machine = PoolMachine.TestCase
