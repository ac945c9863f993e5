"""Plan figures: validation against graphlib, eager against stage-by-stage
scheduling, and the scheduler's cost per step, each measured in one run.

    python benchmarks/bench_plans.py [--quick] [--seeds 3]

1. validation time of plans of 1,000 / 10,000 / 100,000 steps (random DAGs
   with up to three dependencies per step, and a chain linked by ``$ref``)
   against ``graphlib.TopologicalSorter(graph).static_order()`` on the same
   graph (goal: linear, within 2x of graphlib, although validation also
   checks each step's shape, input and references and builds the plan);
2. makespan of random DAGs of 200 steps with sleep-based durations of 5 to
   50 ms on 8 workers: eager scheduling (``run_plan``) against stage by stage
   (``Runtime.run_calls`` per stage) against the lower bound
   max(critical path, total work / workers) (goal: eager within 5%);
3. the scheduler's cost per step on a plan of 10,000 no-op steps, next to
   ``Runtime.run_calls`` of the same 10,000 calls (the runtime's own cost).

Logging is configured at WARNING, as in production. Times are the best of a
few rounds (``time.perf_counter``), to keep other processes' noise out.
"""

from __future__ import annotations

import argparse
import gc
import graphlib
import random
import time
from collections.abc import Callable
from typing import Any

import agentsync
from agentsync.plans import validate_plan
from agentsync.scheduler import run_plan


def _best(fn: Callable[[], Any], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def random_dag(n: int, seed: int, window: int | None = None) -> list[dict[str, Any]]:
    """Steps s0..s{n-1}, each depending on up to three earlier ones."""
    rng = random.Random(seed)
    steps = []
    for i in range(n):
        low = 0 if window is None else max(0, i - window)
        deps = (
            sorted({f"s{rng.randrange(low, i)}" for _ in range(rng.randint(0, 3))})
            if i
            else []
        )
        steps.append(
            {"id": f"s{i}", "tool": "noop", "input": {"x": i}, "depends_on": deps}
        )
    return steps


def chain(n: int) -> list[dict[str, Any]]:
    """Steps s0..s{n-1}, each taking the previous one's output by ``$ref``."""
    steps = [{"id": "s0", "tool": "noop", "input": {"x": 0}}]
    for i in range(1, n):
        steps.append(
            {"id": f"s{i}", "tool": "noop", "input": {"x": {"$ref": f"s{i - 1}.x"}}}
        )
    return steps


def _graph(steps: list[dict[str, Any]]) -> dict[str, list[str]]:
    graph = {}
    for s in steps:
        deps = list(s.get("depends_on", ()))
        x = s["input"]["x"]
        if isinstance(x, dict):
            deps.append(x["$ref"].split(".")[0])
        graph[s["id"]] = deps
    return graph


@agentsync.tool
def noop(x: int = 0) -> dict[str, int]:
    """Do nothing."""
    return {"x": x}


def bench_validation(sizes: list[int]) -> None:
    print("1. validation (best of rounds; ratio = validate / graphlib)")
    print(
        f"   {'plan':<14}{'graphlib':>10}{'validate':>10}{'ratio':>7}"
        f"{'us/step':>9}{'+tools':>10}{'ratio':>7}"
    )
    for n in sizes:
        rounds = 5 if n <= 10_000 else 3
        for name, steps in (("dag", random_dag(n, seed=n)), ("chain", chain(n))):
            graph = _graph(steps)
            base = _best(
                lambda g=graph: list(graphlib.TopologicalSorter(g).static_order()),
                rounds,
            )
            ours = _best(lambda s=steps: validate_plan(s), rounds)
            typed = _best(lambda s=steps: validate_plan(s, [noop]), rounds)
            print(
                f"   {name + ' ' + format(n, ','):<14}{base * 1000:>8.1f}ms"
                f"{ours * 1000:>8.1f}ms{ours / base:>7.2f}{ours / n * 1e6:>9.2f}"
                f"{typed * 1000:>8.1f}ms{typed / base:>7.2f}"
            )


def _work_plan(n: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, float]]:
    rng = random.Random(seed)
    steps = random_dag(n, seed, window=25)
    durations = {}
    for s in steps:
        ms = rng.randint(5, 50)
        durations[s["id"]] = ms / 1000
        s["tool"], s["input"] = "work", {"ms": ms}
    return steps, durations


