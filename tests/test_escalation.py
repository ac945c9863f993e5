"""Tests for escalation past a timeout: process tools, interrupted threads, C12."""

from __future__ import annotations

import os
import pickle
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import agentsync
from agentsync import Runtime, Tool, ToolContext, ToolDefinitionError, run_agent, tool
from agentsync._process import (
    ProcessTimeout,
    ProcessToolError,
    run_in_process,
    start_process_pool,
)
from agentsync.testing import FakeMessagesServer

ROOT = Path(__file__).resolve().parent.parent


# -- process tools: module-level functions a child process can import ---------


@tool(timeout=10, on_timeout="process")
def whoami() -> int:
    """Return the process id the tool runs in."""
    return os.getpid()


@tool(timeout=10, on_timeout="process")
def fail(reason: str) -> None:
    """Raise ValueError with the reason."""
    raise ValueError(reason)


@tool(timeout=1.0, on_timeout="process")
def hang(pid_file: str, ignore_sigterm: bool = False) -> None:
    """Write the process id to a file, then never return."""
    if ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(pid_file).write_text(str(os.getpid()))
    while True:
        time.sleep(0.05)


@tool(timeout=10, on_timeout="process")
def echo(value: Any) -> Any:
    """Return the value given."""
    return value


@tool(timeout=10, on_timeout="process")
def make_lock() -> Any:
    """Return something that cannot be pickled."""
    return threading.Lock()


