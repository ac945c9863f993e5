"""Glue for web frameworks: per-call hooks a :class:`~agentsync.Runtime` applies.

A tool runs in a worker thread, not in the thread of the view that started
the run. What a framework keeps per thread or per request must be set up in
that worker, around the call, and torn down after it. Each integration is a
:class:`~agentsync.runtime.CallHook` given to the runtime::

    from agentsync.integrations.flask import FlaskContext
    rt = agentsync.Runtime(tools=[...], hooks=[FlaskContext()])

    from agentsync.integrations.django import DjangoDB
    rt = agentsync.Runtime(tools=[...], hooks=[DjangoDB()])

The framework is imported by its own module only: importing ``agentsync`` or
this package imports neither Flask nor Django.
"""

from __future__ import annotations

from agentsync.runtime import CallHook

__all__ = ["CallHook"]
