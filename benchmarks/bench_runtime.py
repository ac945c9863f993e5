"""The runtime's figures, each measured side by side with a baseline in one run.

    python benchmarks/bench_runtime.py [--calls 20000] [--hung 200]

1. per-call overhead of ``Runtime.call`` on a no-op tool against a raw
   ``ThreadPoolExecutor`` submit/result (goal: at most 1.5x);
2. timeout overshoot, p50 and p99 over hung calls (goal: p99 under 5 ms);
3. one agent turn with 5 tools of 200 ms each through ``run_agent`` against
   the same turn through the SDK's own sync tool runner, both on one
   ``FakeMessagesServer`` (goal: at least 4x faster);
4. time from ``run_agent`` returning to process exit in a script whose tool
   never returns (goal: under 0.5 s beyond the same run whose tool returns,
   which measures what the SDK's own teardown costs; a plain
   ``ThreadPoolExecutor`` never exits).

Logging is configured at WARNING, as in production: the per-call
``tool.start``/``tool.end`` events are debug-level and filtered out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import agentsync
from agentsync.testing import FakeMessagesServer

ROOT = Path(__file__).resolve().parent.parent


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_overhead(calls: int) -> tuple[float, float]:
    """Microseconds per call: raw ThreadPoolExecutor, then Runtime.call."""

    def noop() -> None:
        return None

    raw_times: list[float] = []
    rt_times: list[float] = []
    with ThreadPoolExecutor(max_workers=8) as pool, agentsync.Runtime(
        [agentsync.tool(noop)], max_workers=8
    ) as rt:
        # Interleave rounds so that both see the same machine state.
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(calls // 5):
                pool.submit(noop).result(timeout=10)
            raw_times.append((time.perf_counter() - start) / (calls // 5))

            start = time.perf_counter()
            for _ in range(calls // 5):
                rt.call("noop")
            rt_times.append((time.perf_counter() - start) / (calls // 5))
    return statistics.median(raw_times) * 1e6, statistics.median(rt_times) * 1e6


def bench_overshoot(hung: int, timeout: float = 0.01) -> tuple[list[float], list[float]]:
    """Milliseconds from a call's deadline to its caller getting the timeout.

    The deadline counts from when the tool starts (it records the moment), so
    the time to start a replacement thread is not counted as overshoot.
    """
    release = threading.Event()
    started: list[float] = []

    @agentsync.tool(timeout=timeout)
    def hang() -> None:
        started.append(time.perf_counter())
        release.wait(60)

    def raw_hang() -> None:
        started.append(time.perf_counter())
        release.wait(60)

    ours: list[float] = []
    raw: list[float] = []
    try:
        with ThreadPoolExecutor(max_workers=hung + 1) as pool:
            with agentsync.Runtime([hang], max_workers=4, max_abandoned=hung + 1) as rt:
                for _ in range(hung):
                    outcome = rt.call("hang")
                    ours.append((time.perf_counter() - started[-1] - timeout) * 1000)
                    assert outcome.error_kind == "timeout", outcome

                    future = pool.submit(raw_hang)
                    while not future.running():
                        time.sleep(0)
                    try:
                        future.result(timeout=timeout)
                    except TimeoutError:
                        pass
                    raw.append((time.perf_counter() - started[-1] - timeout) * 1000)
            release.set()
    finally:
        release.set()
    return ours, raw


def bench_agent_turn(tools: int = 5, seconds: float = 0.2) -> tuple[float, float]:
    """Seconds for one tool turn plus the final reply: run_agent, SDK runner."""
    from anthropic import beta_tool

    def script(server: FakeMessagesServer) -> None:
        server.add_reply(
            [
                {"type": "tool_use", "name": "work", "input": {"n": i}}
                for i in range(tools)
            ]
        )
        server.add_reply("done")

    def work(n: int) -> str:
        """Work for a while.

        Args:
            n: which piece of work.
        """
        time.sleep(seconds)
        return f"piece {n}"

    with FakeMessagesServer() as server:
        client = server.client()
        script(server)
        start = time.perf_counter()
        result = agentsync.run_agent("go", tools=[agentsync.tool(work)], client=client)
        ours = time.perf_counter() - start
        assert result.text == "done", result

        script(server)
        runner = client.beta.messages.tool_runner(
            model="claude-sonnet-4-6",
            max_tokens=1024,
            messages=[{"role": "user", "content": "go"}],
            tools=[beta_tool(work)],
        )
        start = time.perf_counter()
        final = runner.until_done()
        sdk = time.perf_counter() - start
        assert final.content[0].text == "done", final
    return ours, sdk


_EXIT_SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    import anthropic, agentsync
    from agentsync.testing import FakeMessagesServer

    agentsync.configure_logging("critical")
    from concurrent.futures import ThreadPoolExecutor, TimeoutError

    mode = sys.argv[1]
    forever = threading.Event()

    def stuck() -> str:
        '''Never returns.'''
        forever.wait()
        return "never"

    if mode in ("agentsync", "baseline"):
        if mode == "baseline":
            forever.set()
        with FakeMessagesServer() as server:
            server.add_tool_use("stuck", {})
            server.add_reply("gave up on stuck")
            agentsync.run_agent(
                "go", tools=[agentsync.tool(stuck, timeout=0.2)], client=server.client()
            )
    elif mode == "threadpool":
        pool = ThreadPoolExecutor(max_workers=2)
        try:
            pool.submit(stuck).result(timeout=0.2)
        except TimeoutError:
            pass
    print(time.time(), flush=True)
    """
)


