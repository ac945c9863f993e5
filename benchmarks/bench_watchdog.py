"""Benchmark the watchdog: detection latency after the limit, and idle cost.

Compares :class:`agentsync.watchdog.Watchdog` (one thread sleeping until the
next deadline of a heap) with the naive recipe, a thread that wakes every N
seconds and scans every watch. Latency is measured from a call's deadline to
the moment its stuck report reaches the callback. Idle cost is the CPU time of
each watchdog's own thread over an idle period, with nothing watched.

Run from the repository root::

    PYTHONPATH=. python benchmarks/bench_watchdog.py [--idle-seconds 10]
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from agentsync.watchdog import StuckCall, Watchdog

# (label, deadline, seen_at): what each watchdog hands the harness on a report.
Report = Callable[[str, float, float], None]


class NaivePoller:
    """The common recipe: wake every ``interval`` seconds, scan all watches."""

    def __init__(self, interval: float, on_stuck: Report) -> None:
        self._interval = interval
        self._on_stuck = on_stuck
        self._lock = threading.Lock()
        self._watches: dict[int, tuple[str, float]] = {}
        self._reported: set[int] = set()
        self._ids = iter(range(1 << 62))
        self._stop = threading.Event()
        self.wakeups = 0
        self.thread = threading.Thread(target=self._run, name="naive", daemon=True)
        self.thread.start()

    def watch(self, label: str, limit: float) -> Callable[[], None]:
        with self._lock:
            key = next(self._ids)
            self._watches[key] = (label, time.monotonic() + limit)

        def done() -> None:
            with self._lock:
                self._watches.pop(key, None)

        return done

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.wakeups += 1
            now = time.monotonic()
            with self._lock:
                due = [
                    (key, label, deadline)
                    for key, (label, deadline) in self._watches.items()
                    if deadline <= now and key not in self._reported
                ]
                self._reported.update(key for key, _, _ in due)
            for _, label, deadline in due:
                self._on_stuck(label, deadline, time.monotonic())

    def close(self) -> None:
        self._stop.set()
        self.thread.join(self._interval + 1)


@dataclass
class Latency:
    name: str
    calls: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    wall_s: float


class _Harness:
    """Runs calls that block until reported, and records report latencies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latencies: list[float] = []
        self._released: dict[str, threading.Event] = {}

    def event(self, label: str) -> threading.Event:
        with self._lock:
            return self._released.setdefault(label, threading.Event())

    def report(self, label: str, deadline: float, seen_at: float) -> None:
        with self._lock:
            self.latencies.append(seen_at - deadline)
        self.event(label).set()

    def run_wave(
        self,
        watch: Callable[[str, float], Callable[[], None]],
        labels: list[str],
        limit: float,
        spread: float,
    ) -> None:
        """Run one call per label at once (start offsets in [0, spread))."""

        def call(label: str, offset: float) -> None:
            if offset:
                threading.Event().wait(offset)
            done = watch(label, limit)
            self.event(label).wait(30)
            done()

        threads = [
            threading.Thread(target=call, args=(label, random.uniform(0, spread)))
            for label in labels
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)


def _summary(name: str, latencies: list[float], wall: float) -> Latency:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return Latency(
        name=name,
        calls=len(ordered),
        p50_ms=statistics.median(ordered) * 1e3,
        p99_ms=p99 * 1e3,
        max_ms=ordered[-1] * 1e3,
        wall_s=wall,
    )


def bench_agentsync(
    calls: int, concurrency: int, limit: float
) -> tuple[Latency, Latency]:
    """Return the latency to the callback, and to detection alone (late_by)."""
    harness = _Harness()
    late_by: list[float] = []

    def on_stuck(call: StuckCall) -> None:
        if call.report == 1:
            late_by.append(call.late_by)
            harness.report(
                call.label, call.detected_at - call.late_by, time.monotonic()
            )

    watchdog = Watchdog(on_stuck=[on_stuck])

    def watch(label: str, limit: float) -> Callable[[], None]:
        return watchdog.watch(label, limit).done

    started = time.monotonic()
    for wave in range(0, calls, concurrency):
        labels = [f"a{i}" for i in range(wave, min(calls, wave + concurrency))]
        harness.run_wave(watch, labels, limit, spread=limit)
    wall = time.monotonic() - started
    watchdog.close()
    return (
        _summary("agentsync Watchdog (heap)", harness.latencies, wall),
        _summary("  detection only (late_by)", late_by, wall),
    )


