"""``run_agent()``: the loop between the Messages API and the tools.

The loop asks the model for a reply, runs every ``tool_use`` block of that
reply at once on the runtime, and sends the results back in the model's
order, until the model ends its turn. A ``deadline`` bounds all of it, model
calls and tools together; only this layer retries API errors.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
import tenacity

from .errors import (
    AgentRunError,
    APIReplyError,
    RateLimited,
    RepeatedToolFailure,
    RunDeadlineExceeded,
    RuntimeClosedError,
    ToolDefinitionError,
    TruncatedToolUse,
    TurnLimitExceeded,
)
from .runtime import Runtime
from .tools import Outcome, Tool, ToolCall

if TYPE_CHECKING:
    import anthropic

# The SDK takes seconds to import; it is imported when a run starts, so that
# the runtime, locks and plans load fast on their own.

__all__ = ["RunResult", "ToolCallRecord", "Usage", "run_agent", "DEFAULT_MODEL"]

_log = structlog.get_logger("agentsync.agent")

DEFAULT_MODEL = os.environ.get("AGENTSYNC_MODEL", "claude-sonnet-4-6")

_STOP_REASONS = {
    "end_turn",
    "tool_use",
    "max_tokens",
    "pause_turn",
    "stop_sequence",
    "refusal",
    "model_context_window_exceeded",
}
_LONGEST_REQUEST = 86400.0

# Replies that stop because they ran out of room: a tool_use they end with
# may be cut off.
_CUT_OFF = ("max_tokens", "model_context_window_exceeded")


@dataclass(frozen=True)
class Usage:
    """Tokens used, summed over a run's model calls."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
        )

    @classmethod
    def of(cls, usage: Any) -> Usage:
        if usage is None:
            return cls()
        return cls(
            getattr(usage, "input_tokens", 0) or 0,
            getattr(usage, "output_tokens", 0) or 0,
            getattr(usage, "cache_creation_input_tokens", 0) or 0,
            getattr(usage, "cache_read_input_tokens", 0) or 0,
        )


@dataclass(frozen=True)
class ToolCallRecord:
    """One tool call the model made during a run, and what came of it."""

    id: str
    name: str
    input: Mapping[str, Any]
    status: str
    error_kind: str | None
    message: str
    duration: float
    turn: int

    @property
    def ok(self) -> bool:
        return self.error_kind is None


@dataclass
class RunResult:
    """What an agent run produced.

    Attributes:
        text: the text of the model's last reply.
        stop_reason: the last reply's ``stop_reason``.
        turns: how many replies the model gave.
        usage: tokens summed over every model call.
        tool_calls: every tool call, in the order the model made them.
        messages: the whole conversation, ready to send again.
        run_id: the id every log line of the run carries.
        duration: seconds the run took.
    """

    text: str = ""
    stop_reason: str | None = None
    turns: int = 0
    usage: Usage = field(default_factory=Usage)
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    run_id: str = ""
    duration: float = 0.0


