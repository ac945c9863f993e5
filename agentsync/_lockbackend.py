"""Where the locks of a :class:`agentsync.LockRegistry` live.

The registry keeps the order, the deadlines, the re-entry counts and the
diagnostics; a backend only provides mutual exclusion per name. The default
keeps one :class:`threading.Lock` per name in this process. A backend over a
shared server (Redis, PostgreSQL advisory locks) implements the same two
methods so that several worker processes exclude each other.
"""

from __future__ import annotations

import threading
from time import monotonic
from typing import Protocol, runtime_checkable

__all__ = ["InProcessBackend", "LockBackend"]


@runtime_checkable
class LockBackend(Protocol):
    """Mutual exclusion per lock name, with a deadline.

    The registry calls ``acquire`` at most once at a time per name from a given
    registry (it never re-enters: re-entry is counted above the backend), and
    calls ``release`` only for a name it holds, from the thread that took it.
    """

    def acquire(self, name: str, deadline: float) -> bool:
        """Take the lock ``name``, waiting no later than ``deadline``.

        Args:
            name: the lock's name.
            deadline: a ``time.monotonic()`` value; one at or before now means
                try once without waiting.

        Returns:
            True if the lock was taken, False if the deadline came first.
        """
        ...

    def release(self, name: str) -> None:
        """Release the lock ``name``, which the caller holds."""
        ...


class InProcessBackend:
    """One :class:`threading.Lock` per name, in this process.

    The registry uses these locks directly rather than through ``acquire`` and
    ``release``, to keep the uncontended path short; subclasses that override
    either method are called through it instead.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def _mutex(self, name: str) -> threading.Lock:
        mutex = self._locks.get(name)
        if mutex is None:
            with self._guard:
                mutex = self._locks.setdefault(name, threading.Lock())
        return mutex

    def acquire(self, name: str, deadline: float) -> bool:
        """Take the lock ``name``, waiting no later than ``deadline``.

        Args:
            name: the lock's name.
            deadline: a ``time.monotonic()`` value; one at or before now means
                try once without waiting.

        Returns:
            True if the lock was taken, False if the deadline came first.
        """
        mutex = self._mutex(name)
        remaining = deadline - monotonic()
        if remaining <= 0:
            return mutex.acquire(False)
        return mutex.acquire(True, min(remaining, threading.TIMEOUT_MAX))

    def release(self, name: str) -> None:
        """Release the lock ``name``.

        Raises:
            RuntimeError: the lock is not held.
        """
        self._mutex(name).release()
