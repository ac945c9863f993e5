"""The frozen views a :class:`agentsync.LockRegistry` gives of its locks.

They are re-exported by :mod:`agentsync.locks`; each is a copy made at one
moment, safe to keep and to compare.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LockHolder", "LockSnapshot", "LockStatistics", "LockWaiter"]


@dataclass(frozen=True)
class LockHolder:
    """The thread that holds a lock, as seen at one moment.

    Attributes:
        thread: the thread's name.
        thread_id: the thread's ident.
        owner: the owner label in force when it took the lock, or None.
        since: when it took the lock, a ``time.monotonic()`` value.
        age: seconds it had held the lock when this view was made.
        count: how many times it holds the lock (re-entry is counted).
        alive: False when the thread has ended without releasing the lock.
    """

    thread: str
    thread_id: int | None
    owner: str | None
    since: float
    age: float
    count: int
    alive: bool

    def describe(self) -> str:
        """Return ``thread (owner)``, noting a thread that has ended."""
        notes = [note for note in (self.owner, None if self.alive else "ended") if note]
        return self.thread + (f" ({'; '.join(notes)})" if notes else "")


@dataclass(frozen=True)
class LockWaiter:
    """A thread waiting for a lock.

    Attributes:
        thread: the thread's name.
        thread_id: the thread's ident.
        owner: its owner label, or None.
        since: when it started to wait, a ``time.monotonic()`` value.
        age: seconds it had waited when this view was made.
    """

    thread: str
    thread_id: int | None
    owner: str | None
    since: float
    age: float


@dataclass(frozen=True)
class LockSnapshot:
    """One lock as seen by :meth:`LockRegistry.snapshot`."""

    name: str
    holder: LockHolder | None
    waiters: tuple[LockWaiter, ...]


@dataclass(frozen=True)
class LockStatistics:
    """Counters of a registry since it was made.

    Attributes:
        locks: locks known.
        held: locks held now.
        waiting: threads waiting now.
        contended: acquisitions that had to wait.
        timeouts: acquisitions that ended in :class:`LockTimeout` at the deadline.
        deadlocks: acquisitions refused at once because they closed a wait cycle.
        order_errors: acquisitions refused with :class:`LockOrderError`.
        learned_pairs: distinct "held A, took B" pairs learned.
        inversions: potential deadlocks found in the learned order.
    """

    locks: int
    held: int
    waiting: int
    contended: int
    timeouts: int
    deadlocks: int
    order_errors: int
    learned_pairs: int
    inversions: int
