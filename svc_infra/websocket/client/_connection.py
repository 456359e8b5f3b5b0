"""The WebSocket client: :class:`WebSocketClient` and :func:`easy_websocket_client`.

Built on the asyncio implementation of the ``websockets`` library. Its errors are
translated into the :mod:`svc_infra.websocket.exceptions` tree; the reconnect loop
lives in :mod:`svc_infra.websocket.client._reconnect`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidStatus,
    InvalidURI,
    PayloadTooBig,
    WebSocketException,
)
from websockets.protocol import State
from websockets.typing import Subprotocol

from ..close_codes import DAPHNE_CODES, CloseCode
from ..config import WebSocketConfig, get_default_config
from ..exceptions import (
    AuthenticationError,
    ConnectionClosedError,
    ConnectionFailedError,
    MessageTooLargeError,
    WebSocketError,
)
from ..layer_messages import utf8_size
from ..models import ConnectionState
from ._recovery import SUBPROTOCOL, RecoverySession

__all__ = ["WebSocketClient", "easy_websocket_client"]

# Named as docs/client.md documents it.
logger = logging.getLogger("svc_infra.websocket.client")

_AUTH_STATUSES = frozenset({401, 403})

_STATE_MAP = {
    State.CONNECTING: ConnectionState.CONNECTING,
    State.OPEN: ConnectionState.CONNECTED,
    State.CLOSING: ConnectionState.CLOSING,
    State.CLOSED: ConnectionState.CLOSED,
}


class WebSocketClient:
    """A connection to a WebSocket server.

    Use it as an async context manager, which connects on entry and closes on
    exit::

        async with WebSocketClient("wss://example.com/ws") as ws:
            await ws.send_json({"type": "hello"})
            async for message in ws:
                ...

    or call :meth:`connect` and :meth:`close` yourself. A closed client can be
    connected again; :func:`~svc_infra.websocket.websocket_connect` does that to
    reconnect.

    Args:
        url: ``ws://`` or ``wss://`` URL of the server.
        config: Timeouts, limits and keepalive; defaults to
            :func:`~svc_infra.websocket.get_default_config` (the ``WS_*``
            variables, read when the client is created).
        headers: Extra HTTP headers for the opening handshake, such as
            ``Authorization``.
        subprotocols: Subprotocols to offer, in order of preference.
        token: A bearer token, or a function (plain or async) that returns one,
            called before every connection attempt and sent as
            ``Authorization: Bearer <token>``: a server that closes with 4401
            (token expired) is reconnected to at once with a fresh one.
        recover: Offer ``svc-infra.v1`` and recover missed messages after each
            reconnect (``docs/recovery.md``): the client keeps its position in
            every stream, sends it when it connects again, and unwraps frames so
            that :meth:`recv` returns payloads as in plain mode. See
            :attr:`recovered` and :attr:`unrecovered_streams`.
    """

    def __init__(
        self,
        url: str,
        *,
        config: WebSocketConfig | None = None,
        headers: Mapping[str, str] | None = None,
        subprotocols: Sequence[str] | None = None,
        recover: bool = False,
        token: TokenSource | None = None,
    ) -> None:
        self._url = url
        self._token = token
        self._config = config if config is not None else get_default_config()
        self._headers = dict(headers) if headers else {}
        offered = list(subprotocols or ())
        if recover and SUBPROTOCOL not in offered:
            offered.insert(0, SUBPROTOCOL)
        self._subprotocols = [Subprotocol(p) for p in offered] if offered else None
        self._session = RecoverySession() if recover else None
        self._conn: ClientConnection | None = None
        # Concurrent connect() calls share one attempt instead of racing.
        self._connect_lock = asyncio.Lock()
        self._connecting = False
        # Set by the reconnect loop while it waits between attempts.
        self._reconnecting = False
        self._latency = 0.0

    # --- properties ------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server URL."""
        return self._url

    @property
    def config(self) -> WebSocketConfig:
        """The configuration in use."""
        return self._config

    @property
    def state(self) -> ConnectionState:
        """Where the connection is in its life."""
        if self._connecting:
            return ConnectionState.CONNECTING
        if self._reconnecting:
            return ConnectionState.RECONNECTING
        if self._conn is None:
            return ConnectionState.CLOSED
        return _STATE_MAP[self._conn.state]

    @property
    def is_connected(self) -> bool:
        """Whether the connection is open.

        It turns False as soon as a close frame arrives or the TCP connection
        drops, even if nothing is reading from the connection.
        """
        return self._conn is not None and self._conn.state is State.OPEN

    @property
    def latency(self) -> float:
        """Round-trip time of the last ping answered, in seconds.

        Keepalive pings (every ``ping_interval``) and :meth:`ping` update it.
        It is ``0.0`` until the first pong arrives.
        """
        if self._conn is not None and self._conn.latency:
            self._latency = self._conn.latency
        return self._latency

    @property
    def recovered(self) -> bool | None:
        """After each connection with ``recover=True``: ``None`` when there was
        nothing to recover (the first connection, or a server without
        ``svc-infra.v1``), ``True`` when every stream's gap was replayed, ``False``
        when some stream's was not (see :attr:`unrecovered_streams`). A room
        joined later that cannot be replayed also makes it ``False``."""
        return None if self._session is None else self._session.recovered

    @property
    def unrecovered_streams(self) -> list[str]:
        """The streams (``"room:general"``, ``"user:42"``, ``"broadcast"``) whose
        missed messages could not be replayed on the last connection."""
        return [] if self._session is None else list(self._session.unrecovered)

    @property
    def close_code(self) -> int | None:
        """The code the last connection closed with (None while open or never opened)."""
        return None if self._conn is None else self._conn.close_code

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server selected, or ``None``."""
        return self._conn.subprotocol if self._conn is not None else None

    # --- opening and closing ----------------------------------------------------

    async def connect(self) -> Self:
        """Open the connection; do nothing if it is already open.

        Returns:
            The client itself, so ``ws = await WebSocketClient(url).connect()``
            works.

        Raises:
            ConnectionFailedError: If the server cannot be reached (refused, DNS
                failure), ``open_timeout`` expires, or the handshake fails with a
                status other than 401 or 403.
            AuthenticationError: If the server answers the handshake with 401 or
                403.

        Cancelling is safe: no connection is left half-open. Concurrent calls
        share one attempt.
        """
        async with self._connect_lock:
            if not self.is_connected:
                await self._open()
        return self

    async def _open(self) -> None:
        cfg = self._config
        self._connecting = True
        url = self._url if self._session is None else self._session.url(self._url)
        headers = dict(self._headers)
        if self._token is not None:
            token = await _resolve(self._token)
            if token:
                headers["Authorization"] = f"Bearer {token}"
        try:
            self._conn = await connect(
                url,
                additional_headers=headers or None,
                subprotocols=self._subprotocols,
                open_timeout=cfg.open_timeout,
                close_timeout=cfg.close_timeout,
                ping_interval=cfg.ping_interval,
                ping_timeout=cfg.ping_timeout,
                max_size=cfg.max_message_size,
                max_queue=cfg.max_queue_size,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in _AUTH_STATUSES:
                raise AuthenticationError(
                    f"the server refused the handshake with HTTP {status}", status=status
                ) from exc
            raise ConnectionFailedError(self._url, f"the server answered HTTP {status}") from exc
        except InvalidURI as exc:
            raise ConnectionFailedError(self._url, f"invalid WebSocket URL ({exc.msg})") from exc
        except TimeoutError as exc:
            reason = f"no connection within open_timeout={cfg.open_timeout:g}s"
            raise ConnectionFailedError(self._url, reason) from exc
        except (OSError, EOFError, WebSocketException) as exc:
            # EOFError: a peer gone mid-handshake, as websockets < 14.2 reports it.
            raise ConnectionFailedError(self._url, str(exc) or type(exc).__name__) from exc
        finally:
            self._connecting = False
        self._latency = 0.0
        if self._session is not None:
            await self._start_session(self._conn)

    async def _start_session(self, conn: ClientConnection) -> None:
        """Read the server's first control frame (what was recovered), within
        ``open_timeout``; a server that did not select ``svc-infra.v1`` sends none."""
        session = self._session
        assert session is not None
        session.begin(conn.subprotocol == SUBPROTOCOL)
        if not session.active:
            return
        try:
            async with asyncio.timeout(self._config.open_timeout):
                while not session.started:
                    payload = session.unwrap(await conn.recv())
                    if payload is not None:
                        session.early.append(payload)
        except (TimeoutError, ConnectionClosed, ValueError) as exc:
            await conn.close()
            raise ConnectionFailedError(self._url, f"no svc-infra.v1 session: {exc!r}") from exc

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection with ``code`` and ``reason``.

        Waits for the closing handshake, at most ``close_timeout`` seconds, then
        drops the TCP connection. Closing a closed client does nothing.

        Cancelling is safe: the TCP connection is still closed.
        """
        if self._conn is not None:
            await self._conn.close(code, reason)

    async def wait_closed(self) -> None:
        """Wait until the connection is closed, by either side or by a network failure.

        Returns at once if the client is not connected. Cancelling is safe.
        """
        if self._conn is not None:
            await self._conn.wait_closed()

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- sending -----------------------------------------------------------------

    async def send(self, data: str | bytes) -> None:
        """Send a text frame (:class:`str`) or a binary frame (:class:`bytes`).

        Raises:
            MessageTooLargeError: If the message exceeds ``max_message_size``;
                nothing is sent and the connection stays open.
            ConnectionClosedError: If the connection is closed.
            TypeError: If ``data`` is neither text nor bytes.
            WebSocketError: If the client was never connected.

        Cancelling may leave a partial frame in the buffer; the connection then
        cannot be used further. Concurrent calls are allowed.
        """
        if isinstance(data, str):
            size = utf8_size(data, self._config.max_message_size)
        elif isinstance(data, bytes | bytearray | memoryview):
            size = memoryview(data).nbytes
        else:
            raise TypeError(f"send() takes str or bytes, not {type(data).__name__}")
        if size > self._config.max_message_size:
            raise MessageTooLargeError(size, self._config.max_message_size)
        conn = self._connection()
        try:
            await conn.send(data)
        except ConnectionClosed as exc:
            error = self._closed_error(exc)
            raise error from error.__cause__

    async def send_json(self, data: Any) -> None:
        """Serialize ``data`` to JSON and send it as a text frame.

        Raises:
            TypeError: If ``data`` is not JSON-serializable.
            MessageTooLargeError: If the JSON text exceeds ``max_message_size``.
            ConnectionClosedError: If the connection is closed.
        """
        await self.send(json.dumps(data, separators=(",", ":"), ensure_ascii=False))

    # --- receiving ---------------------------------------------------------------

    async def recv(self) -> str | bytes:
        """Receive the next message: :class:`str` for text, :class:`bytes` for binary.

        Raises:
            ConnectionClosedError: If the connection is closed, normally or not,
                with the peer's close code and reason.
            MessageTooLargeError: If the incoming message exceeded
                ``max_message_size``; the connection is closed with 1009.
            WebSocketError: If the client was never connected.

        Cancelling is safe: no message is lost. Concurrent calls are not allowed.
        """
        try:
            return await self._next(self._connection())
        except ConnectionClosed as exc:
            error = self._closed_error(exc)
            raise error from error.__cause__

    async def _next(self, conn: ClientConnection) -> str | bytes:
        """The next message's payload: v1 control frames are applied, not returned.

        Raises:
            ConnectionClosed: As ``websockets`` raises it.
        """
        session = self._session
        if session is None or not session.active:
            return await conn.recv()
        if session.early:
            return session.early.popleft()
        while True:
            message = session.unwrap(await conn.recv())
            if message is not None:
                return message

    async def recv_json(self) -> Any:
        """Receive the next message and parse it as JSON.

        Raises:
            ValueError: If the message is not valid JSON (:exc:`json.JSONDecodeError`).
            ConnectionClosedError: If the connection is closed.
            MessageTooLargeError: If the message exceeded ``max_message_size``.
        """
        return json.loads(await self.recv())

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        """Yield incoming messages until the connection closes.

        The iteration ends quietly after a normal closure (1000 or 1001 on both
        sides).

        Raises:
            ConnectionClosedError: After any other closure, with its code and reason.
            MessageTooLargeError: If an incoming message exceeded the limit.
        """
        conn = self._connection()
        while True:
            try:
                message = await self._next(conn)
            except ConnectionClosedOK:
                return
            except ConnectionClosed as exc:
                error = self._closed_error(exc)
                raise error from error.__cause__
            yield message

    async def ping(self) -> float:
        """Send a ping and wait for the pong; return the round trip in seconds.

        The result also becomes :attr:`latency`.

        Raises:
            ConnectionClosedError: If the connection closes before the pong.
            TimeoutError: If no pong arrives within ``ping_timeout``.

        Cancelling is safe.
        """
        conn = self._connection()
        try:
            pong = await conn.ping()
            if self._config.ping_timeout is None:
                latency = await pong
            else:
                async with asyncio.timeout(self._config.ping_timeout):
                    latency = await pong
        except ConnectionClosed as exc:
            error = self._closed_error(exc)
            raise error from error.__cause__
        self._latency = latency
        return latency

    # --- helpers -----------------------------------------------------------------

    def _connection(self) -> ClientConnection:
        if self._conn is None:
            raise WebSocketError("the client is not connected: call connect() or use async with")
        return self._conn

    def _closed_error(self, exc: ConnectionClosed) -> WebSocketError:
        """Translate a ``websockets`` close into our exception tree.

        The result carries its cause: ``raise error from error.__cause__``.
        """
        error: WebSocketError
        cause = exc.__cause__
        sent = exc.sent
        if isinstance(cause, PayloadTooBig) or (
            # Older websockets close with 1009 without chaining PayloadTooBig: a
            # 1009 we sent first (not an echo of the peer's) is the same case.
            sent is not None and sent.code == CloseCode.MESSAGE_TOO_BIG and not exc.rcvd_then_sent
        ):
            # With compression the size is unknown: only the inflated limit was hit.
            size = getattr(cause, "size", None)
            if size is not None:
                size += getattr(cause, "current_size", None) or 0
            error = MessageTooLargeError(size, self._config.max_message_size)
            error.__cause__ = exc
            return error
        closed = _closed_from(exc)
        closed.__cause__ = exc
        # Daphne sends 1009 as 4009 (close_codes.DAPHNE_CODES).
        rcvd = None if exc.rcvd is None else DAPHNE_CODES.get(exc.rcvd.code, exc.rcvd.code)
        if rcvd == CloseCode.MESSAGE_TOO_BIG:
            # The peer refused something we sent as too big: its limit is unknown.
            error = MessageTooLargeError(None, None)
            error.__cause__ = closed
            return error
        return closed


