"""The eager scheduler: run a plan's steps, each as soon as it can start.

A step starts the moment its last dependency succeeds, not when its whole
stage is done, so a slow step holds back only the steps that need its output.
The scheduler is the calling thread: it hands steps to the runtime with
:meth:`Runtime.submit`, and sleeps on one queue until a call returns (the
worker wakes it) or the earliest timeout among the running calls passes.
"""

from __future__ import annotations

import contextvars
import heapq
import math
import queue
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import structlog

from ._refs import RefMissing, follow, jsonable, resolve
from .errors import PlanError, RuntimeClosedError
from .plans import Plan, validate_plan
from .runtime import PendingCall, Runtime, _current
from .tools import ErrorKind, Outcome, ToolCall

if TYPE_CHECKING:
    from ._refs import Ref
    from .context import ToolContext

__all__ = ["PlanReport", "StepResult", "run_plan"]

_log = structlog.get_logger("agentsync.plans")

StepStatus = Literal["ok", "failed", "skipped"]

# The tools whose calls are running plans, from the outermost: a step that
# would call one of them again would start the same plan inside itself.
_plan_chain: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "agentsync_plan_chain", default=()
)


@dataclass(frozen=True)
class StepResult:
    """What happened to one step of a plan.

    Attributes:
        id: the step's id.
        tool: the step's tool.
        status: ``"ok"``, ``"failed"`` (it ran, or was refused, and failed)
            or ``"skipped"`` (it never ran: see ``outcome.error_kind``).
        outcome: the call's :class:`Outcome`; a skipped step's has error kind
            ``dependency_failed``, ``cancelled`` or ``deadline``.
        input: the input the tool got, ``$ref``s resolved; None if not run.
        started: the ``time.monotonic()`` value when the step was handed to
            the runtime, or None if it never was.
        ended: the ``time.monotonic()`` value when its outcome was known.
        start: ``started`` in seconds from the plan's start.
        end: ``ended`` in seconds from the plan's start.
    """

    id: str
    tool: str
    status: StepStatus
    outcome: Outcome
    input: Mapping[str, Any] | None = field(default=None, repr=False)
    started: float | None = field(default=None, repr=False)
    ended: float | None = field(default=None, repr=False)
    start: float | None = None
    end: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def value(self) -> Any:
        """The tool's return value, or None."""
        return self.outcome.value

    @property
    def duration(self) -> float | None:
        """Seconds from handing the step to the runtime to its outcome."""
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started


