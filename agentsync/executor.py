"""A thread pool whose hung workers can be abandoned and replaced.

A Python thread cannot be killed. When a call runs past its timeout, the
caller stops waiting, the worker running it is *abandoned*: it no longer
counts toward the pool's capacity, a replacement is started when work is
waiting, and whatever the call finally returns is dropped. Workers are daemon
threads and are never joined at interpreter exit, so a script whose tool
hangs forever still exits when its main code is done.
"""

from __future__ import annotations

import contextvars
import itertools
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any

import structlog

from .errors import AgentSyncError, RuntimeClosedError, ToolInterrupted

__all__ = ["ExecutorOverloaded", "ExecutorStats", "ToolExecutor", "CallAbandoned"]

_log = structlog.get_logger("agentsync.executor")

_QUEUED, _RUNNING, _DONE, _ABANDONED, _CANCELLED = range(5)

# An idle worker wakes this often to see whether it should retire; a daemon
# thread's wait needs a bound like any other.
_IDLE_WAKE = 30.0


def _late_seen() -> None:
    """Marks an item whose late result the worker has already seen."""


class ExecutorOverloaded(AgentSyncError):
    """Too many abandoned workers are still alive; new calls are refused."""


class CallAbandoned(AgentSyncError, TimeoutError):
    """Set on a future whose call was abandoned while it ran."""


@dataclass(frozen=True)
class ExecutorStats:
    """A snapshot of a :class:`ToolExecutor`.

    Attributes:
        max_workers: the capacity, abandoned workers not counted.
        live: workers serving the pool (busy or idle).
        busy: live workers running a call.
        idle: live workers waiting for work.
        queued: calls waiting for a worker.
        abandoned: abandoned workers whose call has not returned yet.
        abandoned_total: workers abandoned since the pool started.
        late_results: abandoned calls that returned after all, results dropped.
    """

    max_workers: int
    live: int
    busy: int
    idle: int
    queued: int
    abandoned: int
    abandoned_total: int
    late_results: int


