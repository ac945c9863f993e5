"""Tests of agentsync.watchdog: real threads, waits on events, never sleeps."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from agentsync.errors import AgentSyncError, RuntimeClosedError
from agentsync.watchdog import StuckCall, Watchdog, WatchdogUsageError

pytestmark = pytest.mark.timeout(10)

ROOT = Path(__file__).resolve().parents[1]


class _Recorder:
    """An on_stuck callback that keeps the reports and signals each label."""

    def __init__(self) -> None:
        self.calls: list[StuckCall] = []
        self._lock = threading.Lock()
        self._events: dict[str, threading.Event] = {}

    def _event(self, label: str) -> threading.Event:
        with self._lock:
            return self._events.setdefault(label, threading.Event())

    def __call__(self, call: StuckCall) -> None:
        with self._lock:
            self.calls.append(call)
        self._event(call.label).set()
        self._event(f"{call.label}#{call.report}").set()

    def wait(self, label: str, timeout: float = 5.0) -> bool:
        return self._event(label).wait(timeout)

    def labels(self) -> list[str]:
        with self._lock:
            return [c.label for c in self.calls]


class _LogEvents:
    """A structlog processor that signals each event name it sees."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, threading.Event] = {}

    def _event(self, name: str) -> threading.Event:
        with self._lock:
            return self._events.setdefault(name, threading.Event())

    def __call__(self, logger: Any, method: str, event_dict: Any) -> Any:
        self._event(event_dict["event"]).set()
        return event_dict

    def wait(self, name: str, timeout: float = 5.0) -> bool:
        return self._event(name).wait(timeout)


def _block_in_tool(release: threading.Event) -> None:
    release.wait(10)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def recorder() -> _Recorder:
    return _Recorder()


@pytest.fixture
def watchdog(recorder: _Recorder) -> Iterator[Watchdog]:
    wd = Watchdog(on_stuck=[recorder], callback_timeout=0.1)
    yield wd
    wd.close()


@pytest.fixture
def logs() -> Iterator[tuple[list[Any], _LogEvents]]:
    events = _LogEvents()
    with capture_logs(processors=[events]) as entries:
        yield entries, events


def _blocked_thread(release: threading.Event, name: str) -> threading.Thread:
    thread = threading.Thread(
        target=_block_in_tool, args=(release,), name=name, daemon=True
    )
    thread.start()
    return thread


