"""Tests for agentsync.runtime: calls, outcomes, timeouts and nested calls."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import agentsync
from agentsync import (
    Outcome,
    Runtime,
    RuntimeClosedError,
    ToolCall,
    ToolContext,
    ToolDefinitionError,
    ToolError,
    tool,
)


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool
def fails() -> None:
    """Raise a plain exception."""
    raise ValueError("bad value 7")


@tool
def refuses() -> None:
    """Raise a ToolError with a clean message."""
    raise ToolError("the record is locked")


@tool
def exits() -> None:
    """Raise SystemExit."""
    raise SystemExit(3)


@tool
def interrupts() -> None:
    """Raise KeyboardInterrupt."""
    raise KeyboardInterrupt


class TestOneOutcomePerCall:
    @pytest.mark.timeout(10)
    def test_run_calls_gives_one_outcome_per_call_in_order(
        self, gate: threading.Event
    ) -> None:
        """Whatever happens to each call, outcomes come back in the calls' order."""

        @tool(timeout=0.2)
        def hang() -> None:
            """Block until released."""
            gate.wait(30)

        rt = Runtime([add, fails, refuses, exits, interrupts, hang], max_workers=8)
        calls = [
            ToolCall("add", {"a": 1, "b": 2}, "c1"),
            ToolCall("fails", {}, "c2"),
            ToolCall("refuses", {}, "c3"),
            ToolCall("hang", {}, "c4"),
            ToolCall("nope", {}, "c5"),
            ToolCall("add", {"a": "x", "b": 2}, "c6"),
            ToolCall("exits", {}, "c7"),
            ToolCall("interrupts", {}, "c8"),
            ToolCall("add", {"a": 2, "b": 2}, "c9"),
        ]

        outcomes = rt.run_calls(calls)

        assert [o.call_id for o in outcomes] == [c.id for c in calls]
        assert [o.status for o in outcomes] == [
            "ok",
            "exception",
            "exception",
            "timeout",
            "unknown_tool",
            "invalid_input",
            "exception",
            "exception",
            "ok",
        ]
        assert outcomes[0].value == 3
        assert outcomes[8].value == 4
        rt.close(timeout=1)

    def test_completion_order_does_not_change_outcome_order(self) -> None:
        """The first call finishing last still gets the first outcome."""
        last_done = threading.Event()

        @tool
        def first() -> str:
            """Wait for the second call to finish."""
            assert last_done.wait(5)
            return "first"

        @tool
        def second() -> str:
            """Finish at once."""
            last_done.set()
            return "second"

        with Runtime([first, second], max_workers=2) as rt:
            outcomes = rt.run_calls([("first", {}), ("second", {})])

        assert [(o.tool, o.value) for o in outcomes] == [
            ("first", "first"),
            ("second", "second"),
        ]

    def test_run_calls_accepts_pairs_mappings_and_tool_calls(self) -> None:
        """Calls may be (name, input) pairs, tool_use-like dicts or ToolCalls."""
        with Runtime([add]) as rt:
            outcomes = rt.run_calls(
                [
                    ("add", {"a": 1, "b": 1}),
                    {
                        "type": "tool_use",
                        "id": "toolu_x",
                        "name": "add",
                        "input": {"a": 2, "b": 2},
                    },
                    ToolCall("add", {"a": 3, "b": 3}, "mine"),
                ]
            )

        assert [o.value for o in outcomes] == [2, 4, 6]
        assert [o.call_id for o in outcomes][1:] == ["toolu_x", "mine"]

    def test_exception_message_names_type_and_text(self) -> None:
        """A plain exception becomes 'raised ValueError: ...', the exception kept."""
        with Runtime([fails]) as rt:
            outcome = rt.call("fails")

        assert outcome.error_kind == "exception"
        assert outcome.message == "tool 'fails' raised ValueError: bad value 7"
        assert isinstance(outcome.exception, ValueError)

    def test_tool_error_message_is_clean(self) -> None:
        """ToolError's text reaches the outcome as is, with no traceback."""
        with Runtime([refuses]) as rt:
            outcome = rt.call("refuses")

        assert outcome.error_kind == "exception"
        assert outcome.message == "the record is locked"
        assert "Traceback" not in outcome.to_block()["content"]

    @pytest.mark.parametrize(
        ("name", "message"),
        [
            ("exits", "tool 'exits' raised SystemExit: 3"),
            ("interrupts", "tool 'interrupts' raised KeyboardInterrupt"),
        ],
    )
    def test_system_exit_and_keyboard_interrupt_become_outcomes(
        self, name: str, message: str
    ) -> None:
        """SystemExit and KeyboardInterrupt in a tool do not escape the runtime."""
        with Runtime([exits, interrupts]) as rt:
            outcome = rt.call(name)
            after = rt.call(name)

        assert (outcome.error_kind, outcome.message) == ("exception", message)
        assert after.message == message

    def test_unknown_tool_lists_the_known_ones(self) -> None:
        """An unknown name gets unknown_tool naming the tools there are."""
        with Runtime([add, fails]) as rt:
            outcome = rt.call("subtract", {"a": 1})

        assert outcome.error_kind == "unknown_tool"
        assert outcome.message == "unknown tool 'subtract'; the tools are: add, fails"

    def test_invalid_input_names_the_field(self) -> None:
        """Bad input gets invalid_input naming the field; the tool never runs."""
        ran = []

        @tool
        def count(n: int) -> int:
            """Count."""
            ran.append(n)
            return n

        with Runtime([count]) as rt:
            outcome = rt.call("count", {"n": "many"})

        assert outcome.error_kind == "invalid_input"
        assert outcome.message.startswith("invalid input for tool 'count': n: ")
        assert ran == []


