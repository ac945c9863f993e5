"""FakeMessagesServer: a loopback stand-in for the Anthropic Messages API."""

from __future__ import annotations

import collections
import json
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any

from agentsync.testing._script import (
    Drop,
    ErrorReply,
    Handler,
    RawReply,
    RecordedRequest,
    Reply,
    Scripted,
)
from agentsync.testing._threads import (
    DEFAULT_MAX_HELD_REPLIES,
    ThreadLookup,
    ThreadStore,
)
from agentsync.testing._validate import request_problem

if TYPE_CHECKING:
    from typing import Self

    import anthropic

__all__ = ["FakeMessagesServer"]

_MESSAGES_PATH = "/v1/messages"

# How often the accept loop looks at the closing flag, in seconds.
_POLL_INTERVAL = 0.05

# How long close() waits for the accept loop to notice, in seconds.
_CLOSE_TIMEOUT = 2.0

# An idle keep-alive connection is dropped after this many seconds.
_IDLE_TIMEOUT = 30.0

_REASONS = {529: "Overloaded"}

_Queued = Scripted | Handler


class FakeMessagesServer:
    """A loopback HTTP server that answers ``POST /v1/messages`` from a script.

    The real ``anthropic`` SDK talks to it unchanged::

        with FakeMessagesServer() as server:
            server.add_tool_use("add", {"a": 1, "b": 2})
            server.add_reply("3")
            client = server.client()
            message = client.messages.create(model="m", max_tokens=10, messages=[...])

    Each request takes the next item of the script, in arrival order: a
    :class:`Reply`, an :class:`ErrorReply`, a :class:`Drop`, a
    :class:`RawReply`, or a handler called with the :class:`RecordedRequest`.
    When the script is empty the default responder answers; unless one is set
    with :meth:`set_default`, that is a 500 ``api_error`` saying which request
    found nothing left, sent with ``x-should-retry: false`` so a test fails
    at once instead of hanging in retries.

    Requests the real API would reject answer 400 ``invalid_request_error``
    without taking a scripted item: ``"stream": true`` (the fake does not
    stream) and, when ``validate_requests`` is true, a conversation breaking
    the ``tool_use``/``tool_result`` pairing rules. Other paths answer 404.

    Message threads (the ``message-threads-2026-08-12`` beta, which the SDK's
    tool runner uses) are held as the API holds them: a request with
    ``"thread": {"type": "create"}`` or ``"continue"`` keeps its whole
    conversation and its ``system`` and ``tools`` under the reply's id, and a
    continue from that id sends only its new messages. Validation, handlers
    and :attr:`RecordedRequest.messages` see the whole conversation. A
    continue from an id the server does not hold answers 404 with
    ``error_code`` ``"thread_not_found"``, and the SDK replays the history;
    :meth:`forget_threads` provokes that. Limit: a reply may be continued
    more than once, each continue branching from it; the fake never answers
    ``thread_already_continued`` or ``thread_continue_in_flight``.

    Every request is recorded in :attr:`requests`, rejected ones included.
    The server is safe to use from many threads; with concurrent requests,
    "next item" means next to arrive.

    Args:
        validate_requests: check each conversation as the API would.
        port: the loopback port; 0 picks a free one.
        max_held_replies: how many threaded replies the server holds the
            conversation of; a continue from an older one gets
            ``thread_not_found``. Bounds memory in long tests.
    """

    def __init__(
        self,
        *,
        validate_requests: bool = True,
        port: int = 0,
        max_held_replies: int = DEFAULT_MAX_HELD_REPLIES,
    ) -> None:
        self._validate_requests = validate_requests
        self._port = port
        self._threads = ThreadStore(max_held_replies)

        self._lock = threading.Lock()
        self._received = threading.Condition(self._lock)
        self._script: collections.deque[_Queued] = collections.deque()
        self._default: _Queued | None = None
        self._requests: list[RecordedRequest] = []
        self._handler_errors: list[BaseException] = []

        self._closing = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------

    def start(self) -> Self:
        """Bind to 127.0.0.1 and serve from a daemon thread; return ``self``.

        Raises:
            RuntimeError: the server was already started.
        """
        if self._httpd is not None:
            raise RuntimeError("FakeMessagesServer was already started")

        httpd = _HTTPServer(("127.0.0.1", self._port), _RequestHandler)
        httpd.fake = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=self._accept_loop,
            name=f"fake-messages-server-{httpd.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and drop every open connection; safe to call twice.

        Returns within about two seconds whatever the script holds: a pending
        ``delay`` ends early and its connection is dropped unanswered.
        """
        self._closing.set()
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return

        thread.join(timeout=_CLOSE_TIMEOUT)
        httpd.drop_connections()
        httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The base URL to give the SDK, ``http://127.0.0.1:PORT``.

        Raises:
            RuntimeError: the server was not started.
        """
        if self._httpd is None:
            raise RuntimeError("FakeMessagesServer is not started; call start()")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def client(self, **kwargs: Any) -> anthropic.Anthropic:
        """Return an ``anthropic.Anthropic`` client bound to this server.

        Defaults are ``api_key="test-key"``, ``max_retries=0`` and a 30 s
        timeout; ``kwargs`` override them. The caller closes the client.
        """
        import anthropic

        options: dict[str, Any] = {
            "api_key": "test-key",
            "base_url": self.url,
            "max_retries": 0,
            "timeout": 30.0,
            **kwargs,
        }
        return anthropic.Anthropic(**options)

    # -- scripting -------------------------------------------------------

    def add(self, item: Scripted | Handler) -> None:
        """Queue one scripted item, or a handler called for one request."""
        if not isinstance(item, (Reply, ErrorReply, Drop, RawReply)) and not callable(
            item
        ):
            raise TypeError(f"cannot script a {type(item).__name__}")
        with self._lock:
            self._script.append(item)

    def add_reply(
        self,
        content: str | Sequence[Mapping[str, Any]],
        *,
        stop_reason: str | None = None,
        stop_sequence: str | None = None,
        usage: Mapping[str, int] | None = None,
        model: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
        delay: float = 0.0,
    ) -> Reply:
        """Queue one message reply and return it; see :class:`Reply`.

        ``content`` is a string (one text block) or a list of block dicts;
        :func:`text_block` and :func:`tool_use_block` build them.
        """
        reply = Reply(
            content,
            stop_reason=stop_reason,
            stop_sequence=stop_sequence,
            usage=usage,
            model=model,
            headers=headers,
            extra=extra,
            delay=delay,
        )
        self.add(reply)
        return reply

    def add_tool_use(
        self,
        name: str,
        input: Mapping[str, Any] | None = None,
        *,
        id: str | None = None,
        text: str | None = None,
        usage: Mapping[str, int] | None = None,
        delay: float = 0.0,
    ) -> Reply:
        """Queue a reply calling one tool, after an optional text block.

        The tool-use id is generated unless given; read it back from
        ``reply.tool_use_ids[0]``. For several calls in one turn, pass a list
        of :func:`tool_use_block` to :meth:`add_reply`.
        """
        blocks: list[dict[str, Any]] = []
        if text is not None:
            blocks.append({"type": "text", "text": text})
        blocks.append(
            {"type": "tool_use", "id": id, "name": name, "input": dict(input or {})}
        )
        return self.add_reply(blocks, usage=usage, delay=delay)

    def add_error(
        self,
        status: int,
        *,
        error_type: str | None = None,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
        error_code: str | None = None,
        delay: float = 0.0,
    ) -> ErrorReply:
        """Queue one HTTP error in the API's shape and return it.

        ``error_type`` defaults from ``status`` (429 ``rate_limit_error``, 529
        ``overloaded_error``...); ``headers`` may carry ``retry-after``.
        """
        error = ErrorReply(
            status,
            error_type=error_type,
            message=message,
            headers=headers,
            error_code=error_code,
            delay=delay,
        )
        self.add(error)
        return error

    def add_drop(self, *, delay: float = 0.0) -> Drop:
        """Queue a dropped connection: the request gets no response at all."""
        drop = Drop(delay=delay)
        self.add(drop)
        return drop

    def add_raw(
        self,
        status: int,
        body: bytes | str,
        *,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> RawReply:
        """Queue a reply of exactly these bytes, such as invalid JSON."""
        raw = RawReply(status, body, headers=headers, delay=delay)
        self.add(raw)
        return raw

    def add_handler(self, handler: Handler) -> None:
        """Queue a handler that decides the answer to one request.

        ``handler(request)`` gets the :class:`RecordedRequest` and returns a
        scripted item, a string (a text reply), or ``None`` (the "no scripted
        reply" error). If it raises, the request gets a 500 and the exception
        is kept in :attr:`handler_errors`.
        """
        self.add(handler)

    def set_default(self, responder: Scripted | Handler | str | None) -> None:
        """Answer with ``responder`` whenever the script is empty.

        A string means a text reply; ``None`` restores the "no scripted reply
        left" error.
        """
        if isinstance(responder, str):
            responder = Reply(responder)
        with self._lock:
            self._default = responder

    def forget_threads(self) -> None:
        """Drop every held conversation, as a server that lost its state.

        The next continue from any earlier reply answers
        ``thread_not_found``.
        """
        self._threads.clear()

    # -- inspection ------------------------------------------------------

    @property
    def held_replies(self) -> int:
        """How many replies the server holds a conversation for."""
        return len(self._threads)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        """The most recent request.

        Raises:
            LookupError: no request has arrived.
        """
        with self._lock:
            if not self._requests:
                raise LookupError("FakeMessagesServer has received no request")
            return self._requests[-1]

    @property
    def pending(self) -> int:
        """How many scripted items are still queued."""
        with self._lock:
            return len(self._script)

    @property
    def handler_errors(self) -> list[BaseException]:
        """Exceptions raised by handlers, in order."""
        with self._lock:
            return list(self._handler_errors)

    def wait_for_requests(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` requests have arrived; False on timeout."""
        with self._received:
            return self._received.wait_for(
                lambda: len(self._requests) >= count, timeout=timeout
            )

    # -- serving ---------------------------------------------------------

    def _accept_loop(self) -> None:
        # handle_request() returns after each poll interval, so the loop sees
        # the closing flag without the unbounded wait of shutdown().
        httpd = self._httpd
        assert httpd is not None
        httpd.timeout = _POLL_INTERVAL
        while not self._closing.is_set():
            httpd.handle_request()

    def _record(
        self,
        handler: BaseHTTPRequestHandler,
        body: bytes,
        decoded: dict[str, Any],
        lookup: ThreadLookup,
    ) -> RecordedRequest:
        headers = {k.lower(): v for k, v in handler.headers.items()}

        with self._received:
            request = RecordedRequest(
                index=len(self._requests) + 1,
                method=handler.command,
                path=handler.path,
                headers=MappingProxyType(headers),
                body=body,
                json=decoded,
                received_at=time.monotonic(),
                full_json=lookup.full_body(decoded),
            )
            self._requests.append(request)
            self._received.notify_all()
        return request

    def _next_item(self) -> _Queued | None:
        with self._lock:
            if self._script:
                return self._script.popleft()
            return self._default

    def _lookup_thread(
        self, handler: BaseHTTPRequestHandler, decoded: Any
    ) -> ThreadLookup:
        if not _serves(handler.command, handler.path) or not isinstance(decoded, dict):
            return ThreadLookup()
        return self._threads.lookup(decoded, strict=self._validate_requests)

    def _answer(self, request: RecordedRequest, lookup: ThreadLookup) -> Scripted:
        """Decide what ``request`` gets; never raises."""
        if not _serves(request.method, request.path):
            return _fake_error(
                404,
                f"FakeMessagesServer only serves POST {_MESSAGES_PATH}, "
                f"not {request.method} {request.path}",
            )
        if not request.json:
            return _fake_error(400, "request body must be a JSON object")
        if request.json.get("stream"):
            return _fake_error(
                400,
                "streaming is not supported by FakeMessagesServer; "
                "call messages.create() without stream=True",
            )
        if lookup.error is not None:
            return lookup.error
        if self._validate_requests and request.full_json is not None:
            problem = request_problem(request.full_json)
            if problem is not None:
                return _fake_error(400, problem)

        item = self._next_item()
        if callable(item) and not isinstance(item, (Reply, ErrorReply, Drop, RawReply)):
            # Whatever the test's handler raises must become an answer, or the
            # client would wait for one until its timeout.
            try:
                item = _as_scripted(item(request))
            except Exception as exc:  # noqa: BLE001
                with self._lock:
                    self._handler_errors.append(exc)
                return _fake_error(
                    500,
                    f"FakeMessagesServer handler raised {type(exc).__name__}: {exc}",
                )
        if item is None:
            return _fake_error(
                500,
                "FakeMessagesServer has no scripted reply left for request "
                f"{request.index}",
            )
        return item

    def _handle(self, handler: _RequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length > 0 else b""
        try:
            decoded = json.loads(body) if body else None
        except ValueError:
            decoded = None
        lookup = self._lookup_thread(handler, decoded)
        request = self._record(
            handler, body, decoded if isinstance(decoded, dict) else {}, lookup
        )
        item = self._answer(request, lookup)
        request_id = f"req_fake{request.index:016d}"

        # The delay waits on the closing flag, so close() cuts it short.
        if item.delay and self._closing.wait(item.delay):
            item = Drop()
        if self._closing.is_set() or isinstance(item, Drop):
            handler.drop()
            return

        if isinstance(item, RawReply):
            payload = item.body.encode() if isinstance(item.body, str) else item.body
            headers = {"content-type": "application/json", **(item.headers or {})}
            handler.answer(item.status, payload, {"request-id": request_id, **headers})
            return

        status = 200
        headers = dict(item.headers or {})
        if isinstance(item, ErrorReply):
            status, document = item.status, item.to_body()
        else:
            try:
                document = item.to_message(request)
            except ValueError as exc:
                status, document = 500, _fake_error(500, str(exc)).to_body()
                headers["x-should-retry"] = "false"
            else:
                # Held before the answer leaves, so the client's next turn
                # can continue from it.
                self._threads.hold(lookup, request.json, document)
        payload = json.dumps(document).encode()
        headers = {
            "content-type": "application/json",
            "request-id": request_id,
            **headers,
        }
        handler.answer(status, payload, headers)


def _serves(method: str, path: str) -> bool:
    return method == "POST" and path.split("?", 1)[0] == _MESSAGES_PATH


def _fake_error(status: int, message: str) -> ErrorReply:
    # Errors the fake itself raises must not be retried by a retrying client.
    return ErrorReply(status, message=message, headers={"x-should-retry": "false"})


def _as_scripted(result: Scripted | str | None) -> Scripted | None:
    if isinstance(result, str):
        return Reply(result)
    if result is None or isinstance(result, (Reply, ErrorReply, Drop, RawReply)):
        return result
    raise TypeError(
        "a FakeMessagesServer handler must return Reply, ErrorReply, Drop, "
        f"RawReply, str or None, not {type(result).__name__}"
    )


class _HTTPServer(ThreadingHTTPServer):
    """Tracks open connections so close() can cut keep-alive ones."""

    daemon_threads = True
    block_on_close = False
    fake: FakeMessagesServer

    def __init__(self, address: tuple[str, int], handler: type[Any]) -> None:
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            _shutdown_socket(connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or went away is part of the tests; stay quiet.
        pass


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = _IDLE_TIMEOUT
    # Headers and body go out in separate writes; with Nagle's algorithm the
    # second waits for the client's delayed ACK, about 40 ms a request.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def answer(self, status: int, payload: bytes, headers: Mapping[str, str]) -> None:
        try:
            self.send_response(status, _REASONS.get(status))
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            # The client gave up first (its timeout fired); nothing to answer.
            self.close_connection = True

    def drop(self) -> None:
        self.close_connection = True
        _shutdown_socket(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _shutdown_socket(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
