"""How much a LockRegistry costs over raw threading.Lock.

Run from the repository root::

    python benchmarks/bench_locks.py [--quick]

Prints one table: uncontended acquire and release of two locks (raw locks, and
registries with learning on and off, strict and not), then the throughput of 8
threads on 4 locks. Uncontended figures are the best of several rounds, taken in
turns across the rows and timed in the thread's own CPU time, so that other
load on the machine skews them less.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from agentsync.locks import LockRegistry

ROUNDS = 7


def best_ns_per_op(
    bodies: dict[str, Callable[[int], None]], ops: int
) -> dict[str, float]:
    """Run each ``body(ops)`` ROUNDS times, in turns; return the best ns per op."""
    best = dict.fromkeys(bodies, float("inf"))
    for _ in range(ROUNDS):
        for label, body in bodies.items():
            start = time.thread_time_ns()
            body(ops)
            best[label] = min(best[label], (time.thread_time_ns() - start) / ops)
    return best


def raw_with(ops: int) -> None:
    a, b = threading.Lock(), threading.Lock()
    for _ in range(ops):
        with a, b:
            pass


def raw_timeout(ops: int) -> None:
    a, b = threading.Lock(), threading.Lock()
    for _ in range(ops):
        a.acquire(timeout=5)
        b.acquire(timeout=5)
        b.release()
        a.release()


def registry_acquire(**options: object) -> Callable[[int], None]:
    def body(ops: int) -> None:
        locks = LockRegistry(**options)  # type: ignore[arg-type]
        for _ in range(ops):
            with locks.acquire("database", "cache", timeout=5):
                pass

    return body


def registry_handles(**options: object) -> Callable[[int], None]:
    def body(ops: int) -> None:
        locks = LockRegistry(**options)  # type: ignore[arg-type]
        cache, database = locks["cache"], locks["database"]
        for _ in range(ops):
            cache.acquire(timeout=5)
            database.acquire(timeout=5)
            database.release()
            cache.release()

    return body


def contended(threads: int, names: list[str], seconds: float) -> tuple[float, int]:
    """Return ops/s of ``threads`` threads each taking two random locks, and the
    registry's contended count."""
    locks = LockRegistry()
    stop = threading.Event()
    start = threading.Barrier(threads + 1)
    counts = [0] * threads

    def worker(index: int) -> None:
        rng = random.Random(index)
        pairs = [tuple(rng.sample(names, 2)) for _ in range(256)]
        start.wait(timeout=10)
        done = 0
        while not stop.is_set():
            for pair in pairs:
                with locks.acquire(*pair, timeout=10):
                    pass
            done += len(pairs)
        counts[index] = done

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    start.wait(timeout=10)
    began = time.perf_counter()
    stop.wait(seconds)
    stop.set()
    for thread in workers:
        thread.join(timeout=30)
    elapsed = time.perf_counter() - began
    return sum(counts) / elapsed, locks.statistics().contended


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer operations")
    args = parser.parse_args()
    ops = 20_000 if args.quick else 100_000

    cases: dict[str, Callable[[int], None]] = {
        "raw threading.Lock, `with a, b:`": raw_with,
        "raw threading.Lock, acquire(timeout=5)": raw_timeout,
        "registry acquire(), learning on": registry_acquire(),
        "registry acquire(), learning off": registry_acquire(learn_order=False),
        "registry acquire(), declared order, strict": registry_acquire(
            order=["cache", "database"]
        ),
        "registry handles, learning on": registry_handles(),
        "registry handles, learning off": registry_handles(learn_order=False),
        "registry handles, declared order, strict": registry_handles(
            order=["cache", "database"]
        ),
    }
    best = best_ns_per_op(cases, ops)

    raw, raw_timed = (
        best["raw threading.Lock, `with a, b:`"],
        best["raw threading.Lock, acquire(timeout=5)"],
    )
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, {ops:,} ops/row")
    print()
    print(
        f"{'uncontended, two locks':<44} {'ns/op':>7} {'x with':>7} {'x timeout':>10}"
    )
    for label, ns in best.items():
        print(f"{label:<44} {ns:>7.0f} {ns / raw:>6.1f}x {ns / raw_timed:>9.1f}x")

    seconds = 0.5 if args.quick else 2.0
    rate, waits = contended(8, ["a", "b", "c", "d"], seconds)
    print()
    print(f"{'contended: 8 threads, 4 locks, random pairs':<44} {rate:>7.0f} ops/s")
    print(f"{'  acquisitions that had to wait':<44} {waits:>7}")


if __name__ == "__main__":
    main()
