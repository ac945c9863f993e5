"""Named locks that cannot deadlock: one canonical order, one deadline, diagnostics.

A :class:`LockRegistry` owns a set of named locks and one canonical order over
them. :meth:`LockRegistry.acquire` takes any set of them in that order, however
the caller lists them, each within what is left of one deadline, so two callers
of ``acquire()`` can never deadlock each other. Single locks, taken one at a
time through ``registry[name]``, are checked against the locks the thread
already holds (``strict``) or learned from (lockdep style), and a thread that
would close a cycle of waiting threads fails at once instead of waiting.

What a timeout means: the caller stops waiting and gets :class:`LockTimeout`;
the thread that holds the lock runs on, and keeps the lock until it releases it.
No lock is ever taken from its holder, not even from a thread that was
abandoned because it hung, nor from one that ended without releasing; the
holder's description in errors and :meth:`LockRegistry.snapshot` says so.

Logs go to the structlog logger ``agentsync.locks``: ``lock.timeout``,
``lock.deadlock`` and ``lock.inversion``, all warnings. Nothing is logged per
acquisition.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from time import monotonic as _monotonic
from types import TracebackType
from typing import Literal, cast

import structlog

from . import _lockgraph
from ._lockbackend import InProcessBackend, LockBackend
from ._lockgraph import LockEdge, LockInversion
from ._lockviews import LockHolder, LockSnapshot, LockStatistics, LockWaiter
from .errors import LockOrderError, LockTimeout, LockUsageError

__all__ = [
    "Acquisition",
    "InProcessBackend",
    "LockBackend",
    "LockEdge",
    "LockHandle",
    "LockHolder",
    "LockInversion",
    "LockRegistry",
    "LockSnapshot",
    "LockStatistics",
    "LockWaiter",
]

_log = structlog.get_logger("agentsync.locks")

_INTERNAL_FILES = frozenset({__file__, _lockgraph.__file__})
_PLAN_CACHE_SIZE = 4096
_INF = math.inf


# -- internal state ----------------------------------------------------------


class _ThreadState:
    """What one thread has to do with one registry; only that thread writes it."""

    __slots__ = ("deadline", "held", "owner", "thread")

    def __init__(self, thread: threading.Thread) -> None:
        self.thread = thread
        self.held: list[_Lock] = []
        self.owner: str | None = None
        self.deadline: float | None = None


class _Lock:
    """One named lock. ``holder`` is set after the backend lock is taken and
    cleared before it is released, so a holder seen here really holds it."""

    __slots__ = ("after", "count", "holder", "key", "mutex", "name")

    def __init__(
        self, name: str, key: tuple[int, int, str], mutex: threading.Lock | None
    ) -> None:
        self.name = name
        self.key = key
        # The in-process backend's lock, used directly; None for other backends.
        self.mutex = mutex
        self.holder: tuple[_ThreadState, str | None, float] | None = None
        self.count = 0
        self.after: dict[_Lock, LockEdge] = {}


# -- handles -----------------------------------------------------------------


class Acquisition:
    """The locks one :meth:`LockRegistry.acquire` call took; releases them on exit.

    Only the thread that acquired may release.
    """

    __slots__ = ("_plan", "_registry", "_released", "_state")

    def __init__(
        self, registry: LockRegistry, state: _ThreadState, plan: tuple[_Lock, ...]
    ) -> None:
        self._registry = registry
        self._state = state
        self._plan = plan
        self._released = False

    @property
    def names(self) -> tuple[str, ...]:
        """The names taken, in the canonical order they were taken in."""
        return tuple(lock.name for lock in self._plan)

    def release(self) -> None:
        """Release every lock taken, in reverse order.

        Raises:
            LockUsageError: released twice, or from another thread.
        """
        self.__exit__(None, None, None)

    def __enter__(self) -> Acquisition:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        registry = self._registry
        try:
            current = registry._local.state
        except AttributeError:
            current = None
        if self._released or current is not self._state:
            raise self._misuse()
        self._released = True
        registry._release(current, self._plan)

    def _misuse(self) -> LockUsageError:
        names = list(self.names)
        if self._released:
            return LockUsageError(f"locks {names!r} were already released")
        return LockUsageError(
            f"locks {names!r} were acquired by thread {self._state.thread.name!r}; "
            "only it may release them"
        )

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"<Acquisition {list(self.names)!r} {state}>"


class LockHandle:
    """One named lock of a registry, used like :class:`threading.Lock`.

    ``with handle:`` waits until the deadline of the thread's
    :meth:`LockRegistry.owner` scope, or for the registry's ``default_timeout``;
    with neither, it raises :class:`LockUsageError`.
    """

    __slots__ = ("_plan", "_registry")

    def __init__(self, registry: LockRegistry, lock: _Lock) -> None:
        self._registry = registry
        self._plan = (lock,)

    @property
    def name(self) -> str:
        """The lock's name."""
        return self._plan[0].name

    def acquire(
        self,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
        owner: str | None = None,
    ) -> Literal[True]:
        """Take the lock; see :meth:`LockRegistry.acquire` for the arguments.

        Returns:
            True, so that ``if lock.acquire(timeout=...)`` still reads right;
            failure is always an exception.

        Raises:
            LockTimeout: the lock could not be had before the deadline.
            LockOrderError: taking it now would break the canonical order.
            LockUsageError: bad timeout or deadline, or none at all.
        """
        self._registry._take(self._plan, timeout, deadline, owner)
        return True

    def release(self) -> None:
        """Release the lock once (re-entry is counted).

        Raises:
            LockUsageError: the calling thread does not hold it.
        """
        self._registry._release(None, self._plan)

    def locked(self) -> bool:
        """Return whether any thread of this process holds the lock now."""
        return self._plan[0].holder is not None

    def __enter__(self) -> LockHandle:
        self._registry._take(self._plan, None, None, None)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._registry._release(None, self._plan)

    def __repr__(self) -> str:
        return f"<LockHandle {self.name!r} {'locked' if self.locked() else 'free'}>"