def run_agent(
    prompt_or_messages: str | Sequence[Mapping[str, Any]],
    *,
    tools: Iterable[Tool | Callable[..., Any]] = (),
    client: anthropic.Anthropic | None = None,
    model: str = DEFAULT_MODEL,
    system: str | None = None,
    max_tokens: int = 4096,
    max_turns: int = 20,
    deadline: float | None = None,
    runtime: Runtime | None = None,
    max_attempts: int = 4,
    max_retry_wait: float = 60.0,
    max_repeated_failures: int = 3,
    max_tokens_limit: int | None = None,
    plans: bool = False,
    **params: Any,
) -> RunResult:
    """Run an agent to the end of its turn and return what it said and did.

    Args:
        prompt_or_messages: the user's prompt, or a whole message list.
        tools: the tools the model may call.
        client: a sync ``anthropic.Anthropic``; one is made from the
            environment when left out. Its own retries are turned off: this
            loop is the one layer that retries.
        model: the model name.
        system: the system prompt.
        max_tokens: the ``max_tokens`` of each request.
        max_turns: how many replies the model may give at most.
        deadline: seconds the whole run may take, model calls and tools
            together. Each request's timeout and each tool's timeout shrink
            to what is left.
        runtime: a :class:`Runtime` to run the tools on; a private one is
            made (and closed) when left out. Given ``tools`` are added to it.
        max_attempts: attempts per model call on 429, 5xx and connection
            errors.
        max_retry_wait: the longest wait between attempts; a longer
            ``retry-after`` fails the run at once.
        max_repeated_failures: how many turns in a row the model may repeat
            the same failing tool call before the run stops.
        max_tokens_limit: when set, a reply cut off inside a ``tool_use`` is
            asked for again with twice the ``max_tokens``, up to this limit.
        plans: give the model a ``submit_plan`` tool to run many tool calls
            as one validated plan (see :func:`agentsync.plans.plan_tool`).
        **params: other Messages API parameters (``temperature``,
            ``tool_choice``, ``stop_sequences``, ``metadata``, ...).

    Returns:
        The :class:`RunResult` of the run.

    Raises:
        RunDeadlineExceeded: the deadline passed before the model finished.
        TurnLimitExceeded: the model still wanted tools after ``max_turns``.
        TruncatedToolUse: a reply was cut off inside a ``tool_use`` block.
        RepeatedToolFailure: the model kept repeating a failing call.
        RateLimited: rate limits or overload outlasted the attempts or deadline.
        APIReplyError: the API failed, or sent a reply the run cannot use.
        Each carries the partial result as ``err.result``.
    """
    if max_turns < 1:
        raise ValueError(f"max_turns must be at least 1, got {max_turns}")
    if deadline is not None and not (0 < deadline < float("inf")):
        raise ValueError(
            f"deadline must be a positive number of seconds, got {deadline!r}"
        )
    loop = _Loop(
        client=client,
        model=model,
        system=system,
        max_tokens=max_tokens,
        max_turns=max_turns,
        end=None if deadline is None else time.monotonic() + deadline,
        max_attempts=max_attempts,
        max_retry_wait=max_retry_wait,
        max_repeated_failures=max_repeated_failures,
        max_tokens_limit=max_tokens_limit,
        params=params,
    )
    own = runtime is None
    rt = runtime if runtime is not None else Runtime()
    try:
        for t in tools:
            rt.register(t)
        if plans:
            existing = rt.tools.get("submit_plan")
            if existing is None:
                from .plans import plan_tool

                rt.register(plan_tool())
            elif not getattr(existing, "is_plan_tool", False):
                raise ToolDefinitionError(
                    "plans=True gives the model a tool named 'submit_plan', and "
                    "one of your tools already has that name; rename it"
                )
        return loop.run(prompt_or_messages, rt)
    finally:
        if own:
            rt.close(timeout=0.5)


