"""Django: database connections opened by a tool are closed after its call.

Django keeps one connection per database alias *per thread*, and closes them
at the start and end of each request, in the request's thread. A tool runs
in a worker thread that no request ever ends: a connection it opens stays
open as long as the worker lives, unused between calls and never checked
for age or errors, and every worker that was abandoned or replaced holds one
more. :class:`DjangoDB` gives each call the lifecycle a request has::

    from agentsync.integrations.django import DjangoDB

    rt = agentsync.Runtime(tools=[...], hooks=[DjangoDB()], max_workers=8)

    def ask(request):
        result = agentsync.run_agent(request.POST["prompt"], runtime=rt)
        return JsonResponse({"answer": result.text})

Open connections then stay at or below the number of calls running at once.
Each call opens its own connection, so ``CONN_MAX_AGE`` does not carry over
between calls in a worker; with PostgreSQL, Django's connection pool
(``OPTIONS={"pool": True}``, Django 5.1 and later) makes that reopening cheap.

Limit: a call that times out is abandoned, not killed; the connection it
holds stays open until the tool returns, and is closed then, in its thread.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

try:
    from django.db import (  # type: ignore[import-untyped, unused-ignore]
        DatabaseError,
        close_old_connections,
        connections,
    )
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "agentsync.integrations.django needs Django, which is not installed; "
        "install the 'django' extra: pip install 'agentsync[django]' "
        "(or pip install django)"
    ) from exc

import structlog

if TYPE_CHECKING:
    from agentsync.context import ToolContext

__all__ = ["DjangoDB"]

_log = structlog.get_logger("agentsync.integrations.django")


class DjangoDB:
    """A :class:`~agentsync.runtime.CallHook` for Django database connections.

    In the worker thread, before the call, it closes the thread's
    connections that are unusable or past ``CONN_MAX_AGE``
    (``django.db.close_old_connections()``); after the call, returned or
    raised, it closes every connection the thread opened. Connections are
    per thread, so this never touches the view's own connection. Nested
    calls (``ctx.call``) share their parent's connections, closed when the
    outermost call ends.

    A connection that fails to close is logged as ``django.close_failed``
    and dropped; the call keeps the tool's own result.
    """

    def __repr__(self) -> str:
        return "<DjangoDB>"

    def capture(self) -> None:
        """Nothing crosses threads: Django's connections are per thread."""

    def wrap(self, state: Any, ctx: ToolContext) -> _ConnectionScope:
        """Close stale connections now, and all of the thread's at the end."""
        return _ConnectionScope(ctx)


class _ConnectionScope:
    """One call's span of a worker thread's Django connections."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: ToolContext) -> None:
        self._ctx = ctx

    def __enter__(self) -> None:
        close_old_connections()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # connections.close_all() stops at the first failure; each alias is
        # closed on its own so that one broken database leaks no other.
        for conn in connections.all(initialized_only=True):
            try:
                conn.close()
            except DatabaseError as error:
                _log.warning(
                    "django.close_failed",
                    alias=conn.alias,
                    tool=self._ctx.tool,
                    call_id=self._ctx.call_id,
                    error=str(error),
                )