# -- the registry ------------------------------------------------------------


class LockRegistry:
    """Named locks with one canonical order, deadline acquisition and diagnostics.

    The canonical order is ``order`` when given; names created on first use come
    after the declared ones, by name. With no ``order`` it is the order of names.

    - ``acquire("b", "a", timeout=5)`` always takes the locks in canonical
      order, so no two ``acquire()`` calls can deadlock each other.
    - ``registry["a"]`` is a single-lock handle. With ``strict`` (the default
      when ``order`` is given) taking a lock while holding one that comes after
      it raises :class:`LockOrderError` at once, before any wait. Without
      ``strict`` (the default with no ``order``), such a step is only learned.
    - Learning (``learn_order``) records each "held A, took B" pair with the
      caller's ``file:line``; a pair that closes a cycle in what was learned is
      logged as ``lock.inversion`` and kept in :meth:`inversions`.
    - A thread that would wait for a lock whose holder (through a chain of
      waiting threads) waits for a lock it holds fails at once with a
      :class:`LockTimeout` whose message starts with ``deadlock:``.
    - Re-entry is counted: a thread may take a lock it holds again, at once and
      whatever the order, and must release it as many times.

    Every wait has a deadline: ``timeout=`` (seconds) or ``deadline=`` (a
    ``time.monotonic()`` value), else the deadline of the thread's
    :meth:`owner` scope, else ``default_timeout``; with none of them an
    acquisition raises :class:`LockUsageError`. An :meth:`owner` scope's
    deadline also caps longer explicit timeouts inside it.

    Limits: the order is this registry's own, so locks of two registries are
    not checked against each other; waiters are not served first come, first
    served (a thread arriving later may get a lock first), as with
    :class:`threading.Lock`; holders, waiters and wait cycles are known only
    within this process, whatever the backend.

    Args:
        order: the lock names in canonical order; None to order by name.
        strict: check every acquisition against the locks the thread holds.
            Defaults to True when ``order`` is given, else False.
        learn_order: learn "held A, took B" pairs and report inversions.
        create: create unknown names on first use. Defaults to True when no
            ``order`` is given; when False an unknown name raises
            :class:`LockUsageError` listing the known names.
        default_timeout: seconds to wait when an acquisition names no deadline.
        backend: where the locks live; an :class:`InProcessBackend` by default.

    Raises:
        LockUsageError: ``order`` has a duplicate or non-string name, is a
            string, or is missing while ``create`` is False; or
            ``default_timeout`` is not a finite number of seconds >= 0.
    """

    def __init__(
        self,
        order: Iterable[str] | None = None,
        *,
        strict: bool | None = None,
        learn_order: bool = True,
        create: bool | None = None,
        default_timeout: float | None = None,
        backend: LockBackend | None = None,
    ) -> None:
        if isinstance(order, (str, bytes)):
            raise LockUsageError("order must be a sequence of lock names, not a string")
        declared = tuple(order) if order is not None else ()
        for name in declared:
            _check_name(name)
        if len(set(declared)) != len(declared):
            twice = sorted({name for name in declared if declared.count(name) > 1})
            raise LockUsageError(f"lock order names {twice!r} more than once")
        if order is None and create is False:
            raise LockUsageError(
                "a registry with no order must create locks on first use"
            )
        if default_timeout is not None:
            default_timeout = _check_timeout(default_timeout, "default_timeout")

        self._declared = order is not None
        self._strict = self._declared if strict is None else bool(strict)
        self._learn = bool(learn_order)
        self._create = (not self._declared) if create is None else bool(create)
        self._default_timeout = default_timeout
        self._backend: LockBackend = InProcessBackend() if backend is None else backend
        # The in-process backend's locks are used directly: no call per step.
        self._direct = type(self._backend) is InProcessBackend

        self._meta = threading.Lock()
        self._local = threading.local()
        self._locks: dict[str, _Lock] = {}
        self._handles: dict[str, LockHandle] = {}
        self._plans: dict[tuple[str, ...], tuple[_Lock, ...]] = {}
        self._waiting: dict[_ThreadState, tuple[_Lock, str | None, float]] = {}
        self._inversions: list[LockInversion] = []
        self._counts = dict.fromkeys(
            ("contended", "timeouts", "deadlocks", "order_errors", "learned_pairs"), 0
        )
        for index, name in enumerate(declared):
            self._add(name, (0, index, name))

    # -- public API ----------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        """The known lock names, in canonical order."""
        with self._meta:
            locks = sorted(self._locks.values(), key=_key)
        return tuple(lock.name for lock in locks)

    def __getitem__(self, name: str) -> LockHandle:
        """Return the handle of one lock.

        Raises:
            LockUsageError: unknown name in a registry that does not create.
        """
        try:
            return self._handles[name]
        except (KeyError, TypeError):  # new, or not even hashable
            pass
        lock = self._plan((name,))[0]
        with self._meta:
            return self._handles.setdefault(name, LockHandle(self, lock))

    def __contains__(self, name: object) -> bool:
        return name in self._locks

    def acquire(
        self,
        *names: str,
        timeout: float | None = None,
        deadline: float | None = None,
        owner: str | None = None,
    ) -> Acquisition:
        """Take every named lock, in canonical order, within one deadline.

        Each lock is waited for with what is left of the deadline. On failure
        the locks this call took are released before the error is raised.
        Locks the thread already holds are re-entered (counted), not waited for.

        Args:
            names: the locks, in any order.
            timeout: seconds to wait in all, >= 0; 0 means try without waiting.
            deadline: instead of ``timeout``, a ``time.monotonic()`` value.
            owner: label for the holder in diagnostics, overriding the
                :meth:`owner` scope's.

        Returns:
            An :class:`Acquisition`; leaving its ``with`` block releases them.

        Raises:
            LockTimeout: a lock could not be had before the deadline, or waiting
                for it would close a cycle of waiting threads.
            LockOrderError: ``strict`` and the thread holds a lock that comes
                after one of these.
            LockUsageError: no names, an unknown or duplicate name, both or
                neither of ``timeout``/``deadline`` with no default, or a
                negative, NaN or infinite one.
        """
        try:
            plan: tuple[_Lock, ...] | None = self._plans[names]
        except (KeyError, TypeError):  # new, or not even hashable
            plan = None
        if plan is None:
            plan = self._plan(names)
        return Acquisition(self, self._take(plan, timeout, deadline, owner), plan)

    @contextmanager
    def owner(
        self, label: str | None, *, deadline: float | None = None
    ) -> Iterator[None]:
        """Label the calling thread's acquisitions, and optionally bound them.

        The runtime enters this around a tool call, so that holders read as
        ``worker-3 (refresh call toolu_1)`` and ``with registry["cache"]:``
        inside the tool waits no longer than the call may run. Scopes nest.

        Args:
            label: the owner label, e.g. the tool name and call id.
            deadline: a ``time.monotonic()`` value bounding acquisitions that
                name no timeout or deadline of their own.

        Raises:
            LockUsageError: ``label`` is not a string, or ``deadline`` is not a
                finite number.
        """
        if label is not None and not isinstance(label, str):
            raise LockUsageError(f"owner label must be a string, got {label!r}")
        if deadline is not None:
            deadline = _check_deadline(deadline)
        state = self._thread_state()
        saved = state.owner, state.deadline
        state.owner = label
        if deadline is not None:
            state.deadline = deadline
        try:
            yield
        finally:
            state.owner, state.deadline = saved

    def held(self) -> tuple[str, ...]:
        """The locks the calling thread holds, in the order it took them."""
        return tuple(lock.name for lock in self._thread_state().held)

    def inversions(self) -> tuple[LockInversion, ...]:
        """The potential deadlocks found by learning, oldest first."""
        with self._meta:
            return tuple(self._inversions)

    def snapshot(self) -> tuple[LockSnapshot, ...]:
        """Every known lock in canonical order, with its holder and waiters."""
        with self._meta:
            now = _monotonic()
            waiters: dict[_Lock, list[LockWaiter]] = {}
            for state, (lock, owner, since) in self._waiting.items():
                thread = state.thread
                waiter = LockWaiter(
                    thread.name, thread.ident, owner, since, now - since
                )
                waiters.setdefault(lock, []).append(waiter)
            return tuple(
                LockSnapshot(
                    lock.name,
                    _holder_view(lock, now),
                    tuple(sorted(waiters.get(lock, ()), key=lambda w: w.since)),
                )
                for lock in sorted(self._locks.values(), key=_key)
            )

    def statistics(self) -> LockStatistics:
        """Counters since the registry was made, and what is held and waited now."""
        with self._meta:
            return LockStatistics(
                locks=len(self._locks),
                held=sum(lock.holder is not None for lock in self._locks.values()),
                waiting=len(self._waiting),
                inversions=len(self._inversions),
                **self._counts,
            )

    def __repr__(self) -> str:
        order = "declared" if self._declared else "by name"
        mode = "strict" if self._strict else "learning" if self._learn else "unchecked"
        return f"<LockRegistry {len(self._locks)} locks, order {order}, {mode}>"

    # -- acquisition ---------------------------------------------------------

    def _thread_state(self) -> _ThreadState:
        try:
            return self._local.state  # type: ignore[no-any-return]
        except AttributeError:
            state = self._local.state = _ThreadState(threading.current_thread())
            return state

    def _take(
        self,
        plan: tuple[_Lock, ...],
        timeout: float | None,
        deadline: float | None,
        owner: str | None,
    ) -> _ThreadState:
        """Take the locks of ``plan`` in order for the calling thread, or raise.

        This is the hot path: thread state, deadline and the uncontended steps
        are inline; anything unusual goes to a helper.
        """
        try:
            state: _ThreadState = self._local.state
        except AttributeError:
            state = self._thread_state()
        now = _monotonic()
        # A plain float or int timeout is the common case; checked in one line.
        if (
            deadline is None
            and (type(timeout) is float or type(timeout) is int)
            and 0 <= timeout < _INF
        ):
            end = now + timeout
        else:
            end = self._deadline(state, now, timeout, deadline, plan)
        if state.deadline is not None and state.deadline < end:
            end = state.deadline
        if owner is None:
            owner = state.owner

        held = state.held
        if held and self._strict:
            self._check_order(state, plan)
        taken = 0
        try:
            for lock in plan:
                holder = lock.holder
                if holder is not None and holder[0] is state:
                    lock.count += 1
                    taken += 1
                    continue

                # Learn before waiting, so that a real deadlock is reported too.
                if held and self._learn:
                    for prior in held:
                        if lock not in prior.after:
                            self._learn_step(state, lock)
                            break

                mutex = lock.mutex
                if mutex is not None:
                    got = mutex.acquire(False)
                else:
                    got = self._backend.acquire(lock.name, now)
                since = now if got else self._wait(state, lock, end, owner)
                lock.holder = (state, owner, since)
                lock.count = 1
                held.append(lock)
                taken += 1
        except BaseException:
            self._release(state, plan[:taken])
            raise
        return state

    def _wait(
        self, state: _ThreadState, lock: _Lock, end: float, owner: str | None
    ) -> float:
        """Wait for ``lock`` until ``end``; return when it was had, or raise."""
        since = _monotonic()

        # Register as a waiter and look for a cycle in one step, so that of two
        # threads closing a cycle together exactly one sees it.
        with self._meta:
            self._counts["contended"] += 1
            self._waiting[state] = (lock, owner, since)
            chain, closed, ours = self._chain(state, lock)
            if ours:
                self._counts["deadlocks"] += 1
                del self._waiting[state]
        if ours:
            raise self._timeout_error(state, lock, since, chain, closed, ours)

        try:
            got = self._block(lock, end)
        except BaseException:
            with self._meta:
                del self._waiting[state]
            raise
        with self._meta:
            if not got:
                self._counts["timeouts"] += 1
                chain, closed, ours = self._chain(state, lock)
            del self._waiting[state]
        if not got:
            raise self._timeout_error(state, lock, since, chain, closed, ours)
        return _monotonic()

    def _block(self, lock: _Lock, end: float) -> bool:
        if lock.mutex is None:
            return self._backend.acquire(lock.name, end)
        remaining = end - _monotonic()
        if remaining <= 0:
            return lock.mutex.acquire(False)
        return lock.mutex.acquire(True, min(remaining, threading.TIMEOUT_MAX))

    def _chain(self, state: _ThreadState, lock: _Lock) -> tuple[list[str], bool, bool]:
        """Return the wait-for chain from ``state``, whether it closes, and whether
        it closes on ``state`` itself (a deadlock that is the caller's to break)."""

        def holder_of(lock: _Lock) -> _ThreadState | None:
            holder = lock.holder
            return None if holder is None else holder[0]

        def waits_for(thread: _ThreadState) -> _Lock | None:
            entry = self._waiting.get(thread)
            return None if entry is None else entry[0]

        chain, closed = _lockgraph.wait_chain(state, lock, holder_of, waits_for)
        labels = [
            node.name
            if isinstance(node, _Lock)
            else cast(_ThreadState, node).thread.name
            for node in chain
        ]
        return labels, closed, closed and chain[-1] is state

    def _timeout_error(
        self,
        state: _ThreadState,
        lock: _Lock,
        since: float,
        chain: list[str],
        closed: bool,
        ours: bool,
    ) -> LockTimeout:
        """Build the error for a failed wait, and log it."""
        now = _monotonic()
        holder = _holder_view(lock, now)
        held = [prior.name for prior in state.held]
        path = " -> ".join(chain)
        parts = [f"deadlock: {path}"] if ours else []
        if holder is None:
            parts.append(f"lock {lock.name!r} is held elsewhere (no holder here)")
        else:
            parts.append(
                f"lock {lock.name!r} is held by {holder.describe()} "
                f"since {holder.age:.1f} s"
            )
        parts.append(f"waited {now - since:.1f} s holding {held!r}")
        if closed and not ours:
            parts.append(f"wait-for chain ends in a deadlock: {path}")
        elif len(chain) > 3 and not ours:
            parts.append(f"wait-for chain: {path}")
        _log.warning(
            "lock.deadlock" if ours else "lock.timeout",
            lock=lock.name,
            holder=None if holder is None else holder.describe(),
            held_for=None if holder is None else round(holder.age, 3),
            waited=round(now - since, 3),
            held=held,
            chain=chain,
        )
        return LockTimeout(
            "; ".join(parts), lock=lock.name, holder=holder, held=held, chain=chain
        )

    def _check_order(self, state: _ThreadState, plan: tuple[_Lock, ...]) -> None:
        for lock in plan:
            holder = lock.holder
            if holder is not None and holder[0] is state:
                continue
            for prior in state.held:
                if prior.key > lock.key:
                    with self._meta:
                        self._counts["order_errors"] += 1
                    rule = "the declared order" if self._declared else "name order"
                    raise LockOrderError(
                        f"lock order violation: {lock.name!r} asked for while holding "
                        f"{prior.name!r}; {rule} takes {lock.name!r} first",
                        lock=lock.name,
                        held=prior.name,
                    )

    def _learn_step(self, state: _ThreadState, lock: _Lock) -> None:
        site = _lockgraph.call_site(_INTERNAL_FILES)
        found = []
        with self._meta:
            for prior in state.held:
                if lock in prior.after:
                    continue
                edge = LockEdge(prior.name, lock.name, site, state.thread.name)
                prior.after[lock] = edge
                self._counts["learned_pairs"] += 1
                path = _lockgraph.find_path(lock, prior, lambda node: node.after)
                if path is not None:
                    found.append(LockInversion((edge, *path)))
            self._inversions.extend(found)
        for inversion in found:
            _log.warning(
                "lock.inversion",
                locks=list(inversion.locks),
                sites=list(inversion.sites),
                threads=[edge.thread for edge in inversion.edges],
            )

    # -- release -------------------------------------------------------------

    def _release(self, state: _ThreadState | None, plan: Sequence[_Lock]) -> None:
        """Release each lock of ``plan`` once, last first, for the calling thread.

        Raises:
            LockUsageError: the thread does not hold one of them; the others are
                released all the same.
        """
        if state is None:
            try:
                state = self._local.state
            except AttributeError:
                state = self._thread_state()
        held = state.held
        error: LockUsageError | None = None
        for lock in reversed(plan):
            holder = lock.holder
            if holder is None or holder[0] is not state:
                error = error or _not_held(lock)
                continue
            if lock.count > 1:
                lock.count -= 1
                continue
            lock.count = 0
            lock.holder = None
            if held[-1] is lock:
                held.pop()
            else:
                held.remove(lock)
            mutex = lock.mutex
            if mutex is not None:
                mutex.release()
            else:
                self._backend.release(lock.name)
        if error is not None:
            raise error

    # -- names and deadlines ---------------------------------------------------

    def _plan(self, names: tuple[str, ...]) -> tuple[_Lock, ...]:
        """Resolve names to locks in canonical order, creating them if allowed."""
        if not names:
            raise LockUsageError("acquire() needs at least one lock name")
        for name in names:
            _check_name(name)
        if len(set(names)) != len(names):
            twice = sorted({name for name in names if names.count(name) > 1})
            raise LockUsageError(
                f"lock names {twice!r} given more than once in one acquire"
            )
        with self._meta:
            unknown = [name for name in names if name not in self._locks]
            if unknown and not self._create:
                known = ", ".join(
                    repr(lock.name) for lock in sorted(self._locks.values(), key=_key)
                )
                raise LockUsageError(
                    f"unknown lock {unknown[0]!r}; known locks: {known or 'none'}"
                )
            for name in unknown:
                self._add(name, (1, 0, name))
            plan = tuple(sorted((self._locks[name] for name in names), key=_key))
            if len(self._plans) >= _PLAN_CACHE_SIZE:
                self._plans.clear()
            self._plans[names] = plan
        return plan

    def _add(self, name: str, key: tuple[int, int, str]) -> None:
        mutex = (
            cast(InProcessBackend, self._backend)._mutex(name) if self._direct else None
        )
        self._locks[name] = _Lock(name, key, mutex)

    def _deadline(
        self,
        state: _ThreadState,
        now: float,
        timeout: float | None,
        deadline: float | None,
        plan: tuple[_Lock, ...],
    ) -> float:
        if timeout is not None:
            if deadline is not None:
                raise LockUsageError("give timeout or deadline, not both")
            return now + _check_timeout(timeout, "timeout")
        if deadline is not None:
            return _check_deadline(deadline)
        if state.deadline is not None:
            return state.deadline
        if self._default_timeout is not None:
            return now + self._default_timeout
        raise LockUsageError(
            f"no timeout or deadline to take {[lock.name for lock in plan]!r}: "
            "every wait needs one (pass timeout= or deadline=, or use "
            "owner(deadline=) or default_timeout)"
        )