#: A token, or what returns one (plain or async), asked for before every attempt.
TokenSource = str | Callable[[], str | Awaitable[str | None] | None]


async def _resolve(source: TokenSource) -> str | None:
    if isinstance(source, str):
        return source
    value = source()
    if inspect.isawaitable(value):
        value = await value
    return value


def _closed_from(exc: ConnectionClosed) -> ConnectionClosedError:
    # Prefer what the peer said; fall back to what we sent, then to 1006.
    frame = exc.rcvd if exc.rcvd is not None else exc.sent
    if frame is None:
        return ConnectionClosedError(CloseCode.ABNORMAL_CLOSURE, "connection lost")
    return ConnectionClosedError(frame.code, frame.reason)


def easy_websocket_client(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    subprotocols: Sequence[str] | None = None,
    **config_overrides: Any,
) -> WebSocketClient:
    """Return a client configured from ``WS_*`` variables and keyword overrides.

    Use it with ``async with``::

        async with easy_websocket_client("wss://api.example.com/ws", ping_interval=None) as ws:
            await ws.send_json({"type": "hello"})

    Raises:
        ConfigurationError: If a variable or an override is invalid.
        TypeError: If an override is not a :class:`WebSocketConfig` field.
    """
    config = get_default_config(**config_overrides)
    return WebSocketClient(url, config=config, headers=headers, subprotocols=subprotocols)