class _Loop:
    """The state of one run; ``run()`` drives it."""

    def __init__(
        self,
        *,
        client: anthropic.Anthropic | None,
        model: str,
        system: str | None,
        max_tokens: int,
        max_turns: int,
        end: float | None,
        max_attempts: int,
        max_retry_wait: float,
        max_repeated_failures: int,
        max_tokens_limit: int | None,
        params: dict[str, Any],
    ) -> None:
        import anthropic

        if client is None:
            try:
                client = anthropic.Anthropic()
            except Exception as exc:  # the SDK's own wording varies by version
                raise APIReplyError(
                    "no Anthropic client could be made from the environment "
                    f"({exc}); set ANTHROPIC_API_KEY or pass client="
                ) from exc
        base = client
        self.client = base.with_options(max_retries=0)
        self.model = model
        self.system = system
        self.max_tokens = max_tokens
        self.max_turns = max_turns
        self.end = end
        self.max_attempts = max(1, max_attempts)
        self.max_retry_wait = max_retry_wait
        self.max_repeated_failures = max_repeated_failures
        self.max_tokens_limit = max_tokens_limit
        self.params = params
        self.result = RunResult()
        self.streaks: dict[str, int] = {}

    # -- the loop ------------------------------------------------------------

    def run(self, prompt: str | Sequence[Mapping[str, Any]], rt: Runtime) -> RunResult:
        result = self.result
        result.messages = _initial_messages(prompt)
        bound = structlog.contextvars.get_contextvars()
        result.run_id = str(bound.get("run_id") or uuid.uuid4().hex[:12])
        started = time.monotonic()
        tool_params = rt.tool_params()

        with structlog.contextvars.bound_contextvars(run_id=result.run_id):
            _log.info("run.start", model=self.model, tools=len(tool_params))
            try:
                self._turns(rt, tool_params)
            except AgentRunError as exc:
                exc.result = result
                result.duration = time.monotonic() - started
                _log.warning("run.failed", error=type(exc).__name__, reason=str(exc))
                raise
            result.duration = time.monotonic() - started
            _log.info(
                "run.end",
                stop_reason=result.stop_reason,
                turns=result.turns,
                tool_calls=len(result.tool_calls),
                duration_ms=round(result.duration * 1000, 1),
                input_tokens=result.usage.input_tokens,
                output_tokens=result.usage.output_tokens,
            )
        return result

    def _turns(self, rt: Runtime, tool_params: list[dict[str, Any]]) -> None:
        result = self.result
        max_tokens = self.max_tokens
        while True:
            if result.turns >= self.max_turns:
                raise TurnLimitExceeded(
                    f"the model gave {result.turns} replies (max_turns="
                    f"{self.max_turns}) and still had not ended its turn"
                )
            message = self._create(tool_params, max_tokens)
            result.turns += 1
            result.usage = result.usage + Usage.of(getattr(message, "usage", None))
            stop = message.stop_reason
            content = [_block_dict(b) for b in message.content]
            tool_uses = [b for b in content if b.get("type") == "tool_use"]

            if stop in _CUT_OFF and content and content[-1].get("type") == "tool_use":
                # The cut-off call's input may be partial: it must not run.
                if (
                    stop == "max_tokens"
                    and self.max_tokens_limit
                    and max_tokens < self.max_tokens_limit
                ):
                    max_tokens = min(2 * max_tokens, self.max_tokens_limit)
                    _log.warning("model.truncated_retry", max_tokens=max_tokens)
                    continue
                raise TruncatedToolUse(
                    f"the reply stopped ({stop}, max_tokens={max_tokens}) inside a "
                    "tool_use block "
                    f"for {content[-1].get('name')!r}; the cut-off call was not run. "
                    "Raise max_tokens, or set max_tokens_limit to ask again"
                )

            result.messages.append({"role": "assistant", "content": content})
            result.stop_reason = stop
            result.text = "".join(
                b.get("text", "") for b in content if b.get("type") == "text"
            )
            if stop == "pause_turn":
                continue
            if stop == "end_turn" and tool_uses:
                # Every tool_use needs its tool_result before the conversation
                # can go on: run them, as for stop_reason "tool_use".
                _log.warning("model.tool_use_at_end_turn", tool_uses=len(tool_uses))
            elif stop != "tool_use" or not tool_uses:
                if tool_uses:
                    # The turn ended (a refusal, a stop sequence) with calls in
                    # it: answer each, unrun, so the messages can be sent again.
                    result.messages.append(
                        {
                            "role": "user",
                            "content": [_unrun(b, stop) for b in tool_uses],
                        }
                    )
                return
            self._run_tools(rt, tool_uses)

    def _run_tools(self, rt: Runtime, tool_uses: list[dict[str, Any]]) -> None:
        result = self.result
        calls = [ToolCall(b["name"], b.get("input") or {}, b["id"]) for b in tool_uses]
        if self.end is not None and time.monotonic() >= self.end:
            raise RunDeadlineExceeded("the run's deadline passed before its tools ran")
        try:
            outcomes = rt.run_calls(calls, deadline=self.end)
        except RuntimeClosedError as exc:
            raise AgentRunError(
                "the runtime was closed while the run was still going"
            ) from exc

        # One user message, the results first and in the model's order.
        result.messages.append(
            {"role": "user", "content": [o.to_block() for o in outcomes]}
        )
        for call, outcome in zip(calls, outcomes, strict=True):
            result.tool_calls.append(_record(call, outcome, result.turns))
        self._check_repeats(calls, outcomes)

    def _check_repeats(self, calls: list[ToolCall], outcomes: list[Outcome]) -> None:
        streaks: dict[str, int] = {}
        for call, outcome in zip(calls, outcomes, strict=True):
            if outcome.ok:
                continue
            key = call.name + ":" + json.dumps(call.input, sort_keys=True, default=str)
            streaks[key] = self.streaks.get(key, 0) + 1
            if streaks[key] >= self.max_repeated_failures:
                raise RepeatedToolFailure(
                    f"the model made the same failing call to {call.name!r} "
                    f"{streaks[key]} turns in a row (last error: {outcome.message}); "
                    "stopping the run instead of spending its turns"
                )
        self.streaks = streaks

    # -- model calls ---------------------------------------------------------

    def _create(self, tool_params: list[dict[str, Any]], max_tokens: int) -> Any:
        request: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "messages": self.result.messages,
            **self.params,
        }
        if tool_params:
            request["tools"] = tool_params
        if self.system is not None:
            request["system"] = self.system
        gave_up: list[str] = []

        def stop(state: tenacity.RetryCallState) -> bool:
            wait = state.upcoming_sleep
            if state.attempt_number >= self.max_attempts:
                gave_up.append(f"after {state.attempt_number} attempts")
                return True
            if wait > self.max_retry_wait:
                gave_up.append(
                    f"because it asked to wait {wait:g} s, over max_retry_wait"
                )
                return True
            if self.end is not None and time.monotonic() + wait >= self.end:
                left = max(0.0, self.end - time.monotonic())
                gave_up.append(
                    f"because it asked to wait {wait:g} s and the run's deadline is {left:.1f} s away"
                )
                return True
            return False

        def log_retry(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            _log.warning(
                "model.retry",
                attempt=state.attempt_number,
                wait_s=round(state.upcoming_sleep, 3),
                status=getattr(exc, "status_code", None),
                error=type(exc).__name__,
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_retryable),
            wait=_wait,
            stop=stop,
            before_sleep=log_retry,
            reraise=True,
        )
        import anthropic

        started = time.monotonic()
        try:
            message = retrying(self._request, request)
        except anthropic.APIStatusError as exc:
            raise _status_error(exc, gave_up) from exc
        except anthropic.APITimeoutError as exc:
            if self.end is not None and time.monotonic() >= self.end - 0.01:
                raise RunDeadlineExceeded(
                    "the run's deadline passed while waiting for the model"
                ) from exc
            raise APIReplyError(
                f"the Messages API did not answer in time: {exc}"
            ) from exc
        except anthropic.APIConnectionError as exc:
            raise APIReplyError(
                f"could not reach the Messages API ({exc}); gave up "
                + (gave_up[0] if gave_up else "")
            ) from exc
        except anthropic.AnthropicError as exc:
            raise APIReplyError(f"the Messages API call failed: {exc}") from exc
        except TypeError as exc:
            # The SDK raises this for a client with no credentials, or for a
            # parameter this SDK version does not know.
            raise APIReplyError(
                f"the Messages API call could not be made: {exc}"
            ) from exc
        except json.JSONDecodeError as exc:
            # The SDK lets a reply body that is not JSON through as this.
            raise APIReplyError(
                f"the Messages API sent a reply that is not valid JSON: {exc}"
            ) from exc
        except ValueError as exc:
            raise APIReplyError(
                f"the request could not be encoded as JSON ({exc}); a tool's "
                "schema or a message holds a value JSON cannot carry, such as inf"
            ) from exc

        _check_reply(message)
        _log.info(
            "model.reply",
            turn=self.result.turns + 1,
            stop_reason=message.stop_reason,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            tool_uses=sum(1 for b in message.content if b.type == "tool_use"),
        )
        return message

    def _request(self, request: dict[str, Any]) -> Any:
        timeout: float | None = None
        if self.end is not None:
            timeout = self.end - time.monotonic()
            if timeout <= 0:
                raise RunDeadlineExceeded(
                    "the run's deadline passed before the next model call"
                )
            # HTTP clients turn a timeout into a wall-clock time; past about
            # 1e9 s that overflows, so a far deadline waits at most a day.
            timeout = min(timeout, _LONGEST_REQUEST)
        _log.debug("model.request", messages=len(request["messages"]))
        if timeout is None:
            return self.client.messages.create(**request)
        return self.client.messages.create(**request, timeout=timeout)


