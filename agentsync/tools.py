"""Tools: functions the model can call, their schemas, calls and outcomes.

``@tool`` turns a plain function into a :class:`Tool`. The JSON schema the
model sees is built by pydantic from the signature and the docstring, and
every input is validated against it before the function runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import json
import math
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_type_hints, overload

import docstring_parser
import pydantic

from .errors import ToolDefinitionError
from .retry import Retry

if TYPE_CHECKING:
    from .context import ToolContext

__all__ = ["ErrorKind", "Outcome", "Tool", "ToolCall", "tool"]

ErrorKind = Literal[
    "timeout",
    "cancelled",
    "exception",
    "invalid_input",
    "unknown_tool",
    "circular_call",
    "lock_timeout",
    "lock_order",
    "dependency_failed",
    "overloaded",
    "deadline",
    "unknown_outcome",
]

OnTimeout = Literal["abandon", "interrupt", "process"]

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_call_ids = itertools.count(1)
_call_prefix = f"call_{os.getpid():x}_"


def _new_call_id() -> str:
    return f"{_call_prefix}{next(_call_ids)}"


@dataclass(frozen=True)
class ToolCall:
    """One request to run a tool: its name, its input and an id.

    ``id`` is the model's ``tool_use_id`` when the call comes from a model
    reply; it is generated when left out.
    """

    name: str
    input: Mapping[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=_new_call_id)


@dataclass(frozen=True)
class Outcome:
    """What happened to one tool call. Never raised: every call gets one.

    Attributes:
        call_id: the call's id (the model's ``tool_use_id`` in an agent run).
        tool: the tool's name as asked for.
        ok: True when the tool returned a value.
        value: the tool's return value when ``ok``.
        error_kind: why the call failed, one of :data:`ErrorKind`, or None.
        message: a short text for the model and the logs, empty when ``ok``.
        duration: seconds from the call's start to its outcome.
        exception: the exception the tool raised, when it raised one.
    """

    call_id: str
    tool: str
    ok: bool
    value: Any = None
    error_kind: ErrorKind | None = None
    message: str = ""
    duration: float = 0.0
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    @classmethod
    def success(cls, call: ToolCall, value: Any, duration: float) -> Outcome:
        return cls(call.id, call.name, True, value=value, duration=duration)

    @classmethod
    def failure(
        cls,
        call: ToolCall,
        kind: ErrorKind,
        message: str,
        duration: float = 0.0,
        exception: BaseException | None = None,
    ) -> Outcome:
        return cls(
            call.id,
            call.name,
            False,
            error_kind=kind,
            message=message,
            duration=duration,
            exception=exception,
        )

    @property
    def status(self) -> str:
        """``"ok"`` or the error kind, for logs and tables."""
        return "ok" if self.ok else str(self.error_kind)

    def to_block(self) -> dict[str, Any]:
        """The Messages API ``tool_result`` block for this outcome."""
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": self.call_id}
        if self.ok:
            block["content"] = _content_for(self.value)
        else:
            block["content"] = self.message or f"tool {self.tool!r} failed"
            block["is_error"] = True
        return block


def _content_for(value: Any) -> str | list[dict[str, Any]]:
    """Render a tool's return value as ``tool_result`` content."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if _is_content_blocks(value):
        return list(value)
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def _is_content_blocks(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(b, dict) and b.get("type") in ("text", "image") for b in value
        )
    )


def _is_context_annotation(annotation: Any) -> bool:
    from .context import ToolContext

    return annotation is ToolContext or (
        isinstance(annotation, str) and annotation.split(".")[-1] == "ToolContext"
    )


def _check_retry(retry: Any, name: str, idempotent: bool) -> Retry | None:
    if retry is None or retry is False:
        return None
    if retry is True:
        retry = Retry()
    if not isinstance(retry, Retry):
        raise ToolDefinitionError(
            f"retry of tool {name!r} must be an agentsync.Retry or True, got {retry!r}"
        )
    if not idempotent:
        raise ToolDefinitionError(
            f"tool {name!r} has a retry policy but is not declared idempotent; a "
            "call that failed half-way may have taken effect, so retrying it could "
            "do it twice. Pass idempotent=True if running it twice is harmless"
        )
    return retry