def _key(lock: _Lock) -> tuple[int, int, str]:
    return lock.key


def _holder_view(lock: _Lock, now: float) -> LockHolder | None:
    holder = lock.holder
    if holder is None:
        return None
    state, owner, since = holder
    thread = state.thread
    return LockHolder(
        thread.name,
        thread.ident,
        owner,
        since,
        now - since,
        lock.count,
        thread.is_alive(),
    )


def _not_held(lock: _Lock) -> LockUsageError:
    holder = lock.holder
    where = "it is free" if holder is None else f"it is held by {holder[0].thread.name}"
    return LockUsageError(f"lock {lock.name!r} is not held by this thread; {where}")


def _check_name(name: object) -> None:
    if isinstance(name, str) and name:
        return
    hint = ""
    if isinstance(name, (list, tuple, set, frozenset)):
        hint = " (name several locks as separate arguments: acquire(*names))"
    raise LockUsageError(f"lock names must be non-empty strings, got {name!r}{hint}")


def _check_timeout(value: object, what: str) -> float:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        seconds = float(value)
        if 0 <= seconds < math.inf:
            return seconds
    raise LockUsageError(
        f"{what} must be a finite number of seconds >= 0, got {value!r}"
    )


def _check_deadline(value: object) -> float:
    if (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
    ):
        return float(value)
    raise LockUsageError(
        f"deadline must be a finite time.monotonic() value, got {value!r}"
    )
