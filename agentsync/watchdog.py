"""A watchdog that reports calls running past their limit, with their stacks.

One daemon thread holds a heap of deadlines and sleeps until the earliest one
(``Condition.wait`` with the time left), so detection is precise to a
millisecond or so and an idle watchdog costs nothing: with nothing watched its
thread waits an hour at a time. Nothing is polled, except the liveness of
abandoned threads, once a second and only while some are tracked.

Reporting never kills or interrupts anything: the watched thread runs on, and
the watchdog only tells (a ``tool.stuck`` log event and the ``on_stuck``
callbacks). Callbacks run on a separate dispatcher thread, so a callback that
hangs delays other callbacks at most ``callback_timeout`` seconds and never
delays detection or the ``tool.stuck`` log.
"""

from __future__ import annotations

import heapq
import itertools
import math
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import structlog

from agentsync.errors import AgentSyncError, RuntimeClosedError

if TYPE_CHECKING:
    from typing_extensions import Self  # noqa: UP035 - typing.Self is 3.11+

__all__ = [
    "AbandonedHandle",
    "StuckCall",
    "StuckCallback",
    "WatchHandle",
    "Watchdog",
    "WatchdogStatistics",
    "WatchdogUsageError",
    "default_watchdog",
]

_log = structlog.get_logger("agentsync.watchdog")

# A daemon thread's idle wait still has a deadline; an hour costs nothing.
_IDLE_WAIT = 3600.0

# Dispatchers left stuck in a hung callback before callbacks queue up instead
# of getting a fresh dispatcher; bounds the threads hung callbacks can take.
_MAX_STALLED_DISPATCHERS = 4

# Compact the heap once this many cancelled entries are in it and they are
# more than half of it, so that done() stays O(1) and memory stays bounded.
_COMPACT_MIN = 64


class WatchdogUsageError(AgentSyncError, ValueError):
    """A watchdog was given a bad argument: a limit or interval that is not a
    positive finite number of seconds, or a thread that was never started."""


@dataclass(frozen=True)
class StuckCall:
    """A call seen running past its limit.

    Times are ``time.monotonic()`` values or seconds.

    Attributes:
        label: the label given to :meth:`Watchdog.watch`.
        tool: ``info["tool"]``, when given.
        call_id: ``info["call_id"]``, when given.
        thread_name: name of the watched thread.
        thread_ident: ident of the watched thread.
        elapsed: seconds since the watch began, at detection.
        limit: the watch's limit in seconds.
        stack: the watched thread's stack at detection, formatted; empty if
            the thread had no frame to show.
        detected_at: monotonic time of detection.
        late_by: detection time minus the deadline of this report.
        report: 1 for the report at the limit, 2 at twice the limit, 3 at four
            times, and so on.
        info: every field given as ``info`` to :meth:`Watchdog.watch`.
    """

    label: str
    tool: str | None
    call_id: str | None
    thread_name: str
    thread_ident: int | None
    elapsed: float
    limit: float
    stack: str
    detected_at: float
    late_by: float
    report: int = 1
    info: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


StuckCallback = Callable[[StuckCall], object]


@dataclass(frozen=True)
class WatchdogStatistics:
    """A snapshot of a watchdog's state.

    Attributes:
        watched: watches not done yet, stuck ones included.
        stuck: watches reported stuck and not done yet.
        reported_total: reports made so far, repeated reports included.
        abandoned_alive: abandoned threads tracked and not finished yet.
        abandoned_finished: abandoned threads seen finishing so far.
        callbacks_failed: callback invocations that raised.
        callbacks_slow: callback invocations that ran past ``callback_timeout``.
    """

    watched: int
    stuck: int
    reported_total: int
    abandoned_alive: int
    abandoned_finished: int
    callbacks_failed: int
    callbacks_slow: int


class _Entry:
    """Something in the heap; ``cancelled`` entries are skipped when popped."""

    __slots__ = ("cancelled", "queued")

    def __init__(self) -> None:
        self.cancelled = False
        self.queued = False