class TestTimeouts:
    @pytest.mark.timeout(10)
    def test_timeout_outcome_arrives_near_the_deadline(
        self, gate: threading.Event
    ) -> None:
        """A hung call gets a timeout outcome soon after its timeout."""

        @tool(timeout=0.2)
        def hang() -> None:
            """Block until released."""
            gate.wait(30)

        rt = Runtime([hang])
        begin = time.monotonic()

        outcome = rt.call("hang")

        elapsed = time.monotonic() - begin
        assert outcome.error_kind == "timeout"
        assert 0.2 <= elapsed < 0.2 + 0.5
        assert 0.19 <= outcome.duration < 0.2 + 0.5
        assert not gate.is_set()
        rt.close(timeout=0.1)

    @pytest.mark.timeout(10)
    def test_timeout_message_says_the_seconds_and_not_to_retry(
        self, gate: threading.Event
    ) -> None:
        """The timeout message gives the limit and tells the model not to retry."""

        @tool
        def hang() -> None:
            """Block until released."""
            gate.wait(30)

        rt = Runtime([hang])

        outcome = rt.call("hang", timeout=0.25)

        assert "0.25 s" in outcome.message
        assert "Do not retry" in outcome.message
        assert outcome.to_block()["is_error"] is True
        rt.close(timeout=0.1)

    @pytest.mark.timeout(10)
    def test_context_is_cancelled_after_timeout(self, gate: threading.Event) -> None:
        """Once its caller stopped waiting, the tool sees ctx.cancelled."""
        seen: list[bool] = []
        checked = threading.Event()

        @tool(timeout=0.1)
        def hang(ctx: ToolContext) -> None:
            """Block, then report whether the call was cancelled."""
            seen.append(ctx.cancelled)
            gate.wait(30)
            seen.append(ctx.cancelled)
            checked.set()

        rt = Runtime([hang])

        outcome = rt.call("hang")
        gate.set()

        assert outcome.error_kind == "timeout"
        assert checked.wait(5)
        assert seen == [False, True]
        rt.close(timeout=1)

    @pytest.mark.timeout(10)
    def test_call_past_max_abandoned_is_overloaded_at_once(
        self, gate: threading.Event
    ) -> None:
        """With max_abandoned hung threads alive, a new call is refused at once."""

        @tool(timeout=0.1)
        def hang() -> None:
            """Block until released."""
            gate.wait(30)

        rt = Runtime([hang, add], max_workers=2, max_abandoned=1)
        assert rt.call("hang").error_kind == "timeout"
        begin = time.monotonic()

        outcome = rt.call("add", {"a": 1, "b": 1})

        assert outcome.error_kind == "overloaded"
        assert "max_abandoned=1" in outcome.message
        assert time.monotonic() - begin < 0.5
        rt.close(timeout=0.1)

    @pytest.mark.timeout(10)
    def test_deadline_caps_the_timeout(self, gate: threading.Event) -> None:
        """A deadline earlier than the timeout ends the call with kind 'deadline'."""

        @tool(timeout=5)
        def hang() -> None:
            """Block until released."""
            gate.wait(30)

        rt = Runtime([hang])
        begin = time.monotonic()

        outcome = rt.call("hang", deadline=begin + 0.2)

        elapsed = time.monotonic() - begin
        assert outcome.error_kind == "deadline"
        assert "deadline" in outcome.message
        assert 0.2 <= elapsed < 0.2 + 0.5
        rt.close(timeout=0.1)

    @pytest.mark.timeout(10)
    def test_run_calls_deadline_bounds_all_calls(self, gate: threading.Event) -> None:
        """run_calls with a deadline ends every hung call by that deadline."""

        @tool(timeout=5)
        def hang() -> None:
            """Block until released."""
            gate.wait(30)

        rt = Runtime([hang, add], max_workers=4)
        begin = time.monotonic()

        outcomes = rt.run_calls(
            [("hang", {}), ("add", {"a": 1, "b": 2}), ("hang", {})],
            deadline=begin + 0.3,
        )

        assert [o.status for o in outcomes] == ["deadline", "ok", "deadline"]
        assert time.monotonic() - begin < 0.3 + 0.5
        rt.close(timeout=0.1)

    @pytest.mark.timeout(10)
    def test_tool_giving_up_at_its_deadline_is_a_timeout_when_read_late(self) -> None:
        """A call that gave up at its deadline before the caller looked is a timeout.

        The caller is busy waiting on a slow first call; the async tool's
        wait_for and the ctx.check() loop end their calls themselves meanwhile.
        """

        @tool
        def slow() -> str:
            """Take half a second."""
            time.sleep(0.5)
            return "slow"

        @tool(timeout=0.1)
        async def sleepy() -> None:
            """Sleep past the timeout."""
            await asyncio.sleep(30)

        @tool(timeout=0.1)
        def checker(ctx: ToolContext) -> None:
            """Poll ctx.check() until it raises."""
            while True:
                ctx.check()
                time.sleep(0.005)

        with Runtime([slow, sleepy, checker], max_workers=3) as rt:
            outcomes = rt.run_calls([("slow", {}), ("sleepy", {}), ("checker", {})])

        assert [o.status for o in outcomes] == ["ok", "timeout", "timeout"]
        assert "Do not retry" in outcomes[1].message


