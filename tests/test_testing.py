"""Tests for agentsync.testing: the fake Messages API, through the real SDK."""

from __future__ import annotations

import importlib.metadata
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import pytest

from agentsync.testing import (
    Drop,
    ErrorReply,
    FakeMessagesServer,
    RecordedRequest,
    Reply,
    text_block,
    tool_use_block,
)

pytest_plugins = ["pytester"]

HELLO: list[anthropic.types.MessageParam] = [{"role": "user", "content": "hello"}]


@pytest.fixture
def server() -> Iterator[FakeMessagesServer]:
    with FakeMessagesServer() as fake:
        yield fake


@pytest.fixture
def client(server: FakeMessagesServer) -> Iterator[anthropic.Anthropic]:
    with server.client() as sdk_client:
        yield sdk_client


def ask(client: anthropic.Anthropic, **overrides: Any) -> anthropic.types.Message:
    arguments: dict[str, Any] = {
        "model": "claude-fake-1",
        "max_tokens": 64,
        "messages": HELLO,
        **overrides,
    }
    message: anthropic.types.Message = client.messages.create(**arguments)
    return message


def first_text(message: anthropic.types.Message) -> str:
    block = message.content[0]
    assert block.type == "text"
    return block.text


class TestReplies:
    def test_text_reply_becomes_a_message(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A scripted string arrives as a Message with one text block."""
        server.add_reply("hi there")

        message = ask(client)

        assert message.type == "message"
        assert message.role == "assistant"
        assert message.id.startswith("msg_")
        assert message.model == "claude-fake-1"
        assert [block.type for block in message.content] == ["text"]
        assert first_text(message) == "hi there"
        assert message.stop_reason == "end_turn"
        assert message.stop_sequence is None
        assert message.usage.input_tokens > 0
        assert message.usage.output_tokens > 0

    def test_tool_use_reply_carries_name_input_and_id(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """add_tool_use sends a tool_use block and stop_reason tool_use."""
        reply = server.add_tool_use("add", {"a": 1, "b": 2}, text="adding")

        message = ask(client)

        assert message.stop_reason == "tool_use"
        text, call = message.content
        assert text.type == "text"
        assert call.type == "tool_use"
        assert call.name == "add"
        assert call.input == {"a": 1, "b": 2}
        assert call.id == reply.tool_use_ids[0]
        assert call.id.startswith("toolu_")

    def test_parallel_tool_uses_get_unique_ids(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """Several tool_use blocks in one reply each get their own id."""
        server.add_reply(
            [
                text_block("two lookups"),
                tool_use_block("lookup", {"key": "a"}),
                tool_use_block("lookup", {"key": "b"}),
                tool_use_block("lookup", {"key": "c"}, id="toolu_given"),
            ]
        )

        message = ask(client)

        ids = [block.id for block in message.content if block.type == "tool_use"]
        assert len(set(ids)) == 3
        assert ids[2] == "toolu_given"

    @pytest.mark.parametrize(
        "stop_reason", ["end_turn", "max_tokens", "pause_turn", "refusal"]
    )
    def test_stop_reason_is_sent_as_scripted(
        self, server: FakeMessagesServer, client: anthropic.Anthropic, stop_reason: str
    ) -> None:
        """Each supported stop reason reaches the caller unchanged."""
        server.add_reply("partial", stop_reason=stop_reason)

        message = ask(client)

        assert message.stop_reason == stop_reason

    def test_stop_sequence_defaults_to_the_requested_one(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """stop_reason stop_sequence echoes the request's first stop sequence."""
        server.add_reply("one, two", stop_reason="stop_sequence")

        message = ask(client, stop_sequences=["THREE", "FOUR"])

        assert message.stop_reason == "stop_sequence"
        assert message.stop_sequence == "THREE"

    def test_usage_and_model_overrides(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """Scripted usage and model replace the defaults."""
        server.add_reply("ok", usage={"output_tokens": 99}, model="other-model")

        message = ask(client)

        assert message.usage.output_tokens == 99
        assert message.model == "other-model"

    def test_reply_has_a_request_id_header(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """Every answer carries a request-id header the SDK exposes."""
        server.add_reply("ok")

        raw = client.messages.with_raw_response.create(
            model="m", max_tokens=8, messages=HELLO
        )

        assert raw.headers["request-id"].startswith("req_")
        assert first_text(raw.parse()) == "ok"

    def test_unknown_stop_reason_is_refused_when_scripted(self) -> None:
        """A typo in a stop reason fails at scripting time, not in the SDK."""
        with pytest.raises(ValueError, match="unknown stop_reason"):
            Reply("x", stop_reason="end-turn")


class TestRecording:
    def test_request_is_recorded_with_messages_and_tools(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """The server keeps each request's path, headers and decoded body."""
        server.add_reply("ok")
        tool = {
            "name": "add",
            "description": "Add.",
            "input_schema": {"type": "object"},
        }

        ask(client, tools=[tool], system="be brief")

        (request,) = server.requests
        assert isinstance(request, RecordedRequest)
        assert request.index == 1
        assert (request.method, request.path) == ("POST", "/v1/messages")
        assert request.messages == HELLO
        assert request.tool_names == ["add"]
        assert request.json["system"] == "be brief"
        assert request.model == "claude-fake-1"
        assert request.headers["authorization"] == "Bearer test-key"
        assert json.loads(request.body) == dict(request.json)

    def test_tool_results_of_the_last_turn_are_exposed(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """tool_results lists the result blocks the agent sent back."""
        call = server.add_tool_use("add", {"a": 1})
        server.add_reply("done")
        first = ask(client)
        conversation = [
            *HELLO,
            first.to_param(),
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": call.tool_use_ids[0],
                        "content": "1",
                    }
                ],
            },
        ]

        ask(client, messages=conversation)

        assert (
            server.last_request.tool_results[0]["tool_use_id"] == call.tool_use_ids[0]
        )
        assert server.pending == 0

    def test_concurrent_requests_each_take_one_reply(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """Parallel callers share the script without losing or repeating a reply."""
        for n in range(8):
            server.add_reply(f"reply {n}")

        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(ask, client) for _ in range(8)]
            texts = {first_text(f.result(timeout=10)) for f in futures}

        assert texts == {f"reply {n}" for n in range(8)}
        assert sorted(r.index for r in server.requests) == list(range(1, 9))


class TestErrors:
    def test_rate_limit_keeps_retry_after(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A 429 surfaces as RateLimitError with its retry-after header."""
        server.add_error(429, headers={"retry-after": "171"})

        with pytest.raises(anthropic.RateLimitError) as caught:
            ask(client)

        assert caught.value.status_code == 429
        assert caught.value.response.headers["retry-after"] == "171"
        assert caught.value.type == "rate_limit_error"

    def test_overloaded_is_an_internal_server_error_with_529(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A 529 surfaces as the SDK's OverloadedError, an InternalServerError."""
        server.add_error(529, message="busy")

        with pytest.raises(anthropic.InternalServerError) as caught:
            ask(client)

        assert isinstance(caught.value, anthropic.OverloadedError)
        assert caught.value.status_code == 529
        assert caught.value.type == "overloaded_error"
        assert caught.value.api_message == "busy"

    @pytest.mark.parametrize(
        ("status", "error_class", "error_type"),
        [
            (400, anthropic.BadRequestError, "invalid_request_error"),
            (401, anthropic.AuthenticationError, "authentication_error"),
            (500, anthropic.InternalServerError, "api_error"),
        ],
    )
    def test_error_type_defaults_from_status(
        self,
        server: FakeMessagesServer,
        client: anthropic.Anthropic,
        status: int,
        error_class: type[anthropic.APIStatusError],
        error_type: str,
    ) -> None:
        """An error without an explicit type gets the API's type for its status."""
        server.add_error(status)

        with pytest.raises(error_class) as caught:
            ask(client)

        assert caught.value.status_code == status
        assert caught.value.type == error_type

    def test_drop_is_a_connection_error(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A dropped connection surfaces as APIConnectionError."""
        server.add_drop()

        with pytest.raises(anthropic.APIConnectionError):
            ask(client)

    def test_empty_script_answers_a_clear_500(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """With nothing scripted the request fails at once, naming its number."""
        with pytest.raises(anthropic.InternalServerError) as caught:
            ask(client)

        assert caught.value.status_code == 500
        assert caught.value.api_message == (
            "FakeMessagesServer has no scripted reply left for request 1"
        )
        assert caught.value.response.headers["x-should-retry"] == "false"

    def test_empty_script_is_not_retried_by_a_retrying_client(
        self, server: FakeMessagesServer
    ) -> None:
        """x-should-retry false stops SDK retries of the fake's own 500."""
        retrying = server.client(max_retries=3)

        with retrying, pytest.raises(anthropic.InternalServerError):
            ask(retrying)

        assert len(server.requests) == 1

    def test_invalid_json_reply_is_not_an_api_error(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A 200 with a broken JSON body raises a plain ValueError from the SDK."""
        server.add_raw(200, b'{"type": "message", ')

        with pytest.raises(ValueError):
            ask(client)

    def test_streaming_request_is_refused(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """stream=True gets a 400 explaining the fake does not stream."""
        server.add_reply("never sent")

        with pytest.raises(
            anthropic.BadRequestError, match="streaming is not supported"
        ):
            ask(client, stream=True)

        assert server.pending == 1

    def test_unknown_path_is_not_found(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """Endpoints other than POST /v1/messages answer 404."""
        with pytest.raises(anthropic.NotFoundError, match="only serves POST"):
            client.models.retrieve("claude-fake-1")


class TestValidation:
    def test_tool_use_without_result_is_rejected(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A tool_use not answered by the next message gets the API's 400."""
        server.add_reply("unused")
        conversation = [
            *HELLO,
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
                ],
            },
            {"role": "user", "content": "go on"},
        ]

        with pytest.raises(anthropic.BadRequestError, match="toolu_1"):
            ask(client, messages=conversation)

        assert server.pending == 1

    def test_results_after_text_are_rejected(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """tool_result blocks must lead the user message, as the API requires."""
        conversation = [
            *HELLO,
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "here"},
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "x"},
                ],
            },
        ]

        with pytest.raises(anthropic.BadRequestError, match="must come first"):
            ask(client, messages=conversation)

    def test_result_for_unknown_call_is_rejected(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A tool_result naming no earlier tool_use gets a 400."""
        conversation = [
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_x", "content": "x"}
                ],
            }
        ]

        with pytest.raises(anthropic.BadRequestError, match="unknown tool_use ids"):
            ask(client, messages=conversation)

    def test_validation_can_be_switched_off(self) -> None:
        """validate_requests=False passes any conversation to the script."""
        conversation = [
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]}
        ]

        with FakeMessagesServer(validate_requests=False) as lax, lax.client() as sdk:
            lax.add_reply("fine")
            message = ask(sdk, messages=conversation)

        assert first_text(message) == "fine"


class TestHandlers:
    def test_handler_answers_from_the_request(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A queued handler sees the request and decides the reply."""
        server.add_handler(lambda request: f"you said {request.messages[0]['content']}")

        message = ask(client)

        assert first_text(message) == "you said hello"

    def test_handler_may_return_any_scripted_item(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """Handlers can answer with errors and drops, not only replies."""
        server.add_handler(lambda request: ErrorReply(429))
        server.add_handler(lambda request: Drop())

        with pytest.raises(anthropic.RateLimitError):
            ask(client)
        with pytest.raises(anthropic.APIConnectionError):
            ask(client)

        assert server.pending == 0

    def test_raising_handler_gives_500_and_is_kept(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """An exception in a handler becomes a 500 and lands in handler_errors."""

        def broken(request: RecordedRequest) -> str:
            raise KeyError("missing")

        server.add_handler(broken)

        with pytest.raises(
            anthropic.InternalServerError, match="handler raised KeyError"
        ):
            ask(client)

        assert isinstance(server.handler_errors[0], KeyError)

    def test_default_answers_when_the_script_is_empty(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """set_default replaces the empty-script error for every later request."""
        server.set_default("always this")

        texts = [first_text(ask(client)) for _ in range(3)]

        assert texts == ["always this"] * 3


THREADS_BETA = "message-threads-2026-08-12"


def ask_in_thread(
    client: anthropic.Anthropic, thread: dict[str, Any], **overrides: Any
) -> anthropic.types.beta.BetaMessage:
    arguments: dict[str, Any] = {
        "model": "claude-fake-1",
        "max_tokens": 64,
        "messages": HELLO,
        "betas": [THREADS_BETA],
        "thread": thread,
        **overrides,
    }
    message: anthropic.types.beta.BetaMessage = client.beta.messages.create(**arguments)
    return message


def continue_from(message_id: str) -> dict[str, Any]:
    return {"type": "continue", "previous_message_id": message_id}


@anthropic.beta_tool
def add(a: int, b: int) -> str:
    """Add two numbers.

    Args:
        a: the first number.
        b: the second number.
    """
    return str(a + b)


@anthropic.beta_tool
def mul(a: int, b: int) -> str:
    """Multiply two numbers.

    Args:
        a: the first number.
        b: the second number.
    """
    return str(a * b)


class TestThreads:
    def test_sdk_tool_runner_completes_two_tools_over_two_turns(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """The SDK's threaded tool runner ends, and requests show the whole talk."""
        server.add_reply([tool_use_block("add", {"a": 1, "b": 2})], extra={"id": "m1"})
        server.add_reply([tool_use_block("mul", {"a": 3, "b": 4})], extra={"id": "m2"})
        seen: list[list[dict[str, Any]]] = []

        def last_turn(request: RecordedRequest) -> str:
            seen.append(request.messages)
            return "done"

        server.add_handler(last_turn)
        runner = client.beta.messages.tool_runner(
            model="claude-fake-1",
            max_tokens=64,
            messages=[{"role": "user", "content": "compute"}],
            tools=[add, mul],
        )

        final = runner.until_done()

        assert final.content[0].type == "text" and final.content[0].text == "done"
        first, second, third = server.requests
        assert [r.thread for r in server.requests] == [
            {"type": "create"},
            continue_from("m1"),
            continue_from("m2"),
        ]
        assert all(THREADS_BETA in r.headers["anthropic-beta"] for r in server.requests)
        assert "tools" not in third.json
        assert third.tool_names == first.tool_names == ["add", "mul"]
        assert [m["role"] for m in third.messages] == [
            "user",
            "assistant",
            "user",
            "assistant",
            "user",
        ]
        assert third.messages[:3] == second.messages
        assert third.sent_messages == third.messages[-1:]
        assert [b["content"] for b in second.tool_results + third.tool_results] == [
            "3",
            "12",
        ]
        assert seen == [third.messages]
        assert server.held_replies == 3

    def test_lost_thread_makes_the_sdk_replay_the_history(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A continue from an unknown reply gets thread_not_found; the SDK replays."""

        @anthropic.beta_tool
        def work(n: int) -> str:
            """Work, while the server forgets every thread.

            Args:
                n: how much.
            """
            server.forget_threads()
            return "worked"

        server.add_reply([tool_use_block("work", {"n": 1})])
        server.add_reply("done")
        runner = client.beta.messages.tool_runner(
            model="claude-fake-1",
            max_tokens=64,
            messages=[{"role": "user", "content": "hello"}],
            tools=[work],
        )

        final = runner.until_done()

        assert final.content[0].type == "text" and final.content[0].text == "done"
        _, lost, replay = server.requests
        assert lost.thread is not None and lost.thread["type"] == "continue"
        assert lost.messages == lost.sent_messages
        assert replay.thread == {"type": "create"}
        assert replay.tool_names == ["work"]
        assert [m["role"] for m in replay.sent_messages] == [
            "user",
            "assistant",
            "user",
        ]
        assert replay.tool_results[0]["content"] == "worked"
        assert server.pending == 0

    def test_thread_not_found_has_the_shape_the_sdk_recovers_from(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """An unknown previous_message_id is a 404 with error_code thread_not_found."""
        server.add_reply("never sent")

        with pytest.raises(anthropic.NotFoundError) as caught:
            ask_in_thread(client, continue_from("msg_unknown"), messages=[])

        assert caught.value.type == "not_found_error"
        assert caught.value.error_code == "thread_not_found"
        assert "msg_unknown" in str(caught.value)
        assert server.pending == 1

    def test_continue_rebuilds_the_conversation_for_validation(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A continue is validated against the held history, not its body alone."""
        call = server.add_tool_use("add", {"a": 1, "b": 1})
        server.add_reply("done")
        first = ask_in_thread(client, {"type": "create"}, system="be brief")
        result = {"type": "tool_result", "tool_use_id": "toolu_other", "content": "2"}

        # The index counts the held history: the body sent one message.
        with pytest.raises(anthropic.BadRequestError, match="messages.2: tool_use"):
            ask_in_thread(
                client,
                continue_from(first.id),
                messages=[{"role": "user", "content": [result]}],
            )
        result["tool_use_id"] = call.tool_use_ids[0]
        second = ask_in_thread(
            client,
            continue_from(first.id),
            messages=[{"role": "user", "content": [result]}],
        )

        assert second.content[0].type == "text"
        assert server.last_request.full_json is not None
        assert server.last_request.full_json["system"] == "be brief"
        assert len(server.last_request.messages) == 3

    def test_continue_after_pause_turn_may_send_no_messages(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """An empty continue resumes the held turn, as after a pause_turn."""
        server.add_reply("thinking...", stop_reason="pause_turn")
        server.add_reply("resumed")
        first = ask_in_thread(client, {"type": "create"})

        second = ask_in_thread(client, continue_from(first.id), messages=[])

        assert second.content[0].type == "text"
        assert second.content[0].text == "resumed"
        assert server.last_request.sent_messages == []
        assert [m["role"] for m in server.last_request.messages] == [
            "user",
            "assistant",
        ]

    def test_continue_repeating_create_only_fields_is_rejected(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A continue may not send system or tools; the thread keeps its own."""
        server.add_reply("first")
        first = ask_in_thread(client, {"type": "create"}, system="be brief")

        with pytest.raises(anthropic.BadRequestError, match="system: not allowed"):
            ask_in_thread(
                client, continue_from(first.id), messages=[], system="be brief"
            )

    def test_held_replies_are_bounded(self) -> None:
        """Only the last max_held_replies threaded replies can be continued."""
        with FakeMessagesServer(max_held_replies=2) as small, small.client() as sdk:
            small.set_default("ok")
            ask(sdk)
            ids = [ask_in_thread(sdk, {"type": "create"}).id for _ in range(3)]

            with pytest.raises(anthropic.NotFoundError) as caught:
                ask_in_thread(sdk, continue_from(ids[0]), messages=[])
            latest = ask_in_thread(sdk, continue_from(ids[2]), messages=[])

            assert caught.value.error_code == "thread_not_found"
            assert latest.content[0].type == "text"
            assert small.held_replies == 2


class TestTiming:
    def test_delayed_reply_times_out_a_short_client_timeout(
        self, server: FakeMessagesServer, client: anthropic.Anthropic
    ) -> None:
        """A reply slower than the client's timeout raises APITimeoutError."""
        server.add_reply("too late", delay=30)

        with pytest.raises(anthropic.APITimeoutError):
            ask(client.with_options(timeout=0.2))

    def test_close_cuts_a_pending_delay_short(self) -> None:
        """close() returns quickly while a reply still waits out a long delay."""
        server = FakeMessagesServer().start()
        server.add_reply("late", delay=60)
        sdk_client = server.client()
        errors: list[Exception] = []

        def call() -> None:
            try:
                ask(sdk_client)
            except anthropic.APIError as exc:
                errors.append(exc)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        assert server.wait_for_requests(1, timeout=10)

        started = time.monotonic()
        server.close()
        elapsed = time.monotonic() - started
        caller.join(timeout=10)
        sdk_client.close()

        assert elapsed < 2.0
        assert not caller.is_alive()
        assert isinstance(errors[0], anthropic.APIConnectionError)

    def test_close_does_not_wait_for_idle_keep_alive_connections(self) -> None:
        """A pooled keep-alive connection does not hold up close()."""
        server = FakeMessagesServer().start()
        server.add_reply("ok")
        with server.client() as sdk_client:
            ask(sdk_client)

            started = time.monotonic()
            server.close()
            elapsed = time.monotonic() - started

        assert elapsed < 2.0

    def test_close_twice_and_url_before_start(self) -> None:
        """close() is idempotent and url needs a started server."""
        server = FakeMessagesServer()

        with pytest.raises(RuntimeError, match="not started"):
            _ = server.url
        server.start()
        server.close()
        server.close()

        assert server.url.startswith("http://127.0.0.1:")


def test_fixtures_serve_a_bound_client(pytester: pytest.Pytester) -> None:
    """The plugin's fixtures give a started server and a client bound to it."""
    pytester.makepyfile(
        """
        def test_round_trip(fake_messages_server, fake_anthropic_client):
            fake_messages_server.add_reply("from the fixture")

            message = fake_anthropic_client.messages.create(
                model="m", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
            )

            assert message.content[0].text == "from the fixture"
            assert fake_anthropic_client.max_retries == 0
            assert len(fake_messages_server.requests) == 1
        """
    )
    # Once the package is installed its entry point loads the plugin, and
    # loading it a second time by module name would be refused.
    installed = any(
        ep.name == "agentsync"
        for ep in importlib.metadata.entry_points(group="pytest11")
    )
    plugin_args = [] if installed else ["-p", "agentsync.testing.pytest_plugin"]

    result = pytester.runpytest_inprocess(*plugin_args, "-p", "no:cacheprovider")

    result.assert_outcomes(passed=1)