class WatchHandle(_Entry):
    """One watch on one thread; call :meth:`done` when the watched code ends.

    Use it as a context manager to call :meth:`done` on the way out.
    """

    __slots__ = (
        "_watchdog",
        "deadline",
        "info",
        "label",
        "limit",
        "reports",
        "started",
        "thread",
    )

    def __init__(
        self,
        watchdog: Watchdog,
        label: str,
        limit: float,
        thread: threading.Thread,
        info: Mapping[str, Any],
        started: float,
    ) -> None:
        super().__init__()
        self._watchdog = watchdog
        self.label = label
        self.limit = limit
        self.thread = thread
        self.info = info
        self.started = started
        self.deadline = started + limit
        self.reports = 0

    def done(self) -> None:
        """End the watch; idempotent, and fine after the watch was reported."""
        self._watchdog._done(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.done()

    def __repr__(self) -> str:
        return (
            f"<WatchHandle {self.label!r} on {self.thread.name}"
            f" limit={self.limit:g}s reports={self.reports}>"
        )


class AbandonedHandle:
    """An abandoned thread tracked until it ends; see
    :meth:`Watchdog.track_abandoned`."""

    __slots__ = ("_watchdog", "abandoned_at", "info", "is_finished", "thread")

    def __init__(
        self,
        watchdog: Watchdog,
        thread: threading.Thread,
        info: Mapping[str, Any],
        abandoned_at: float,
    ) -> None:
        self._watchdog = watchdog
        self.thread = thread
        self.info = info
        self.abandoned_at = abandoned_at
        self.is_finished = False

    def finished(self) -> None:
        """Tell the watchdog that the abandoned call returned; idempotent."""
        self._watchdog._abandoned_finished(self, detected_by="finished")


class _LivenessCheck(_Entry):
    """The periodic ``is_alive()`` check of abandoned threads."""

    __slots__ = ()


class _CallbackCheck(_Entry):
    """Fires when a callback has run ``callback_timeout`` seconds."""

    __slots__ = ("dispatcher",)

    def __init__(self, dispatcher: _Dispatcher) -> None:
        super().__init__()
        self.dispatcher = dispatcher


_HeapItem = tuple[float, int, WatchHandle | _LivenessCheck | _CallbackCheck]


class _Dispatcher:
    """A thread that runs callbacks from the shared queue, one at a time."""

    __slots__ = ("check", "retired", "running", "running_since", "thread")

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.retired = False
        self.running: tuple[StuckCallback, StuckCall] | None = None
        self.running_since = 0.0
        self.check: _CallbackCheck | None = None


def _check_seconds(name: str, value: object) -> float:
    """Return ``value`` as float seconds, or raise WatchdogUsageError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise WatchdogUsageError(
            f"{name} must be a positive finite number of seconds, got {value!r}"
        )
    return float(value)


def _callback_name(fn: StuckCallback) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


class Watchdog:
    """Reports calls that run past their limit, with the stack of their thread.

    A stuck call is reported once at its limit and again each time its elapsed
    time doubles (at 2x, 4x, 8x the limit...), so a call hung for good is
    reported a few times, ever more rarely, not once a second. Pass
    ``repeat=False`` for the first report only.

    The watchdog never stops, interrupts or kills a watched thread: it tells
    (log and callbacks) and the thread runs on until it returns.

    Args:
        on_stuck: callbacks called with each :class:`StuckCall` report, on a
            dispatcher thread. One that raises is logged
            (``watchdog.callback_failed``); one that runs past
            ``callback_timeout`` is logged (``watchdog.callback_slow``) and left
            on its thread while a new dispatcher runs the other callbacks (at
            most four dispatchers are left behind this way; past that,
            callbacks wait for one to return).
        name: name of the watchdog thread.
        callback_timeout: seconds a callback may run before it counts as slow.
        repeat: report stuck calls again as their elapsed time doubles.
        abandoned_check_interval: seconds between ``is_alive()`` checks of the
            abandoned threads, done only while some are tracked.

    Raises:
        WatchdogUsageError: a bad ``callback_timeout`` or
            ``abandoned_check_interval``.
    """

    def __init__(
        self,
        *,
        on_stuck: Iterable[StuckCallback] = (),
        name: str = "agentsync-watchdog",
        callback_timeout: float = 5.0,
        repeat: bool = True,
        abandoned_check_interval: float = 1.0,
    ) -> None:
        self.name = name
        self._callbacks: tuple[StuckCallback, ...] = tuple(on_stuck)
        self._callback_timeout = _check_seconds("callback_timeout", callback_timeout)
        self._repeat = repeat
        self._liveness_interval = _check_seconds(
            "abandoned_check_interval", abandoned_check_interval
        )

        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._heap: list[_HeapItem] = []
        self._seq = itertools.count()
        self._cancelled_in_heap = 0
        self._thread: threading.Thread | None = None
        self._closed = False
        self._wakeups = 0

        self._watched: dict[WatchHandle, None] = {}
        self._stuck: dict[WatchHandle, StuckCall] = {}
        self._abandoned: dict[AbandonedHandle, None] = {}
        self._liveness_check: _LivenessCheck | None = None

        self._queue: queue.SimpleQueue[tuple[StuckCallback, StuckCall] | None] = (
            queue.SimpleQueue()
        )
        self._dispatcher: _Dispatcher | None = None
        self._stalled: set[_Dispatcher] = set()
        self._dispatcher_seq = itertools.count(1)

        self._reported_total = 0
        self._abandoned_finished_total = 0
        self._callbacks_failed = 0
        self._callbacks_slow = 0

    # -- public API ----------------------------------------------------------

    def watch(
        self,
        label: str,
        limit: float,
        *,
        thread: threading.Thread | None = None,
        info: Mapping[str, Any] | None = None,
        started: float | None = None,
    ) -> WatchHandle:
        """Watch ``thread`` until the returned handle is done.

        Args:
            label: what is being watched, for reports (a tool name, a job).
            limit: seconds after which the call counts as stuck.
            thread: the thread running the call; the current thread if None.
            info: extra fields for reports; ``tool`` and ``call_id`` become
                fields of :class:`StuckCall`.
            started: the ``time.monotonic()`` value the call started at; now
                if None. A watch already past its limit is reported at once:
                the runtime hands over a timed-out call this way.

        Returns:
            A handle; call ``done()`` on it, or use it as a context manager.

        Raises:
            WatchdogUsageError: ``limit`` is not a positive finite number, or
                ``thread`` was never started.
            RuntimeClosedError: the watchdog is closed.
        """
        limit = _check_seconds("watch limit", limit)
        if thread is None:
            thread = threading.current_thread()
        elif thread.ident is None:
            raise WatchdogUsageError(
                f"cannot watch thread {thread.name!r}: it was never started"
            )
        handle = WatchHandle(
            self,
            label,
            limit,
            thread,
            dict(info or {}),
            time.monotonic() if started is None else started,
        )

        with self._lock:
            self._check_open()
            self._watched[handle] = None
            self._schedule(handle.deadline, handle)
        return handle

    def track_abandoned(
        self,
        thread: threading.Thread,
        info: Mapping[str, Any] | None = None,
        *,
        abandoned_at: float | None = None,
    ) -> AbandonedHandle:
        """Track a thread whose call was abandoned, until that thread ends.

        The end is logged as ``tool.abandoned_finished`` with the seconds the
        thread lived after it was abandoned. It is seen when the runtime
        calls ``finished()`` on the returned handle (exact), or else by an
        ``is_alive()`` check every ``abandoned_check_interval`` seconds (late
        by up to that interval).

        Args:
            thread: the abandoned thread.
            info: extra fields for the log (``tool``, ``call_id``...).
            abandoned_at: monotonic time of abandonment; now if None.

        Returns:
            A handle whose ``finished()`` the runtime calls when the call returns.

        Raises:
            RuntimeClosedError: the watchdog is closed.
        """
        handle = AbandonedHandle(
            self,
            thread,
            dict(info or {}),
            time.monotonic() if abandoned_at is None else abandoned_at,
        )
        with self._lock:
            self._check_open()
            self._abandoned[handle] = None
            if self._liveness_check is None:
                self._liveness_check = _LivenessCheck()
                self._schedule(
                    time.monotonic() + self._liveness_interval, self._liveness_check
                )
        return handle

    def add_callback(self, fn: StuckCallback) -> None:
        """Call ``fn`` with every later :class:`StuckCall` report."""
        with self._lock:
            self._callbacks = (*self._callbacks, fn)

    def stuck(self) -> tuple[StuckCall, ...]:
        """Return the latest report of each call stuck now, oldest call first."""
        with self._lock:
            calls = list(self._stuck.values())
        return tuple(sorted(calls, key=lambda c: c.detected_at - c.elapsed))

    def statistics(self) -> WatchdogStatistics:
        """Return a snapshot of counts; see :class:`WatchdogStatistics`."""
        with self._lock:
            return WatchdogStatistics(
                watched=len(self._watched),
                stuck=len(self._stuck),
                reported_total=self._reported_total,
                abandoned_alive=len(self._abandoned),
                abandoned_finished=self._abandoned_finished_total,
                callbacks_failed=self._callbacks_failed,
                callbacks_slow=self._callbacks_slow,
            )

    def close(self, timeout: float = 1.0) -> None:
        """Stop the watchdog thread and dispatchers; pending watches are dropped.

        Idempotent. A callback still running is not interrupted: its daemon
        thread ends when the callback returns, and never blocks exit.

        Args:
            timeout: seconds to wait for the watchdog thread to end.
        """
        with self._lock:
            self._closed = True
            self._wakeup.notify_all()
            thread = self._thread
            if self._dispatcher is not None:
                self._dispatcher.retired = True
                self._dispatcher = None
                self._queue.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- bookkeeping, called with or taking the lock -------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeClosedError(f"watchdog {self.name!r} is closed")

    def _schedule(
        self, when: float, entry: WatchHandle | _LivenessCheck | _CallbackCheck
    ) -> None:
        """Push ``entry``; wake the thread if it now sleeps past ``when``.

        Call with the lock held.
        """
        heapq.heappush(self._heap, (when, next(self._seq), entry))
        entry.queued = True
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=self.name, daemon=True
            )
            self._thread.start()
        elif self._heap[0][2] is entry:
            self._wakeup.notify()

    def _cancel(self, entry: _Entry) -> None:
        """Mark ``entry`` cancelled, compacting the heap when it is mostly dead.

        Call with the lock held.
        """
        if entry.cancelled:
            return
        entry.cancelled = True
        if not entry.queued:
            return
        self._cancelled_in_heap += 1
        if (
            self._cancelled_in_heap >= _COMPACT_MIN
            and self._cancelled_in_heap * 2 > len(self._heap)
        ):
            for item in self._heap:
                item[2].queued = not item[2].cancelled
            self._heap = [item for item in self._heap if not item[2].cancelled]
            heapq.heapify(self._heap)
            self._cancelled_in_heap = 0

    def _done(self, handle: WatchHandle) -> None:
        with self._lock:
            if handle not in self._watched:
                return
            del self._watched[handle]
            self._cancel(handle)
            was_stuck = self._stuck.pop(handle, None) is not None
        if was_stuck:
            _log.info(
                "tool.stuck_finished",
                label=handle.label,
                tool=handle.info.get("tool"),
                call_id=handle.info.get("call_id"),
                thread_name=handle.thread.name,
                elapsed=round(time.monotonic() - handle.started, 6),
                limit=handle.limit,
                reports=handle.reports,
            )

    def _abandoned_finished(self, handle: AbandonedHandle, detected_by: str) -> None:
        with self._lock:
            if handle.is_finished:
                return
            handle.is_finished = True
            self._abandoned.pop(handle, None)
            self._abandoned_finished_total += 1
            if not self._abandoned and self._liveness_check is not None:
                self._cancel(self._liveness_check)
                self._liveness_check = None
        _log.info(
            "tool.abandoned_finished",
            tool=handle.info.get("tool"),
            call_id=handle.info.get("call_id"),
            thread_name=handle.thread.name,
            lived_after_abandon=round(time.monotonic() - handle.abandoned_at, 6),
            detected_by=detected_by,
            info=dict(handle.info),
        )

    # -- the watchdog thread -------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                due = self._wait_for_due()
            if due is None:
                return
            self._handle_due(due)

    def _wait_for_due(
        self,
    ) -> list[WatchHandle | _LivenessCheck | _CallbackCheck] | None:
        """Sleep until entries are due and return them; None once closed.

        Call with the lock held.
        """
        heap = self._heap
        while not self._closed:
            now = time.monotonic()
            due: list[WatchHandle | _LivenessCheck | _CallbackCheck] = []
            while heap and (heap[0][2].cancelled or heap[0][0] <= now):
                _, _, entry = heapq.heappop(heap)
                entry.queued = False
                if entry.cancelled:
                    self._cancelled_in_heap -= 1
                else:
                    due.append(entry)
            if due:
                return due
            timeout = min(heap[0][0] - now, _IDLE_WAIT) if heap else _IDLE_WAIT
            self._wakeup.wait(timeout)
            self._wakeups += 1
        return None

    def _handle_due(
        self, due: list[WatchHandle | _LivenessCheck | _CallbackCheck]
    ) -> None:
        watches = [e for e in due if isinstance(e, WatchHandle)]
        if watches:
            self._report(watches)
        for entry in due:
            if isinstance(entry, _LivenessCheck):
                self._check_abandoned(entry)
            elif isinstance(entry, _CallbackCheck):
                self._check_callback(entry)

    def _report(self, watches: list[WatchHandle]) -> None:
        """Report watches past their deadline: build, log, dispatch."""
        detected_at = time.monotonic()

        # Count the report and schedule the next one before the slow part, so
        # that a done() arriving meanwhile cancels the repeat.
        with self._lock:
            numbered = []
            for handle in watches:
                if handle not in self._watched:
                    continue
                handle.reports += 1
                deadline = handle.started + handle.limit * 2 ** (handle.reports - 1)
                numbered.append((handle, handle.reports, deadline))
                if self._repeat:
                    self._schedule(deadline + (deadline - handle.started), handle)
        if not numbered:
            return

        # One snapshot of all stacks; frames are dropped as soon as formatted.
        frames = sys._current_frames()
        calls = []
        for handle, report, deadline in numbered:
            frame = frames.get(handle.thread.ident or -1)
            stack = "".join(traceback.format_stack(frame)) if frame is not None else ""
            calls.append(
                (
                    handle,
                    StuckCall(
                        label=handle.label,
                        tool=handle.info.get("tool"),
                        call_id=handle.info.get("call_id"),
                        thread_name=handle.thread.name,
                        thread_ident=handle.thread.ident,
                        elapsed=detected_at - handle.started,
                        limit=handle.limit,
                        stack=stack,
                        detected_at=detected_at,
                        late_by=detected_at - deadline,
                        report=report,
                        info=handle.info,
                    ),
                )
            )
        del frames

        # A watch done meanwhile, or whose thread ended without done(), is not
        # stuck; the latter is a leaked handle, dropped with a warning.
        reported = []
        leaked = []
        with self._lock:
            callbacks = self._callbacks
            for handle, call in calls:
                if handle not in self._watched:
                    continue
                if not handle.thread.is_alive():
                    del self._watched[handle]
                    self._cancel(handle)
                    self._stuck.pop(handle, None)
                    leaked.append(handle)
                    continue
                self._stuck[handle] = call
                self._reported_total += 1
                reported.append(call)
                for fn in callbacks:
                    self._queue.put((fn, call))
            if reported and callbacks:
                self._ensure_dispatcher()

        for handle in leaked:
            _log.warning(
                "watchdog.watch_leaked",
                label=handle.label,
                thread_name=handle.thread.name,
                elapsed=round(detected_at - handle.started, 6),
            )
        for call in reported:
            _log.warning(
                "tool.stuck",
                label=call.label,
                tool=call.tool,
                call_id=call.call_id,
                thread_name=call.thread_name,
                thread_ident=call.thread_ident,
                elapsed=round(call.elapsed, 6),
                limit=call.limit,
                late_by=round(call.late_by, 6),
                report=call.report,
                stack=call.stack,
                info=dict(call.info),
            )

    def _check_abandoned(self, check: _LivenessCheck) -> None:
        with self._lock:
            ended = [h for h in self._abandoned if not h.thread.is_alive()]
        for handle in ended:
            self._abandoned_finished(handle, detected_by="thread_exit")
        with self._lock:
            if self._liveness_check is check and not self._closed:
                self._schedule(time.monotonic() + self._liveness_interval, check)

    # -- callback dispatch ---------------------------------------------------

    def _ensure_dispatcher(self) -> None:
        """Start a dispatcher if none is active and the cap allows one.

        Call with the lock held.
        """
        if self._dispatcher is not None or self._closed:
            return
        if len(self._stalled) >= _MAX_STALLED_DISPATCHERS:
            return
        dispatcher = _Dispatcher()
        dispatcher.thread = threading.Thread(
            target=self._dispatch,
            args=(dispatcher,),
            name=f"{self.name}-callbacks-{next(self._dispatcher_seq)}",
            daemon=True,
        )
        self._dispatcher = dispatcher
        dispatcher.thread.start()

    def _dispatch(self, me: _Dispatcher) -> None:
        while True:
            with self._lock:
                if me.retired:
                    return
            try:
                item = self._queue.get(timeout=_IDLE_WAIT)
            except queue.Empty:
                continue
            if item is None:
                return

            # Arm the check before calling, so a hang is seen within the bound.
            fn, call = item
            with self._lock:
                if me.retired:
                    self._queue.put(item)
                    return
                check = _CallbackCheck(me)
                me.running = item
                me.running_since = time.monotonic()
                me.check = check
                self._schedule(me.running_since + self._callback_timeout, check)

            try:
                fn(call)
            except Exception:  # noqa: BLE001 - no callback failure ends dispatch
                with self._lock:
                    self._callbacks_failed += 1
                _log.exception(
                    "watchdog.callback_failed",
                    callback=_callback_name(fn),
                    label=call.label,
                    tool=call.tool,
                    call_id=call.call_id,
                )

            duration = time.monotonic() - me.running_since
            with self._lock:
                self._cancel(check)
                me.running = None
                me.check = None
                stalled = me in self._stalled
                if stalled:
                    self._stalled.discard(me)
                    if self._dispatcher is None and not self._closed:
                        self._dispatcher = me
                        me.retired = False
                    else:
                        me.retired = True
            if stalled:
                _log.info(
                    "watchdog.callback_returned",
                    callback=_callback_name(fn),
                    label=call.label,
                    duration=round(duration, 6),
                )

    def _check_callback(self, check: _CallbackCheck) -> None:
        """A callback ran past the bound: log it and replace its dispatcher."""
        with self._lock:
            me = check.dispatcher
            if me.check is not check or me.running is None:
                return
            fn, call = me.running
            running_for = time.monotonic() - me.running_since
            self._callbacks_slow += 1
            self._stalled.add(me)
            if self._dispatcher is me:
                self._dispatcher = None
            self._ensure_dispatcher()
            replaced = self._dispatcher is not None
            stalled = len(self._stalled)
        _log.warning(
            "watchdog.callback_slow",
            callback=_callback_name(fn),
            label=call.label,
            running_for=round(running_for, 6),
            bound=self._callback_timeout,
            stalled_dispatchers=stalled,
            replaced=replaced,
        )


_default: Watchdog | None = None
_default_lock = threading.Lock()


def default_watchdog() -> Watchdog:
    """The process's shared watchdog, made on first use.

    Runtimes share it unless given their own: one daemon thread watches every
    call of the process, and it outlives any one runtime, so an abandoned
    thread is still followed after its runtime closed.
    """
    global _default
    with _default_lock:
        if _default is None:
            _default = Watchdog(name="agentsync-watchdog")
        return _default
