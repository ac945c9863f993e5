"""Tests for agentsync.executor: the abandonable thread pool."""

from __future__ import annotations

import concurrent.futures
import contextvars
import itertools
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from conftest import recording
from structlog.testing import capture_logs

from agentsync import (
    CallAbandoned,
    ExecutorOverloaded,
    RuntimeClosedError,
    ToolExecutor,
)

request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "request_id", default="-"
)


class LogRecorder:
    """A structlog processor that keeps every event and lets a test wait for one."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self._cond = threading.Condition()

    def __call__(self, logger: Any, method_name: str, event_dict: Any) -> Any:
        with self._cond:
            self.entries.append({**event_dict, "log_level": method_name})
            self._cond.notify_all()
        raise structlog.DropEvent

    def wait_for(self, event: str, timeout: float, pool: ToolExecutor) -> bool:
        """Wait for ``event`` logged by one of ``pool``'s threads."""
        with self._cond:
            return self._cond.wait_for(lambda: bool(self.events(event, pool)), timeout)

    def events(self, event: str, pool: ToolExecutor) -> list[dict[str, Any]]:
        # Threads of earlier tests may log late; keep the lines of this pool.
        prefix = pool._prefix + "-"
        with self._cond:
            return [
                e
                for e in self.entries
                if e["event"] == event and str(e.get("thread")).startswith(prefix)
            ]


_pool_names = itertools.count(1)


def new_pool(max_workers: int, **kwargs: Any) -> ToolExecutor:
    """A pool whose thread names no other test's pool shares."""
    return ToolExecutor(
        max_workers, thread_name_prefix=f"test-pool-{next(_pool_names)}", **kwargs
    )


@pytest.fixture
def logs() -> Iterator[LogRecorder]:
    recorder = LogRecorder()
    with recording(recorder):
        yield recorder


def blocker(
    started: threading.Event, gate: threading.Event, value: Any = None
) -> Callable[[], Any]:
    """A call that says it started, then blocks until the gate opens."""

    def run() -> Any:
        started.set()
        gate.wait(30)
        return value

    return run


@pytest.fixture
def executor() -> Iterator[ToolExecutor]:
    pool = new_pool(2)
    yield pool
    pool.shutdown(wait=True, timeout=2)


class TestExecutorInterface:
    def test_submit_returns_a_future_with_the_result(
        self, executor: ToolExecutor
    ) -> None:
        """submit() runs the function and its future holds the value."""
        future = executor.submit(pow, 2, 10)

        assert future.result(timeout=5) == 1024

    def test_submit_future_carries_the_exception(self, executor: ToolExecutor) -> None:
        """An exception raised by the function is set on its future."""
        future = executor.submit(int, "not a number")

        with pytest.raises(ValueError, match="not a number"):
            future.result(timeout=5)

    def test_map_returns_results_in_input_order(self, executor: ToolExecutor) -> None:
        """map() yields results in the order of its inputs."""
        results = list(executor.map(lambda x: x * x, range(10), timeout=5))

        assert results == [x * x for x in range(10)]

    def test_is_a_concurrent_futures_executor(self, executor: ToolExecutor) -> None:
        """The pool can be used wherever an Executor is expected."""
        assert isinstance(executor, concurrent.futures.Executor)

    def test_workers_are_daemon_threads(
        self, executor: ToolExecutor, gate: threading.Event
    ) -> None:
        """Workers never keep the interpreter alive."""
        future = executor.submit(lambda: threading.current_thread().daemon)

        assert future.result(timeout=5) is True

    @pytest.mark.parametrize("bad", [0, -1, 1.5, True])
    def test_bad_max_workers_is_refused(self, bad: Any) -> None:
        """max_workers must be a positive int."""
        with pytest.raises((TypeError, ValueError)):
            ToolExecutor(bad)