class TestNestedCalls:
    @pytest.mark.timeout(10)
    @pytest.mark.parametrize("max_workers", [1, 2])
    def test_nested_calls_do_not_starve_the_pool_c5(self, max_workers: int) -> None:
        """Two parent calls, each calling two children, finish on a small pool."""

        @tool(timeout=5)
        def child(n: int) -> int:
            """Multiply by ten."""
            return n * 10

        @tool(timeout=5)
        def plan(ctx: ToolContext, base: int) -> list[Any]:
            """Call two children and gather their values."""
            first = ctx.call("child", {"n": base})
            second = ctx.call("child", {"n": base + 1})
            return [first.value, second.value]

        with Runtime([child, plan], max_workers=max_workers) as rt:
            begin = time.monotonic()
            outcomes = rt.run_calls([("plan", {"base": 1}), ("plan", {"base": 5})])
            elapsed = time.monotonic() - begin

        assert [o.value for o in outcomes] == [[10, 20], [50, 60]]
        assert elapsed < 2.0

    @pytest.mark.timeout(10)
    @pytest.mark.parametrize("max_workers", [1, 2])
    def test_nested_run_calls_do_not_starve_the_pool_c5(self, max_workers: int) -> None:
        """Children run through runtime.run_calls in a tool never queue behind it."""

        @tool(timeout=5)
        def child(n: int) -> int:
            """Multiply by ten."""
            return n * 10

        @tool(timeout=5)
        def plan(ctx: ToolContext, base: int) -> list[Any]:
            """Run two children through the runtime and gather their values."""
            assert ctx.runtime is not None
            outcomes = ctx.runtime.run_calls(
                [("child", {"n": base}), ("child", {"n": base + 1})]
            )
            return [(o.status, o.value) for o in outcomes]

        with Runtime([child, plan], max_workers=max_workers) as rt:
            begin = time.monotonic()
            outcomes = rt.run_calls([("plan", {"base": 1}), ("plan", {"base": 5})])
            elapsed = time.monotonic() - begin

        assert [o.value for o in outcomes] == [
            [("ok", 10), ("ok", 20)],
            [("ok", 50), ("ok", 60)],
        ]
        assert elapsed < 2.0

    @pytest.mark.timeout(10)
    def test_runtime_call_from_inside_a_tool_runs_inline(self) -> None:
        """A tool calling runtime.call directly does not deadlock a one-worker pool."""
        threads: dict[str, str] = {}
        runtime: list[Runtime] = []

        @tool(timeout=5)
        def inner() -> str:
            """Record the thread."""
            threads["inner"] = threading.current_thread().name
            return "inner done"

        @tool(timeout=5)
        def outer() -> str:
            """Call inner through the runtime object."""
            threads["outer"] = threading.current_thread().name
            return runtime[0].call("inner").value

        with Runtime([inner, outer], max_workers=1) as rt:
            runtime.append(rt)
            outcome = rt.call("outer")

        assert outcome.ok, outcome.message
        assert outcome.value == "inner done"
        assert threads["inner"] == threads["outer"]

    def test_circular_call_is_refused_with_the_path(self) -> None:
        """a -> b -> a fails at once with circular_call and the path."""

        @tool
        def a(ctx: ToolContext) -> Any:
            """Call b."""
            return ctx.call("b").value

        @tool
        def b(ctx: ToolContext) -> Any:
            """Call a back."""
            again = ctx.call("a")
            return (again.status, again.message)

        with Runtime([a, b]) as rt:
            outcome = rt.call("a")

        status, message = outcome.value
        assert status == "circular_call"
        assert "a -> b -> a" in message

    def test_max_depth_bounds_nesting(self) -> None:
        """A chain deeper than max_depth fails with circular_call naming the limit."""

        @tool
        def level(ctx: ToolContext, n: int) -> Any:
            """Call the next level."""
            if n == 0:
                return "bottom"
            names = {3: "l2", 2: "l1", 1: "l0"}
            nested = ctx.call(names[n], {"n": n - 1})
            return nested.value if nested.ok else (nested.status, nested.message)

        tools = [tool(name=f"l{i}")(level.fn) for i in range(4)]
        with Runtime(tools, max_depth=2) as rt:
            shallow = rt.call("l1", {"n": 1})
            deep = rt.call("l3", {"n": 3})

        assert shallow.value == "bottom"
        status, message = deep.value
        assert status == "circular_call"
        assert "max_depth=2" in message
        assert "l3 -> l2 -> l1" in message

    def test_nested_failures_are_outcomes_for_the_parent(self) -> None:
        """Unknown tools, bad input and exceptions in nested calls are outcomes."""

        @tool
        def parent(ctx: ToolContext) -> list[str]:
            """Make three bad nested calls."""
            return [
                ctx.call("missing").status,
                ctx.call("add", {"a": "x", "b": 1}).status,
                ctx.call("fails").status,
                str(ctx.call("add", {"a": 1, "b": 1}).value),
            ]

        with Runtime([parent, add, fails]) as rt:
            outcome = rt.call("parent")

        assert outcome.value == ["unknown_tool", "invalid_input", "exception", "2"]

    @pytest.mark.timeout(10)
    def test_nested_call_keeps_within_the_parent_deadline(self) -> None:
        """A nested call's deadline is never later than its parent's."""

        @tool(timeout=30)
        def child(ctx: ToolContext) -> float | None:
            """Return the deadline."""
            return ctx.deadline

        @tool(timeout=1)
        def parent(ctx: ToolContext) -> tuple[float | None, Any]:
            """Return its deadline and the child's."""
            return ctx.deadline, ctx.call("child").value

        with Runtime([parent, child]) as rt:
            outcome = rt.call("parent")

        parent_deadline, child_deadline = outcome.value
        assert parent_deadline is not None and child_deadline is not None
        assert child_deadline <= parent_deadline