class TestStuckReport:
    def test_stuck_call_is_reported_with_thread_tool_and_stack(
        self, watchdog: Watchdog, recorder: _Recorder, release: threading.Event
    ) -> None:
        """A call past its limit is reported with its thread, tool and stack."""
        worker = _blocked_thread(release, "worker-7")

        watchdog.watch(
            "fetch", 0.03, thread=worker, info={"tool": "fetch_url", "call_id": "c1"}
        )

        assert recorder.wait("fetch")
        call = recorder.calls[0]
        assert call.thread_name == "worker-7"
        assert call.thread_ident == worker.ident
        assert call.tool == "fetch_url"
        assert call.call_id == "c1"
        assert call.elapsed >= call.limit == 0.03
        assert call.late_by >= 0
        assert call.report == 1
        assert "_block_in_tool" in call.stack

    def test_stuck_call_is_logged_with_its_stack(
        self,
        watchdog: Watchdog,
        recorder: _Recorder,
        release: threading.Event,
        logs: tuple[list[Any], _LogEvents],
    ) -> None:
        """A stuck call is logged as tool.stuck at warning, the stack a field."""
        entries, _ = logs
        worker = _blocked_thread(release, "worker-log")

        watchdog.watch("export", 0.02, thread=worker, info={"tool": "export"})

        assert recorder.wait("export")
        stuck = [e for e in entries if e["event"] == "tool.stuck"]
        assert stuck[0]["log_level"] == "warning"
        assert stuck[0]["tool"] == "export"
        assert stuck[0]["thread_name"] == "worker-log"
        assert "_block_in_tool" in stuck[0]["stack"]

    def test_done_before_limit_is_not_reported(
        self, watchdog: Watchdog, recorder: _Recorder, release: threading.Event
    ) -> None:
        """A watch done before its limit is never reported."""
        worker = _blocked_thread(release, "worker-done")

        watchdog.watch("quick", 0.02, thread=worker).done()
        watchdog.watch("sentinel", 0.08, thread=worker)

        assert recorder.wait("sentinel")
        assert recorder.labels() == ["sentinel"]

    def test_watch_as_context_manager_on_arbitrary_code(
        self, watchdog: Watchdog, recorder: _Recorder
    ) -> None:
        """A with-block is watched on the current thread and done on exit."""
        with watchdog.watch("nightly-export", limit=0.02):
            reported = recorder.wait("nightly-export")

        assert reported
        assert recorder.calls[0].thread_name == threading.current_thread().name
        assert "test_watch_as_context_manager_on_arbitrary_code" in (
            recorder.calls[0].stack
        )
        assert watchdog.statistics().watched == 0
        assert watchdog.stuck() == ()

    def test_stuck_lists_the_calls_stuck_now(
        self, watchdog: Watchdog, recorder: _Recorder, release: threading.Event
    ) -> None:
        """stuck() and statistics() show a stuck call until it is done."""
        worker = _blocked_thread(release, "worker-stuck")
        handle = watchdog.watch("slow", 0.02, thread=worker)
        assert recorder.wait("slow")

        during = (watchdog.stuck(), watchdog.statistics())
        handle.done()
        handle.done()

        assert [c.label for c in during[0]] == ["slow"]
        assert during[1].stuck == 1 and during[1].watched == 1
        assert during[1].reported_total >= 1
        assert watchdog.stuck() == ()
        assert watchdog.statistics().watched == 0

    def test_repeated_reports_come_as_elapsed_time_doubles(
        self, watchdog: Watchdog, recorder: _Recorder, release: threading.Event
    ) -> None:
        """A call stuck for good is reported again at twice its limit."""
        worker = _blocked_thread(release, "worker-repeat")

        watchdog.watch("hung", 0.02, thread=worker)

        assert recorder.wait("hung#2")
        first, second = recorder.calls[:2]
        assert (first.report, second.report) == (1, 2)
        assert second.elapsed >= 2 * second.limit
        assert watchdog.stuck()[0].report >= 2

    def test_no_repeat_reports_once(
        self, recorder: _Recorder, release: threading.Event
    ) -> None:
        """With repeat=False a stuck call is reported only at its limit."""
        worker = _blocked_thread(release, "worker-once")
        watchdog = Watchdog(on_stuck=[recorder], repeat=False)

        try:
            watchdog.watch("once", 0.01, thread=worker)
            watchdog.watch("sentinel", 0.1, thread=worker)
            assert recorder.wait("sentinel")
        finally:
            watchdog.close()

        assert recorder.labels() == ["once", "sentinel"]

    def test_earlier_deadline_wakes_a_sleeping_watchdog(
        self, watchdog: Watchdog, recorder: _Recorder, release: threading.Event
    ) -> None:
        """A watch due before the current sleep target is detected on time."""
        worker = _blocked_thread(release, "worker-early")
        watchdog.watch("late", 60, thread=worker)

        watchdog.watch("early", 0.02, thread=worker)

        assert recorder.wait("early")
        assert recorder.calls[0].late_by < 0.5

    def test_thread_ended_without_done_is_dropped_as_leaked(
        self,
        watchdog: Watchdog,
        recorder: _Recorder,
        release: threading.Event,
        logs: tuple[list[Any], _LogEvents],
    ) -> None:
        """A watch whose thread ended without done() is logged, not reported."""
        entries, _ = logs
        ended = threading.Thread(target=lambda: None, name="worker-gone")
        ended.start()
        ended.join(5)
        worker = _blocked_thread(release, "worker-alive")

        watchdog.watch("leaked", 0.01, thread=ended)
        watchdog.watch("sentinel", 0.08, thread=worker)

        assert recorder.wait("sentinel")
        assert recorder.labels() == ["sentinel"]
        assert [
            e["label"] for e in entries if e["event"] == "watchdog.watch_leaked"
        ] == ["leaked"]


