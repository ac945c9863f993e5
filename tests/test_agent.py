"""Tests for agentsync.agent: run_agent through the real SDK and a fake API."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
import structlog
from conftest import recording

import agentsync
from agentsync import (
    APIReplyError,
    RateLimited,
    RepeatedToolFailure,
    RunDeadlineExceeded,
    Runtime,
    ToolContext,
    TruncatedToolUse,
    TurnLimitExceeded,
    run_agent,
    tool,
)
from agentsync.testing import ErrorReply, FakeMessagesServer, text_block, tool_use_block


class LogRecorder:
    """A structlog processor that keeps every event, from any thread."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, logger: Any, method_name: str, event_dict: Any) -> Any:
        with self._lock:
            self.entries.append({**event_dict, "log_level": method_name})
        raise structlog.DropEvent

    def events(self, event: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.entries if e["event"] == event]


@pytest.fixture
def logs() -> Iterator[LogRecorder]:
    recorder = LogRecorder()
    with recording(recorder):
        yield recorder


@pytest.fixture
def server(fake_messages_server: FakeMessagesServer) -> FakeMessagesServer:
    return fake_messages_server


@pytest.fixture
def client(server: FakeMessagesServer) -> Iterator[anthropic.Anthropic]:
    with server.client() as sdk_client:
        yield sdk_client


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


