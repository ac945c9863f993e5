"""Pytest fixtures for agentsync users, registered as the ``agentsync`` plugin.

``fake_messages_server`` is a started :class:`~agentsync.testing.FakeMessagesServer`,
closed after the test. ``fake_anthropic_client`` is an ``anthropic.Anthropic``
client bound to it, with ``max_retries=0``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import anthropic

    from agentsync.testing import FakeMessagesServer

__all__ = ["fake_anthropic_client", "fake_messages_server"]


@pytest.fixture
def fake_messages_server() -> Iterator[FakeMessagesServer]:
    """A started FakeMessagesServer with an empty script, closed afterwards."""
    from agentsync.testing import FakeMessagesServer

    with FakeMessagesServer() as server:
        yield server


@pytest.fixture
def fake_anthropic_client(
    fake_messages_server: FakeMessagesServer,
) -> Iterator[anthropic.Anthropic]:
    """An ``anthropic.Anthropic`` client talking to ``fake_messages_server``."""
    client = fake_messages_server.client()
    try:
        yield client
    finally:
        client.close()