class TestArguments:
    @pytest.mark.parametrize("limit", [0, -1, math.nan, math.inf, "x", None, True])
    def test_bad_limit_raises_a_clear_error(
        self, watchdog: Watchdog, limit: Any
    ) -> None:
        """A limit that is not a positive finite number is refused by name."""
        with pytest.raises(WatchdogUsageError) as info:
            watchdog.watch("bad", limit)

        assert isinstance(info.value, AgentSyncError)
        assert isinstance(info.value, ValueError)
        assert repr(limit) in str(info.value)
        assert "positive finite" in str(info.value)

    def test_unstarted_thread_is_refused(self, watchdog: Watchdog) -> None:
        """A thread that was never started cannot be watched."""
        thread = threading.Thread(target=lambda: None, name="never-started")

        with pytest.raises(WatchdogUsageError, match="never-started"):
            watchdog.watch("x", 1, thread=thread)

    def test_closed_watchdog_refuses_watches(self) -> None:
        """watch() after close() raises RuntimeClosedError."""
        watchdog = Watchdog()

        watchdog.close()

        with pytest.raises(RuntimeClosedError):
            watchdog.watch("x", 1)

    def test_bad_callback_timeout_is_refused(self) -> None:
        """A callback_timeout that is not a positive number is refused."""
        with pytest.raises(WatchdogUsageError, match="callback_timeout"):
            Watchdog(callback_timeout=0)


class TestCallbacks:
    def test_callback_that_raises_leaves_the_watchdog_running(
        self,
        recorder: _Recorder,
        release: threading.Event,
        logs: tuple[list[Any], _LogEvents],
    ) -> None:
        """A callback that raises is logged and the next stuck call is reported."""
        entries, events = logs
        worker = _blocked_thread(release, "worker-raise")

        def explode(call: StuckCall) -> None:
            raise RuntimeError("boom")

        watchdog = Watchdog(on_stuck=[explode, recorder])
        try:
            watchdog.watch("first", 0.01, thread=worker)
            assert recorder.wait("first")
            watchdog.watch("second", 0.01, thread=worker)
            assert recorder.wait("second")
            assert events.wait("watchdog.callback_failed")
            failed = watchdog.statistics().callbacks_failed
        finally:
            watchdog.close()

        assert failed >= 2
        failure = next(e for e in entries if e["event"] == "watchdog.callback_failed")
        assert failure["log_level"] == "error"
        assert failure["label"] == "first"

    def test_callback_that_hangs_does_not_stop_other_reports(
        self,
        recorder: _Recorder,
        release: threading.Event,
        logs: tuple[list[Any], _LogEvents],
    ) -> None:
        """A hung callback is logged as slow and other reports still arrive."""
        entries, events = logs
        worker = _blocked_thread(release, "worker-hang")
        unhang = threading.Event()
        hanging = threading.Event()

        def hang_once(call: StuckCall) -> None:
            if not hanging.is_set():
                hanging.set()
                unhang.wait(10)

        watchdog = Watchdog(on_stuck=[hang_once, recorder], callback_timeout=0.05)
        try:
            watchdog.watch("first", 0.01, thread=worker)
            assert hanging.wait(5)
            watchdog.watch("second", 0.01, thread=worker)

            assert recorder.wait("second")
            assert recorder.wait("first")
            assert events.wait("watchdog.callback_slow")
            slow = watchdog.statistics().callbacks_slow
        finally:
            unhang.set()
            watchdog.close()

        assert slow == 1
        record = next(e for e in entries if e["event"] == "watchdog.callback_slow")
        assert record["label"] == "first"
        assert record["replaced"] is True
        assert "second" in [
            e.get("label") for e in entries if e["event"] == "tool.stuck"
        ]

    def test_add_callback_receives_later_reports(
        self, watchdog: Watchdog, release: threading.Event
    ) -> None:
        """A callback added after construction is called with reports."""
        worker = _blocked_thread(release, "worker-add")
        added = _Recorder()

        watchdog.add_callback(added)
        watchdog.watch("later", 0.01, thread=worker)

        assert added.wait("later")