class TestToolResults:
    @pytest.mark.timeout(10)
    def test_parallel_results_keep_model_order_c1(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """Results go back in one user message, A before B, though B ends first."""
        b_done = threading.Event()
        finished: list[str] = []

        @tool
        def slow_a() -> str:
            """Wait for B, then answer."""
            assert b_done.wait(5)
            finished.append("A")
            return "result A"

        @tool
        def fast_b() -> str:
            """Answer at once."""
            finished.append("B")
            b_done.set()
            return "result B"

        turn = server.add_reply([tool_use_block("slow_a"), tool_use_block("fast_b")])
        server.add_reply("both done")
        id_a, id_b = turn.tool_use_ids

        result = run_agent("go", tools=[slow_a, fast_b], client=client)

        assert finished == ["B", "A"]
        assert result.text == "both done"
        second = server.requests[1].messages
        assert [m["role"] for m in second] == ["user", "assistant", "user"]
        assert [b["id"] for b in second[1]["content"]] == [id_a, id_b]
        results = second[2]["content"]
        assert [(b["type"], b["tool_use_id"], b["content"]) for b in results[:2]] == [
            ("tool_result", id_a, "result A"),
            ("tool_result", id_b, "result B"),
        ]
        assert not any(b.get("is_error") for b in results)

    def test_failing_tool_is_reported_and_the_loop_continues_c2(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A raising tool gives an is_error result; its sibling's result is there."""

        @tool
        def lookup(key: str) -> str:
            """Look a key up."""
            raise ValueError(f"no such key {key!r}")

        turn = server.add_reply(
            [
                tool_use_block("lookup", {"key": "k1"}),
                tool_use_block("add", {"a": 2, "b": 3}),
            ]
        )
        server.add_reply("sorry, no key")
        id_lookup, id_add = turn.tool_use_ids

        result = run_agent("go", tools=[lookup, add], client=client)

        assert result.text == "sorry, no key"
        assert len(server.requests) == 2
        failed, sibling = server.requests[1].tool_results
        assert failed["tool_use_id"] == id_lookup
        assert failed["is_error"] is True
        assert failed["content"] == "tool 'lookup' raised ValueError: no such key 'k1'"
        assert sibling == {"type": "tool_result", "tool_use_id": id_add, "content": "5"}
        assert [c.status for c in result.tool_calls] == ["exception", "ok"]

    def test_same_failing_call_three_turns_in_a_row_stops_the_run_c2(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """Repeating one failing call three turns running raises RepeatedToolFailure."""
        calls: list[str] = []

        @tool
        def lookup(key: str) -> str:
            """Look a key up."""
            calls.append(key)
            raise ValueError("backend down")

        for _ in range(3):
            server.add_tool_use("lookup", {"key": "k1"})
        server.add_reply("never asked for")

        with pytest.raises(
            RepeatedToolFailure, match="'lookup' 3 turns in a row"
        ) as info:
            run_agent("go", tools=[lookup], client=client)

        assert calls == ["k1", "k1", "k1"]
        assert len(server.requests) == 3
        assert server.pending == 1
        partial = info.value.result
        assert partial is not None
        assert partial.turns == 3
        assert [m["role"] for m in partial.messages] == ["user"] + [
            "assistant",
            "user",
        ] * 3
        assert "backend down" in str(info.value)

    def test_different_failing_calls_do_not_count_as_repeats(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A failing call with new input each turn does not trip the repeat guard."""

        @tool
        def lookup(key: str) -> str:
            """Look a key up."""
            raise ValueError("backend down")

        for key in ("k1", "k2", "k3"):
            server.add_tool_use("lookup", {"key": key})
        server.add_reply("gave up")

        result = run_agent("go", tools=[lookup], client=client)

        assert result.text == "gave up"
        assert result.turns == 4


class TestTruncatedAndPaused:
    def test_tool_use_cut_off_by_max_tokens_never_runs_c3(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A reply cut off by max_tokens in a tool_use raises; the tool never ran."""
        ran = []

        @tool
        def count(n: int = 0) -> int:
            """Count."""
            ran.append(n)
            return n

        server.add_reply(
            [text_block("counting"), tool_use_block("count", {})],
            stop_reason="max_tokens",
        )

        with pytest.raises(TruncatedToolUse, match="max_tokens") as info:
            run_agent("go", tools=[count], client=client, max_tokens=50)

        assert ran == []
        assert len(server.requests) == 1
        assert "'count'" in str(info.value)
        assert info.value.result.tool_calls == []

    def test_truncated_reply_is_asked_again_with_more_tokens_c3(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """With max_tokens_limit the cut-off turn is asked again with more tokens."""
        ran = []

        @tool
        def count(n: int = 0) -> int:
            """Count."""
            ran.append(n)
            return n

        server.add_reply([tool_use_block("count", {})], stop_reason="max_tokens")
        server.add_tool_use("count", {"n": 7})
        server.add_reply("counted")

        result = run_agent(
            "go", tools=[count], client=client, max_tokens=100, max_tokens_limit=400
        )

        assert result.text == "counted"
        assert ran == [7]
        assert [r.json["max_tokens"] for r in server.requests] == [100, 200, 200]
        assert server.requests[1].messages == server.requests[0].messages

    def test_paused_turn_goes_back_unchanged_c3(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A pause_turn reply is sent back as is; the later end_turn is the result."""
        paused = [
            text_block("let me search"),
            {
                "type": "server_tool_use",
                "id": "srvtoolu_01",
                "name": "web_search",
                "input": {"query": "weather"},
            },
        ]
        server.add_reply(paused, stop_reason="pause_turn")
        server.add_reply("it is sunny")

        result = run_agent("weather?", client=client)

        assert result.text == "it is sunny"
        assert result.stop_reason == "end_turn"
        assert result.turns == 2
        assert server.requests[1].messages[-1] == {
            "role": "assistant",
            "content": paused,
        }

    def test_pause_turn_is_bounded_by_max_turns_c3(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A model that keeps pausing stops at max_turns."""
        server.set_default(lambda request: _paused_reply())

        with pytest.raises(TurnLimitExceeded):
            run_agent("go", client=client, max_turns=3)

        assert len(server.requests) == 3


def _paused_reply() -> Any:
    from agentsync.testing import Reply

    return Reply([text_block("still thinking")], stop_reason="pause_turn")


class TestRetries:
    @pytest.mark.timeout(10)
    def test_rate_limit_retried_by_one_layer_only_c4(
        self, server: FakeMessagesServer
    ) -> None:
        """429 twice then 200 takes exactly 3 requests, despite client retries."""
        server.add_error(429, headers={"retry-after": "0.05"})
        server.add_error(429, headers={"retry-after": "0.05"})
        server.add_reply("finally")

        with server.client(max_retries=2) as client:
            begin = time.monotonic()
            result = run_agent("go", client=client)
            elapsed = time.monotonic() - begin

        assert result.text == "finally"
        assert len(server.requests) == 3
        gaps = [
            b.received_at - a.received_at
            for a, b in zip(server.requests, server.requests[1:], strict=False)
        ]
        assert all(gap >= 0.04 for gap in gaps), gaps
        assert elapsed < 2.0

    @pytest.mark.timeout(10)
    def test_overloaded_once_then_ok_c4(self, server: FakeMessagesServer) -> None:
        """529 overloaded_error once then 200 succeeds in two requests."""
        server.add_error(529, headers={"retry-after": "0.01"})
        server.add_reply("recovered")

        with server.client(max_retries=2) as client:
            result = run_agent("go", client=client)

        assert result.text == "recovered"
        assert len(server.requests) == 2

    @pytest.mark.timeout(10)
    @pytest.mark.parametrize(
        ("max_retry_wait", "reason"),
        [(60.0, "max_retry_wait"), (600.0, "deadline")],
    )
    def test_retry_after_past_the_deadline_fails_at_once_c4(
        self,
        server: FakeMessagesServer,
        client: anthropic.Anthropic,
        max_retry_wait: float,
        reason: str,
    ) -> None:
        """retry-after 171 with a 5 s deadline raises RateLimited at once."""
        server.add_error(429, headers={"retry-after": "171"})
        server.add_reply("never asked for")
        begin = time.monotonic()

        with pytest.raises(RateLimited) as info:
            run_agent("go", client=client, deadline=5, max_retry_wait=max_retry_wait)

        assert time.monotonic() - begin < 1.0
        assert "rate limit" in str(info.value)
        assert "429" in str(info.value)
        assert reason in str(info.value)
        assert info.value.retry_after == 171.0
        assert len(server.requests) == 1

    @pytest.mark.timeout(10)
    def test_attempts_are_bounded(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """An API always answering 500 is asked max_attempts times, then raises."""
        server.set_default(ErrorReply(500, headers={"retry-after": "0.01"}))

        with pytest.raises(APIReplyError, match="500") as info:
            run_agent("go", client=client, max_attempts=3)

        assert len(server.requests) == 3
        assert "after 3 attempts" in str(info.value)

    @pytest.mark.timeout(10)
    def test_dropped_connection_is_retried(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A connection dropped without an answer is retried like a 5xx."""
        server.add_drop()
        server.add_reply("after the drop")

        result = run_agent("go", client=client)

        assert result.text == "after the drop"
        assert len(server.requests) == 2

    def test_bad_request_is_not_retried_and_names_the_status(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A 400 raises APIReplyError at once, naming the status and message."""
        server.add_error(400, message="messages.0: bad content")
        server.add_reply("never asked for")

        with pytest.raises(APIReplyError) as info:
            run_agent("go", client=client)

        assert "400 invalid_request_error" in str(info.value)
        assert "messages.0: bad content" in str(info.value)
        assert len(server.requests) == 1


class TestBrokenReplies:
    def test_reply_that_is_not_json_raises_api_reply_error(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A 200 whose body is not JSON ends the run with APIReplyError."""
        server.add_raw(200, "this is {not json")

        with pytest.raises(APIReplyError, match="JSON"):
            run_agent("go", client=client)

    def test_unknown_stop_reason_raises_api_reply_error(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A stop_reason the loop does not know is reported by name."""
        body = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "m",
            "content": [{"type": "text", "text": "hi"}],
            "stop_reason": "mystery",
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
        server.add_raw(200, json.dumps(body))

        with pytest.raises(APIReplyError, match="unknown stop_reason 'mystery'"):
            run_agent("go", client=client)

    def test_reply_without_content_raises_api_reply_error(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A JSON reply that is not a message is refused with a hint."""
        server.add_raw(200, json.dumps({"hello": "world"}))

        with pytest.raises(APIReplyError, match="content"):
            run_agent("go", client=client)


class TestStopping:
    @pytest.mark.parametrize("stop_reason", ["stop_sequence", "refusal"])
    def test_stop_reason_ends_the_run(
        self, server: FakeMessagesServer, client: anthropic.Anthropic, stop_reason: str
    ) -> None:
        """stop_sequence and refusal end the run with that stop_reason."""
        server.add_reply("partial answer", stop_reason=stop_reason)
        server.add_reply("never asked for")

        result = run_agent("go", client=client, stop_sequences=["END"])

        assert result.stop_reason == stop_reason
        assert result.text == "partial answer"
        assert len(server.requests) == 1

    def test_max_turns_raises_turn_limit_exceeded(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A model still calling tools after max_turns replies stops the run."""
        for i in range(5):
            server.add_tool_use("add", {"a": i, "b": 1})

        with pytest.raises(TurnLimitExceeded, match="max_turns=2") as info:
            run_agent("go", tools=[add], client=client, max_turns=2)

        assert len(server.requests) == 2
        assert info.value.result.turns == 2
        assert len(info.value.result.tool_calls) == 2

    @pytest.mark.timeout(10)
    def test_deadline_bounds_the_whole_run(
        self,
        server: FakeMessagesServer,
        client: anthropic.Anthropic,
        gate: threading.Event,
    ) -> None:
        """A tool hanging past the run's deadline ends the run within the deadline."""

        @tool(timeout=30)
        def hang() -> None:
            """Block until released."""
            gate.wait(30)

        server.add_tool_use("hang")
        server.set_default("answered")
        begin = time.monotonic()

        with pytest.raises(RunDeadlineExceeded) as info:
            run_agent("go", tools=[hang], client=client, deadline=1)

        elapsed = time.monotonic() - begin
        assert elapsed < 1 + 0.5
        [record] = info.value.result.tool_calls
        assert record.status == "deadline"

    @pytest.mark.timeout(10)
    def test_model_call_is_bounded_by_the_deadline(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A model that answers too slowly ends the run at the deadline."""
        server.add_reply("too late", delay=5)
        begin = time.monotonic()

        with pytest.raises(RunDeadlineExceeded):
            run_agent("go", client=client, deadline=0.5)

        assert time.monotonic() - begin < 0.5 + 0.5


class TestRunResult:
    def test_result_fields(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """RunResult has text, turns, summed usage, tool calls and the conversation."""

        @tool
        def fails() -> None:
            """Fail."""
            raise ValueError("nope")

        turn = server.add_reply(
            [
                text_block("working"),
                tool_use_block("add", {"a": 1, "b": 2}),
                tool_use_block("fails"),
            ],
            usage={"input_tokens": 100, "output_tokens": 20},
        )
        server.add_reply(
            "the sum is 3", usage={"input_tokens": 150, "output_tokens": 7}
        )

        result = run_agent("add 1 and 2", tools=[add, fails], client=client)

        assert result.text == "the sum is 3"
        assert result.stop_reason == "end_turn"
        assert result.turns == 2
        assert (result.usage.input_tokens, result.usage.output_tokens) == (250, 27)
        assert [(c.id, c.name, c.status, c.turn) for c in result.tool_calls] == [
            (turn.tool_use_ids[0], "add", "ok", 1),
            (turn.tool_use_ids[1], "fails", "exception", 1),
        ]
        assert result.tool_calls[0].input == {"a": 1, "b": 2}
        assert result.tool_calls[0].ok and not result.tool_calls[1].ok
        assert all(0 <= c.duration < 1 for c in result.tool_calls)
        assert [m["role"] for m in result.messages] == [
            "user",
            "assistant",
            "user",
            "assistant",
        ]
        assert result.messages[-1]["content"] == [
            {"type": "text", "text": "the sum is 3"}
        ]
        assert result.duration > 0
        assert server.requests[0].tool_names == ["add", "fails"]

    def test_messages_can_be_sent_again(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A run's messages plus a new user turn start a valid follow-up run."""
        server.add_tool_use("add", {"a": 1, "b": 2})
        server.add_reply("3")
        first = run_agent("add", tools=[add], client=client)
        server.add_reply("you asked to add")

        second = run_agent(
            [*first.messages, {"role": "user", "content": "what did I ask?"}],
            tools=[add],
            client=client,
        )

        assert second.text == "you asked to add"
        assert len(server.requests[2].messages) == 5

    def test_given_runtime_is_reused_and_left_open(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """run_agent adds the tools to a given runtime and does not close it."""
        server.add_tool_use("add", {"a": 2, "b": 2})
        server.add_reply("4")

        with Runtime() as rt:
            run_agent("go", tools=[add], client=client, runtime=rt)

            assert "add" in rt.tools
            assert rt.call("add", {"a": 1, "b": 1}).value == 2


class TestLogContext:
    @pytest.mark.timeout(10)
    def test_log_context_reaches_worker_threads_c8(
        self, server: FakeMessagesServer, client: anthropic.Anthropic, logs: LogRecorder
    ) -> None:
        """Tool log lines from worker threads carry the run_id of their own run."""
        log = structlog.get_logger("tests.tools")
        threads: dict[str, set[str]] = {"r1": set(), "r2": set()}
        all_started = threading.Barrier(3, timeout=5)

        def make(name: str) -> Any:
            @tool(name=name)
            def noisy(ctx: ToolContext, run: str) -> str:
                """Log one line."""
                all_started.wait()
                threads[run].add(threading.current_thread().name)
                log.info("tool.line", tool_name=name)
                return name

            return noisy

        tools = [make(n) for n in ("t1", "t2", "t3")]
        with Runtime(tools, max_workers=3) as rt:
            for run in ("r1", "r2"):
                server.add_reply(
                    [tool_use_block(n, {"run": run}) for n in ("t1", "t2", "t3")]
                )
                server.add_reply(f"done {run}")
            with structlog.contextvars.bound_contextvars(run_id="r1"):
                first = run_agent("one", client=client, runtime=rt)
            first_lines = list(logs.events("tool.line"))
            with structlog.contextvars.bound_contextvars(run_id="r2"):
                second = run_agent("two", client=client, runtime=rt)
            second_lines = logs.events("tool.line")[len(first_lines) :]

        assert (first.run_id, second.run_id) == ("r1", "r2")
        assert sorted(line["tool_name"] for line in first_lines) == ["t1", "t2", "t3"]
        assert [line.get("run_id") for line in first_lines] == ["r1"] * 3
        assert sorted(line["tool_name"] for line in second_lines) == ["t1", "t2", "t3"]
        assert [line.get("run_id") for line in second_lines] == ["r2"] * 3
        assert len(threads["r1"]) == 3
        assert threads["r2"] <= threads["r1"]
        assert structlog.contextvars.get_contextvars().get("run_id") is None


class TestCallerMistakesInRuns:
    """Mistakes in how a run is set up get clear errors."""

    def test_infinite_deadline_is_refused(self) -> None:
        """deadline=inf is refused before anything is sent."""

        with pytest.raises(ValueError, match="deadline"):
            agentsync.run_agent("hi", deadline=float("inf"), client=object())  # type: ignore[arg-type]

    def test_unencodable_schema_is_not_blamed_on_the_api(self) -> None:
        """A tool whose schema holds inf fails as a request problem, not a reply one."""

        @agentsync.tool
        def scale(x: float = math.inf) -> float:
            return x

        with FakeMessagesServer() as server:
            server.add_reply("never sent")
            with pytest.raises(agentsync.APIReplyError, match="could not be encoded"):
                agentsync.run_agent("hi", tools=[scale], client=server.client())

            assert server.requests == []

    def test_tool_use_with_end_turn_still_gets_results(self) -> None:
        """A reply ending its turn with a tool_use still has that tool run."""
        ran = threading.Event()

        @agentsync.tool
        def ping() -> str:
            ran.set()
            return "pong"

        with FakeMessagesServer() as server:
            server.add_reply(
                [{"type": "tool_use", "name": "ping", "input": {}}], stop_reason="end_turn"
            )
            server.add_reply("done")
            result = agentsync.run_agent("hi", tools=[ping], client=server.client())

        assert ran.is_set()
        assert result.text == "done"
        assert result.tool_calls[0].status == "ok"


def test_refusal_with_a_tool_use_leaves_resumable_messages() -> None:
    """A refusal carrying a tool_use answers it unrun, so the history stays valid."""
    ran = threading.Event()

    @agentsync.tool
    def ping() -> str:
        ran.set()
        return "pong"

    with FakeMessagesServer() as server:
        server.add_reply(
            [{"type": "tool_use", "name": "ping", "input": {}}], stop_reason="refusal"
        )
        result = agentsync.run_agent("hi", tools=[ping], client=server.client())
        server.add_reply("resumed")
        again = agentsync.run_agent(result.messages, tools=[ping], client=server.client())

    assert result.stop_reason == "refusal"
    assert not ran.is_set()
    assert result.messages[-1]["content"][0]["is_error"] is True
    assert again.text == "resumed"