class TestAbandon:
    @pytest.mark.timeout(10)
    def test_abandoned_call_fails_with_call_abandoned(
        self, executor: ToolExecutor, gate: threading.Event
    ) -> None:
        """Abandoning a running call sets CallAbandoned on its future."""
        started = threading.Event()
        future = executor.submit(blocker(started, gate))
        assert started.wait(5)

        abandoned = executor.abandon(future)

        assert abandoned is True
        with pytest.raises(CallAbandoned):
            future.result(timeout=5)
        stats = executor.statistics()
        assert stats.abandoned == 1
        assert stats.abandoned_total == 1
        assert stats.busy == 0

    @pytest.mark.timeout(10)
    def test_capacity_is_restored_while_the_hung_call_still_blocks(
        self, gate: threading.Event
    ) -> None:
        """With one worker, a new call runs while the abandoned one is still stuck."""
        pool = new_pool(1)
        started = threading.Event()
        hung = pool.submit(blocker(started, gate))
        assert started.wait(5)
        pool.abandon(hung)

        second = pool.submit(lambda: "second ran")

        assert second.result(timeout=5) == "second ran"
        assert not gate.is_set()
        stats = pool.statistics()
        assert (stats.abandoned, stats.live, stats.max_workers) == (1, 1, 1)
        gate.set()
        pool.shutdown(wait=True, timeout=2)

    @pytest.mark.timeout(10)
    def test_late_result_is_dropped_and_logged(
        self, executor: ToolExecutor, gate: threading.Event, logs: LogRecorder
    ) -> None:
        """A call returning after it was abandoned is counted and logged, not kept."""
        started = threading.Event()
        future = executor.submit(blocker(started, gate, "late value"))
        assert started.wait(5)
        executor.abandon(future)

        gate.set()

        assert logs.wait_for("tool.late_result", timeout=5, pool=executor)
        [line] = logs.events("tool.late_result", executor)
        assert line["failed"] is False
        assert len(logs.events("tool.abandoned", executor)) == 1
        stats = executor.statistics()
        assert (stats.abandoned, stats.late_results, stats.abandoned_total) == (0, 1, 1)
        assert isinstance(future.exception(timeout=1), CallAbandoned)

    @pytest.mark.timeout(10)
    def test_abandon_is_logged_with_capture_logs(
        self, executor: ToolExecutor, gate: threading.Event
    ) -> None:
        """capture_logs sees tool.abandoned from the caller's thread."""
        started = threading.Event()
        future = executor.submit(blocker(started, gate))
        assert started.wait(5)

        with capture_logs() as captured:
            executor.abandon(future)

        mine = [
            e
            for e in captured
            if str(e.get("thread")).startswith(executor._prefix + "-")
        ]
        assert [e["event"] for e in mine] == ["tool.abandoned"]
        assert mine[0]["log_level"] == "warning"
        assert mine[0]["abandoned"] == 1

    def test_abandoning_a_finished_call_returns_false(
        self, executor: ToolExecutor
    ) -> None:
        """A call that already ended cannot be abandoned and keeps its result."""
        future = executor.submit(lambda: 7)
        assert future.result(timeout=5) == 7

        assert executor.abandon(future) is False
        assert future.result(timeout=0) == 7
        assert executor.statistics().abandoned == 0

    @pytest.mark.timeout(10)
    def test_abandoning_a_queued_call_cancels_it(self, gate: threading.Event) -> None:
        """A call still waiting for a worker is cancelled and never runs."""
        pool = new_pool(1)
        started = threading.Event()
        ran = threading.Event()
        pool.submit(blocker(started, gate))
        assert started.wait(5)
        queued = pool.submit(ran.set)

        assert pool.abandon(queued) is True

        assert queued.cancelled()
        gate.set()
        pool.shutdown(wait=True, timeout=2)
        assert not ran.is_set()
        assert pool.statistics().abandoned_total == 0

    @pytest.mark.timeout(10)
    def test_submit_past_max_abandoned_raises_overloaded(
        self, gate: threading.Event
    ) -> None:
        """Once max_abandoned hung workers are alive, submit refuses new calls."""
        pool = new_pool(1, max_abandoned=1)
        started = threading.Event()
        hung = pool.submit(blocker(started, gate))
        assert started.wait(5)
        pool.abandon(hung)

        with pytest.raises(ExecutorOverloaded, match="max_abandoned=1"):
            pool.submit(lambda: None)

        gate.set()
        pool.shutdown(wait=True, timeout=2)

    @pytest.mark.timeout(10)
    def test_overload_clears_once_the_hung_call_returns(
        self, gate: threading.Event, logs: LogRecorder
    ) -> None:
        """When the abandoned call finally returns, submit accepts calls again."""
        pool = new_pool(1, max_abandoned=1)
        started = threading.Event()
        hung = pool.submit(blocker(started, gate))
        assert started.wait(5)
        pool.abandon(hung)

        gate.set()
        assert logs.wait_for("tool.late_result", timeout=5, pool=pool)

        assert pool.submit(lambda: "again").result(timeout=5) == "again"
        pool.shutdown(wait=True, timeout=2)


