"""Tests for agentsync.locks: canonical order, deadlines, order checks, diagnostics."""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from agentsync.errors import LockError, LockOrderError, LockTimeout, LockUsageError
from agentsync.locks import (
    InProcessBackend,
    LockBackend,
    LockInversion,
    LockRegistry,
    LockStatistics,
)

pytestmark = pytest.mark.timeout(30)


# -- helpers -------------------------------------------------------------------


class Worker(threading.Thread):
    """A daemon thread that keeps what its target returned or raised."""

    def __init__(self, target: Callable[[], Any], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._target_fn()
        except BaseException as exc:
            self.error = exc

    def finish(self, timeout: float = 10) -> Any:
        """Join, fail if the thread hangs, re-raise what it raised."""
        self.join(timeout)
        assert not self.is_alive(), f"thread {self.name} hung"
        if self.error is not None:
            raise self.error
        return self.result


def start(target: Callable[[], Any], name: str) -> Worker:
    worker = Worker(target, name)
    worker.start()
    return worker


class Holder:
    """Holds locks in a named thread until the ``with`` block ends."""

    def __init__(
        self, locks: LockRegistry, *names: str, name: str, owner: str | None = None
    ) -> None:
        self.taken = threading.Event()
        self.done = threading.Event()
        self._locks, self._names, self._owner = locks, names, owner
        self.worker = Worker(self._run, name)

    def _run(self) -> None:
        with self._locks.acquire(*self._names, timeout=5, owner=self._owner):
            self.taken.set()
            self.done.wait(10)

    def __enter__(self) -> Holder:
        self.worker.start()
        assert self.taken.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.worker.finish()


class SignalBackend(InProcessBackend):
    """The in-process backend, reached through the generic path; records every
    call and sets ``blocking[name]`` when a thread starts a wait for ``name``."""

    def __init__(self, names: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.blocking = {name: threading.Event() for name in names}
        self.calls: list[tuple[str, str, float]] = []

    def acquire(self, name: str, deadline: float) -> bool:
        self.calls.append(("acquire", name, deadline))
        if deadline > time.monotonic() and name in self.blocking:
            self.blocking[name].set()
        return super().acquire(name, deadline)

    def release(self, name: str) -> None:
        self.calls.append(("release", name, 0.0))
        super().release(name)


class PausingBackend(InProcessBackend):
    """The in-process backend with a pause after each take, so that another
    thread can run between the first and the second lock of one acquire()."""

    def acquire(self, name: str, deadline: float) -> bool:
        got = super().acquire(name, deadline)
        time.sleep(0)
        return got


def assert_nothing_held(locks: LockRegistry) -> None:
    """The registry shows no holder and no waiter, and still works."""
    snapshot = locks.snapshot()
    assert all(s.holder is None and not s.waiters for s in snapshot), snapshot
    assert locks.held() == ()
    with locks.acquire(*locks.names, timeout=1):
        assert set(locks.held()) == set(locks.names)
    assert locks.held() == ()


def line_of(marker: str) -> int:
    """The line of this file that ends with ``# marker``."""
    with open(__file__, encoding="utf-8") as source:
        for number, text in enumerate(source, start=1):
            if text.rstrip().endswith(f"# {marker}"):
                return number
    raise AssertionError(marker)


@pytest.fixture(autouse=True)
def _no_thread_left() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not left, f"threads left running: {left}"


@pytest.fixture
def locks() -> LockRegistry:
    return LockRegistry(order=["cache", "database", "files"])


# -- canonical order -----------------------------------------------------------


class TestCanonicalOrder:
    def test_acquire_takes_declared_order_whatever_the_naming(self) -> None:
        """acquire() takes locks in the declared order, not the order named."""
        backend = SignalBackend()
        locks = LockRegistry(order=["cache", "database", "files"], backend=backend)

        with locks.acquire("files", "cache", "database", timeout=1) as taken:
            held = locks.held()

        assert [c[1] for c in backend.calls if c[0] == "acquire"] == [
            "cache",
            "database",
            "files",
        ]
        assert taken.names == held == ("cache", "database", "files")
        assert [c[1] for c in backend.calls if c[0] == "release"] == [
            "files",
            "database",
            "cache",
        ]

    @settings(max_examples=50, deadline=None)
    @given(st.permutations(["d", "a", "c", "b"]), st.integers(1, 4), st.booleans())
    def test_any_naming_is_taken_in_canonical_order(
        self, names: list[str], count: int, declared: bool
    ) -> None:
        """Any subset, named in any order, is taken in the canonical order."""
        order = ["d", "c", "b", "a"] if declared else None
        backend = SignalBackend()
        locks = LockRegistry(order, backend=backend)

        with locks.acquire(*names[:count], timeout=1):
            pass

        taken = [c[1] for c in backend.calls if c[0] == "acquire"]
        rank = (order or sorted(names)).index
        assert taken == sorted(names[:count], key=rank)

    def test_no_order_means_name_order_and_creation_on_first_use(self) -> None:
        """With no order, unknown names are created and ordered by name."""
        locks = LockRegistry()

        with locks.acquire("queue", "cache", timeout=1):
            held = locks.held()

        assert held == ("cache", "queue")
        assert locks.names == ("cache", "queue")

    def test_created_names_come_after_declared_ones(self) -> None:
        """With create=True and an order, new names follow the declared ones."""
        locks = LockRegistry(order=["zeta", "alpha"], create=True)

        with locks.acquire("beta", "alpha", "aardvark", "zeta", timeout=1):
            held = locks.held()

        assert held == ("zeta", "alpha", "aardvark", "beta")

    @pytest.mark.parametrize(
        ("backend", "rounds"),
        [(None, 10_000), (PausingBackend(), 2_000)],
        ids=["in-process", "pause-between-takes"],
    )
    def test_opposite_naming_never_deadlocks_c7(
        self, backend: LockBackend | None, rounds: int
    ) -> None:
        """Two threads naming db and cache in opposite orders, over and over, finish."""
        locks = LockRegistry(backend=backend)
        both_ready = threading.Barrier(2, timeout=5)

        def hammer(names: tuple[str, str]) -> int:
            both_ready.wait()
            for _ in range(rounds):
                with locks.acquire(*names, timeout=5):
                    time.sleep(0)  # let the other thread run while both are held
            return rounds

        workers = [
            start(lambda: hammer(("db", "cache")), "worker-1"),
            start(lambda: hammer(("cache", "db")), "worker-2"),
        ]
        done = [worker.finish(timeout=25) for worker in workers]

        stats = locks.statistics()
        assert done == [rounds, rounds]
        assert stats.contended > 0
        assert (stats.timeouts, stats.deadlocks, stats.inversions) == (0, 0, 0)
        assert_nothing_held(locks)

    def test_raw_locks_in_opposite_order_do_deadlock_c7(self) -> None:
        """The same two steps on raw threading.Lock deadlock (seen by a timeout)."""
        db, cache = threading.Lock(), threading.Lock()
        both_hold_one = threading.Barrier(2, timeout=5)
        both_tried = threading.Barrier(2, timeout=5)

        def take(first: threading.Lock, second: threading.Lock) -> bool:
            with first:
                both_hold_one.wait()
                got = second.acquire(timeout=0.5)
                # Keep the first lock until both have tried, so neither gets in
                # through the other's giving up.
                both_tried.wait()
                if got:
                    second.release()
                return got

        workers = [
            start(lambda: take(db, cache), "worker-1"),
            start(lambda: take(cache, db), "worker-2"),
        ]
        got_second = [worker.finish() for worker in workers]

        assert got_second == [False, False]

    def test_opposite_single_locks_fail_at_once_instead_of_deadlocking_c7(
        self,
    ) -> None:
        """The raw-lock deadlock on registry handles: one thread fails at once."""
        locks = LockRegistry(default_timeout=5)
        both_hold_one = threading.Barrier(2, timeout=5)

        def take(first: str, second: str) -> str:
            with locks[first]:
                both_hold_one.wait()
                try:
                    locks[second].acquire(timeout=5)
                except LockTimeout as exc:
                    return str(exc)
                locks[second].release()
                return "ok"

        began = time.monotonic()
        workers = [
            start(lambda: take("db", "cache"), "worker-1"),
            start(lambda: take("cache", "db"), "worker-2"),
        ]
        results = sorted(worker.finish() for worker in workers)

        assert time.monotonic() - began < 4
        assert results[1] == "ok"
        assert results[0].startswith("deadlock: worker-")
        assert locks.statistics().deadlocks == 1
        assert_nothing_held(locks)

    def test_opposite_single_locks_against_declared_order_raise_c7(self) -> None:
        """With a declared order the thread going against it gets LockOrderError."""
        locks = LockRegistry(order=["cache", "db"])
        both_hold_one = threading.Barrier(2, timeout=5)

        def take(first: str, second: str) -> str:
            with locks.acquire(first, timeout=5):
                both_hold_one.wait()
                try:
                    locks[second].acquire(timeout=5)
                except LockOrderError as exc:
                    return f"{exc.lock} after {exc.held}"
                locks[second].release()
                return "ok"

        workers = [
            start(lambda: take("db", "cache"), "worker-1"),
            start(lambda: take("cache", "db"), "worker-2"),
        ]
        results = [worker.finish() for worker in workers]

        assert results == ["cache after db", "ok"]
        assert_nothing_held(locks)

    def test_threads_exclude_each_other(self) -> None:
        """Four threads adding under the locks lose no update."""
        locks = LockRegistry()
        total = [0]
        ready = threading.Barrier(4, timeout=5)

        def add(names: tuple[str, ...]) -> None:
            ready.wait()
            for _ in range(500):
                with locks.acquire(*names, timeout=5):
                    value = total[0]
                    time.sleep(0)  # widen the window for a lost update
                    total[0] = value + 1

        workers = [
            start(functools.partial(add, names), f"adder-{i}")
            for i, names in enumerate([("a",), ("a", "b"), ("b", "a"), ("a", "c")])
        ]
        for worker in workers:
            worker.finish()

        assert total[0] == 2_000


# -- deadlines -----------------------------------------------------------------


class TestDeadlines:
    def test_timeout_releases_what_it_took_and_names_the_holder(self) -> None:
        """A timeout names lock, holder and held locks, and releases what it took."""
        locks = LockRegistry(order=["database", "cache"])

        with Holder(locks, "cache", name="worker-3", owner="tool refresh"):
            with pytest.raises(LockTimeout) as caught:
                locks.acquire("cache", "database", timeout=0.1)
            after = {s.name: s.holder for s in locks.snapshot()}

        err = caught.value
        assert isinstance(err, TimeoutError) and isinstance(err, LockError)
        assert re.fullmatch(
            r"lock 'cache' is held by worker-3 \(tool refresh\) since \d+\.\d s; "
            r"waited \d+\.\d s holding \['database'\]",
            str(err),
        ), str(err)
        assert (err.lock, err.held) == ("cache", ("database",))
        assert (err.holder.thread, err.holder.owner) == ("worker-3", "tool refresh")
        assert err.chain == ("MainThread", "cache", "worker-3")
        assert after["database"] is None
        assert after["cache"] is not None and after["cache"].thread == "worker-3"
        assert_nothing_held(locks)

    def test_one_deadline_bounds_every_lock(self) -> None:
        """Each lock is waited for with what is left of one deadline."""
        backend = SignalBackend(("database",))
        locks = LockRegistry(order=["cache", "database"], backend=backend)
        deadline = time.monotonic() + 0.2

        with Holder(locks, "database", name="holder"):
            with pytest.raises(LockTimeout):
                locks.acquire("database", "cache", deadline=deadline)

        assert ("acquire", "database", deadline) in backend.calls

    def test_timeout_is_one_budget_for_all_locks(self) -> None:
        """timeout= becomes one deadline: the second wait gets what is left."""
        backend = SignalBackend(("database",))
        locks = LockRegistry(order=["cache", "database"], backend=backend)
        before = time.monotonic()

        with Holder(locks, "database", name="holder"):
            with pytest.raises(LockTimeout):
                locks.acquire("cache", "database", timeout=0.2)

        waits = [
            c[2] for c in backend.calls if c[0] == "acquire" and c[1] == "database"
        ]
        assert before + 0.2 <= waits[-1] <= time.monotonic() + 0.2

    def test_zero_timeout_tries_once(self, locks: LockRegistry) -> None:
        """timeout=0 takes a free lock and fails at once on a held one."""
        with Holder(locks, "files", name="holder"):
            with locks.acquire("cache", timeout=0):
                began = time.monotonic()
                with pytest.raises(LockTimeout):
                    locks.acquire("files", timeout=0)

        assert time.monotonic() - began < 1

    def test_past_deadline_still_takes_a_free_lock(self, locks: LockRegistry) -> None:
        """A deadline already past means one try, not a refusal."""
        with locks.acquire("cache", deadline=time.monotonic() - 1):
            held = locks.held()

        assert held == ("cache",)

    def test_owner_scope_labels_and_bounds_handles(self, locks: LockRegistry) -> None:
        """owner() labels the holder and gives `with locks[name]:` its deadline."""
        with Holder(locks, "database", name="worker-7", owner="sync call toolu_9"):
            with locks.owner("refresh call toolu_1", deadline=time.monotonic() + 0.1):
                with locks["cache"]:
                    cache = locks.snapshot()[0].holder
                    with pytest.raises(LockTimeout) as caught:
                        with locks["database"]:
                            pass

        assert cache is not None and cache.owner == "refresh call toolu_1"
        assert "held by worker-7 (sync call toolu_9)" in str(caught.value)
        assert "holding ['cache']" in str(caught.value)
        assert_nothing_held(locks)

    def test_owner_scope_deadline_caps_longer_timeouts(
        self, locks: LockRegistry
    ) -> None:
        """Inside owner(deadline=), a longer explicit timeout waits no longer."""
        with Holder(locks, "cache", name="holder"):
            with locks.owner("call", deadline=time.monotonic() + 0.05):
                began = time.monotonic()
                with pytest.raises(LockTimeout):
                    locks.acquire("cache", timeout=10)
                waited = time.monotonic() - began

        assert waited < 5

    def test_owner_scopes_nest_and_restore(self, locks: LockRegistry) -> None:
        """An inner owner scope wins and the outer one comes back after it."""
        with locks.owner("outer"):
            with locks.owner("inner"), locks.acquire("cache", timeout=1):
                inner = locks.snapshot()[0].holder
            with locks.acquire("cache", timeout=1, owner="explicit"):
                explicit = locks.snapshot()[0].holder
            with locks.acquire("cache", timeout=1):
                outer = locks.snapshot()[0].holder

        assert inner is not None and inner.owner == "inner"
        assert explicit is not None and explicit.owner == "explicit"
        assert outer is not None and outer.owner == "outer"

    def test_default_timeout_serves_handles(self) -> None:
        """default_timeout bounds acquisitions that name no deadline."""
        locks = LockRegistry(default_timeout=0.05)

        with Holder(locks, "cache", name="holder"), pytest.raises(LockTimeout):
            with locks["cache"]:
                pass

        assert_nothing_held(locks)


# -- order checks --------------------------------------------------------------


class TestOrderChecks:
    def test_handle_against_declared_order_raises_before_waiting(
        self, locks: LockRegistry
    ) -> None:
        """Taking cache while holding database raises at once, naming both."""
        with Holder(locks, "cache", name="holder"):
            with locks.acquire("database", timeout=1):
                began = time.monotonic()
                with pytest.raises(LockOrderError) as caught:
                    locks["cache"].acquire(timeout=5)
                waited = time.monotonic() - began

        assert waited < 1
        assert (caught.value.lock, caught.value.held) == ("cache", "database")
        assert "'cache'" in str(caught.value) and "'database'" in str(caught.value)
        assert locks.statistics().order_errors == 1
        assert_nothing_held(locks)

    def test_multi_lock_acquire_is_checked_against_held_locks(
        self, locks: LockRegistry
    ) -> None:
        """acquire() of locks that come before one held raises and takes nothing."""
        with locks.acquire("database", timeout=1):
            with pytest.raises(LockOrderError):
                locks.acquire("files", "cache", timeout=1)
            held = locks.held()

        assert held == ("database",)
        assert_nothing_held(locks)

    def test_handles_in_order_nest_freely(self, locks: LockRegistry) -> None:
        """Handles taken in canonical order, nested, raise nothing."""
        with locks.owner("t", deadline=time.monotonic() + 1):
            with locks["cache"], locks["database"], locks["files"]:
                held = locks.held()

        assert held == ("cache", "database", "files")

    def test_strict_without_order_checks_name_order(self) -> None:
        """strict=True with no order refuses to take 'a' while holding 'b'."""
        locks = LockRegistry(strict=True)

        with locks.acquire("b", timeout=1), pytest.raises(LockOrderError) as caught:
            locks["a"].acquire(timeout=1)

        assert "name order" in str(caught.value)

    def test_no_order_single_locks_are_learned_not_refused(self) -> None:
        """With no order, single locks out of name order are taken and learned."""
        locks = LockRegistry()

        with locks.acquire("b", timeout=1), locks.acquire("a", timeout=1):
            held = locks.held()

        assert held == ("b", "a")
        assert locks.statistics().learned_pairs == 1


# -- re-entry ------------------------------------------------------------------


class TestReentry:
    def test_reentry_is_counted(self, locks: LockRegistry) -> None:
        """A thread re-takes a lock it holds; it stays held until the last release."""
        handle = locks["cache"]

        def try_take() -> str:
            try:
                handle.acquire(timeout=0)
            except LockTimeout:
                return "refused"
            handle.release()
            return "taken"

        handle.acquire(timeout=0)
        handle.acquire(timeout=0)
        count = locks.snapshot()[0].holder.count  # type: ignore[union-attr]
        handle.release()
        after_one_release = start(try_take, "other").finish()
        handle.release()
        after_last_release = start(try_take, "other").finish()

        assert count == 2
        assert after_one_release == "refused"
        assert after_last_release == "taken"
        assert_nothing_held(locks)

    def test_reentry_never_waits_and_ignores_order(self, locks: LockRegistry) -> None:
        """Re-taking held locks in any naming order succeeds at once."""
        with locks.acquire("cache", "database", timeout=0):
            with (
                locks.acquire("database", "cache", timeout=0),
                locks.acquire("cache", timeout=0),
            ):
                counts = [s.holder.count for s in locks.snapshot()[:2]]  # type: ignore[union-attr]

        assert counts == [3, 2]
        assert_nothing_held(locks)


# -- learning ------------------------------------------------------------------


def take_cache_then_db(locks: LockRegistry) -> None:
    with locks["cache"]:
        with locks["db"]:  # cache-then-db
            pass


def take_db_then_cache(locks: LockRegistry) -> None:
    with locks["db"]:
        with locks["cache"]:  # db-then-cache
            pass


class TestLearning:
    def test_inversion_is_reported_with_both_call_sites(self) -> None:
        """The first opposite pair is logged and kept, with both call sites."""
        locks = LockRegistry(default_timeout=1)

        with capture_logs() as logs:
            take_cache_then_db(locks)
            take_db_then_cache(locks)
            take_db_then_cache(locks)

        first = f"test_locks.py:{line_of('cache-then-db')}"
        second = f"test_locks.py:{line_of('db-then-cache')}"
        [inversion] = locks.inversions()
        assert inversion.locks == ("db", "cache", "db")
        assert inversion.sites[0].endswith(second)
        assert inversion.sites[1].endswith(first)
        assert str(inversion).startswith("potential deadlock: db -> cache -> db")
        [event] = [e for e in logs if e["event"] == "lock.inversion"]
        assert event["log_level"] == "warning"
        assert event["locks"] == ["db", "cache", "db"]
        assert event["sites"] == list(inversion.sites)

    def test_longer_cycle_is_reported(self) -> None:
        """a->b, b->c then c->a is a three-lock inversion."""
        locks = LockRegistry(default_timeout=1)

        for first, second in [("a", "b"), ("b", "c"), ("c", "a")]:
            with locks[first], locks[second]:
                pass

        [inversion] = locks.inversions()
        assert inversion.locks == ("c", "a", "b", "c")
        assert isinstance(inversion, LockInversion)

    def test_acquire_teaches_the_order_it_used(self) -> None:
        """acquire('b', 'a') learns a->b, so b then a by hand is an inversion."""
        locks = LockRegistry(default_timeout=1)

        with locks.acquire("b", "a"):  # multi-acquire
            pass
        with locks["b"], locks["a"]:
            pass

        [inversion] = locks.inversions()
        assert inversion.sites[1].endswith(f"test_locks.py:{line_of('multi-acquire')}")

    def test_learning_off_learns_nothing(self) -> None:
        """learn_order=False records no pair and reports no inversion."""
        locks = LockRegistry(default_timeout=1, learn_order=False)

        take_cache_then_db(locks)
        take_db_then_cache(locks)

        assert locks.inversions() == ()
        assert locks.statistics().learned_pairs == 0


# -- diagnostics ---------------------------------------------------------------


class TestDiagnostics:
    def test_snapshot_shows_holder_and_waiters(self) -> None:
        """snapshot() shows who holds a lock, since when, and who waits."""
        backend = SignalBackend(("cache",))
        locks = LockRegistry(backend=backend)

        with Holder(locks, "cache", name="worker-3", owner="tool refresh"):
            waiter = start(
                lambda: locks.acquire("cache", timeout=5, owner="tool sync").release(),
                "worker-4",
            )
            assert backend.blocking["cache"].wait(5)
            [cache] = locks.snapshot()
            stats = locks.statistics()
        waiter.finish()

        assert cache.holder is not None
        assert (cache.holder.thread, cache.holder.owner) == ("worker-3", "tool refresh")
        assert cache.holder.age >= 0 and cache.holder.alive
        assert [(w.thread, w.owner) for w in cache.waiters] == [
            ("worker-4", "tool sync")
        ]
        assert (stats.held, stats.waiting, stats.contended) == (1, 1, 1)
        with pytest.raises(dataclasses.FrozenInstanceError):
            cache.name = "x"  # type: ignore[misc]
        assert_nothing_held(locks)

    def test_timeout_shows_the_wait_for_chain(self) -> None:
        """A timeout behind a waiting holder shows the whole wait-for chain."""
        backend = SignalBackend(("x",))
        locks = LockRegistry(backend=backend)

        def hold_y_wait_x() -> None:
            with locks.acquire("y", timeout=5), locks.acquire("x", timeout=5):
                pass

        with Holder(locks, "x", name="A"):
            b = start(hold_y_wait_x, "B")
            assert backend.blocking["x"].wait(5)
            with pytest.raises(LockTimeout) as caught:
                locks.acquire("y", timeout=0.05)
        b.finish()

        assert caught.value.chain == ("MainThread", "y", "B", "x", "A")
        assert str(caught.value).endswith(
            "wait-for chain: MainThread -> y -> B -> x -> A"
        )
        assert not str(caught.value).startswith("deadlock")
        assert_nothing_held(locks)

    def test_wait_cycle_is_a_deadlock_reported_at_once(self) -> None:
        """The thread that closes a wait cycle fails at once, naming the cycle."""
        backend = SignalBackend(("db",))
        locks = LockRegistry(backend=backend)
        t1_holds = threading.Event()

        def first() -> str:
            with locks.acquire("cache", timeout=5):
                t1_holds.set()
                with locks.acquire("db", timeout=5):
                    return "got db"

        with capture_logs() as logs:
            with locks.acquire("db", timeout=5):
                one = start(first, "T1")
                assert t1_holds.wait(5) and backend.blocking["db"].wait(5)
                began = time.monotonic()
                with pytest.raises(LockTimeout) as caught:
                    locks.acquire("cache", timeout=5)
                waited = time.monotonic() - began
            result = one.finish()

        assert waited < 1
        assert caught.value.chain == ("MainThread", "cache", "T1", "db", "MainThread")
        assert str(caught.value).startswith("deadlock: MainThread -> cache -> T1 -> db")
        assert caught.value.held == ("db",)
        assert result == "got db"
        assert [e["event"] for e in logs if e["event"].startswith("lock.")] == [
            "lock.inversion",
            "lock.deadlock",
        ]
        assert_nothing_held(locks)

    def test_holder_that_ended_is_reported(self, locks: LockRegistry) -> None:
        """A lock kept by a thread that ended says so; it is not taken back."""
        start(lambda: locks["cache"].acquire(timeout=1), "leaker").finish()

        with pytest.raises(LockTimeout) as caught:
            locks.acquire("cache", timeout=0)
        holder = locks.snapshot()[0].holder

        assert "held by leaker (ended)" in str(caught.value)
        assert holder is not None and not holder.alive

    def test_timeout_is_logged_once_with_fields(self, locks: LockRegistry) -> None:
        """A timeout logs one lock.timeout warning with structured fields."""
        with Holder(locks, "cache", name="worker-3", owner="tool refresh"):
            with capture_logs() as logs, pytest.raises(LockTimeout):
                locks.acquire("cache", timeout=0.01)

        [event] = logs
        assert event["event"] == "lock.timeout" and event["log_level"] == "warning"
        assert event["lock"] == "cache"
        assert event["holder"] == "worker-3 (tool refresh)"
        assert event["chain"] == ["MainThread", "cache", "worker-3"]

    def test_uncontended_use_logs_nothing(self, locks: LockRegistry) -> None:
        """Acquiring and releasing without trouble writes no log line."""
        with capture_logs() as logs, locks.owner("t", deadline=time.monotonic() + 5):
            for _ in range(10):
                with locks.acquire("files", "cache", timeout=1), locks["files"]:
                    pass

        assert logs == []

    def test_statistics_are_frozen_counters(self, locks: LockRegistry) -> None:
        """statistics() counts timeouts and what is held, in a frozen object."""
        with Holder(locks, "cache", name="holder"):
            with pytest.raises(LockTimeout):
                locks.acquire("cache", timeout=0)
            stats = locks.statistics()

        assert isinstance(stats, LockStatistics)
        assert (stats.locks, stats.held, stats.timeouts) == (3, 1, 1)
        with pytest.raises(dataclasses.FrozenInstanceError):
            stats.held = 0  # type: ignore[misc]


# -- bad input -----------------------------------------------------------------

BAD_CALLS: dict[str, Callable[[LockRegistry], object]] = {
    "unknown name": lambda locks: locks.acquire("queue", timeout=1),
    "unknown handle": lambda locks: locks["queue"],
    "duplicate name": lambda locks: locks.acquire("cache", "cache", timeout=1),
    "no names": lambda locks: locks.acquire(timeout=1),
    "non-string name": lambda locks: locks.acquire(3, timeout=1),  # type: ignore[arg-type]
    "empty name": lambda locks: locks.acquire("", timeout=1),
    "negative timeout": lambda locks: locks.acquire("cache", timeout=-1),
    "nan timeout": lambda locks: locks.acquire("cache", timeout=math.nan),
    "infinite timeout": lambda locks: locks.acquire("cache", timeout=math.inf),
    "bool timeout": lambda locks: locks.acquire("cache", timeout=True),
    "string timeout": lambda locks: locks.acquire("cache", timeout="5"),  # type: ignore[arg-type]
    "timeout and deadline": lambda locks: locks.acquire(
        "cache", timeout=1, deadline=time.monotonic() + 1
    ),
    "no timeout": lambda locks: locks.acquire("cache", "database"),
    "no timeout on a handle": lambda locks: locks["cache"].__enter__(),
    "nan deadline": lambda locks: locks.acquire("cache", deadline=math.nan),
    "nan owner deadline": lambda locks: locks.owner("x", deadline=math.nan).__enter__(),
    "release not held": lambda locks: locks["cache"].release(),
    "list of names": lambda locks: locks.acquire(["cache"], timeout=1),  # type: ignore[arg-type]
    "unhashable handle name": lambda locks: locks[["cache"]],  # type: ignore[index]
    "owner label not a string": lambda locks: locks.owner(7).__enter__(),  # type: ignore[arg-type]
}


class TestBadInput:
    @pytest.mark.parametrize("call", BAD_CALLS.values(), ids=BAD_CALLS.keys())
    def test_misuse_is_a_clear_usage_error(
        self, locks: LockRegistry, call: Callable[[LockRegistry], object]
    ) -> None:
        """Each misuse raises LockUsageError and leaves the registry working."""
        with locks.acquire("files", timeout=1):
            with pytest.raises(LockUsageError) as caught:
                call(locks)
            held = locks.held()

        assert held == ("files",)
        assert str(caught.value)[0].islower()
        assert_nothing_held(locks)

    def test_unknown_name_lists_known_ones(self, locks: LockRegistry) -> None:
        """An unknown name names itself and every known lock."""
        with pytest.raises(LockUsageError) as caught:
            locks.acquire("cache", "queue", timeout=1)

        assert str(caught.value) == (
            "unknown lock 'queue'; known locks: 'cache', 'database', 'files'"
        )

    def test_list_of_names_gets_a_hint(self, locks: LockRegistry) -> None:
        """Passing a list instead of separate names says how to call acquire()."""
        with pytest.raises(LockUsageError, match=re.escape("acquire(*names)")):
            locks.acquire(["cache", "database"], timeout=1)  # type: ignore[arg-type]

    def test_missing_timeout_says_every_wait_needs_one(
        self, locks: LockRegistry
    ) -> None:
        """With no deadline anywhere, the error says how to give one."""
        with pytest.raises(LockUsageError, match="every wait needs one"):
            locks.acquire("cache")

    def test_acquisition_released_twice(self, locks: LockRegistry) -> None:
        """Releasing one acquisition twice is an error, and harmless."""
        taken = locks.acquire("cache", "database", timeout=1)
        taken.release()

        with pytest.raises(LockUsageError, match="already released"):
            taken.release()

        assert_nothing_held(locks)

    def test_release_from_another_thread(self, locks: LockRegistry) -> None:
        """Only the acquiring thread may release; the lock stays held meanwhile."""
        taken = locks.acquire("cache", timeout=1)

        other = start(taken.release, "other")
        with pytest.raises(LockUsageError, match="only it may release"):
            other.finish()
        still_held = locks.held()
        taken.release()

        assert still_held == ("cache",)
        assert_nothing_held(locks)

    def test_handle_released_by_hand_inside_acquire(self, locks: LockRegistry) -> None:
        """A lock released by hand inside `with acquire()` errors on exit, no leak."""
        with (
            pytest.raises(LockUsageError),
            locks.acquire("cache", "database", timeout=1),
        ):
            locks["cache"].release()

        assert_nothing_held(locks)

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"order": ["a", "a"]},
            {"order": "ab"},
            {"order": ["a", 1]},
            {"create": False},
            {"default_timeout": -1},
            {"default_timeout": math.nan},
        ],
        ids=["duplicate", "string", "non-string", "no order no create", "neg", "nan"],
    )
    def test_bad_registry_arguments(self, kwargs: dict[str, Any]) -> None:
        """A registry cannot be made with a bad order or default timeout."""
        with pytest.raises(LockUsageError):
            LockRegistry(**kwargs)


# -- backends ------------------------------------------------------------------


class TestBackends:
    def test_in_process_backend_is_a_lock_backend(self) -> None:
        """The default backend satisfies the LockBackend protocol."""
        backend = InProcessBackend()

        first = backend.acquire("x", time.monotonic())
        second = backend.acquire("x", time.monotonic() + 0.01)
        backend.release("x")

        assert isinstance(backend, LockBackend)
        assert (first, second) == (True, False)

    def test_reentry_is_kept_above_the_backend(self) -> None:
        """A re-entered lock reaches the backend once, then is released once."""
        backend = SignalBackend()
        locks = LockRegistry(backend=backend)

        with locks.acquire("a", timeout=1), locks.acquire("a", timeout=1):
            pass

        assert [(c[0], c[1]) for c in backend.calls] == [
            ("acquire", "a"),
            ("release", "a"),
        ]