class TestIdle:
    def test_thread_starts_lazily(self) -> None:
        """No thread runs until the first watch."""
        watchdog = Watchdog(name="lazy-watchdog")

        names = [t.name for t in threading.enumerate()]
        watchdog.close()

        assert "lazy-watchdog" not in names

    def test_idle_watchdog_is_not_woken(self) -> None:
        """An idle watchdog thread sleeps through an idle period, no wakeups."""
        watchdog = Watchdog()
        watchdog.watch("brief", 30).done()
        thread = watchdog._thread
        assert thread is not None
        before = watchdog._wakeups
        cpu_clock = time.pthread_getcpuclockid(thread.ident or 0)
        cpu_before = time.clock_gettime(cpu_clock)

        threading.Event().wait(0.3)  # deliberately let idle time pass

        wakeups = watchdog._wakeups - before
        cpu_used = time.clock_gettime(cpu_clock) - cpu_before
        watchdog.close()
        assert wakeups == 0
        assert cpu_used < 0.005

    def test_many_threads_watch_and_done_at_once(self) -> None:
        """Concurrent watch/done leaves nothing watched and the heap compacted."""
        watchdog = Watchdog()
        start = threading.Barrier(8)

        def churn() -> None:
            start.wait(5)
            for _ in range(500):
                watchdog.watch("churn", 60).done()

        threads = [threading.Thread(target=churn) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)

        stats = watchdog.statistics()
        heap_size = len(watchdog._heap)
        watchdog.close()
        assert stats.watched == 0 and stats.stuck == 0
        assert heap_size < 500


class TestAbandoned:
    def test_finished_abandoned_call_is_logged(
        self,
        watchdog: Watchdog,
        release: threading.Event,
        logs: tuple[list[Any], _LogEvents],
    ) -> None:
        """finished() logs tool.abandoned_finished with the time lived after."""
        entries, _ = logs
        worker = _blocked_thread(release, "worker-abandoned")
        handle = watchdog.track_abandoned(
            worker, {"tool": "slow_tool", "call_id": "c9"}
        )
        alive = watchdog.statistics().abandoned_alive

        handle.finished()
        handle.finished()

        assert alive == 1
        finished = [e for e in entries if e["event"] == "tool.abandoned_finished"]
        assert len(finished) == 1
        assert finished[0]["tool"] == "slow_tool"
        assert finished[0]["call_id"] == "c9"
        assert finished[0]["detected_by"] == "finished"
        assert finished[0]["lived_after_abandon"] >= 0
        assert watchdog.statistics().abandoned_alive == 0

    def test_abandoned_thread_exit_is_detected(
        self, release: threading.Event, logs: tuple[list[Any], _LogEvents]
    ) -> None:
        """An abandoned thread that ends is seen by the liveness check."""
        entries, events = logs
        worker = _blocked_thread(release, "worker-exits")
        watchdog = Watchdog(abandoned_check_interval=0.02)
        try:
            watchdog.track_abandoned(worker, {"tool": "slow_tool"})

            release.set()

            assert events.wait("tool.abandoned_finished")
            stats = watchdog.statistics()
        finally:
            watchdog.close()

        finished = next(e for e in entries if e["event"] == "tool.abandoned_finished")
        assert finished["detected_by"] == "thread_exit"
        assert finished["thread_name"] == "worker-exits"
        assert stats.abandoned_alive == 0 and stats.abandoned_finished == 1
        assert watchdog._liveness_check is None


class TestExit:
    def test_watchdog_does_not_block_interpreter_exit(self) -> None:
        """A process with a stuck call, a hung callback and abandoned thread exits."""
        script = textwrap.dedent(
            """
            import threading
            from agentsync.watchdog import Watchdog

            forever = threading.Event()
            reported = threading.Event()

            def hang(call):
                reported.set()
                forever.wait(3600)

            worker = threading.Thread(target=forever.wait, args=(3600,), daemon=True)
            worker.start()
            watchdog = Watchdog(on_stuck=[hang], callback_timeout=0.05)
            watchdog.watch("stuck-forever", 0.02, thread=worker)
            watchdog.track_abandoned(worker, {"tool": "hung"})
            assert reported.wait(5)
            print("reported")
            """
        )

        result = subprocess.run(
            [sys.executable, "-c", script],
            check=False,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=8,
        )

        assert result.returncode == 0, result.stderr
        assert "reported" in result.stdout
        assert "tool.stuck" in result.stdout