def _initial_messages(
    prompt: str | Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValueError("the prompt is empty")
        return [{"role": "user", "content": prompt}]
    messages = [dict(m) for m in prompt]
    if not messages:
        raise ValueError("the message list is empty")
    for index, m in enumerate(messages):
        if m.get("role") not in ("user", "assistant") or "content" not in m:
            raise ValueError(
                f"message {index} needs a role of 'user' or 'assistant' and a content"
            )
    return messages


def _block_dict(block: Any) -> dict[str, Any]:
    if isinstance(block, dict):
        return block
    data: dict[str, Any] = block.to_dict(mode="json")
    return data


def _check_reply(message: Any) -> None:
    content = getattr(message, "content", None)
    stop = getattr(message, "stop_reason", None)
    if not isinstance(content, list):
        raise APIReplyError(
            f"the Messages API reply has no content list (got {type(message).__name__}); "
            "is base_url pointing at the Messages API?"
        )
    if stop not in _STOP_REASONS:
        raise APIReplyError(
            f"the Messages API reply has an unknown stop_reason {stop!r}; expected one "
            f"of {sorted(_STOP_REASONS)}"
        )
    for index, block in enumerate(content):
        if getattr(block, "type", None) == "tool_use":
            if not getattr(block, "id", None) or not getattr(block, "name", None):
                raise APIReplyError(
                    f"tool_use block {index} of the reply has no id or name"
                )
            if (
                not isinstance(getattr(block, "input", None), dict)
                and stop not in _CUT_OFF
            ):
                raise APIReplyError(
                    f"tool_use block {index} ({block.name!r}) has an input that is not "
                    "an object"
                )


def _retryable(exc: BaseException) -> bool:
    import anthropic

    if isinstance(exc, RunDeadlineExceeded):
        return False
    if isinstance(exc, anthropic.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return isinstance(exc, anthropic.APIConnectionError) and not isinstance(
        exc, anthropic.APITimeoutError
    )


def _retry_after(exc: BaseException | None) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) * scale
        except ValueError:
            continue
        if value >= 0:
            return value
    return None


def _wait(state: tenacity.RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    asked = _retry_after(exc)
    if asked is not None:
        return asked
    backoff = min(8.0, 0.5 * 2.0 ** (state.attempt_number - 1))
    return float(backoff * (0.5 + random.random() / 2))


def _status_error(exc: anthropic.APIStatusError, gave_up: list[str]) -> AgentRunError:
    body: dict[str, Any] = exc.body if isinstance(exc.body, dict) else {}
    found = body.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    kind = error.get("type") or "error"
    detail = error.get("message") or str(exc)
    why = f"; gave up {gave_up[0]}" if gave_up else ""
    if exc.status_code in (429, 529):
        name = "rate limit" if exc.status_code == 429 else "overload"
        return RateLimited(
            f"the Messages API answered {exc.status_code} {kind} ({name}){why}",
            retry_after=_retry_after(exc),
        )
    return APIReplyError(
        f"the Messages API answered {exc.status_code} {kind}: {detail}{why}"
    )


def _unrun(block: dict[str, Any], stop: str | None) -> dict[str, Any]:
    return {
        "type": "tool_result",
        "tool_use_id": block["id"],
        "content": f"not run: the turn ended with stop_reason {stop!r}",
        "is_error": True,
    }


def _record(call: ToolCall, outcome: Outcome, turn: int) -> ToolCallRecord:
    return ToolCallRecord(
        id=call.id,
        name=call.name,
        input=dict(call.input),
        status=outcome.status,
        error_kind=outcome.error_kind,
        message=outcome.message,
        duration=outcome.duration,
        turn=turn,
    )