def bench_naive(calls: int, interval: float, limit: float) -> Latency:
    harness = _Harness()
    poller = NaivePoller(interval, harness.report)

    def watch(label: str, limit: float) -> Callable[[], None]:
        return poller.watch(label, limit)

    started = time.monotonic()
    labels = [f"n{i}" for i in range(calls)]
    harness.run_wave(watch, labels, limit, spread=interval)
    wall = time.monotonic() - started
    poller.close()
    return _summary(f"naive poll every {interval:g} s", harness.latencies, wall)


@dataclass
class Idle:
    name: str
    cpu_ms: float
    wakeups: int


def _thread_cpu(thread: threading.Thread) -> float:
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident or 0))


def bench_idle(seconds: float) -> list[Idle]:
    """Idle all three watchdogs side by side for ``seconds``; CPU per thread."""
    watchdog = Watchdog()
    watchdog.watch("start-the-thread", 1e-3).done()
    naive_slow = NaivePoller(2.0, lambda *_: None)
    naive_fast = NaivePoller(0.01, lambda *_: None)
    assert watchdog._thread is not None
    subjects = [
        ("agentsync Watchdog (heap)", watchdog._thread),
        ("naive poll every 2 s", naive_slow.thread),
        ("naive poll every 0.01 s", naive_fast.thread),
    ]

    # Let the first watch's deadline pass so the watchdog is truly idle.
    threading.Event().wait(0.05)
    cpu_before = [_thread_cpu(thread) for _, thread in subjects]
    wakeups_before = (watchdog._wakeups, naive_slow.wakeups, naive_fast.wakeups)
    threading.Event().wait(seconds)
    cpu_after = [_thread_cpu(thread) for _, thread in subjects]
    wakeups_after = (watchdog._wakeups, naive_slow.wakeups, naive_fast.wakeups)

    watchdog.close()
    naive_slow.close()
    naive_fast.close()
    return [
        Idle(name, (after - before) * 1e3, woke_after - woke_before)
        for (name, _), before, after, woke_before, woke_after in zip(
            subjects, cpu_before, cpu_after, wakeups_before, wakeups_after
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--limit", type=float, default=0.02)
    parser.add_argument("--naive-calls", type=int, default=10)
    args = parser.parse_args()

    # The stuck reports are the subject, not the output.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
    )

    latencies = [
        *bench_agentsync(args.calls, args.concurrency, args.limit),
        bench_naive(args.naive_calls, 2.0, args.limit),
        bench_naive(args.calls, 0.01, args.limit),
    ]
    idle = bench_idle(args.idle_seconds)

    print(
        f"\ndetection latency after the limit ({args.limit * 1e3:g} ms limit, "
        f"deadline to callback)"
    )
    print(
        f"{'watchdog':<28}{'calls':>7}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}"
        f"{'wall s':>9}"
    )
    for row in latencies:
        print(
            f"{row.name:<28}{row.calls:>7}{row.p50_ms:>10.2f}"
            f"{row.p99_ms:>10.2f}{row.max_ms:>10.2f}{row.wall_s:>9.2f}"
        )
    print(f"\nidle cost over {args.idle_seconds:g} s, nothing watched")
    print(f"{'watchdog':<28}{'thread CPU ms':>15}{'wakeups':>10}")
    for idle_row in idle:
        print(f"{idle_row.name:<28}{idle_row.cpu_ms:>15.3f}{idle_row.wakeups:>10}")


if __name__ == "__main__":
    main()
