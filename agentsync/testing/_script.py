"""What a FakeMessagesServer answers: scripted replies and recorded requests."""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, cast

__all__ = [
    "STOP_REASONS",
    "Drop",
    "ErrorReply",
    "Handler",
    "RawReply",
    "RecordedRequest",
    "Reply",
    "Scripted",
    "text_block",
    "tool_use_block",
]

#: The stop reasons a scripted :class:`Reply` may carry.
STOP_REASONS = frozenset(
    {
        "end_turn",
        "tool_use",
        "max_tokens",
        "pause_turn",
        "stop_sequence",
        "refusal",
        "model_context_window_exceeded",
    }
)

#: The ``error.type`` the API sends for each status, used when none is given.
DEFAULT_ERROR_TYPES: Mapping[int, str] = MappingProxyType(
    {
        400: "invalid_request_error",
        401: "authentication_error",
        402: "billing_error",
        403: "permission_error",
        404: "not_found_error",
        408: "timeout_error",
        413: "request_too_large",
        429: "rate_limit_error",
        500: "api_error",
        504: "timeout_error",
        529: "overloaded_error",
    }
)

_DEFAULT_USAGE: Mapping[str, int] = MappingProxyType(
    {"input_tokens": 10, "output_tokens": 5}
)


def new_tool_use_id() -> str:
    """Return a fresh id shaped like the API's (``toolu_`` and 24 characters)."""
    return "toolu_fake" + secrets.token_hex(10)


def text_block(text: str) -> dict[str, Any]:
    """Return a ``text`` content block."""
    return {"type": "text", "text": text}


def tool_use_block(
    name: str, input: Mapping[str, Any] | None = None, *, id: str | None = None
) -> dict[str, Any]:
    """Return a ``tool_use`` content block, with a fresh id unless one is given."""
    return {
        "type": "tool_use",
        "id": id or new_tool_use_id(),
        "name": name,
        "input": dict(input or {}),
    }


def _normalize_block(block: Any, position: int) -> dict[str, Any]:
    # Accept the SDK's own pydantic blocks as well as plain dicts.
    if hasattr(block, "model_dump"):
        block = block.model_dump(mode="json", exclude_none=True)
    if not isinstance(block, Mapping):
        raise TypeError(
            f"content block {position} must be a dict, not {type(block).__name__}"
        )
    result = copy.deepcopy(dict(block))

    kind = result.get("type")
    if not isinstance(kind, str):
        raise TypeError(f"content block {position} needs a 'type' string")
    if kind == "text" and not isinstance(result.get("text"), str):
        raise ValueError(f"text block {position} needs a 'text' string")
    if kind == "tool_use":
        if not isinstance(result.get("name"), str) or not result["name"]:
            raise ValueError(f"tool_use block {position} needs a 'name' string")
        result.setdefault("input", {})
        if not isinstance(result["input"], Mapping):
            raise ValueError(f"tool_use block {position} needs an 'input' dict")
        if not result.get("id"):
            result["id"] = new_tool_use_id()
    return result


@dataclass(frozen=True)
class Reply:
    """A successful Messages API reply.

    ``content`` is a plain string (one text block) or a sequence of content
    blocks as dicts; after construction it is always a tuple of dicts, with an
    id filled into every ``tool_use`` block that lacked one. ``stop_reason``
    defaults to ``"tool_use"`` when a ``tool_use`` block is present, else
    ``"end_turn"``. ``usage`` entries override the default token counts;
    ``model`` overrides the echo of the request's model; ``extra`` adds or
    replaces top-level fields of the message (``stop_details``, ``container``).
    ``delay`` is how many seconds the server waits before answering.

    Raises:
        ValueError: a block is malformed or the stop reason is unknown.
    """

    content: str | Sequence[Mapping[str, Any]]
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: Mapping[str, int] | None = None
    model: str | None = None
    headers: Mapping[str, str] | None = None
    extra: Mapping[str, Any] | None = None
    delay: float = 0.0

    def __post_init__(self) -> None:
        raw = self.content
        blocks: tuple[dict[str, Any], ...]
        if isinstance(raw, str):
            blocks = (text_block(raw),)
        else:
            blocks = tuple(_normalize_block(b, i) for i, b in enumerate(raw))
        object.__setattr__(self, "content", blocks)

        if self.stop_reason is None:
            has_tool_use = any(b["type"] == "tool_use" for b in blocks)
            object.__setattr__(
                self, "stop_reason", "tool_use" if has_tool_use else "end_turn"
            )
        if self.stop_reason not in STOP_REASONS:
            raise ValueError(
                f"unknown stop_reason {self.stop_reason!r}; "
                f"expected one of {sorted(STOP_REASONS)}"
            )
        if self.stop_sequence is not None and self.stop_reason != "stop_sequence":
            raise ValueError(
                "stop_sequence is only sent with stop_reason 'stop_sequence'"
            )
        _check_delay(self.delay)

    @property
    def blocks(self) -> tuple[dict[str, Any], ...]:
        """The normalized content blocks (``content`` after construction)."""
        return cast("tuple[dict[str, Any], ...]", self.content)

    @property
    def tool_use_ids(self) -> list[str]:
        """The ids of this reply's ``tool_use`` blocks, in order."""
        return [b["id"] for b in self.blocks if b["type"] == "tool_use"]

    def to_message(self, request: RecordedRequest) -> dict[str, Any]:
        """Return the message JSON this reply sends in answer to ``request``.

        Raises:
            ValueError: ``stop_reason`` is ``"stop_sequence"`` but neither the
                reply nor the request names a stop sequence.
        """
        stop_sequence = self.stop_sequence
        if self.stop_reason == "stop_sequence" and stop_sequence is None:
            requested = request.json.get("stop_sequences") or []
            if not requested:
                raise ValueError(
                    "scripted reply has stop_reason 'stop_sequence' but neither "
                    "the reply nor the request names a stop sequence"
                )
            stop_sequence = requested[0]

        message: dict[str, Any] = {
            "id": "msg_fake" + secrets.token_hex(10),
            "type": "message",
            "role": "assistant",
            "model": self.model or request.model or "fake-model",
            "content": copy.deepcopy(list(self.blocks)),
            "stop_reason": self.stop_reason,
            "stop_sequence": stop_sequence,
            "usage": {**_DEFAULT_USAGE, **(self.usage or {})},
        }
        message.update(copy.deepcopy(dict(self.extra or {})))
        return message