def bench_exit(kill_after: float = 5.0) -> dict[str, float | None]:
    """Seconds from the script's last line to process exit, per mode."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    figures: dict[str, float | None] = {}
    for mode in ("baseline", "agentsync", "threadpool"):
        proc = subprocess.Popen(
            [sys.executable, "-c", _EXIT_SCRIPT, mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        try:
            proc.wait(timeout=kill_after)
            figures[mode] = time.time() - float(line)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            figures[mode] = None
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--hung", type=int, default=200)
    args = parser.parse_args()
    agentsync.configure_logging("warning", stream=open(os.devnull, "w"))

    raw, ours = bench_overhead(args.calls)
    print(f"1. per-call overhead ({args.calls} no-op calls, median of 5 rounds)")
    print(f"   ThreadPoolExecutor submit/result: {raw:7.1f} us/call")
    print(f"   Runtime.call:                     {ours:7.1f} us/call")
    print(f"   ratio: {ours / raw:.2f}x (goal <= 1.5x)")

    over, raw_over = bench_overshoot(args.hung)
    print(f"2. timeout overshoot over {args.hung} hung calls (timeout 10 ms)")
    print(f"   Runtime.call:        p50 {_pct(over, .5):.2f} ms, p99 {_pct(over, .99):.2f} ms (goal p99 < 5 ms)")
    print(f"   raw future.result(): p50 {_pct(raw_over, .5):.2f} ms, p99 {_pct(raw_over, .99):.2f} ms")

    ours_turn, sdk_turn = bench_agent_turn()
    print("3. one turn of 5 tools x 200 ms, then the final reply, over FakeMessagesServer")
    print(f"   run_agent:            {ours_turn * 1000:7.1f} ms")
    print(f"   SDK tool_runner:      {sdk_turn * 1000:7.1f} ms")
    print(f"   speed-up: {sdk_turn / ours_turn:.1f}x (goal >= 4x)")

    exits = bench_exit()
    fmt = lambda v: "did not exit (killed after 5 s)" if v is None else f"{v:.3f} s"  # noqa: E731
    print("4. time from the script's end to process exit, a tool that never returns")
    print(f"   same run, the tool returns (baseline): {fmt(exits['baseline'])}")
    print(f"   run_agent with the hung tool:      {fmt(exits['agentsync'])}")
    print(f"   plain ThreadPoolExecutor:          {fmt(exits['threadpool'])}")
    if exits["baseline"] is not None and exits["agentsync"] is not None:
        print(
            f"   agentsync's own cost at exit: {exits['agentsync'] - exits['baseline']:+.3f} s "
            "(goal < 0.5 s)"
        )


if __name__ == "__main__":
    main()
