"""Test helpers: a loopback fake of the Messages API and pytest fixtures.

:class:`FakeMessagesServer` answers the real ``anthropic`` SDK from a script,
so an agent loop runs end to end, over HTTP, without a network or a key. The
pytest plugin (registered as ``agentsync``) offers it as the
``fake_messages_server`` and ``fake_anthropic_client`` fixtures.
"""

from __future__ import annotations

from agentsync.testing._script import (
    STOP_REASONS,
    Drop,
    ErrorReply,
    Handler,
    RawReply,
    RecordedRequest,
    Reply,
    Scripted,
    text_block,
    tool_use_block,
)
from agentsync.testing._server import FakeMessagesServer

__all__ = [
    "STOP_REASONS",
    "Drop",
    "ErrorReply",
    "FakeMessagesServer",
    "Handler",
    "RawReply",
    "RecordedRequest",
    "Reply",
    "Scripted",
    "text_block",
    "tool_use_block",
]
