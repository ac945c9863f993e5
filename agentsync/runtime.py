"""The runtime: tools, a pool of abandonable workers, and call outcomes."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import pydantic
import structlog

from ._interrupts import InterruptGate
from .context import ToolContext
from .errors import (
    LockOrderError,
    LockTimeout,
    RuntimeClosedError,
    ToolCancelled,
    ToolDefinitionError,
    ToolError,
    ToolInterrupted,
)
from .executor import _CANCELLED as _CANCELLED_STATE
from .executor import _QUEUED as _QUEUED_STATE
from .executor import _RUNNING as _RUNNING_STATE
from .executor import (
    ExecutorOverloaded,
    ExecutorStats,
    ToolExecutor,
    _late_seen,
    _WorkItem,
)
from .retry import is_unknown_outcome
from .tools import ErrorKind, Outcome, Tool, ToolCall
from .tools import tool as make_tool

if TYPE_CHECKING:
    from .locks import LockRegistry
    from .scheduler import PlanReport
    from .watchdog import Watchdog

__all__ = ["CallHook", "CallLike", "PendingCall", "Runtime", "RuntimeStats"]

_log = structlog.get_logger("agentsync.runtime")

CallLike = ToolCall | tuple[str, Mapping[str, Any]] | Mapping[str, Any]

# The context of the tool call running in this thread, if any: nested calls
# through the runtime run inline instead of queueing behind busy workers.
_current: contextvars.ContextVar[ToolContext | None] = contextvars.ContextVar(
    "agentsync_current_call", default=None
)


class CallHook(Protocol):
    """Code run around every tool call, in the worker thread that runs it.

    A hook works in two phases. :meth:`capture` runs in the caller's thread
    when a call is started and returns what must cross to the worker (the
    caller's Flask app, say). :meth:`wrap` runs in the worker and returns a
    context manager entered around the tool, its locks included, and exited
    when the tool returns or raises. Hooks are entered in the order given and
    exited in reverse. Nested calls (``ctx.call``) run inside their parent's
    hooks, which are not entered again.

    An exception from :meth:`capture` becomes the call's ``exception``
    outcome and the tool does not run; one from entering or exiting the
    context manager becomes the call's outcome like the tool's own.
    """

    def capture(self) -> Any:
        """Return the state :meth:`wrap` needs; runs in the caller's thread."""

    def wrap(self, state: Any, ctx: ToolContext) -> AbstractContextManager[Any]:
        """Return the context manager entered around the call in the worker."""


def _debug_enabled() -> bool:
    """Whether debug events would be kept, asked of the configured logger.

    Per-call events are debug-level; skipping them when they would be
    filtered out anyway keeps them off every call's path.
    """
    wrapper = structlog.get_config()["wrapper_class"]
    effective = getattr(wrapper, "get_effective_level", None)
    if effective is None:
        return True
    try:
        # Filtering loggers answer from their class; the instance is unused.
        return int(effective(None)) <= logging.DEBUG
    except Exception:  # noqa: BLE001 - an unknown wrapper: assume it logs
        return True


@dataclass(frozen=True)
class RuntimeStats:
    """A snapshot of a runtime: its pool and its calls so far."""

    workers: ExecutorStats
    calls: int
    timeouts: int
    tools: int


class _Pending:
    """A call that was started and is waited for by :meth:`Runtime._finish`."""

    __slots__ = ("call", "tool", "ctx", "item", "timeout", "deadline", "submitted")

    def __init__(
        self,
        call: ToolCall,
        tool: Tool,
        ctx: ToolContext,
        timeout: float,
        deadline: float | None,
    ) -> None:
        self.call = call
        self.tool = tool
        self.ctx = ctx
        self.timeout = timeout
        self.deadline = deadline
        self.submitted = time.monotonic()
        self.item: _WorkItem | None = None

    def on_start(self, item: _WorkItem) -> None:
        # Runs in the worker, under the item's lock, as the call starts: the
        # timeout counts from here, capped by the caller's overall deadline.
        self.ctx.deadline = _earliest(item.started + self.timeout, self.deadline)


def _earliest(a: float, b: float | None) -> float:
    return a if b is None or a < b else b


def _check_deadline(deadline: Any) -> None:
    if deadline is not None and (
        isinstance(deadline, bool)
        or not isinstance(deadline, (int, float))
        or not math.isfinite(deadline)
    ):
        raise ValueError(
            f"deadline must be a finite time.monotonic() value, got {deadline!r}"
        )


def _check_seconds(value: Any, what: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{what} must be a positive number of seconds, got {value!r}")
    return float(value)


class Runtime:
    """Runs tool calls on a pool of threads, each bounded by a timeout.

    A call that runs past its timeout gets a ``timeout`` outcome within a few
    milliseconds; its thread is abandoned (it runs on until the function
    returns, since a thread cannot be killed), its context is cancelled, and a
    new worker takes its place. Use it as a context manager, or call
    :meth:`close`.

    Args:
        tools: tools or plain functions (wrapped with :func:`agentsync.tool`).
        max_workers: how many calls run at once.
        default_timeout: seconds for tools that set no timeout of their own.
        max_abandoned: hung workers allowed alive at once; past it, calls get
            an ``overloaded`` outcome at once instead of queueing.
        max_depth: how deep tools may call tools through ``ctx.call``.
        locks: the :class:`LockRegistry` for tools that declare ``locks``; a
            registry ordered by lock name is made when needed.
        watchdog: the :class:`Watchdog` that watches every running call (at
            the tool's ``stuck_after``, else its timeout) and the threads of
            abandoned calls; the process's shared one by default, and
            ``False`` for none.
        hooks: :class:`CallHook` objects entered around every call in its
            worker thread, such as
            :class:`agentsync.integrations.flask.FlaskContext`.
    """

    def __init__(
        self,
        tools: Iterable[Tool | Callable[..., Any]] = (),
        *,
        max_workers: int = 8,
        default_timeout: float = 30.0,
        max_abandoned: int | None = None,
        max_depth: int = 8,
        locks: LockRegistry | None = None,
        watchdog: Watchdog | bool | None = None,
        hooks: Iterable[CallHook] = (),
    ) -> None:
        self.default_timeout = _check_seconds(default_timeout, "default_timeout")
        if max_depth < 1:
            raise ValueError(f"max_depth must be at least 1, got {max_depth}")
        self.max_depth = max_depth
        self._executor = ToolExecutor(max_workers, max_abandoned=max_abandoned)
        self._tools: dict[str, Tool] = {}
        self._locks = locks
        if watchdog is None or watchdog is True:
            from .watchdog import default_watchdog

            watchdog = default_watchdog()
        self.watchdog: Watchdog | None = watchdog or None
        self._hooks = tuple(hooks)
        # Contexts of calls running now, so that close() can cancel them.
        self._active: set[ToolContext] = set()
        self._closed = False
        self._stats_lock = threading.Lock()
        self._calls = itertools.count()
        self._timeouts = 0
        for t in tools:
            self.register(t)

    # -- tools ---------------------------------------------------------------

    def register(self, t: Tool | Callable[..., Any]) -> Tool:
        """Add a tool (or a plain function, wrapped as one) and return it.

        Raises:
            ToolDefinitionError: another tool already has that name.
        """
        if not isinstance(t, Tool):
            t = make_tool(t)
        if t.name in self._tools and self._tools[t.name] is not t:
            raise ToolDefinitionError(f"a tool named {t.name!r} is already registered")
        self._tools[t.name] = t
        return t

    @property
    def tools(self) -> Mapping[str, Tool]:
        """The registered tools by name."""
        return dict(self._tools)

    def tool_params(self) -> list[dict[str, Any]]:
        """The ``tools`` parameter for the Messages API."""
        return [t.to_param() for t in self._tools.values()]

    @property
    def locks(self) -> LockRegistry:
        """The lock registry tools' ``locks`` are taken from."""
        if self._locks is None:
            from .locks import LockRegistry

            self._locks = LockRegistry()
        return self._locks

    # -- calling -------------------------------------------------------------

    def call(
        self,
        name: str,
        input: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
        call_id: str | None = None,
    ) -> Outcome:
        """Run one tool call and return its outcome; never raises for the call.

        Args:
            name: the tool's name.
            input: the tool's input, validated against its schema.
            timeout: seconds the call may run, overriding the tool's own.
            deadline: a ``time.monotonic()`` value no wait goes past.
            call_id: an id for the logs and the outcome.

        Raises:
            RuntimeClosedError: the runtime was closed.
        """
        _check_deadline(deadline)
        if input is not None and not isinstance(input, Mapping):
            raise TypeError(
                f"the input of a call to {name!r} must be a mapping of argument "
                f"names to values, got {type(input).__name__}"
            )
        data = dict(input) if input else {}
        current = _current.get()
        if current is not None and current.runtime is self:
            return self._call_nested(current, name, data, call_id, timeout, deadline)
        call = ToolCall(name, data, call_id) if call_id else ToolCall(name, data)
        t = self._tools.get(name)
        if t is not None and t.retry is not None:
            return self._call_with_retries(t, call, deadline, timeout)
        return self._finish(self._start(call, deadline, timeout))

    def run_calls(
        self, calls: Iterable[CallLike], *, deadline: float | None = None
    ) -> list[Outcome]:
        """Run calls concurrently; return one outcome per call, in their order.

        Whatever happens to a call (an exception, a timeout, an unknown tool,
        an invalid input, even ``SystemExit``) it gets its outcome in its place.

        Args:
            calls: :class:`ToolCall` objects, ``(name, input)`` pairs, or
                ``{"name": ..., "input": ..., "id": ...}`` mappings (a
                ``tool_use`` block has that shape).
            deadline: a ``time.monotonic()`` value no call's wait goes past.
        """
        current = _current.get()
        if current is not None and current.runtime is self:
            # Called from inside a tool: the workers may all be busy waiting
            # on calls like this one, so the calls run inline, one by one.
            nested = [_as_call(c) for c in calls]
            return [
                self._call_nested(current, c.name, dict(c.input), c.id) for c in nested
            ]
        _check_deadline(deadline)
        # Every call is checked before any starts, so a malformed one in the
        # middle does not leave the ones before it running unwatched.
        checked = [_as_call(c) for c in calls]
        started: list[_Pending | Outcome | _RetryingCall] = []
        for call in checked:
            t = self._tools.get(call.name)
            if t is not None and t.retry is not None:
                started.append(_RetryingCall(self, t, call, deadline))
            else:
                started.append(self._start(call, deadline))
        return [
            p.outcome() if isinstance(p, _RetryingCall) else self._finish(p)
            for p in started
        ]

    def _call_with_retries(
        self, t: Tool, call: ToolCall, deadline: float | None, timeout: float | None
    ) -> Outcome:
        """Run an idempotent call, again after each retryable failure.

        The budget is a deadline: no attempt and no backoff sleep starts if it
        would end past it, and each attempt's timeout is the smaller of the
        tool's timeout and the time left.
        """
        policy = t.retry
        assert policy is not None
        limit = timeout or t.timeout or self.default_timeout
        first = time.monotonic()
        budget_end = _earliest(
            first + (policy.budget or limit * policy.attempts), deadline
        )
        attempt = 1
        while True:
            outcome = self._finish(self._start(call, budget_end, limit))
            if outcome.ok or attempt >= policy.attempts:
                break
            timed_out = outcome.error_kind in ("timeout", "deadline")
            if not policy.wants(outcome.exception, timed_out):
                break
            sleep = policy.sleep_before(attempt + 1)
            now = time.monotonic()
            if now + sleep >= budget_end:
                break
            _log.warning(
                "tool.retry",
                tool=call.name,
                call_id=call.id,
                attempt=attempt + 1,
                sleep_s=round(sleep, 3),
                error=outcome.error_kind,
                left_s=round(budget_end - now, 3),
            )
            time.sleep(sleep)
            attempt += 1
        if attempt > 1 and not outcome.ok:
            outcome = dataclasses.replace(
                outcome,
                message=f"{outcome.message} (after {attempt} attempts)",
                duration=time.monotonic() - first,
            )
        return outcome

    def submit(
        self,
        call: CallLike,
        *,
        deadline: float | None = None,
        timeout: float | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> PendingCall:
        """Start a call and return at once; collect its outcome later.

        Args:
            call: the call, in any form :meth:`run_calls` takes.
            deadline: a ``time.monotonic()`` value no wait goes past.
            timeout: seconds the call may run, overriding the tool's own.
            on_done: called from the worker thread when the call returns (not
                when it times out); it must be quick and must not raise. A
                scheduler uses it to wake up.

        Raises:
            RuntimeClosedError: the runtime was closed.
        """
        pending = self._start(_as_call(call), deadline, timeout)
        if isinstance(pending, _Pending) and pending.item is not None:
            item = pending.item
            if on_done is not None:
                with item.guard:
                    item.on_done = on_done
                    finished = (
                        item.state != _QUEUED_STATE and item.state != _RUNNING_STATE
                    )
                if finished:
                    on_done()
        elif on_done is not None:
            on_done()
        return PendingCall(self, pending)

    def run_plan(
        self,
        plan: Any,
        *,
        deadline: float | None = None,
        max_parallel: int | None = None,
        fail_fast: bool = False,
    ) -> PlanReport:
        """Run a plan's steps, each as soon as its dependencies succeed.

        See :func:`agentsync.run_plan`; ``deadline`` is in seconds. Returns
        its :class:`agentsync.PlanReport`.
        """
        from .scheduler import run_plan

        return run_plan(
            self,
            plan,
            deadline=deadline,
            max_parallel=max_parallel,
            fail_fast=fail_fast,
        )

    # -- the machinery -------------------------------------------------------

    def _start(
        self, call: ToolCall, deadline: float | None, timeout: float | None = None
    ) -> _Pending | Outcome:
        if self._closed:
            raise RuntimeClosedError("runtime is closed; it accepts no more calls")
        next(self._calls)
        t = self._tools.get(call.name)
        if t is None:
            return Outcome.failure(
                call, "unknown_tool", self._unknown_message(call.name)
            )
        try:
            kwargs = t.validate(call.input)
        except pydantic.ValidationError as exc:
            return Outcome.failure(
                call, "invalid_input", _invalid_message(t, exc), 0.0, exc
            )

        if timeout is not None:
            timeout = _check_seconds(timeout, "timeout")
        limit = timeout or t.timeout or self.default_timeout
        ctx = ToolContext(call_id=call.id, tool=t.name, runtime=self, deadline=deadline)
        if t.on_timeout == "interrupt":
            ctx._gate = InterruptGate()
        pending = _Pending(call, t, ctx, limit, deadline)
        info = {"tool": t.name, "call_id": call.id}
        hooked = None
        if self._hooks:
            try:
                hooked = [(hook, hook.capture()) for hook in self._hooks]
            except Exception as exc:  # noqa: BLE001 - becomes the outcome
                message = f"a call hook failed before tool {t.name!r} started: {exc!r}"
                return Outcome.failure(call, "exception", message, 0.0, exc)
        try:
            pending.item = self._executor._start(
                self._invoke,
                (t, ctx, kwargs, hooked),
                on_start=pending.on_start,
                info=info,
            )
        except ExecutorOverloaded as exc:
            return Outcome.failure(call, "overloaded", str(exc), 0.0, exc)
        except RuntimeClosedError:
            raise RuntimeClosedError(
                "runtime is closed; it accepts no more calls"
            ) from None
        return pending

    def _invoke(
        self,
        t: Tool,
        ctx: ToolContext,
        kwargs: dict[str, Any],
        hooked: list[tuple[CallHook, Any]] | None = None,
    ) -> Any:
        """Run in a worker, inside a copy of the caller's context."""
        _current.set(ctx)
        started = time.monotonic()
        if ctx.deadline is not None and started >= ctx.deadline:
            raise ToolCancelled(
                f"call {ctx.call_id} reached its deadline before starting"
            )
        debug = _debug_enabled()
        if debug:
            _log.debug("tool.start", tool=t.name, call_id=ctx.call_id)
        # The waiter reports a call stuck at its timeout (see _late); the
        # watchdog is needed here only for a stuck_after before that.
        watch = None
        if (
            t.stuck_after is not None
            and self.watchdog is not None
            and (ctx.deadline is None or started + t.stuck_after < ctx.deadline)
        ):
            watch = self.watchdog.watch(
                t.name, t.stuck_after, info={"tool": t.name, "call_id": ctx.call_id}
            )
            ctx._watched = True
        error: str | None = "BaseException"
        self._active.add(ctx)
        try:
            if hooked is not None:
                value = self._invoke_hooked(t, ctx, kwargs, hooked)
            elif t.locks:
                value = self._invoke_locked(t, ctx, kwargs)
            else:
                value = self._body(t, ctx, kwargs)
            error = None
            return value
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            self._active.discard(ctx)
            if watch is not None:
                watch.done()
            if debug:
                _log.debug(
                    "tool.end",
                    tool=t.name,
                    call_id=ctx.call_id,
                    status="ok" if error is None else "error",
                    error=error,
                    duration_ms=round((time.monotonic() - started) * 1000, 2),
                )

    def _invoke_hooked(
        self,
        t: Tool,
        ctx: ToolContext,
        kwargs: dict[str, Any],
        hooked: list[tuple[CallHook, Any]],
    ) -> Any:
        """Run a tool inside the context managers of the runtime's hooks."""
        with ExitStack() as stack:
            for hook, state in hooked:
                stack.enter_context(hook.wrap(state, ctx))
            if t.locks:
                return self._invoke_locked(t, ctx, kwargs)
            return self._body(t, ctx, kwargs)

    def _invoke_locked(self, t: Tool, ctx: ToolContext, kwargs: dict[str, Any]) -> Any:
        """Run a tool holding the locks it declared, taken in canonical order.

        The call is the locks' owner in diagnostics, and its deadline bounds
        the acquisition and any lock the tool takes itself from the registry.
        A timed-out (abandoned) call keeps its locks until it really returns:
        releasing them under a running tool would be unsafe, so later callers
        get ``lock_timeout`` naming it as the holder.
        """
        locks = self.locks
        gate = ctx._gate
        if gate is None:
            with locks.owner(
                f"tool {t.name} call {ctx.call_id}", deadline=ctx.deadline
            ):
                # While this is set, a waiter that gives up reports lock_timeout.
                ctx._waiting_locks = t.locks
                with locks.acquire(*t.locks, deadline=ctx.deadline):
                    ctx._waiting_locks = ()
                    return self._body(t, ctx, kwargs)

        # An interrupt must not land in the registry's bookkeeping: shield
        # taking and releasing the locks, and open the shield for the body.
        gate.shield()
        try:
            with locks.owner(
                f"tool {t.name} call {ctx.call_id}", deadline=ctx.deadline
            ):
                ctx._waiting_locks = t.locks
                with locks.acquire(*t.locks, deadline=ctx.deadline):
                    ctx._waiting_locks = ()
                    try:
                        gate.unshield()
                        return self._body(t, ctx, kwargs)
                    finally:
                        gate.shield()
        finally:
            gate.unshield(deliver=False)

    def _body(self, t: Tool, ctx: ToolContext, kwargs: dict[str, Any]) -> Any:
        """Run the tool's own code; the outermost call's gate is open meanwhile."""
        gate = ctx._gate
        if gate is None or len(ctx.chain) > 1:
            return t.invoke(ctx, kwargs)
        gate.open()
        try:
            return t.invoke(ctx, kwargs)
        finally:
            gate.close()

    def _lock_wait_message(
        self, tool: str, names: tuple[str, ...], waited: float
    ) -> str:
        holders = []
        for view in self.locks.snapshot():
            if view.name in names and view.holder is not None:
                holders.append(
                    f"lock {view.name!r} is held by {view.holder.describe()} "
                    f"since {view.holder.age:.1f} s"
                )
        held = "; ".join(holders) or "the locks were busy"
        return (
            f"tool {tool!r} could not take its locks {list(names)} within "
            f"{waited:.1f} s: {held}. The tool did not run."
        )

    def _finish(self, pending: _Pending | Outcome) -> Outcome:
        if isinstance(pending, Outcome):
            return pending
        item = pending.item
        assert item is not None

        # One wait in the common case: a call that starts at once has its
        # deadline at submission + timeout. A call that queued first gets the
        # rest of its time once the first wait ends (the worker sets the real
        # deadline, counted from its start, in ctx.deadline).
        limit = _earliest(pending.submitted + pending.timeout, pending.deadline)
        while not item.wait(max(0.0, limit - time.monotonic())):
            if item.state == _CANCELLED_STATE:
                return Outcome.failure(
                    pending.call,
                    "cancelled",
                    f"tool {pending.call.name!r} did not start: the runtime was closed",
                )
            if item.state == _QUEUED_STATE:
                if self._executor.abandon(item):
                    return self._late(pending, queued=True)
                continue
            end = pending.ctx.deadline
            if end is not None and end > limit:
                limit = end
                continue
            if self._executor.abandon(item):
                return self._late(pending, queued=False)
        return self._outcome_of(pending, item)

    def _late(self, pending: _Pending, *, queued: bool, ended: bool = False) -> Outcome:
        """The outcome of a call its caller stopped waiting for."""
        pending.ctx.cancel()
        call, now = pending.call, time.monotonic()
        item = pending.item
        if not queued and not ended and item is not None:
            if pending.ctx._gate is not None:
                sent = pending.ctx._gate.send()
                _log.warning(
                    "tool.interrupted",
                    tool=call.name,
                    call_id=call.id,
                    thread=item.thread.name if item.thread else None,
                    delivered=sent,
                )
            # A process tool's thread only waits for its child, which is being
            # killed: its stack says nothing an operator can use.
            if self.watchdog is not None and pending.tool.on_timeout != "process":
                self._hand_to_watchdog(pending, item, now)
        with self._stats_lock:
            self._timeouts += 1
        started = (
            item.started if item is not None and item.started else pending.submitted
        )
        by_deadline = (
            pending.deadline is not None
            and pending.deadline <= now + 1e-4
            and (queued or started + pending.timeout > pending.deadline)
        )
        waiting_for = pending.ctx._waiting_locks
        if queued and by_deadline:
            kind: ErrorKind = "deadline"
            message = (
                f"tool {call.name!r} did not start: its deadline passed while it "
                f"waited {now - pending.submitted:.1f} s for a free worker"
            )
        elif queued:
            kind = "overloaded"
            message = (
                f"tool {call.name!r} did not start: every worker stayed busy "
                f"for {now - pending.submitted:.1f} s"
            )
        elif waiting_for:
            # The tool never got its locks, so its body never ran.
            kind = "lock_timeout"
            message = self._lock_wait_message(call.name, waiting_for, now - started)
        elif by_deadline:
            kind = "deadline"
            message = (
                f"tool {call.name!r} was still running when its deadline passed; "
                "its result is lost. Do not retry the same call."
            )
        else:
            kind = "timeout"
            fate = (
                "its process was killed"
                if pending.tool.on_timeout == "process"
                else "was abandoned"
            )
            message = (
                f"tool {call.name!r} did not answer within {pending.timeout:g} s and "
                f"{fate}. Do not retry the same call; try another approach."
            )
            if not pending.tool.idempotent:
                message += " Its outcome is unknown: it may still take effect."
        _log.warning(
            "tool.timeout",
            tool=call.name,
            call_id=call.id,
            kind=kind,
            timeout_s=pending.timeout,
            overshoot_ms=round((now - (pending.ctx.deadline or now)) * 1000, 2),
        )
        return Outcome.failure(call, kind, message, now - started)

    def _hand_to_watchdog(self, pending: _Pending, item: _WorkItem, now: float) -> None:
        """Report a timed-out call as stuck, with its stack, and follow its thread."""
        thread, watchdog = item.thread, self.watchdog
        if thread is None or watchdog is None:
            return
        info: dict[str, Any] = {"tool": pending.call.name, "call_id": pending.call.id}
        if self._locks is not None:
            # A hung call keeps its locks; say which, so an operator sees why
            # other calls time out on them.
            info["locks_held"] = [
                view.name
                for view in self._locks.snapshot()
                if view.holder is not None and view.holder.thread_id == thread.ident
            ]
        watch = None
        if not pending.ctx._watched:
            watch = watchdog.watch(
                pending.tool.name,
                max((pending.ctx.deadline or now) - item.started, 1e-6),
                thread=thread,
                info=info,
                started=item.started,
            )
        tracked = watchdog.track_abandoned(thread, info, abandoned_at=now)

        def finished() -> None:
            if watch is not None:
                watch.done()
            tracked.finished()

        with item.guard:
            seen = item.on_late is _late_seen
            if not seen:
                item.on_late = finished
        if seen:
            finished()

    def _outcome_of(self, pending: _Pending, item: _WorkItem) -> Outcome:
        call = pending.call
        duration = item.finished - item.started
        error = item.error
        if error is None:
            return Outcome.success(call, item.value, duration)
        end = pending.ctx.deadline
        if (
            end is not None
            and item.finished >= end
            and isinstance(error, (ToolCancelled, TimeoutError, asyncio.TimeoutError))
        ):
            # The tool gave up at its own deadline (an async tool's wait_for,
            # ctx.check()) before this waiter got to it: still a timeout. Its
            # thread has moved on, so there is nothing to interrupt or watch.
            return self._late(pending, queued=False, ended=True)
        return _failure_of(call, error, duration, pending.tool)

    def _call_nested(
        self,
        parent: ToolContext,
        name: str,
        input: dict[str, Any],
        call_id: str | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> Outcome:
        """Run a tool called from inside another tool, inline in its thread."""
        call = ToolCall(name, input, call_id or f"{parent.call_id}/{name}")
        if name in parent.chain:
            path = " -> ".join((*parent.chain, name))
            return Outcome.failure(
                call, "circular_call", f"circular tool call {path}; it would never end"
            )
        if len(parent.chain) >= self.max_depth:
            path = " -> ".join((*parent.chain, name))
            return Outcome.failure(
                call,
                "circular_call",
                f"tool call depth {len(parent.chain) + 1} passes max_depth="
                f"{self.max_depth}: {path}",
            )
        t = self._tools.get(name)
        if t is None:
            return Outcome.failure(call, "unknown_tool", self._unknown_message(name))
        try:
            kwargs = t.validate(input)
        except pydantic.ValidationError as exc:
            return Outcome.failure(
                call, "invalid_input", _invalid_message(t, exc), 0.0, exc
            )

        limit = timeout or t.timeout or self.default_timeout
        ctx = ToolContext(
            call_id=call.id,
            tool=name,
            runtime=self,
            deadline=_earliest(
                _earliest(time.monotonic() + limit, parent.deadline), deadline
            ),
            chain=(*parent.chain, name),
            cancel_event=parent._event(),
        )
        ctx._gate = parent._gate
        started = time.monotonic()
        token = _current.set(ctx)
        try:
            value = self._invoke(t, ctx, kwargs)
        except ToolInterrupted:
            if parent._gate is not None:
                raise  # meant for the outermost call, which timed out
            return _failure_of(call, ToolInterrupted(), time.monotonic() - started, t)
        except BaseException as exc:  # noqa: BLE001 - becomes the outcome
            return _failure_of(call, exc, time.monotonic() - started, t)
        finally:
            _current.reset(token)
        return Outcome.success(call, value, time.monotonic() - started)

    def _unknown_message(self, name: str) -> str:
        known = ", ".join(sorted(self._tools)) or "none"
        return f"unknown tool {name!r}; the tools are: {known}"

    # -- lifecycle -----------------------------------------------------------

    def stats(self) -> RuntimeStats:
        """Return a snapshot of the workers and the calls so far."""
        with self._stats_lock:
            # A count's repr is "count(N)": reading it does not advance it.
            calls, timeouts = int(repr(self._calls)[6:-1]), self._timeouts
        return RuntimeStats(
            self._executor.statistics(), calls, timeouts, len(self._tools)
        )

    def close(self, timeout: float = 5.0) -> None:
        """Refuse new calls, cancel running ones, wait up to ``timeout`` s for them.

        Running calls see the cancellation through ``ctx.cancelled``,
        ``ctx.check()`` and ``ctx.wait()``; a call that looks at none of them
        runs on. Hung (abandoned) calls are never waited for.
        """
        if self._closed:
            return
        self._closed = True
        # Queued calls first, so none starts in a worker that a cancelled
        # call just freed; list() copies the set in one step.
        self._executor.shutdown(wait=False, cancel_futures=True)
        for ctx in list(self._active):
            ctx.cancel()
        self._executor.shutdown(wait=True, timeout=timeout)

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class PendingCall:
    """A call started by :meth:`Runtime.submit`.

    Attributes:
        call: the :class:`ToolCall`.
    """

    __slots__ = ("_runtime", "_pending", "_outcome", "call")

    def __init__(self, runtime: Runtime, pending: _Pending | Outcome) -> None:
        self._runtime = runtime
        self._pending = pending
        self._outcome: Outcome | None = (
            pending if isinstance(pending, Outcome) else None
        )
        self.call = pending.call if isinstance(pending, _Pending) else _call_of(pending)

    def done(self) -> bool:
        """True when the outcome can be had without waiting."""
        if self._outcome is not None:
            return True
        item = self._pending.item  # type: ignore[union-attr]
        return (
            item is not None
            and item.state != _QUEUED_STATE
            and item.state != _RUNNING_STATE
        )

    def expires(self) -> float:
        """The ``time.monotonic()`` value past which :meth:`outcome` gives up.

        It may move later once, when a queued call starts and its timeout
        starts counting.
        """
        if self._outcome is not None:
            return 0.0
        pending = self._pending
        assert isinstance(pending, _Pending)
        end = pending.ctx.deadline
        if end is None or pending.item is None or pending.item.state == _QUEUED_STATE:
            return _earliest(pending.submitted + pending.timeout, pending.deadline)
        return end

    def outcome(self) -> Outcome:
        """Wait for the call (until its timeout at most) and return its outcome."""
        if self._outcome is None:
            self._outcome = self._runtime._finish(self._pending)
        return self._outcome


class _RetryingCall:
    """A call with a retry policy, driven by a thread of its own in run_calls.

    The driver only waits and sleeps; the attempts run on the pool. A thread
    per retrying call keeps one call's backoff from delaying the others.
    """

    def __init__(
        self, runtime: Runtime, t: Tool, call: ToolCall, deadline: float | None
    ) -> None:
        self._result: list[Outcome] = []
        self._call = call
        self._end = deadline
        self._thread = threading.Thread(
            target=lambda: self._result.append(
                runtime._call_with_retries(t, call, deadline, None)
            ),
            name=f"agentsync-retry-{call.id}",
            daemon=True,
        )
        ctx = contextvars.copy_context()
        self._thread.run = functools.partial(ctx.run, self._thread.run)  # type: ignore[method-assign]
        self._thread.start()

    def outcome(self) -> Outcome:
        # The driver ends by its own deadline; the join's bound is a backstop.
        self._thread.join(
            None if self._end is None else max(0.0, self._end - time.monotonic()) + 1.0
        )
        if self._result:
            return self._result[0]
        return Outcome.failure(
            self._call,
            "deadline",
            f"tool {self._call.name!r} did not finish its retries in time",
        )


def _call_of(outcome: Outcome) -> ToolCall:
    return ToolCall(outcome.tool, {}, outcome.call_id)


def _as_call(c: CallLike) -> ToolCall:
    """Make a ToolCall of the forms run_calls takes, or say what is wrong."""
    if isinstance(c, ToolCall):
        return c
    name: Any = None
    data: Any = None
    call_id: Any = None
    if isinstance(c, tuple) and len(c) in (1, 2):
        name, data = c[0], c[1] if len(c) == 2 else None
    elif isinstance(c, Mapping):
        name, data, call_id = c.get("name"), c.get("input"), c.get("id")
    elif getattr(c, "name", None) is not None:  # an SDK ToolUseBlock
        name = getattr(c, "name", None)
        data, call_id = getattr(c, "input", None), getattr(c, "id", None)
    if not isinstance(name, str) or not isinstance(data, (Mapping, type(None))):
        raise TypeError(
            "a call is a ToolCall, a (name, input) pair or a mapping with 'name' "
            f"and 'input'; input must be a mapping. Got {c!r}"
        )
    if call_id is None:
        return ToolCall(name, dict(data or {}))
    return ToolCall(name, dict(data or {}), str(call_id))


def _invalid_message(t: Tool, exc: pydantic.ValidationError) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "(input)"
        problems.append(f"{where}: {err.get('msg')}")
    return f"invalid input for tool {t.name!r}: " + "; ".join(problems)


def _failure_of(
    call: ToolCall, error: BaseException, duration: float, tool: Tool | None = None
) -> Outcome:
    kind: ErrorKind
    if (
        tool is not None
        and not tool.idempotent
        and not isinstance(error, (LockTimeout, LockOrderError, ToolCancelled))
        and is_unknown_outcome(error)
    ):
        detail = str(error)
        return Outcome.failure(
            call,
            "unknown_outcome",
            f"tool {call.name!r} lost its connection ({type(error).__name__}"
            + (f": {detail}" if detail else "")
            + "); the outcome is unknown: it may or may not have taken effect. It "
            "was not retried because it is not declared idempotent; check whether "
            "it took effect before calling it again.",
            duration,
            error,
        )
    if isinstance(error, ToolError):
        kind, message = "exception", str(error) or f"tool {call.name!r} failed"
    elif isinstance(error, ToolCancelled):
        kind, message = "cancelled", str(error)
    elif isinstance(error, LockTimeout):
        kind, message = "lock_timeout", str(error)
    elif isinstance(error, LockOrderError):
        kind, message = "lock_order", str(error)
    else:
        kind = "exception"
        detail = str(error)
        message = f"tool {call.name!r} raised {type(error).__name__}" + (
            f": {detail}" if detail else ""
        )
        _log.warning(
            "tool.error",
            tool=call.name,
            call_id=call.id,
            error=type(error).__name__,
            exc_info=error
            if not isinstance(error, (SystemExit, KeyboardInterrupt))
            else None,
        )
    return Outcome.failure(call, kind, message, duration, error)