class _WorkItem:
    """One call's state, shared by the waiter and the worker."""

    __slots__ = (
        "fn",
        "args",
        "kwargs",
        "context",
        "guard",
        "signal",
        "state",
        "value",
        "error",
        "started",
        "finished",
        "thread",
        "on_start",
        "on_done",
        "on_late",
        "future",
        "info",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        on_start: Callable[[_WorkItem], None] | None,
        info: dict[str, Any] | None,
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.context = contextvars.copy_context()
        # A plain lock guards the state; a second one, held until the call
        # reaches a final state, is what waiters block on. Two locks cost far
        # less than a Condition, and this is on every call's path.
        self.guard = threading.Lock()
        self.signal = threading.Lock()
        self.signal.acquire()
        self.state = _QUEUED
        self.value: Any = None
        self.error: BaseException | None = None
        self.started = 0.0
        self.finished = 0.0
        self.thread: threading.Thread | None = None
        self.on_start = on_start
        self.on_done: Callable[[], None] | None = None
        self.on_late: Callable[[], None] | None = None
        self.future: Future[Any] | None = None
        self.info = info

    @property
    def done(self) -> bool:
        return self.state == _DONE

    @property
    def running(self) -> bool:
        return self.state == _RUNNING

    def wait(self, timeout: float | None) -> bool:
        """Wait until the call is done or ``timeout`` seconds pass."""
        if self.state == _DONE:
            return True
        if timeout is not None and timeout > threading.TIMEOUT_MAX:
            timeout = threading.TIMEOUT_MAX
        if self.signal.acquire(True, -1 if timeout is None else timeout):
            self.signal.release()
        return self.state == _DONE

    def _settle(self, state: int) -> None:
        """Move to a final state and wake the waiters; call under ``guard``."""
        self.state = state
        self.signal.release()


class ToolExecutor(Executor):
    """A ``concurrent.futures.Executor`` of daemon threads that can be abandoned.

    Beyond the standard ``submit``/``map``/``shutdown``, :meth:`abandon` gives
    up on a running call: its future fails with :class:`CallAbandoned`, its
    worker leaves the pool and a replacement restores capacity. The
    abandoned thread runs on until the function returns, since Python offers
    no safe way to stop it; its result is then dropped and logged.

    Args:
        max_workers: how many calls run at once.
        max_abandoned: how many abandoned workers may be alive at once before
            :meth:`submit` refuses new calls with :class:`ExecutorOverloaded`.
            Each one is a thread stuck somewhere, holding its memory.
        thread_name_prefix: the workers' thread names start with this.
    """

    def __init__(
        self,
        max_workers: int = 8,
        *,
        max_abandoned: int | None = None,
        thread_name_prefix: str = "agentsync-worker",
    ) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int):
            raise TypeError(f"max_workers must be an int, got {max_workers!r}")
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        if max_abandoned is None:
            max_abandoned = max(16, 4 * max_workers)
        if max_abandoned < 0:
            raise ValueError(f"max_abandoned must be 0 or more, got {max_abandoned}")
        self.max_workers = max_workers
        self.max_abandoned = max_abandoned
        self._prefix = thread_name_prefix
        self._names = itertools.count(1)
        self._queue: queue.SimpleQueue[_WorkItem | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._live = 0
        self._busy = 0
        self._queued = 0
        self._abandoned = 0
        self._abandoned_total = 0
        self._late_results = 0
        self._closed = False
        self._workers: set[threading.Thread] = set()

    # -- submitting ----------------------------------------------------------

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Future[Any]:
        """Schedule ``fn(*args, **kwargs)``, run in a copy of the caller's context.

        Raises:
            RuntimeClosedError: the executor was shut down.
            ExecutorOverloaded: too many abandoned workers are alive.
        """
        future: Future[Any] = Future()
        item = self._start(fn, args, kwargs, future=future)
        future._agentsync_item = item  # type: ignore[attr-defined]
        return future

    def _start(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        on_start: Callable[[_WorkItem], None] | None = None,
        info: dict[str, Any] | None = None,
        future: Future[Any] | None = None,
    ) -> _WorkItem:
        item = _WorkItem(fn, args, kwargs or {}, on_start, info)
        item.future = future
        with self._lock:
            if self._closed:
                raise RuntimeClosedError("executor is shut down; it accepts no calls")
            if self._abandoned and self._abandoned >= self.max_abandoned:
                raise ExecutorOverloaded(
                    f"{self._abandoned} abandoned workers are still running hung "
                    f"calls (max_abandoned={self.max_abandoned}); new calls are "
                    "refused until some of them return"
                )
            self._queued += 1
            self._spawn_if_needed_locked()
        self._queue.put(item)
        return item

    def _spawn_if_needed_locked(self) -> None:
        # Every queued call must have a worker coming for it: an idle one, or
        # a new one while there is capacity left.
        if self._queued > self._live - self._busy and self._live < self.max_workers:
            self._spawn_locked()

    def _spawn_locked(self) -> None:
        name = f"{self._prefix}-{next(self._names)}"
        thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._live += 1
        self._workers.add(thread)
        thread.start()

    # -- the worker ----------------------------------------------------------

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            try:
                item = self._queue.get(timeout=_IDLE_WAKE)
            except queue.Empty:
                with self._lock:
                    # Retire after a quiet spell, unless a call is on its way.
                    if self._queued == 0:
                        self._live -= 1
                        self._workers.discard(me)
                        return
                continue
            if item is None:
                with self._lock:
                    self._live -= 1
                    self._workers.discard(me)
                return

            with self._lock:
                self._queued -= 1
                self._busy += 1
            try:
                kept = self._run(item, me)
            except ToolInterrupted:
                # An interrupt for a call that was returning anyway landed here:
                # the call was abandoned, so this thread leaves the pool as usual.
                item.finished = item.finished or time.monotonic()
                kept = False
            if kept:
                with self._lock:
                    self._busy -= 1
                continue

            # The call was abandoned while it ran: this thread already left
            # the pool, and a replacement took its place.
            with self._lock:
                self._abandoned -= 1
                self._late_results += 1
            with item.guard:
                hook, item.on_late = item.on_late, _late_seen
            if hook is not None:
                hook()
            _log.info(
                "tool.late_result",
                thread=me.name,
                ran_for_ms=round((item.finished - item.started) * 1000, 1),
                failed=item.error is not None,
                **(item.info or {}),
            )
            return

    def _run(self, item: _WorkItem, me: threading.Thread) -> bool:
        """Run one item; False when it was abandoned while running."""
        with item.guard:
            if item.state != _QUEUED:
                return True
            item.state = _RUNNING
            item.thread = me
            item.started = time.monotonic()
            if item.on_start is not None:
                item.on_start(item)
        future = item.future
        if future is not None and not future.set_running_or_notify_cancel():
            with item.guard:
                item._settle(_CANCELLED)
            return True

        try:
            item.value = item.context.run(item.fn, *item.args, **item.kwargs)
        except BaseException as exc:  # noqa: BLE001 - a worker must survive anything
            item.error = exc

        with item.guard:
            item.finished = time.monotonic()
            if item.state == _ABANDONED:
                return False
            item._settle(_DONE)
        if item.on_done is not None:
            try:
                item.on_done()
            except Exception:  # noqa: BLE001 - a waker must not kill the worker
                _log.exception("executor.on_done_failed")
        if future is not None:
            if item.error is not None:
                future.set_exception(item.error)
            else:
                future.set_result(item.value)
        item.fn = item.args = item.kwargs = None  # type: ignore[assignment]
        return True

    # -- giving up on calls --------------------------------------------------

    def abandon(self, future: Future[Any] | _WorkItem) -> bool:
        """Stop waiting for a call: cancel it if queued, abandon it if running.

        Returns False when the call had already finished.
        """
        item = future if isinstance(future, _WorkItem) else self._item_of(future)
        if item is None:
            return bool(future.cancel()) if isinstance(future, Future) else False
        with item.guard:
            if item.state == _QUEUED:
                item._settle(_CANCELLED)
                if item.future is not None:
                    item.future.cancel()
                return True
            if item.state != _RUNNING:
                return False
            item._settle(_ABANDONED)

        thread = item.thread
        with self._lock:
            self._abandoned += 1
            self._abandoned_total += 1
            self._live -= 1
            self._busy -= 1
            if thread is not None:
                self._workers.discard(thread)
            self._spawn_if_needed_locked()
        _log.warning(
            "tool.abandoned",
            thread=thread.name if thread else None,
            abandoned=self._abandoned,
            **(item.info or {}),
        )
        if item.future is not None:
            item.future.set_exception(CallAbandoned("the call was abandoned"))
        return True

    def _item_of(self, future: Future[Any]) -> _WorkItem | None:
        # Futures are created by submit() and map to items only through this
        # scan-free attribute; a foreign future has none.
        return getattr(future, "_agentsync_item", None)

    # -- lifecycle -----------------------------------------------------------

    def statistics(self) -> ExecutorStats:
        """Return a snapshot of the pool's workers and calls."""
        with self._lock:
            return ExecutorStats(
                max_workers=self.max_workers,
                live=self._live,
                busy=self._busy,
                idle=self._live - self._busy,
                queued=self._queued,
                abandoned=self._abandoned,
                abandoned_total=self._abandoned_total,
                late_results=self._late_results,
            )

    def shutdown(
        self,
        wait: bool = True,
        *,
        cancel_futures: bool = False,
        timeout: float | None = 30.0,
    ) -> None:
        """Refuse new calls and let the workers retire.

        Args:
            wait: wait for the live workers to finish their calls, up to
                ``timeout`` seconds in all. Abandoned workers are never waited
                for.
            cancel_futures: cancel the calls still queued.
            timeout: the bound on the whole wait.
        """
        with self._lock:
            if self._closed and not wait:
                return
            self._closed = True
            live = self._live
            workers = list(self._workers)
        if cancel_futures:
            self._drain()
        for _ in range(live):
            self._queue.put(None)
        if not wait:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in workers:
            remaining = (
                None if deadline is None else max(0.0, deadline - time.monotonic())
            )
            thread.join(remaining)

    def _drain(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is None:
                continue
            with self._lock:
                self._queued -= 1
            self.abandon(item)
