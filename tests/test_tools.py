"""Tests for agentsync.tools: @tool, schemas, validation and outcomes."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pydantic
import pytest

import agentsync
from agentsync import (
    Outcome,
    Runtime,
    Tool,
    ToolCall,
    ToolContext,
    ToolDefinitionError,
    tool,
)


def add(a: int, b: int = 2) -> int:
    """Add two numbers.

    Args:
        a: the first number.
        b: the second number.
    """
    return a + b


class TestDecorator:
    def test_bare_decorator_makes_a_tool_named_after_the_function(self) -> None:
        """@tool without parentheses wraps the function under its own name."""
        wrapped = tool(add)

        assert isinstance(wrapped, Tool)
        assert wrapped.name == "add"
        assert wrapped.description == "Add two numbers."
        assert wrapped.timeout is None
        assert wrapped.locks == ()
        assert wrapped.idempotent is False

    def test_decorator_with_options_keeps_them(self) -> None:
        """@tool(...) records name, description, timeout, locks and idempotent."""

        @tool(
            name="sum2",
            description="Sum it.",
            timeout=3,
            locks=("db", "cache"),
            idempotent=True,
        )
        def anything(a: int) -> int:
            """Not this text."""
            return a

        assert anything.name == "sum2"
        assert anything.description == "Sum it."
        assert anything.timeout == 3.0
        assert anything.locks == ("db", "cache")
        assert anything.idempotent is True
        assert anything.to_param()["description"] == "Sum it."

    def test_tool_object_still_calls_the_function(self) -> None:
        """Calling a Tool calls the wrapped function directly."""
        wrapped = tool(add)

        assert wrapped(1, 5) == 6


class TestSchema:
    def test_schema_comes_from_signature_and_docstring_args(self) -> None:
        """Types, defaults, required fields and Args descriptions reach the schema."""
        wrapped = tool(add)

        param = wrapped.to_param()

        assert param["name"] == "add"
        schema = param["input_schema"]
        assert schema["type"] == "object"
        assert schema["required"] == ["a"]
        assert schema["properties"]["a"] == {
            "type": "integer",
            "description": "the first number.",
        }
        assert schema["properties"]["b"] == {
            "type": "integer",
            "default": 2,
            "description": "the second number.",
        }
        assert schema["additionalProperties"] is False
        assert "title" not in schema

    def test_tool_context_first_param_is_left_out_of_the_schema(self) -> None:
        """A first parameter annotated ToolContext is not an input field."""

        @tool
        def fetch(ctx: ToolContext, url: str) -> str:
            """Fetch a URL."""
            return url

        assert fetch.context_param == "ctx"
        assert list(fetch.input_schema["properties"]) == ["url"]
        assert fetch.input_schema["required"] == ["url"]

    def test_tool_without_parameters_has_an_empty_object_schema(self) -> None:
        """A tool taking nothing still sends an object schema with properties."""

        @tool
        def ping() -> str:
            """Ping."""
            return "pong"

        assert ping.input_schema["type"] == "object"
        assert ping.input_schema["properties"] == {}
        assert ping.validate({}) == {}
        assert ping.validate(None) == {}


class TestBadDefinitions:
    def test_var_positional_is_refused(self) -> None:
        """*args has no schema, so it cannot make a tool."""

        def spread(*args: int) -> int:
            return sum(args)

        with pytest.raises(ToolDefinitionError, match="args"):
            tool(spread)

    def test_var_keyword_is_refused(self) -> None:
        """**kwargs has no schema, so it cannot make a tool."""

        def spread(**kwargs: int) -> int:
            return sum(kwargs.values())

        with pytest.raises(ToolDefinitionError, match="kwargs"):
            tool(spread)

    def test_positional_only_is_refused(self) -> None:
        """Tool inputs are passed by name, so a positional-only parameter fails."""

        def positional(a: int, /) -> int:
            return a

        with pytest.raises(ToolDefinitionError, match="positional-only"):
            tool(positional)

    @pytest.mark.parametrize("timeout", [0, -1, math.nan, math.inf, "5", True])
    def test_bad_timeout_is_refused(self, timeout: Any) -> None:
        """A timeout must be a positive, finite number of seconds."""
        with pytest.raises(ToolDefinitionError, match="timeout"):
            tool(timeout=timeout)(add)

    def test_locks_as_a_bare_string_is_refused(self) -> None:
        """locks="x" would be read as locks x; the error shows the fix."""
        with pytest.raises(ToolDefinitionError, match=r"locks=\('x',\)"):
            tool(locks="x")(add)

    def test_bad_on_timeout_is_refused(self) -> None:
        """on_timeout must be one of the known policies."""
        with pytest.raises(ToolDefinitionError, match="on_timeout"):
            tool(on_timeout="explode")(add)  # type: ignore[call-overload]

    def test_bad_name_is_refused(self) -> None:
        """A tool name must be letters, digits, '_' or '-'."""
        with pytest.raises(ToolDefinitionError, match="name"):
            tool(name="no spaces")(add)

    def test_definition_error_is_a_type_error(self) -> None:
        """ToolDefinitionError is also a TypeError, for callers catching that."""
        assert issubclass(ToolDefinitionError, TypeError)


class TestValidate:
    def test_valid_input_gives_keyword_arguments_with_defaults(self) -> None:
        """validate() returns every argument, defaults filled in."""
        wrapped = tool(add)

        assert wrapped.validate({"a": 1}) == {"a": 1, "b": 2}

    def test_wrong_type_is_rejected_naming_the_field(self) -> None:
        """A value of the wrong type fails, and the error names the field."""
        wrapped = tool(add)

        with pytest.raises(pydantic.ValidationError) as info:
            wrapped.validate({"a": "not a number"})

        assert [e["loc"] for e in info.value.errors()] == [("a",)]

    def test_missing_field_is_rejected_naming_it(self) -> None:
        """A required field left out fails, naming the field."""
        wrapped = tool(add)

        with pytest.raises(pydantic.ValidationError) as info:
            wrapped.validate({"b": 1})

        assert [(e["loc"], e["type"]) for e in info.value.errors()] == [
            (("a",), "missing")
        ]

    def test_extra_field_is_rejected_naming_it(self) -> None:
        """A field the tool does not take fails instead of being dropped."""
        wrapped = tool(add)

        with pytest.raises(pydantic.ValidationError) as info:
            wrapped.validate({"a": 1, "c": 3})

        assert [(e["loc"], e["type"]) for e in info.value.errors()] == [
            (("c",), "extra_forbidden")
        ]


class TestOutcomeBlock:
    CALL = ToolCall("add", {"a": 1}, "toolu_1")

    @pytest.mark.parametrize(
        ("value", "content"),
        [
            (3, "3"),
            ("plain text", "plain text"),
            ({"b": 1, "a": [1, 2]}, '{"b": 1, "a": [1, 2]}'),
            (None, ""),
            ([{"type": "text", "text": "hi"}], [{"type": "text", "text": "hi"}]),
        ],
    )
    def test_ok_value_becomes_content(self, value: Any, content: Any) -> None:
        """A returned value becomes the tool_result content, without is_error."""
        outcome = Outcome.success(self.CALL, value, 0.1)

        block = outcome.to_block()

        assert block == {
            "type": "tool_result",
            "tool_use_id": "toolu_1",
            "content": content,
        }
        assert outcome.status == "ok"

    def test_error_becomes_is_error_block_with_the_message(self) -> None:
        """A failure becomes an is_error block carrying its message."""
        outcome = Outcome.failure(
            self.CALL, "timeout", "tool 'add' did not answer", 1.0
        )

        block = outcome.to_block()

        assert block == {
            "type": "tool_result",
            "tool_use_id": "toolu_1",
            "content": "tool 'add' did not answer",
            "is_error": True,
        }
        assert outcome.status == "timeout"
        assert outcome.ok is False

    def test_error_without_message_still_says_which_tool_failed(self) -> None:
        """An empty failure message is replaced by one naming the tool."""
        outcome = Outcome.failure(self.CALL, "exception", "")

        block = outcome.to_block()

        assert block["is_error"] is True
        assert block["content"] == "tool 'add' failed"


class TestAsyncTools:
    def test_async_tool_runs_to_its_value(self) -> None:
        """An async def tool is awaited on a private loop and returns its value."""

        @tool
        async def double(x: int) -> int:
            """Double x."""
            await asyncio.sleep(0)
            return 2 * x

        assert double.is_async is True
        assert double.invoke(None, {"x": 4}) == 8

    def test_async_tool_runs_through_the_runtime(self) -> None:
        """An async tool called through a runtime gets an ok outcome."""

        @tool
        async def double(x: int) -> int:
            """Double x."""
            await asyncio.sleep(0.01)
            return 2 * x

        with Runtime([double]) as rt:
            outcome = rt.call("double", {"x": 21})

        assert outcome.ok, outcome.message
        assert outcome.value == 42

    @pytest.mark.timeout(10)
    def test_async_tool_past_its_timeout_gets_a_timeout_outcome(self) -> None:
        """An async tool sleeping past its timeout ends as a timeout, not an error."""

        @tool(timeout=0.2)
        async def sleepy() -> str:
            """Sleep."""
            await asyncio.sleep(30)
            return "late"

        with Runtime([sleepy]) as rt:
            outcome = rt.call("sleepy")

        assert outcome.error_kind == "timeout"
        assert outcome.duration < 0.2 + 0.5


@pytest.mark.parametrize("name", ["", "ünïcode", "x" * 65, "has space"])
def test_tool_names_follow_the_api_rule(name: str) -> None:
    """Names the Messages API would refuse are refused at definition."""

    def fn() -> None:
        return None

    with pytest.raises(agentsync.ToolDefinitionError, match="1 to 64"):
        agentsync.tool(fn, name=name)