@dataclass(frozen=True)
class PlanReport:
    """The outcome of every step of a plan, and how the run went.

    Attributes:
        plan: the plan that ran.
        steps: one :class:`StepResult` per step, in the plan's order.
        started: the ``time.monotonic()`` value when the plan started.
        ended: the ``time.monotonic()`` value when the last outcome was known.
        critical_path: the chain of steps that determined the makespan: the
            step that ended last, the dependency it waited for last, and so
            on back to a step with no dependency.
        stopped: why steps were left unstarted: ``"fail_fast"``,
            ``"deadline"``, ``"closed"`` (the runtime), or None.
    """

    plan: Plan
    steps: tuple[StepResult, ...]
    started: float
    ended: float
    critical_path: tuple[str, ...]
    stopped: Literal["fail_fast", "deadline", "closed"] | None = None
    outputs: Mapping[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values = {s.id: s.outcome.value for s in self.steps if s.status == "ok"}
        object.__setattr__(self, "outputs", MappingProxyType(values))

    @property
    def makespan(self) -> float:
        """Seconds from the plan's start to its last outcome."""
        return self.ended - self.started

    @property
    def ok(self) -> bool:
        """True when every step succeeded."""
        return all(s.status == "ok" for s in self.steps)

    def __getitem__(self, step_id: str) -> StepResult:
        return self.steps[self.plan._index[step_id]]

    def __iter__(self) -> Iterator[StepResult]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def counts(self) -> dict[str, int]:
        """How many steps are ok, failed and skipped."""
        counts = {"ok": 0, "failed": 0, "skipped": 0}
        for s in self.steps:
            counts[s.status] += 1
        return counts

    def summary(self) -> str:
        """A table of the steps, for people: status, times, errors."""
        counts = self.counts()
        head = (
            f"plan: {len(self.steps)} steps, {counts['ok']} ok, {counts['failed']} "
            f"failed, {counts['skipped']} skipped, in {self.makespan:.3f} s"
        )
        if self.stopped:
            head += f" (stopped: {self.stopped})"
        lines = [head]
        if self.critical_path:
            lines.append("critical path: " + " -> ".join(self.critical_path))
        width = max(4, *(len(s.id) for s in self.steps))
        tool_width = max(4, *(len(s.tool) for s in self.steps))
        lines.append(
            f"  {'step':<{width}}  {'tool':<{tool_width}}  {'status':<26}"
            f"  {'start':>8}  {'end':>8}"
        )
        for s in self.steps:
            status = s.status if s.ok else f"{s.status} ({s.outcome.error_kind})"
            start = "-" if s.start is None else f"{s.start:.3f}"
            end = "-" if s.end is None else f"{s.end:.3f}"
            line = (
                f"  {s.id:<{width}}  {s.tool:<{tool_width}}  {status:<26}"
                f"  {start:>8}  {end:>8}"
            )
            if not s.ok:
                line += f"  {s.outcome.message}"
            lines.append(line)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data: per step, status and value or error."""
        steps: dict[str, Any] = {}
        for s in self.steps:
            entry: dict[str, Any] = {"status": s.status}
            if s.ok:
                entry["value"] = jsonable(s.outcome.value)
            else:
                entry["error_kind"] = s.outcome.error_kind
                entry["error"] = s.outcome.message
            steps[s.id] = entry
        return {
            "ok": self.ok,
            "makespan_s": round(self.makespan, 4),
            "steps": steps,
        }


def run_plan(
    runtime: Runtime,
    plan: Plan | Any,
    *,
    deadline: float | None = None,
    max_parallel: int | None = None,
    fail_fast: bool = False,
) -> PlanReport:
    """Run a plan's steps on a runtime, each as soon as its dependencies succeed.

    Each step is a normal tool call through :meth:`Runtime.submit` (its
    tool's timeout and locks), started once every step it depends on has succeeded, its ``$ref``s
    replaced by those steps' outputs. A step whose dependency failed is not
    run: it and the steps after it are reported as skipped with
    ``dependency_failed``, naming the step that failed; independent steps
    carry on. A ``$ref`` path missing from the actual output fails its step
    with ``invalid_input`` and no tool call.

    Called from inside a tool running on ``runtime`` (a tool that runs a
    plan, such as :func:`agentsync.plans.plan_tool`), the steps run on a
    private, short-lived pool of ``max_parallel`` threads sharing the
    runtime's tools and locks: queued behind the pool's own busy workers, the
    calling tool among them, they could only time out. The plan then ends a
    tenth of the time left (at most 0.5 s) before the calling tool's own
    deadline, so that the tool can still return the report, and a step may
    not call a tool that is already running this plan (``circular_call``).

    A timeout means the plan stops waiting: a step past its timeout, or
    running when the plan's deadline passes, gets a ``timeout`` or
    ``deadline`` outcome, and its thread is abandoned, not killed.

    Args:
        runtime: the runtime whose tools the steps call.
        plan: a :class:`Plan`, or anything :func:`validate_plan` takes (it is
            then validated against the runtime's tools).
        deadline: seconds the whole plan may take; steps not started by then
            are skipped with ``deadline``. No limit by default (each step
            still has its tool's timeout).
        max_parallel: the most steps running at once; by default the
            runtime's ``max_workers``, so that no step waits in the queue.
        fail_fast: once a step fails, start no new step; the running ones
            finish and the rest are skipped with ``cancelled``.

    Returns:
        The :class:`PlanReport`, whatever happened to the steps.

    Raises:
        PlanError: the plan is invalid, or names tools the runtime lacks.
        ValueError: a bad ``deadline`` or ``max_parallel``.
    """
    if not isinstance(plan, Plan):
        plan = validate_plan(plan, runtime.tools)
    else:
        tools = runtime.tools
        missing = sorted({s.tool for s in plan.steps if s.tool not in tools})
        if missing:
            known = ", ".join(sorted(tools)) or "none"
            raise PlanError(
                [f"unknown tool {name!r}; the tools are: {known}" for name in missing]
            )
    end = None
    if deadline is not None:
        if (
            isinstance(deadline, bool)
            or not isinstance(deadline, (int, float))
            or not math.isfinite(deadline)
            or deadline <= 0
        ):
            raise ValueError(
                f"deadline must be a positive number of seconds, got {deadline!r}"
            )
        end = time.monotonic() + deadline
    if max_parallel is not None and (
        isinstance(max_parallel, bool)
        or not isinstance(max_parallel, int)
        or max_parallel < 1
    ):
        raise ValueError(
            f"max_parallel must be an int of at least 1, got {max_parallel!r}"
        )

    current = _current.get()
    chain = _plan_chain.get()
    if current is not None:
        chain = (*chain, *current.chain)
    if current is not None and current.runtime is runtime:
        return _run_inside(runtime, plan, current, end, max_parallel, fail_fast, chain)
    limit = max_parallel or runtime.stats().workers.max_workers
    return _Scheduler(runtime, plan, end, limit, fail_fast, chain, "").run()


def _run_inside(
    runtime: Runtime,
    plan: Plan,
    current: ToolContext,
    end: float | None,
    max_parallel: int | None,
    fail_fast: bool,
    chain: tuple[str, ...],
) -> PlanReport:
    """Run a plan from a tool of ``runtime``, on a private pool.

    The pool shares the runtime's tools, locks, watchdog and call hooks; it
    is closed without waiting when the plan ends (a step abandoned at its
    timeout keeps its thread until it returns, as on any pool).
    """
    if current.deadline is not None:
        # Leave the calling tool a moment to return the report before its
        # own caller stops waiting for it.
        left = current.deadline - time.monotonic()
        inner = current.deadline - min(0.5, max(0.0, left) * 0.1)
        end = inner if end is None else min(end, inner)
    workers = max_parallel or runtime.stats().workers.max_workers
    workers = max(1, min(workers, len(plan.steps)))
    private = Runtime(
        runtime.tools.values(),
        max_workers=workers,
        default_timeout=runtime.default_timeout,
        max_depth=runtime.max_depth,
        locks=runtime.locks,
        watchdog=runtime.watchdog or False,
        hooks=runtime._hooks,
    )
    token = _plan_chain.set(chain)
    try:
        prefix = f"{current.call_id}/"
        return _Scheduler(private, plan, end, workers, fail_fast, chain, prefix).run()
    finally:
        _plan_chain.reset(token)
        private.close(timeout=0.0)


_PENDING, _RUNNING, _DONE = 0, 1, 2


class _Scheduler:
    """One run of a plan; every method runs in the calling thread."""

    def __init__(
        self,
        runtime: Runtime,
        plan: Plan,
        end: float | None,
        limit: int,
        fail_fast: bool,
        chain: tuple[str, ...],
        prefix: str,
    ) -> None:
        self.runtime = runtime
        self.plan = plan
        self.end = end
        self.limit = limit
        self.fail_fast = fail_fast
        self.chain = chain
        self.prefix = prefix
        n = len(plan.steps)
        self.state = [_PENDING] * n
        self.waiting = [len(d) for d in plan._deps]
        self.outcomes: list[Outcome | None] = [None] * n
        self.inputs: list[Mapping[str, Any] | None] = [None] * n
        self.started: list[float | None] = [None] * n
        self.ended: list[float | None] = [None] * n
        self.outputs: dict[int, Any] = {}
        self.rank = _ranks(plan)
        self.ready = [(self.rank[i], i) for i in range(n) if not self.waiting[i]]
        heapq.heapify(self.ready)
        self.running: dict[int, PendingCall] = {}
        self.expiries: list[tuple[float, int]] = []
        self.wakeups: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.stopped: Literal["fail_fast", "deadline", "closed"] | None = None

    def run(self) -> PlanReport:
        plan = self.plan
        begin = time.monotonic()
        _log.info(
            "plan.start",
            steps=len(plan.steps),
            stages=len(plan.stages),
            max_parallel=self.limit,
            deadline_s=None if self.end is None else round(self.end - begin, 3),
        )
        running, expiries, wakeups = self.running, self.expiries, self.wakeups
        while True:
            self._start_ready()
            if not running:
                break

            # Sleep until a call returns, or the earliest timeout among the
            # running calls (each has an entry; those of calls already
            # collected are dropped on the way).
            while expiries[0][1] not in running:
                heapq.heappop(expiries)
            wake = expiries[0][0]
            if self.end is not None and self.end < wake:
                wake = self.end
            try:
                index = wakeups.get(timeout=max(0.0, wake - time.monotonic()))
            except queue.Empty:
                pass
            else:
                self._collect(index)
                while True:
                    try:
                        index = wakeups.get_nowait()
                    except queue.Empty:
                        break
                    self._collect(index)

            now = time.monotonic()
            while expiries and expiries[0][0] <= now:
                _, index = heapq.heappop(expiries)
                call = running.get(index)
                if call is None:
                    continue
                later = call.expires()
                if later > now:
                    # It waited in the queue and its timeout counts from its
                    # start: wait for it until then.
                    heapq.heappush(expiries, (later, index))
                    continue
                # Limit: a call that leaves the queue between expires() and
                # here gets its whole timeout inside outcome(), and this
                # thread waits with it; only a pool shared with other callers
                # queues a step at all.
                self._collect(index)
            if self.end is not None and now >= self.end and self.stopped is None:
                self.stopped = "deadline"
        return self._report(begin)

    # -- starting --------------------------------------------------------------

    def _start_ready(self) -> None:
        ready, running = self.ready, self.running
        while ready and len(running) < self.limit and self.stopped is None:
            if self.end is not None and time.monotonic() >= self.end:
                self.stopped = "deadline"
                return
            self._start(heapq.heappop(ready)[1])

    def _start(self, index: int) -> None:
        step = self.plan.steps[index]
        call_id = self.prefix + step.id
        now = time.monotonic()
        self.started[index] = now
        data = step.input
        if self.plan._has_refs[index]:
            try:
                data = resolve(step.input, self._lookup)
            except RefMissing as exc:
                call = ToolCall(step.tool, {}, call_id)
                self._finish(index, Outcome.failure(call, "invalid_input", str(exc)))
                return
        self.inputs[index] = data
        call = ToolCall(step.tool, data, call_id)
        if step.tool in self.chain:
            path = " -> ".join((*self.chain, step.tool))
            message = f"circular tool call {path}: the step would run this plan again"
            self._finish(index, Outcome.failure(call, "circular_call", message))
            return
        try:
            pending = self.runtime.submit(
                call, deadline=self.end, on_done=_Waker(self.wakeups, index)
            )
        except RuntimeClosedError as exc:
            self.stopped = "closed"
            self._finish(index, Outcome.failure(call, "cancelled", str(exc)))
            return
        self.state[index] = _RUNNING
        self.running[index] = pending
        heapq.heappush(self.expiries, (pending.expires(), index))

    def _lookup(self, ref: Ref) -> Any:
        index = self.plan._index[ref.step]
        output = self.outputs.get(index, _UNSET)
        if output is _UNSET:
            output = self.outputs[index] = jsonable(self.outcomes[index].value)  # type: ignore[union-attr]
        return follow(output, ref)

    # -- finishing -------------------------------------------------------------

    def _collect(self, index: int) -> None:
        call = self.running.pop(index, None)
        if call is not None:
            self._finish(index, call.outcome())

    def _finish(self, index: int, outcome: Outcome) -> None:
        self.state[index] = _DONE
        self.outcomes[index] = outcome
        self.ended[index] = time.monotonic()
        if outcome.ok:
            waiting, ready = self.waiting, self.ready
            for j in self.plan._dependents[index]:
                waiting[j] -= 1
                if not waiting[j] and self.state[j] == _PENDING:
                    heapq.heappush(ready, (self.rank[j], j))
            return
        step = self.plan.steps[index]
        _log.warning(
            "plan.step_failed",
            step=step.id,
            tool=step.tool,
            error_kind=outcome.error_kind,
            message=outcome.message,
        )
        self._skip_after(index, outcome)
        if self.fail_fast and self.stopped is None:
            self.stopped = "fail_fast"

    def _skip_after(self, failed: int, outcome: Outcome) -> None:
        """Mark every step that depends on ``failed``, directly or not, skipped."""
        steps, state = self.plan.steps, self.state
        name = steps[failed].id
        why = f"step {name!r}, which failed ({outcome.error_kind})"
        stack = [(j, failed) for j in self.plan._dependents[failed]]
        while stack:
            index, via = stack.pop()
            if state[index] != _PENDING:
                continue
            if via == failed:
                message = f"not run: it depends on {why}"
            else:
                message = (
                    f"not run: it depends on step {steps[via].id!r}, which was not "
                    f"run because of {why}"
                )
            self._skip(index, "dependency_failed", message)
            stack.extend((j, index) for j in self.plan._dependents[index])

    def _skip(self, index: int, kind: ErrorKind, message: str) -> None:
        step = self.plan.steps[index]
        call = ToolCall(step.tool, {}, self.prefix + step.id)
        self.state[index] = _DONE
        self.outcomes[index] = Outcome.failure(call, kind, message)

    # -- the report --------------------------------------------------------------

    def _report(self, begin: float) -> PlanReport:
        plan, state = self.plan, self.state
        reason = {
            "fail_fast": (
                "cancelled",
                "not run: a step failed and fail_fast stops the plan",
            ),
            "deadline": ("deadline", "not run: the plan's deadline passed first"),
            "closed": ("cancelled", "not run: the runtime was closed"),
        }
        for index in range(len(plan.steps)):
            if state[index] == _PENDING:
                kind, message = reason[self.stopped or "closed"]
                self._skip(index, kind, message)  # type: ignore[arg-type]

        finish = max((e for e in self.ended if e is not None), default=begin)
        results = []
        for index, step in enumerate(plan.steps):
            outcome = self.outcomes[index]
            assert outcome is not None
            started, ended = self.started[index], self.ended[index]
            if outcome.ok:
                status: StepStatus = "ok"
            elif started is None:
                status = "skipped"
            else:
                status = "failed"
            results.append(
                StepResult(
                    step.id,
                    step.tool,
                    status,
                    outcome,
                    self.inputs[index],
                    started,
                    ended,
                    None if started is None else started - begin,
                    None if ended is None else ended - begin,
                )
            )
        report = PlanReport(
            plan, tuple(results), begin, finish, self._critical_path(), self.stopped
        )
        counts = report.counts()
        _log.info(
            "plan.end",
            ok=report.ok,
            steps_ok=counts["ok"],
            failed=counts["failed"],
            skipped=counts["skipped"],
            stopped=self.stopped,
            makespan_ms=round(report.makespan * 1000, 1),
        )
        return report

    def _critical_path(self) -> tuple[str, ...]:
        ended = self.ended
        last = max(
            (i for i in range(len(ended)) if ended[i] is not None),
            key=ended.__getitem__,  # type: ignore[arg-type]
            default=None,
        )
        if last is None:
            return ()
        path = [last]
        deps = self.plan._deps
        while True:
            before = [j for j in deps[path[-1]] if ended[j] is not None]
            if not before:
                break
            path.append(max(before, key=ended.__getitem__))  # type: ignore[arg-type]
        steps = self.plan.steps
        return tuple(steps[i].id for i in reversed(path))


_UNSET: Any = object()


def _ranks(plan: Plan) -> list[int]:
    """Each step's place in the ready queue: minus its longest chain of
    dependents, in steps.

    When more steps are ready than may run, those heading the longest chains
    go first (list scheduling by bottom level), which keeps the critical path
    moving; durations are unknown, so chains are counted in steps.
    """
    rank = [-1] * len(plan.steps)
    index, dependents = plan._index, plan._dependents
    for step_id in reversed(plan.order):
        i = index[step_id]
        below = dependents[i]
        if below:
            rank[i] = min([rank[j] for j in below]) - 1
    return rank


class _Waker:
    """The ``on_done`` of a step's call: tell the scheduler which step ended."""

    __slots__ = ("index", "wakeups")

    def __init__(self, wakeups: queue.SimpleQueue[int], index: int) -> None:
        self.wakeups = wakeups
        self.index = index

    def __call__(self) -> None:
        self.wakeups.put(self.index)