@agentsync.tool
def work(ms: int) -> int:
    """Sleep ``ms`` milliseconds."""
    time.sleep(ms / 1000)
    return ms


def _lower_bound(
    steps: list[dict[str, Any]], durations: dict[str, float], workers: int
) -> float:
    finish: dict[str, float] = {}
    for s in steps:  # already in a topological order
        finish[s["id"]] = durations[s["id"]] + max(
            (finish[d] for d in s["depends_on"]), default=0.0
        )
    return max(max(finish.values()), sum(durations.values()) / workers)


def bench_makespan(seeds: int, workers: int = 8, n: int = 200) -> None:
    print(f"\n2. makespan, {n} steps of 5-50 ms on {workers} workers (seconds)")
    print(
        "   bound: max(critical path, work / workers) from the asked durations;\n"
        "   bound*: the same from the durations the sleeps really took"
    )
    print(
        f"   {'seed':<6}{'bound':>7}{'stages':>8}{'vs bound':>10}{'eager':>8}"
        f"{'vs bound':>10}{'bound*':>8}{'vs bound*':>11}"
    )
    over: dict[str, list[float]] = {"stages": [], "eager": [], "eager*": []}
    with agentsync.Runtime([work], max_workers=workers) as rt:
        for seed in range(seeds):
            steps, durations = _work_plan(n, seed)
            plan = validate_plan(steps, rt.tools)
            bound = _lower_bound(steps, durations, workers)

            start = time.perf_counter()
            for stage in plan.stages:
                # The pool runs a stage wider than itself as workers free up.
                outcomes = rt.run_calls(
                    [(plan[sid].tool, plan[sid].input) for sid in stage]
                )
                assert all(o.ok for o in outcomes)
            staged = time.perf_counter() - start

            start = time.perf_counter()
            report = run_plan(rt, plan)
            eager = time.perf_counter() - start
            assert report.ok, report.summary()
            taken = {r.id: r.outcome.duration for r in report}
            real = _lower_bound(steps, taken, workers)

            over["stages"].append(staged / bound - 1)
            over["eager"].append(eager / bound - 1)
            over["eager*"].append(eager / real - 1)
            print(
                f"   {seed:<6}{bound:>7.3f}{staged:>8.3f}{staged / bound - 1:>+10.1%}"
                f"{eager:>8.3f}{eager / bound - 1:>+10.1%}{real:>8.3f}"
                f"{eager / real - 1:>+11.1%}"
            )
    mean = {k: sum(v) / len(v) for k, v in over.items()}
    print(
        f"   mean: stage by stage {mean['stages']:+.1%} over the bound, eager "
        f"{mean['eager']:+.1%} over the bound and {mean['eager*']:+.1%} over bound*"
    )


def bench_overhead(n: int, rounds: int) -> None:
    print(f"\n3. cost per step, {n:,} no-op steps on 8 workers (us per step)")
    shapes = {
        "independent": [
            {"id": f"s{i}", "tool": "noop", "input": {"x": i}} for i in range(n)
        ],
        "random dag": random_dag(n, seed=7, window=50),
        "chain": chain(n),
    }
    with agentsync.Runtime([noop], max_workers=8) as rt:
        calls = [("noop", {"x": i}) for i in range(n)]
        parallel = _best(lambda: rt.run_calls(calls), rounds)
        one_by_one = _best(
            lambda: [rt.call("noop", {"x": i}) for i in range(n)], rounds
        )
        print(f"   {'Runtime.run_calls, all at once':<34}{parallel / n * 1e6:>8.1f}")
        print(f"   {'Runtime.call, one after another':<34}{one_by_one / n * 1e6:>8.1f}")
        for name, steps in shapes.items():
            plan = validate_plan(steps, rt.tools)
            took = _best(lambda p=plan: run_plan(rt, p), rounds)
            base, against = (
                (one_by_one, "call") if name == "chain" else (parallel, "run_calls")
            )
            print(
                f"   {'run_plan, ' + name:<34}{took / n * 1e6:>8.1f}"
                f"   {(took - base) / n * 1e6:+.1f} over {against}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes, fewer rounds"
    )
    parser.add_argument(
        "--seeds", type=int, default=3, help="DAGs for the makespan table"
    )
    args = parser.parse_args()
    agentsync.configure_logging("warning")

    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    bench_validation(sizes)
    bench_makespan(args.seeds)
    bench_overhead(2_000 if args.quick else 10_000, 1 if args.quick else 3)


if __name__ == "__main__":
    main()