@dataclass(frozen=True)
class ErrorReply:
    """An HTTP error in the API's shape: ``{"type": "error", "error": {...}}``.

    ``error_type`` defaults from the status (429 ``rate_limit_error``, 529
    ``overloaded_error``, 500 ``api_error``, ...). ``error_code`` is sent as
    ``error.details.error_code``, which the SDK uses to pick a narrower
    exception class. ``headers`` are added to the response, for example
    ``{"retry-after": "2"}``.
    """

    status: int
    error_type: str | None = None
    message: str | None = None
    headers: Mapping[str, str] | None = None
    error_code: str | None = None
    delay: float = 0.0

    def __post_init__(self) -> None:
        if not 400 <= self.status <= 599:
            raise ValueError(f"error status must be 4xx or 5xx, not {self.status}")
        _check_delay(self.delay)

    def to_body(self) -> dict[str, Any]:
        """Return the error JSON this reply sends."""
        error_type = self.error_type or DEFAULT_ERROR_TYPES.get(
            self.status, "api_error" if self.status >= 500 else "invalid_request_error"
        )
        error: dict[str, Any] = {
            "type": error_type,
            "message": self.message or f"fake {error_type} (HTTP {self.status})",
        }
        if self.error_code is not None:
            error["details"] = {"error_code": self.error_code}
        return {"type": "error", "error": error}


@dataclass(frozen=True)
class Drop:
    """Close the connection without answering; the SDK sees a connection error."""

    delay: float = 0.0

    def __post_init__(self) -> None:
        _check_delay(self.delay)


@dataclass(frozen=True)
class RawReply:
    """Send exactly these bytes, to test replies the SDK cannot parse.

    ``content-type`` defaults to ``application/json`` so the SDK tries to
    parse the body.
    """

    status: int
    body: bytes | str
    headers: Mapping[str, str] | None = None
    delay: float = 0.0

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 599:
            raise ValueError(f"invalid HTTP status {self.status}")
        _check_delay(self.delay)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received, in arrival order.

    ``index`` counts from 1. ``headers`` has lowercased names. ``json`` is the
    decoded body, or an empty dict when the body was not a JSON object.
    ``full_json`` is the request as the server reads it: for a message-thread
    continue, the held conversation comes before the messages sent and the
    thread's ``system`` and ``tools`` are filled in; otherwise it equals
    ``json``. ``received_at`` is a ``time.monotonic()`` value.

    :attr:`messages`, :attr:`tools` and :attr:`tool_results` read
    ``full_json``, so a test sees the whole conversation however the client
    sent it; :attr:`sent_messages` are the messages of this body alone.
    """

    index: int
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    json: Mapping[str, Any] = field(default_factory=dict)
    received_at: float = 0.0
    full_json: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.full_json is None:
            object.__setattr__(self, "full_json", self.json)

    @property
    def _full(self) -> Mapping[str, Any]:
        return self.full_json if self.full_json is not None else self.json

    @property
    def model(self) -> str | None:
        """The requested model."""
        model = self._full.get("model")
        return model if isinstance(model, str) else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The whole conversation, held history included, as plain dicts."""
        messages = self._full.get("messages")
        return list(messages) if isinstance(messages, list) else []

    @property
    def sent_messages(self) -> list[dict[str, Any]]:
        """The messages this request's body carried, as plain dicts."""
        messages = self.json.get("messages")
        return list(messages) if isinstance(messages, list) else []

    @property
    def thread(self) -> dict[str, Any] | None:
        """The ``thread`` field sent (``{"type": "create"}``...), or ``None``."""
        thread = self.json.get("thread")
        return dict(thread) if isinstance(thread, dict) else None

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The tool definitions in force, a thread's included, as plain dicts."""
        tools = self._full.get("tools")
        return list(tools) if isinstance(tools, list) else []

    @property
    def tool_names(self) -> list[str]:
        """The names of the tools sent, in order."""
        return [t.get("name", "") for t in self.tools if isinstance(t, dict)]

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        """The ``tool_result`` blocks of the last message, if it is the user's."""
        if not self.messages or self.messages[-1].get("role") != "user":
            return []
        content = self.messages[-1].get("content")
        if not isinstance(content, list):
            return []
        return [
            b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"
        ]


#: Anything a FakeMessagesServer can answer a request with.
Scripted = Reply | ErrorReply | Drop | RawReply

#: A responder: given the request, return what to answer. A string is a text
#: reply; ``None`` falls through to the "no scripted reply left" error.
Handler = Callable[[RecordedRequest], Scripted | str | None]


def _check_delay(delay: float) -> None:
    if delay < 0:
        raise ValueError(f"delay must be >= 0, not {delay}")