class TestContext:
    def test_submitter_contextvars_are_visible_in_the_worker(
        self, executor: ToolExecutor
    ) -> None:
        """A ContextVar set by the submitter is seen by the function."""
        token = request_id.set("req-42")
        try:
            future = executor.submit(request_id.get)
        finally:
            request_id.reset(token)

        assert future.result(timeout=5) == "req-42"

    def test_each_call_gets_the_context_of_its_own_submit(
        self, executor: ToolExecutor
    ) -> None:
        """Reused workers do not carry one call's context into the next."""
        results = []
        for value in ("a", "b", "c"):
            token = request_id.set(value)
            try:
                results.append(executor.submit(request_id.get))
            finally:
                request_id.reset(token)
        untouched = executor.submit(request_id.get)

        assert [f.result(timeout=5) for f in results] == ["a", "b", "c"]
        assert untouched.result(timeout=5) == "-"

    def test_worker_changes_do_not_leak_back(self, executor: ToolExecutor) -> None:
        """A ContextVar set inside the call does not change the submitter's."""
        executor.submit(request_id.set, "from worker").result(timeout=5)

        assert request_id.get() == "-"
        assert executor.submit(request_id.get).result(timeout=5) == "-"


class TestShutdown:
    def test_shutdown_refuses_new_work(self) -> None:
        """After shutdown, submit raises RuntimeClosedError."""
        pool = new_pool(2)
        assert pool.submit(lambda: 1).result(timeout=5) == 1

        pool.shutdown(wait=True, timeout=2)

        with pytest.raises(RuntimeClosedError):
            pool.submit(lambda: 2)

    @pytest.mark.timeout(10)
    def test_shutdown_does_not_wait_for_abandoned_workers(
        self, gate: threading.Event
    ) -> None:
        """shutdown(wait=True) returns at once when only abandoned calls are left."""
        pool = new_pool(1)
        started = threading.Event()
        hung = pool.submit(blocker(started, gate))
        assert started.wait(5)
        pool.abandon(hung)
        begin = time.monotonic()

        pool.shutdown(wait=True, timeout=5)

        assert time.monotonic() - begin < 1.0
        assert not gate.is_set()

    @pytest.mark.timeout(10)
    def test_shutdown_wait_is_bounded_by_its_timeout(
        self, gate: threading.Event
    ) -> None:
        """shutdown waits for a stuck live call at most its timeout."""
        pool = new_pool(1)
        started = threading.Event()
        pool.submit(blocker(started, gate))
        assert started.wait(5)
        begin = time.monotonic()

        pool.shutdown(wait=True, timeout=0.3)

        assert 0.25 <= time.monotonic() - begin < 1.3

    @pytest.mark.timeout(10)
    def test_shutdown_cancel_futures_cancels_queued_calls(
        self, gate: threading.Event
    ) -> None:
        """cancel_futures=True cancels calls that never started."""
        pool = new_pool(1)
        started = threading.Event()
        pool.submit(blocker(started, gate))
        assert started.wait(5)
        queued = pool.submit(lambda: "never")

        pool.shutdown(wait=False, cancel_futures=True)

        assert queued.cancelled()


_HANG_WITH_RUNTIME = """
import threading
import agentsync

@agentsync.tool
def hang() -> str:
    '''Block forever.'''
    threading.Event().wait()
    return "never"

rt = agentsync.Runtime([hang])
outcome = rt.call("hang", timeout=0.2)
print("STATUS=" + outcome.status, flush=True)
{close}
"""

_HANG_WITH_THREAD_POOL = """
import concurrent.futures
import threading

pool = concurrent.futures.ThreadPoolExecutor(1)
future = pool.submit(threading.Event().wait)
try:
    future.result(timeout=0.2)
except concurrent.futures.TimeoutError:
    print("STATUS=timeout", flush=True)
"""


def _run_script(source: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class TestInterpreterExit:
    @pytest.mark.timeout(30)
    @pytest.mark.parametrize("close", ["", "rt.close()"], ids=["left-open", "closed"])
    def test_process_exits_with_a_tool_hung_forever(self, close: str) -> None:
        """A script whose tool blocks forever still exits 0 once its code is done."""
        script = _HANG_WITH_RUNTIME.format(close=close)
        begin = time.monotonic()

        done = _run_script(script, timeout=20)

        assert done.returncode == 0, done.stderr
        assert "STATUS=timeout" in done.stdout
        assert time.monotonic() - begin < 15

    @pytest.mark.timeout(30)
    def test_plain_thread_pool_does_not_exit_contrast(self) -> None:
        """With ThreadPoolExecutor the same script hangs at exit: the test can fail."""
        with pytest.raises(subprocess.TimeoutExpired) as info:
            _run_script(_HANG_WITH_THREAD_POOL, timeout=3)

        output: str | bytes = info.value.stdout or b""
        if isinstance(output, bytes):
            output = output.decode()
        assert "STATUS=timeout" in output