class TestLifecycle:
    def test_call_after_close_raises(self) -> None:
        """A closed runtime refuses calls with RuntimeClosedError."""
        rt = Runtime([add])
        assert rt.call("add", {"a": 1, "b": 1}).value == 2

        rt.close()

        with pytest.raises(RuntimeClosedError):
            rt.call("add", {"a": 1, "b": 1})
        with pytest.raises(RuntimeClosedError):
            rt.run_calls([("add", {"a": 1, "b": 1})])

    @pytest.mark.timeout(10)
    def test_close_does_not_wait_for_hung_calls(self, gate: threading.Event) -> None:
        """close() returns at once when the only running call was abandoned."""

        @tool(timeout=0.1)
        def hang() -> None:
            """Block until released."""
            gate.wait(30)

        rt = Runtime([hang])
        rt.call("hang")
        begin = time.monotonic()

        rt.close(timeout=5)

        assert time.monotonic() - begin < 1.0

    @pytest.mark.timeout(10)
    def test_stats_count_calls_timeouts_and_workers(
        self, gate: threading.Event
    ) -> None:
        """stats() reports calls, timeouts, tools and the pool's workers."""

        @tool(timeout=0.1)
        def hang() -> None:
            """Block until released."""
            gate.wait(30)

        rt = Runtime([hang, add], max_workers=3)
        rt.call("add", {"a": 1, "b": 1})
        rt.call("add", {"a": 1, "b": 2})
        rt.call("hang")

        stats = rt.stats()

        assert (stats.calls, stats.timeouts, stats.tools) == (3, 1, 2)
        assert stats.workers.max_workers == 3
        assert stats.workers.abandoned == 1
        assert stats.workers.busy == 0
        rt.close(timeout=0.1)

    def test_plain_functions_are_wrapped_and_duplicates_refused(self) -> None:
        """register() wraps a plain function and refuses a second tool of that name."""

        def shout(text: str) -> str:
            """Upper-case the text."""
            return text.upper()

        with Runtime([shout]) as rt:
            assert rt.call("shout", {"text": "hi"}).value == "HI"
            assert rt.tool_params()[0]["name"] == "shout"

            with pytest.raises(ToolDefinitionError, match="already registered"):
                rt.register(tool(name="shout")(add.fn))

    @pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
    def test_bad_default_timeout_is_refused(self, bad: float) -> None:
        """default_timeout must be a positive number of seconds."""
        with pytest.raises(ValueError, match="default_timeout"):
            Runtime(default_timeout=bad)


