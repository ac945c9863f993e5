"""The request checks a FakeMessagesServer makes before answering.

The real API rejects a malformed conversation with a 400 before any model
sees it. The fake repeats the checks that catch agent-loop bugs: a
``tool_use`` left without its ``tool_result``, a result for a call that was
never made, results placed after other content.

Limit: these are a subset of the API's rules (no token counting, no schema
check of tool definitions, no image or document validation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["request_problem"]


def request_problem(body: Mapping[str, Any]) -> str | None:
    """Return why the API would reject ``body`` with a 400, or ``None``."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: field required"
    max_tokens = body.get("max_tokens")
    if (
        not isinstance(max_tokens, int)
        or isinstance(max_tokens, bool)
        or max_tokens < 1
    ):
        return "max_tokens: must be a positive integer"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"

    for i, message in enumerate(messages):
        problem = _message_problem(i, message)
        if problem:
            return problem

    for i in range(len(messages)):
        problem = _pairing_problem(i, messages)
        if problem:
            return problem

    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return "tools: must be a list"
        names: list[str] = []
        for j, tool in enumerate(tools):
            name = tool.get("name") if isinstance(tool, dict) else None
            if not isinstance(name, str) or not name:
                return f"tools.{j}.name: field required"
            names.append(name)
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            return f"tools: tool names must be unique: {', '.join(duplicates)}"
    return None


def _message_problem(i: int, message: Any) -> str | None:
    if not isinstance(message, dict):
        return f"messages.{i}: must be an object"
    if message.get("role") not in ("user", "assistant"):
        return f"messages.{i}.role: must be 'user' or 'assistant'"
    content = message.get("content")
    if isinstance(content, str):
        return None
    if not isinstance(content, list):
        return f"messages.{i}.content: must be a string or a list of blocks"
    for j, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            return f"messages.{i}.content.{j}: block needs a 'type'"
    return None


def _blocks(message: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    content = message.get("content")
    if not isinstance(content, list):
        return []
    return [b for b in content if b.get("type") == kind]


def _pairing_problem(i: int, messages: list[dict[str, Any]]) -> str | None:
    message = messages[i]

    # Every tool_use must be answered by the very next message.
    if message["role"] == "assistant":
        use_ids = [b.get("id") for b in _blocks(message, "tool_use")]
        if not use_ids or i + 1 == len(messages):
            return None
        reply = messages[i + 1]
        result_ids = {b.get("tool_use_id") for b in _blocks(reply, "tool_result")}
        missing = [u for u in use_ids if u not in result_ids]
        if reply["role"] != "user" or missing:
            return (
                f"messages.{i + 1}: tool_use ids without a tool_result block "
                f"immediately after: {', '.join(map(str, missing or use_ids))}"
            )
        return None

    # A user message's tool_results answer the assistant turn just before it,
    # and come before any other block.
    results = _blocks(message, "tool_result")
    if not results:
        return None
    previous = messages[i - 1] if i > 0 else None
    known = (
        {b.get("id") for b in _blocks(previous, "tool_use")}
        if previous is not None and previous["role"] == "assistant"
        else set()
    )
    unexpected = [
        r.get("tool_use_id") for r in results if r.get("tool_use_id") not in known
    ]
    if unexpected:
        return (
            f"messages.{i}: tool_result for unknown tool_use ids "
            f"(not in the previous assistant message): {', '.join(map(str, unexpected))}"
        )
    content = message["content"]
    first_other = next(
        (j for j, b in enumerate(content) if b["type"] != "tool_result"), len(content)
    )
    if any(b["type"] == "tool_result" for b in content[first_other:]):
        return f"messages.{i}: tool_result blocks must come first in the content"
    return None
