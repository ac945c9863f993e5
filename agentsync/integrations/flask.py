"""Flask: each tool call runs inside an application context of its own.

A worker runs a tool inside a copy of the caller's context variables, and
Flask keeps its contexts in context variables: without this hook a tool
called from a view sees the *view's* application context, its ``g`` and its
request, from another thread. Nothing sets that context up for the tool or
tears it down after it: a ``g.db`` connection the view opened is used from
two threads at once, ``teardown_appcontext`` never runs for what the tool
opened, and a tool called outside any context (a cron script) fails with
"Working outside of application context". :class:`FlaskContext` pushes a
fresh application context for the caller's app in the worker around every
call and pops it when the tool returns::

    from agentsync.integrations.flask import FlaskContext

    rt = agentsync.Runtime(tools=[...], hooks=[FlaskContext()])

    @app.post("/ask")
    def ask():
        result = agentsync.run_agent(request.json["prompt"], runtime=rt)
        return {"answer": result.text}

or, keeping the runtime on the app::

    from agentsync.integrations import flask as agentsync_flask

    agentsync_flask.init_app(app, tools=[...], max_workers=8)

    @app.post("/ask")
    def ask():
        rt = agentsync_flask.current_runtime()
        return {"answer": agentsync.run_agent(request.json["prompt"], runtime=rt).text}

Limit: a call that times out is abandoned, not killed; its application
context stays pushed in its thread until the tool returns, and is popped
(``teardown_appcontext`` included) then, in that thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

try:
    import flask
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "agentsync.integrations.flask needs Flask, which is not installed; "
        "install the 'flask' extra: pip install 'agentsync[flask]' "
        "(or pip install flask)"
    ) from exc

from agentsync.runtime import Runtime

if TYPE_CHECKING:
    from agentsync.context import ToolContext
    from agentsync.runtime import CallHook

__all__ = ["FlaskContext", "current_runtime", "init_app"]

_EXTENSION = "agentsync"


class FlaskContext:
    """A :class:`~agentsync.runtime.CallHook` giving each call an app context.

    At submit time, in the caller's thread, it takes the current app (or
    ``app`` when the caller has none); in the worker it pushes
    ``app.app_context()`` around the tool and pops it when the tool returns
    or raises, running the app's ``teardown_appcontext`` functions there.
    The tool's ``g`` is its own, not the view's: pass what a tool needs as
    its input, or read it from ``current_app``. Nested calls (``ctx.call``)
    share their parent's context.

    Args:
        app: the app for calls made outside any application context (a cron
            script, a CLI command); the caller's current app always wins.
        request: also push a copy of the caller's request context, as
            :func:`flask.copy_current_request_context` does, so that
            ``request`` and ``session`` are bound in the tool and
            ``teardown_request`` functions run after each call. The request
            object itself is shared with the view: reading its body from
            two threads at once is not safe.

    A call made with no application context and no ``app`` runs without
    one; ``current_app`` in the tool then raises, and the model gets that
    error as the call's ``is_error`` result.
    """

    def __init__(
        self, app: flask.Flask | None = None, *, request: bool = False
    ) -> None:
        self.app = app
        self.request = request

    def __repr__(self) -> str:
        name = self.app.name if self.app is not None else None
        return f"<FlaskContext app={name!r} request={self.request}>"

    def capture(self) -> Any:
        """Take the caller's app, or a copy of its request context."""
        # The proxies are typed as their targets; the object behind one is
        # what another thread can use once this one has moved on.
        proxy: Any
        if self.request and flask.has_request_context():
            proxy = flask.globals.request_ctx
            return proxy._get_current_object().copy()
        if flask.has_app_context():
            proxy = flask.current_app
            return proxy._get_current_object()
        return self.app

    def wrap(self, state: Any, ctx: ToolContext) -> AbstractContextManager[Any]:
        """The context pushed around the call in the worker thread."""
        if state is None:
            return nullcontext()
        if isinstance(state, flask.Flask):
            return state.app_context()
        # A request context copy, pushed once: capture() made it for this call.
        context: AbstractContextManager[Any] = state
        return context


def init_app(
    app: flask.Flask,
    *,
    hooks: Iterable[CallHook] = (),
    **options: Any,
) -> Runtime:
    """Make a :class:`~agentsync.Runtime` for ``app`` and keep it on the app.

    The runtime has a :class:`FlaskContext` hook for ``app`` first, then
    ``hooks``; ``options`` go to :class:`~agentsync.Runtime` (``tools``,
    ``max_workers``, ``default_timeout``...). Views get it back with
    :func:`current_runtime`. Its workers are daemon threads: the runtime
    needs no closing when the process ends.

    Returns:
        The runtime, also stored as ``app.extensions["agentsync"]``.
    """
    runtime = Runtime(hooks=[FlaskContext(app), *hooks], **options)
    app.extensions[_EXTENSION] = runtime
    return runtime


def current_runtime() -> Runtime:
    """The runtime :func:`init_app` made for the current app.

    Raises:
        RuntimeError: there is no application context, or :func:`init_app`
            was not called for this app.
    """
    app = flask.current_app
    runtime: Runtime | None = app.extensions.get(_EXTENSION)
    if runtime is None:
        raise RuntimeError(
            f"app {app.name!r} has no agentsync runtime; call "
            "agentsync.integrations.flask.init_app(app) first"
        )
    return runtime