def test_outcome_is_never_raised() -> None:
    """call() returns Outcome objects for every failure kind tested here."""
    with Runtime([fails]) as rt:
        outcome = rt.call("fails")

    assert isinstance(outcome, Outcome)
    assert not isinstance(outcome, BaseException)


class TestCallerMistakes:
    """Bad arguments from the caller get clear errors, not odd outcomes."""

    def test_huge_timeout_still_runs(self) -> None:
        """A timeout past threading.TIMEOUT_MAX is waited for without overflow."""

        @agentsync.tool(timeout=1e12)
        def quick() -> int:
            return 1

        with agentsync.Runtime([quick]) as rt:
            outcome = rt.call("quick")

        assert outcome.ok and outcome.value == 1

    @pytest.mark.parametrize("deadline", [float("nan"), float("inf"), "soon"])
    def test_deadline_must_be_finite(self, deadline: object) -> None:
        """A NaN, infinite or non-number deadline is refused at once."""

        @agentsync.tool
        def quick() -> int:
            return 1

        with agentsync.Runtime([quick]) as rt, pytest.raises(ValueError, match="deadline"):
            rt.call("quick", deadline=deadline)  # type: ignore[arg-type]

    @pytest.mark.parametrize("bad", [("quick", 3), ("quick", {}, "x"), 42, {"input": {}}])
    def test_malformed_calls_name_the_forms_accepted(self, bad: object) -> None:
        """run_calls refuses a malformed call with the forms it takes."""

        @agentsync.tool
        def quick() -> int:
            return 1

        with agentsync.Runtime([quick]) as rt, pytest.raises(TypeError, match="name"):
            rt.run_calls([bad])  # type: ignore[list-item]


@pytest.mark.timeout(20)
def test_close_cancels_running_calls() -> None:
    """Closing a runtime cancels its running calls' contexts."""
    started = threading.Event()
    saw_cancel = threading.Event()

    @agentsync.tool(timeout=10)
    def patient(ctx: agentsync.ToolContext) -> str:
        started.set()
        if ctx.wait(8):
            saw_cancel.set()
            return "cancelled"
        return "done"

    rt = agentsync.Runtime([patient])
    pending = rt.submit(("patient", {}))
    assert started.wait(5)

    rt.close(timeout=5)

    assert saw_cancel.wait(5)
    assert pending.outcome().value == "cancelled"


@pytest.mark.timeout(20)
def test_close_cancels_queued_calls_before_they_start() -> None:
    """Calls still queued when the runtime closes never start."""
    started: list[int] = []
    running = threading.Event()

    @agentsync.tool(timeout=10)
    def slow(ctx: agentsync.ToolContext, n: int) -> int:
        started.append(n)
        running.set()
        ctx.wait(8)
        return n

    rt = agentsync.Runtime([slow], max_workers=1)
    first = rt.submit(("slow", {"n": 1}))
    assert running.wait(5)
    queued = [rt.submit(("slow", {"n": n})) for n in (2, 3)]

    rt.close(timeout=5)

    assert first.outcome().value == 1
    assert [p.outcome().error_kind for p in queued] == ["cancelled", "cancelled"]
    assert started == [1]


def test_call_input_must_be_a_mapping() -> None:
    """A non-mapping input is the caller's mistake and says so."""

    @agentsync.tool
    def side(x: str) -> str:
        return x

    with agentsync.Runtime([side]) as rt, pytest.raises(TypeError, match="mapping"):
        rt.call("side", "x")  # type: ignore[arg-type]