class TwoArgumentError(Exception):
    """An exception whose constructor does not take its message alone."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


@tool(timeout=10, on_timeout="process")
def fail_oddly() -> None:
    """Raise an exception that pickles but does not unpickle."""
    raise TwoArgumentError(7, "odd")


@tool(timeout=10, on_timeout="process")
def die(code: int) -> None:
    """End the process at once with an exit code."""
    os._exit(code)


@pytest.fixture(scope="module")
def pool() -> None:
    """Start the shared process pool once, so no test pays for it."""
    start_process_pool()


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    with Runtime(
        [whoami, fail, hang, echo, make_lock, fail_oddly, die], watchdog=False
    ) as rt:
        yield rt


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll a condition no event signals (another process's death), bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def read_pid(path: Path, timeout: float = 10.0) -> int:
    assert wait_until(lambda: path.exists() and path.read_text() != "", timeout)
    return int(path.read_text())


@pytest.mark.usefixtures("pool")
class TestProcessMode:
    def test_value_comes_back_from_another_process(self, runtime: Runtime) -> None:
        """A process tool runs in a child and its return value is the outcome."""

        outcome = runtime.call("whoami")

        assert outcome.ok, outcome.message
        assert isinstance(outcome.value, int)
        assert outcome.value != os.getpid()

    def test_exception_in_child_is_the_outcome(self, runtime: Runtime) -> None:
        """An exception raised in the child is the call's exception outcome."""

        outcome = runtime.call("fail", {"reason": "no such user"})

        assert outcome.error_kind == "exception"
        assert outcome.message == "tool 'fail' raised ValueError: no such user"
        assert isinstance(outcome.exception, ValueError)
        assert "in fail" in str(outcome.exception.__cause__)

    @pytest.mark.timeout(20)
    def test_hung_tool_times_out_and_its_process_is_killed(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """A hung process tool gets a timeout and its process is gone soon after."""
        pid_file = tmp_path / "pid"

        outcome = runtime.call("hang", {"pid_file": str(pid_file)})
        pid = read_pid(pid_file)

        assert outcome.error_kind == "timeout"
        assert wait_until(lambda: process_gone(pid), 2.0)
        assert wait_until(lambda: runtime.stats().workers.abandoned == 0, 2.0)

    @pytest.mark.timeout(20)
    def test_tool_ignoring_sigterm_is_killed_anyway(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """A child that ignores SIGTERM is killed with SIGKILL a few seconds later."""
        pid_file = tmp_path / "pid"

        outcome = runtime.call(
            "hang", {"pid_file": str(pid_file), "ignore_sigterm": True}
        )
        pid = read_pid(pid_file)

        assert outcome.error_kind == "timeout"
        assert wait_until(lambda: process_gone(pid), 6.0)

    @pytest.mark.timeout(20)
    def test_pool_serves_calls_after_a_kill(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        """The worker killed at a timeout is replaced and later calls succeed."""
        runtime.call("hang", {"pid_file": str(tmp_path / "pid")})

        outcomes = runtime.run_calls([("echo", {"value": n}) for n in range(6)])

        assert [o.value for o in outcomes] == list(range(6))

    def test_unpicklable_input_is_a_clear_exception(self, runtime: Runtime) -> None:
        """An input that cannot pickle fails the call with a message saying so."""

        outcome = runtime.call("echo", {"value": threading.Lock()})

        assert outcome.error_kind == "exception"
        assert "inputs of tool 'echo' must pickle" in outcome.message

    def test_unpicklable_return_value_is_a_clear_exception(
        self, runtime: Runtime
    ) -> None:
        """A return value that cannot pickle fails the call with a message saying so."""

        outcome = runtime.call("make_lock")

        assert outcome.error_kind == "exception"
        assert "return value of tool 'make_lock' cannot be pickled" in outcome.message

    def test_exception_that_cannot_unpickle_keeps_the_pool(
        self, runtime: Runtime
    ) -> None:
        """An exception that pickles but cannot unpickle is reported by name; the pool lives."""

        outcome = runtime.call("fail_oddly")
        after = runtime.call("echo", {"value": "still here"})

        assert outcome.error_kind == "exception"
        assert "TwoArgumentError: 7: odd" in outcome.message
        assert after.value == "still here"

    def test_child_that_dies_is_reported_with_its_exit_code(
        self, runtime: Runtime
    ) -> None:
        """A child that exits without answering gives an exception naming its exit code."""

        outcome = runtime.call("die", {"code": 3})
        after = runtime.call("echo", {"value": 1})

        assert outcome.error_kind == "exception"
        assert isinstance(outcome.exception, ProcessToolError)
        assert outcome.exception.exitcode == 3
        assert after.value == 1

    @pytest.mark.timeout(20)
    def test_direct_invoke_raises_process_timeout_once_killed(
        self, tmp_path: Path
    ) -> None:
        """Outside a runtime the tool's own timeout applies and the error says killed."""
        pid_file = tmp_path / "pid"

        with pytest.raises(ProcessTimeout) as raised:
            run_in_process(
                hang, None, {"pid_file": str(pid_file), "ignore_sigterm": False}
            )
        pid = read_pid(pid_file)

        assert raised.value.killed is True
        assert raised.value.tool == "hang"
        assert process_gone(pid)

    def test_process_errors_survive_pickling(self) -> None:
        """The process errors keep their attributes through pickle (outcomes get stored)."""
        timeout = ProcessTimeout("late", tool="t", timeout=1.0, killed=True)
        broken = ProcessToolError("died", tool="t", exitcode=9)

        copies = pickle.loads(pickle.dumps((timeout, broken)))

        assert (copies[0].tool, copies[0].timeout, copies[0].killed) == ("t", 1.0, True)
        assert (copies[1].tool, copies[1].exitcode, str(copies[1])) == ("t", 9, "died")


def _context_tool(ctx: ToolContext, x: int) -> int:
    return x


async def _async_tool(x: int) -> int:
    return x


def _make_nested() -> Callable[..., Any]:
    def nested(x: int) -> int:
        return x

    return nested


class TestProcessDefinition:
    @pytest.mark.parametrize(
        ("fn", "words"),
        [
            (lambda x: x, "lambda"),
            (_make_nested(), "nested function"),
            (_context_tool, "ToolContext"),
            (_async_tool, "make it a plain function"),
        ],
        ids=["lambda", "nested", "context", "async"],
    )
    def test_unfit_function_is_refused_at_definition(
        self, fn: Callable[..., Any], words: str
    ) -> None:
        """A process tool that cannot cross into a child fails when it is made."""

        with pytest.raises(ToolDefinitionError) as raised:
            Tool(fn, name="unfit", on_timeout="process")

        assert "tool 'unfit'" in str(raised.value)
        assert words in str(raised.value)

    def test_function_rebound_away_is_refused_at_call(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A function its module no longer names fails at the call, saying why."""
        made = Tool(_rebound, name="rebound", on_timeout="process")
        monkeypatch.setattr(sys.modules[__name__], "_rebound", _context_tool)

        with pytest.raises(ProcessToolError) as raised:
            run_in_process(made, None, {"x": 1})

        assert "does not name its function" in str(raised.value)


def _rebound(x: int) -> int:
    return x


# -- process exit ---------------------------------------------------------------


HELPER = '''
import os, time
from pathlib import Path
import agentsync

@agentsync.tool(timeout={timeout}, on_timeout="process")
def hang(pid_file: str) -> None:
    """Write the process id, then never return."""
    Path(pid_file).write_text(str(os.getpid()))
    while True:
        time.sleep(0.05)
'''

SCRIPT = """
import sys, time
from pathlib import Path
import agentsync
import helper
from agentsync._process import start_process_pool

if __name__ == "__main__":
    pid_file = Path(sys.argv[1])
    start_process_pool()
    rt = agentsync.Runtime([helper.hang], watchdog=False)
    pending = rt.submit(("hang", {{"pid_file": str(pid_file)}}))
    deadline = time.monotonic() + 20
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    {then}
    print("leaving", flush=True)
"""


class TestProcessExit:
    def _run(self, tmp_path: Path, timeout: float, then: str) -> tuple[float, int]:
        (tmp_path / "helper.py").write_text(HELPER.format(timeout=timeout))
        (tmp_path / "script.py").write_text(SCRIPT.format(then=then))
        pid_file = tmp_path / "pid"
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, str(tmp_path / "script.py"), str(pid_file)],
            env=env,
            capture_output=True,
            check=False,
            text=True,
            timeout=30,
        )
        elapsed = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        assert "leaving" in done.stdout
        return elapsed, read_pid(pid_file, 1.0)

    @pytest.mark.timeout(40)
    def test_script_exits_promptly_while_a_process_call_hangs(
        self, tmp_path: Path
    ) -> None:
        """A script leaving while its process tool hangs exits, and the child dies."""

        elapsed, pid = self._run(tmp_path, 60, "pass")

        assert elapsed < 15
        assert wait_until(lambda: process_gone(pid), 5.0)

    @pytest.mark.timeout(40)
    def test_script_exits_after_a_killed_call(self, tmp_path: Path) -> None:
        """A script whose process call timed out exits cleanly, its child gone."""

        elapsed, pid = self._run(
            tmp_path,
            0.5,
            'assert pending.outcome().error_kind == "timeout"\n    rt.close()',
        )

        assert elapsed < 15
        assert wait_until(lambda: process_gone(pid), 5.0)


# -- interrupt mode ---------------------------------------------------------------


class TestInterruptMode:
    @pytest.mark.timeout(20)
    def test_busy_loop_is_interrupted_at_timeout(self) -> None:
        """A pure-Python busy loop gets a timeout and its thread unwinds soon after."""
        unwound = threading.Event()

        @tool(timeout=0.2, on_timeout="interrupt")
        def spin(n: int) -> int:
            """Count forever."""
            try:
                while True:
                    n += 1
            finally:
                unwound.set()

        with Runtime([spin], watchdog=False) as rt:
            outcome = rt.call("spin", {"n": 0})
            stopped = unwound.wait(5.0)

            assert outcome.error_kind == "timeout"
            assert stopped
            assert wait_until(lambda: rt.stats().workers.abandoned == 0, 2.0)


# -- C12: a non-idempotent tool whose connection drops after the effect -----------


class TicketBackend(socketserver.ThreadingTCPServer):
    """A ticket service that stores a ticket, then drops the connection."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TicketHandler)
        self.tickets: list[str] = []
        self.requests = 0
        self.lock = threading.Lock()


class _TicketHandler(socketserver.StreamRequestHandler):
    server: TicketBackend

    def handle(self) -> None:
        title = self.rfile.readline().decode().strip()
        with self.server.lock:
            self.server.requests += 1
            self.server.tickets.append(title)
        # The connection closes here without an answer: the ticket exists,
        # but the client cannot know it.


@pytest.fixture
def ticket_backend() -> Iterator[TicketBackend]:
    backend = TicketBackend()
    thread = threading.Thread(
        target=backend.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield backend
    backend.shutdown()
    backend.server_close()


@pytest.mark.timeout(20)
def test_dropped_connection_is_an_unknown_outcome_and_not_retried_c12(
    ticket_backend: TicketBackend,
) -> None:
    """A non-idempotent tool whose connection drops gets 'outcome is unknown', once."""
    host, port = ticket_backend.server_address[:2]

    @tool(timeout=5)
    def create_ticket(title: str) -> str:
        """Open a support ticket and return its id."""
        with socket.create_connection((host, port), timeout=2) as conn:
            conn.sendall(title.encode() + b"\n")
            reply = conn.recv(1024)
        if not reply:
            raise ConnectionError("the ticket service closed the connection")
        return reply.decode()

    with FakeMessagesServer() as server, server.client() as client:
        server.add_tool_use("create_ticket", {"title": "printer on fire"})
        server.add_reply("I could not confirm the ticket.")

        result = run_agent("Open a ticket", tools=[create_ticket], client=client)
        results = server.requests[-1].tool_results

    assert result.text == "I could not confirm the ticket."
    assert len(results) == 1
    assert results[0]["is_error"] is True
    assert "outcome is unknown" in str(results[0]["content"])
    assert ticket_backend.tickets == ["printer on fire"]
    assert ticket_backend.requests == 1


@pytest.mark.timeout(30)
def test_interrupt_never_lands_in_the_pool_when_the_tool_is_returning() -> None:
    """Tools ending right at their timeout, interrupted, never kill a worker."""
    died: list[BaseException | None] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: died.append(args.exc_value)

    @agentsync.tool(timeout=0.02, on_timeout="interrupt")
    def edge(n: int) -> int:
        end = time.perf_counter() + 0.0195 + (n % 10) * 0.0001
        while time.perf_counter() < end:
            pass
        return n

    @agentsync.tool(timeout=5)
    def innocent(n: int) -> int:
        return sum(range(20000)) * 0 + n

    try:
        with agentsync.Runtime([edge, innocent], max_workers=2) as rt:
            outcomes = []
            for _ in range(60):
                outcomes += rt.run_calls(
                    [("edge", {"n": 1}), ("innocent", {"n": 2}), ("edge", {"n": 3})]
                )
    finally:
        threading.excepthook = previous

    assert died == []
    assert all(o.ok for o in outcomes if o.tool == "innocent")
    assert {o.error_kind for o in outcomes if o.tool == "edge"} <= {None, "timeout", "overloaded"}


@pytest.mark.timeout(40)
def test_interrupt_never_leaves_declared_locks_held() -> None:
    """Interrupted tools with locks, and nested locked calls, leave no lock held."""
    registry = agentsync.LockRegistry()
    names = tuple(f"l{i}" for i in range(8))

    @agentsync.tool(timeout=0.004, on_timeout="interrupt", locks=names)
    def edge(n: int) -> int:
        end = time.perf_counter() + 0.003 + (n % 5) * 0.001
        while time.perf_counter() < end:
            pass
        return n

    @agentsync.tool(timeout=0.05, locks=("l3",))
    def inner() -> str:
        return "x"

    @agentsync.tool(timeout=0.006, on_timeout="interrupt")
    def outer(ctx: agentsync.ToolContext, n: int) -> str:
        end = time.perf_counter() + 0.004 + (n % 5) * 0.001
        while time.perf_counter() < end:
            ctx.call("inner")
        return "y"

    with agentsync.Runtime(
        [edge, inner, outer], max_workers=4, locks=registry, max_abandoned=1000
    ) as rt:
        for n in range(150):
            rt.run_calls([("edge", {"n": n}), ("outer", {"n": n}), ("edge", {"n": n + 1})])
        settled = threading.Event()
        for _ in range(100):
            if rt.stats().workers.abandoned == 0:
                settled.set()
                break
            settled.wait(0.05)

    assert settled.is_set()
    assert [v.name for v in registry.snapshot() if v.holder is not None] == []


@pytest.mark.timeout(20)
def test_interrupt_is_not_swallowed_by_a_nested_call() -> None:
    """An interrupt landing in a nested call stops the outermost tool too."""
    after_nested = threading.Event()
    unwound = threading.Event()

    @agentsync.tool(timeout=5)
    def busy() -> str:
        end = time.perf_counter() + 2
        while time.perf_counter() < end:
            pass
        return "done"

    @agentsync.tool(timeout=0.2, on_timeout="interrupt")
    def outer(ctx: agentsync.ToolContext) -> str:
        try:
            ctx.call("busy")
            after_nested.set()
            return "kept going"
        finally:
            unwound.set()

    with agentsync.Runtime([busy, outer]) as rt:
        outcome = rt.call("outer")
        assert unwound.wait(5)

    assert outcome.error_kind == "timeout"
    assert not after_nested.is_set()
