"""Server-held conversations: the fake's side of the message-threads beta.

With the ``message-threads-2026-08-12`` beta a request may carry a ``thread``
field. ``{"type": "create"}`` asks the server to hold the conversation under
the reply's ``id``; ``{"type": "continue", "previous_message_id": ...}``
resumes from a held reply, so the request sends only the new messages and
leaves out the create-only fields (``system``, ``tools``), which the thread
keeps. The SDK's tool runner and ``client.beta.messages.thread()`` work this
way. A continue from a reply the server does not hold answers 404
``not_found_error`` with ``error.details.error_code`` ``"thread_not_found"``;
the SDK then replays the full history under a new thread.

Limit: the fake does not refuse a second continue from the same reply
(``thread_already_continued``) or two at once (``thread_continue_in_flight``);
each continue branches the conversation from the reply it names.
"""

from __future__ import annotations

import collections
import copy
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from agentsync.testing._script import ErrorReply

__all__ = [
    "CREATE_ONLY_FIELDS",
    "DEFAULT_MAX_HELD_REPLIES",
    "ThreadLookup",
    "ThreadStore",
]

#: Request fields a thread keeps from its create; a continue must not send them.
CREATE_ONLY_FIELDS = ("system", "tools")

#: How many replies a FakeMessagesServer holds conversations for by default.
DEFAULT_MAX_HELD_REPLIES = 1000

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class _Held:
    """The conversation up to and including one reply, and its thread's fields."""

    messages: tuple[dict[str, Any], ...]
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class ThreadLookup:
    """What one request's ``thread`` field resolved to.

    ``kind`` is ``"create"``, ``"continue"``, or ``None`` for a request
    without a thread. For a continue, ``history`` and ``fields`` are what the
    server held for ``previous_message_id``. ``error`` is the answer the
    request gets instead of a reply, if the thread cannot be used.
    """

    kind: str | None = None
    previous_message_id: str | None = None
    history: tuple[dict[str, Any], ...] = ()
    fields: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    error: ErrorReply | None = None

    def full_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Return ``body`` as the server reads it, with the thread applied.

        For a continue: the held fields, then the body's own, with the held
        history (copied, so a reader cannot edit it) before the sent messages.
        Otherwise a shallow copy of ``body``.
        """
        if self.kind != "continue" or self.error is not None:
            return dict(body)
        sent = body.get("messages")
        return {
            **copy.deepcopy(dict(self.fields)),
            **body,
            "messages": [
                *copy.deepcopy(self.history),
                *(sent if isinstance(sent, list) else ()),
            ],
        }


class ThreadStore:
    """The conversations a FakeMessagesServer holds, by reply id; thread-safe.

    Only the last ``max_held`` replies are held, so a long test stays bounded;
    a continue from an older one gets ``thread_not_found``, as from a server
    that let the thread expire.
    """

    def __init__(self, max_held: int = DEFAULT_MAX_HELD_REPLIES) -> None:
        if max_held < 0:
            raise ValueError(f"max_held_replies must be >= 0, not {max_held}")
        self._max_held = max_held
        self._lock = threading.Lock()
        self._held: collections.OrderedDict[str, _Held] = collections.OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)

    def clear(self) -> None:
        """Forget every held conversation."""
        with self._lock:
            self._held.clear()

    def lookup(self, body: Mapping[str, Any], *, strict: bool) -> ThreadLookup:
        """Resolve the ``thread`` field of ``body``.

        With ``strict``, a continue that repeats a create-only field is
        refused, as the API refuses it.
        """
        thread = body.get("thread")
        if thread is None:
            return ThreadLookup()
        kind = thread.get("type") if isinstance(thread, dict) else None
        if kind == "create":
            return ThreadLookup(kind="create")
        if kind != "continue":
            return ThreadLookup(
                error=_invalid("thread.type: must be 'create' or 'continue'")
            )

        previous_id = thread.get("previous_message_id")
        if not isinstance(previous_id, str) or not previous_id:
            return ThreadLookup(
                kind=kind,
                error=_invalid("thread.previous_message_id: field required"),
            )
        repeated = [name for name in CREATE_ONLY_FIELDS if name in body]
        if strict and repeated:
            return ThreadLookup(
                kind=kind,
                previous_message_id=previous_id,
                error=_invalid(
                    f"{', '.join(repeated)}: not allowed with a thread continue; "
                    "the thread keeps the values it was created with"
                ),
            )

        with self._lock:
            held = self._held.get(previous_id)
        if held is None:
            return ThreadLookup(
                kind=kind,
                previous_message_id=previous_id,
                error=ErrorReply(
                    404,
                    message=(
                        "no thread state for previous_message_id "
                        f"{previous_id!r}; replay the conversation with "
                        "thread type 'create'"
                    ),
                    error_code="thread_not_found",
                ),
            )
        return ThreadLookup(
            kind=kind,
            previous_message_id=previous_id,
            history=held.messages,
            fields=held.fields,
        )

    def hold(
        self,
        lookup: ThreadLookup,
        body: Mapping[str, Any],
        message: Mapping[str, Any],
    ) -> None:
        """Hold the conversation that ``message`` answered, if it was threaded.

        ``body`` is the request as sent; ``message`` is the reply's JSON.
        """
        if lookup.kind is None or lookup.error is not None or self._max_held == 0:
            return

        # Earlier messages are shared with the held entry they came from; only
        # this turn's are copied, so a conversation of n turns holds n messages
        # plus n tuples of references.
        sent = body.get("messages")
        reply = {"role": "assistant", "content": copy.deepcopy(message["content"])}
        messages = (
            *lookup.history,
            *copy.deepcopy(_as_list(sent)),
            reply,
        )
        if lookup.kind == "create":
            fields: Mapping[str, Any] = MappingProxyType(
                {k: copy.deepcopy(body[k]) for k in CREATE_ONLY_FIELDS if k in body}
            )
        else:
            fields = lookup.fields

        with self._lock:
            self._held[str(message["id"])] = _Held(messages, fields)
            self._held.move_to_end(str(message["id"]))
            while len(self._held) > self._max_held:
                self._held.popitem(last=False)


def _as_list(value: Any) -> Sequence[dict[str, Any]]:
    return value if isinstance(value, list) else []


def _invalid(message: str) -> ErrorReply:
    # The fake's own refusals must not be retried by a retrying client.
    return ErrorReply(400, message=message, headers={"x-should-retry": "false"})
