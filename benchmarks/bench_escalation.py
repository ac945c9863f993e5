"""Figures of ``on_timeout="process"``, each measured against a baseline in one run.

    python benchmarks/bench_escalation.py [--kills 30] [--calls 500]

1. time from a call's timeout outcome to its child process being gone, p50
   and p99, for a child that sleeps (SIGTERM stops it) and, over a few calls,
   for one that ignores SIGTERM (SIGKILL stops it 3 s later);
2. per-call overhead of a trivial process tool on the shared pool, against
   the same tool run in a thread, and against one new child per call (pebble's
   ``concurrent.process`` on the same start method): the reason for the pool.

The child reports its pid through a file before it hangs; the parent polls
``os.kill(pid, 0)`` every millisecond until the pid is gone.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import structlog

import agentsync
from agentsync._process import _start_method, start_process_pool


@agentsync.tool(timeout=0.5, on_timeout="process")
def hang(pid_file: str, ignore_sigterm: bool = False) -> None:
    """Write the pid, then never return."""
    if ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(pid_file).write_text(str(os.getpid()))
    while True:
        time.sleep(0.05)


@agentsync.tool(timeout=10, on_timeout="process")
def trivial(x: int) -> int:
    """Return x."""
    return x


def trivial_in_thread(x: int) -> int:
    """Return x."""
    return x


def plain_trivial(x: int) -> int:
    return x


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def bench_kills(rt: agentsync.Runtime, count: int, ignore_sigterm: bool) -> list[float]:
    """Milliseconds from each timeout outcome to its child being gone."""
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(count):
            pid_file = Path(tmp) / f"pid{n}"
            outcome = rt.call(
                "hang", {"pid_file": str(pid_file), "ignore_sigterm": ignore_sigterm}
            )
            ended = time.monotonic()
            assert outcome.error_kind == "timeout", outcome
            pid = int(pid_file.read_text())
            limit = ended + 10
            while not _gone(pid) and time.monotonic() < limit:
                time.sleep(0.001)
            times.append((time.monotonic() - ended) * 1000)
            # Let the pool replace the killed worker before the next call.
            rt.call("trivial", {"x": n})
    return times


def bench_overhead(rt: agentsync.Runtime, calls: int) -> tuple[float, float]:
    """Microseconds per call, p50: the process tool, then the thread tool."""
    proc: list[float] = []
    thread: list[float] = []
    for n in range(calls):
        start = time.perf_counter()
        rt.call("trivial", {"x": n})
        proc.append(time.perf_counter() - start)
        start = time.perf_counter()
        rt.call("trivial_in_thread", {"x": n})
        thread.append(time.perf_counter() - start)
    return statistics.median(proc) * 1e6, statistics.median(thread) * 1e6


def bench_child_per_call(calls: int) -> float:
    """Microseconds per call, p50, with one new child per call (no pool)."""
    from pebble import concurrent

    context = multiprocessing.get_context(_start_method())
    run = concurrent.process(context=context)(plain_trivial)
    times: list[float] = []
    for n in range(calls):
        start = time.perf_counter()
        run(n).result(timeout=30)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))

    started = time.perf_counter()
    start_process_pool()
    print(f"start method: {_start_method()}, cpus: {os.cpu_count()}")
    print(
        f"pool start (fork server and workers): {time.perf_counter() - started:.2f} s"
    )

    tools = [hang, trivial, agentsync.tool(trivial_in_thread)]
    with agentsync.Runtime(tools, watchdog=False) as rt:
        rt.call("trivial", {"x": 0})

        kills = bench_kills(rt, args.kills, ignore_sigterm=False)
        print(
            f"timeout -> child gone, SIGTERM ({len(kills)} calls): "
            f"p50 {_pct(kills, 0.5):.0f} ms, p99 {_pct(kills, 0.99):.0f} ms"
        )
        stubborn = bench_kills(rt, 3, ignore_sigterm=True)
        print(
            f"timeout -> child gone, SIGTERM ignored ({len(stubborn)} calls): "
            f"p50 {_pct(stubborn, 0.5):.0f} ms, max {max(stubborn):.0f} ms"
        )

        proc_us, thread_us = bench_overhead(rt, args.calls)
        print(
            f"trivial call, p50 over {args.calls}: process tool {proc_us:.0f} us, "
            f"thread tool {thread_us:.0f} us ({proc_us / thread_us:.1f}x)"
        )
    per_call_us = bench_child_per_call(10)
    print(
        f"trivial call, one new child per call (no pool), p50 over 10: {per_call_us:.0f} us"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