def _check_timeout(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ToolDefinitionError(
            f"{what} must be a positive number of seconds, got {value!r}"
        )
    return float(value)


class Tool:
    """A function the model can call, with its schema and options.

    Build one with :func:`tool`. Calling a ``Tool`` object directly calls the
    function, so decorated functions stay usable as plain functions.

    Attributes:
        name: the name the model uses.
        description: the text the model reads to decide when to call it.
        fn: the wrapped function.
        timeout: seconds a call may run, or None for the runtime's default.
        locks: names of registry locks taken, in canonical order, around
            each call.
        idempotent: whether running the call twice is harmless; only
            idempotent tools are ever retried.
        on_timeout: what happens to a call past its timeout (``"abandon"``).
        stuck_after: seconds after which the watchdog reports a call as stuck,
            with its stack; the call's timeout when None.
        input_model: the pydantic model inputs are validated against.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        locks: Sequence[str] = (),
        idempotent: bool = False,
        on_timeout: OnTimeout = "abandon",
        retry: Any = None,
        stuck_after: float | None = None,
    ) -> None:
        if not callable(fn):
            raise ToolDefinitionError(f"a tool must wrap a callable, got {fn!r}")
        self.fn = fn
        self.name: str = name if name is not None else getattr(fn, "__name__", "")
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ToolDefinitionError(
                f"tool name {self.name!r} must be 1 to 64 ASCII letters, digits, "
                "'_' or '-', as the Messages API requires"
            )
        self.timeout = _check_timeout(timeout, f"timeout of tool {self.name!r}")
        self.stuck_after = _check_timeout(
            stuck_after, f"stuck_after of tool {self.name!r}"
        )
        if isinstance(locks, str):
            raise ToolDefinitionError(
                f"locks of tool {self.name!r} must be a sequence of names, "
                f"not the string {locks!r}; write locks=({locks!r},)"
            )
        self.locks = tuple(locks)
        if on_timeout not in ("abandon", "interrupt", "process"):
            raise ToolDefinitionError(
                f"on_timeout of tool {self.name!r} must be 'abandon', 'interrupt' "
                f"or 'process', got {on_timeout!r}"
            )
        self.on_timeout: OnTimeout = on_timeout
        self.idempotent = bool(idempotent)
        self.retry = _check_retry(retry, self.name, self.idempotent)
        self.is_async = inspect.iscoroutinefunction(fn)

        doc = docstring_parser.parse(inspect.getdoc(fn) or "")
        summary = "\n\n".join(
            p for p in (doc.short_description, doc.long_description) if p
        )
        self.description = description if description is not None else summary
        self.context_param, self.input_model = self._build_model(fn, doc)
        self._schema: dict[str, Any] | None = None
        if on_timeout == "process":
            from ._process import check_process_tool

            check_process_tool(self)

    def __repr__(self) -> str:
        return f"<Tool {self.name!r} timeout={self.timeout}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def _build_model(
        self, fn: Callable[..., Any], doc: docstring_parser.Docstring
    ) -> tuple[str | None, type[pydantic.BaseModel]]:
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError) as exc:
            raise ToolDefinitionError(
                f"cannot read the signature of tool {self.name!r}: {exc}"
            ) from exc
        try:
            hints = get_type_hints(fn)
        except Exception:
            hints = {}
        param_docs = {p.arg_name: p.description for p in doc.params}

        context_param: str | None = None
        fields: dict[str, Any] = {}
        for index, param in enumerate(signature.parameters.values()):
            annotation = hints.get(param.name, param.annotation)
            if index == 0 and _is_context_annotation(annotation):
                context_param = param.name
                continue
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ToolDefinitionError(
                    f"tool {self.name!r} takes *{param.name}; a tool's parameters "
                    "must be named so that they have a schema"
                )
            if param.kind is param.POSITIONAL_ONLY:
                raise ToolDefinitionError(
                    f"parameter {param.name!r} of tool {self.name!r} is "
                    "positional-only; tool inputs are passed by name"
                )
            if annotation is inspect.Parameter.empty:
                annotation = Any
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (
                annotation,
                pydantic.Field(default, description=param_docs.get(param.name)),
            )

        try:
            model = pydantic.create_model(
                f"{self.name}_input",
                __config__=pydantic.ConfigDict(extra="forbid"),
                **fields,
            )
        except Exception as exc:
            raise ToolDefinitionError(
                f"cannot build an input schema for tool {self.name!r}: {exc}"
            ) from exc
        return context_param, model

    @property
    def input_schema(self) -> dict[str, Any]:
        """The JSON schema of the tool's input, as the model sees it."""
        if self._schema is None:
            schema = self.input_model.model_json_schema()
            schema.pop("title", None)
            for prop in schema.get("properties", {}).values():
                prop.pop("title", None)
            schema.setdefault("properties", {})
            self._schema = schema
        return self._schema

    def to_param(self) -> dict[str, Any]:
        """The tool's definition for the ``tools`` parameter of the Messages API."""
        param: dict[str, Any] = {"name": self.name, "input_schema": self.input_schema}
        if self.description:
            param["description"] = self.description
        return param

    def validate(self, data: Any) -> dict[str, Any]:
        """Check an input against the schema and return the keyword arguments.

        Raises:
            pydantic.ValidationError: the input does not fit the schema.
        """
        model = self.input_model.model_validate(data if data is not None else {})
        # A model's __dict__ holds exactly its validated fields.
        return dict(model.__dict__)

    def invoke(self, context: ToolContext | None, kwargs: dict[str, Any]) -> Any:
        """Run the function with validated arguments (and the context).

        An ``async def`` tool runs to completion on a private event loop of the
        calling thread, cancelled when the call's deadline passes.
        """
        if self.on_timeout == "process":
            from ._process import run_in_process

            return run_in_process(self, context, kwargs)
        if self.context_param is not None:
            kwargs = {self.context_param: context, **kwargs}
        if not self.is_async:
            return self.fn(**kwargs)
        return _run_coroutine(self.fn(**kwargs), context)


def _run_coroutine(coro: Any, context: ToolContext | None) -> Any:
    """Run a tool's coroutine on a new event loop, cancelled at the deadline.

    The loop comes from the process's event loop policy, so it is uvloop's
    when uvloop's policy is installed. The caller's loop is never re-entered:
    a tool runs in a worker thread, which has no loop of its own; and when
    this thread already runs one (an async tool calling another through
    ``ctx.call``), the coroutine gets a loop in a short-lived thread instead.
    """
    timeout = context.remaining() if context is not None else None

    async def bounded() -> Any:
        if timeout is None:
            return await coro
        return await asyncio.wait_for(coro, timeout)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(bounded())
    return _run_in_loop_thread(bounded(), timeout)


# How long past its timeout a coroutine may take to unwind once cancelled.
_CANCEL_GRACE = 1.0


def _run_in_loop_thread(main: Any, timeout: float | None) -> Any:
    """Run ``main`` with ``asyncio.run`` in a new daemon thread and wait for it."""
    result: dict[str, Any] = {}
    finished = threading.Event()

    def run() -> None:
        try:
            result["value"] = asyncio.run(main)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            result["error"] = exc
        finally:
            finished.set()

    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run, args=(run,), name="agentsync-async-tool", daemon=True
    )
    thread.start()
    if not finished.wait(None if timeout is None else timeout + _CANCEL_GRACE):
        raise TimeoutError(
            f"an async tool did not unwind within {_CANCEL_GRACE:g} s of its "
            "cancellation at its timeout"
        )
    if "error" in result:
        raise result["error"]
    return result["value"]


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    locks: Sequence[str] = (),
    idempotent: bool = False,
    on_timeout: OnTimeout = "abandon",
    retry: Retry | bool | None = None,
    stuck_after: float | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    locks: Sequence[str] = (),
    idempotent: bool = False,
    on_timeout: OnTimeout = "abandon",
    retry: Retry | bool | None = None,
    stuck_after: float | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a function into a :class:`Tool`, bare (``@tool``) or with options.

    The schema comes from the signature's type hints and the docstring's
    ``Args:`` section. A first parameter annotated :class:`ToolContext`
    receives the call's context and is left out of the schema.

    Args:
        name: the name the model calls it by; the function's name by default.
        description: what the model reads; the docstring by default.
        timeout: seconds a call may run before the caller stops waiting. The
            thread running it is abandoned, not killed: it runs on until the
            function returns.
        locks: lock names taken in canonical order around each call.
        idempotent: declare that running a call twice is harmless.
        on_timeout: what to do with a call past its timeout.
        retry: an :class:`agentsync.Retry` policy (or True for the default
            one); only for tools declared ``idempotent``.
        stuck_after: seconds after which the watchdog reports a call as stuck
            (with its stack), before or at its timeout.

    Raises:
        ToolDefinitionError: the function or an option cannot make a tool.
    """

    def wrap(func: Callable[..., Any]) -> Tool:
        return Tool(
            func,
            name=name,
            description=description,
            timeout=timeout,
            locks=locks,
            idempotent=idempotent,
            on_timeout=on_timeout,
            retry=retry,
            stuck_after=stuck_after,
        )

    if fn is not None:
        return wrap(fn)
    return wrap
