"""Exceptions raised by :mod:`svc_infra.websocket`.

Every exception the package raises on purpose derives from :exc:`WebSocketError`,
so ``except WebSocketError`` catches them all::

    WebSocketError
    ├── ConnectionFailedError      the connection could not be opened
    ├── AuthenticationError        the server answered 401/403, or a credential was refused
    ├── ConnectionClosedError      the connection is closed (code, reason)
    ├── MessageTooLargeError       a message exceeds max_message_size (size, limit)
    ├── ChannelLayerError          the channel layer (Redis) could not be reached (operation)
    ├── TooManyConnectionsError    a user is at WS_MAX_CONNECTIONS_PER_USER (user_id, limit)
    ├── ServerDrainingError        the process is draining: no new connections (user_id)
    └── ConfigurationError         a configuration value is invalid (also a ValueError)

Errors carry structured attributes (``code``, ``reason``, ``size``, ``limit``,
``name``, ``value``) and build their message from them in ``__str__``, so code can
branch on the attributes and logs stay readable.
"""

from __future__ import annotations

from .close_codes import OK_CLOSE_CODES

__all__ = [
    "AuthenticationError",
    "ChannelLayerError",
    "ConfigurationError",
    "ConnectionClosedError",
    "ConnectionFailedError",
    "MessageTooLargeError",
    "ServerDrainingError",
    "TooManyConnectionsError",
    "WebSocketError",
]


class WebSocketError(Exception):
    """Base class of every exception raised by :mod:`svc_infra.websocket`."""


class ConnectionFailedError(WebSocketError):
    """Raised when a connection cannot be opened.

    This covers a refused connection, a DNS failure, an open timeout, a handshake
    rejected with a status other than 401/403, and a reconnect loop that gave up.
    The underlying error, when there is one, is chained as ``__cause__``.

    Attributes:
        url: The URL that could not be reached.
        reason: A short human-readable explanation.
        attempts: How many consecutive attempts failed (1 unless reconnecting).
    """

    def __init__(self, url: str, reason: str, attempts: int = 1) -> None:
        super().__init__(url, reason, attempts)
        self.url = url
        self.reason = reason
        self.attempts = attempts

    def __str__(self) -> str:
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        return f"could not connect to {self.url}{tries}: {self.reason}"


class AuthenticationError(WebSocketError):
    """Raised when authentication fails.

    On the client, the server answered the opening handshake with HTTP 401 or
    403. On the server, a credential was missing or refused. Reconnect loops never
    retry this error: the same credential would be refused again.

    Attributes:
        reason: A short human-readable explanation.
        status: The HTTP status of the handshake response, when there is one.
    """

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason, status)
        self.reason = reason
        self.status = status

    def __str__(self) -> str:
        if self.status is not None:
            return f"authentication failed (HTTP {self.status}): {self.reason}"
        return f"authentication failed: {self.reason}"


class ConnectionClosedError(WebSocketError):
    """Raised when using a connection that is closed.

    ``code`` and ``reason`` are those the peer sent in its close frame (1001 stays
    1001). When no close frame was received they are those this side sent, and
    1006 (abnormal closure) when the TCP connection dropped without any.

    Attributes:
        code: The WebSocket close code.
        reason: The close reason, possibly empty.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    @property
    def ok(self) -> bool:
        """Whether the connection was closed normally (code 1000 or 1001)."""
        return self.code in OK_CLOSE_CODES

    def __str__(self) -> str:
        reason = f" {self.reason!r}" if self.reason else ""
        return f"connection closed with code {self.code}{reason}"


class MessageTooLargeError(WebSocketError):
    """Raised when a message exceeds ``max_message_size``.

    For an outgoing message it is raised before anything is sent, and the
    connection stays open. For an incoming message the connection is closed with
    code 1009 (message too big) and the error is raised by the receive call.

    Attributes:
        size: Size of the message in bytes, when known.
        limit: The limit in bytes, when known (the peer's limit is not).
    """

    def __init__(self, size: int | None, limit: int | None) -> None:
        super().__init__(size, limit)
        self.size = size
        self.limit = limit

    def __str__(self) -> str:
        size = f"{self.size} bytes" if self.size is not None else "message"
        limit = f"the limit of {self.limit} bytes" if self.limit is not None else "the limit"
        return f"{size} exceeds {limit}"


class ConfigurationError(WebSocketError, ValueError):
    """Raised when a configuration value is invalid.

    It is also a :exc:`ValueError`, so code that validates settings generically
    still catches it.

    Attributes:
        name: The setting at fault: a ``WS_*`` environment variable or a keyword.
        value: The offending value, as given.
        expected: What a valid value looks like.
    """

    def __init__(self, name: str, value: object, expected: str) -> None:
        super().__init__(name, value, expected)
        self.name = name
        self.value = value
        self.expected = expected

    def __str__(self) -> str:
        return f"invalid {self.name}={self.value!r}: expected {self.expected}"


class TooManyConnectionsError(WebSocketError):
    """Raised by ``ConnectionManager.connect()`` when the user already holds
    ``max_connections_per_user`` connections (in the cluster, with Redis presence).

    The socket was accepted and closed with 4008 (``Too many connections``) before
    this is raised; it was never registered, ran no ``on_connect`` hook and never
    showed in presence. The FastAPI and Channels integrations end the route quietly.

    Attributes:
        user_id: The user.
        limit: The cap.
    """

    def __init__(self, user_id: str, limit: int) -> None:
        super().__init__(user_id, limit)
        self.user_id = user_id
        self.limit = limit

    def __str__(self) -> str:
        return f"user {self.user_id!r} already holds {self.limit} connections"


class ServerDrainingError(WebSocketError):
    """Raised by ``ConnectionManager.connect()`` while the process drains (it is
    shutting down): the socket was closed with 1001 (``server shutting down``) and
    never registered. The FastAPI and Channels integrations end the route quietly.

    Attributes:
        user_id: The user.
    """

    def __init__(self, user_id: str) -> None:
        super().__init__(user_id)
        self.user_id = user_id

    def __str__(self) -> str:
        return f"refused a connection of {self.user_id!r}: the server is shutting down"


class ChannelLayerError(WebSocketError):
    """Raised when the channel layer (Redis) cannot carry a message to other processes.

    The manager raises it from ``send_to_user``, ``broadcast``,
    ``broadcast_to_room``, ``join_room``, ``leave_room`` and ``disconnect(user)``
    when Redis cannot be reached within the manager's timeout. What could be done
    in this process was done first (local sockets got the message; local room
    membership changed); other processes did not hear of it, and
    ``ManagerStats.messages_lost`` counts it. Local connections stay open, and
    delivery resumes by itself when Redis is back. With history on, a message
    history cannot record (operation ``"history"``) is not sent at all, locally
    either: a client that was away would otherwise miss it without knowing.

    Attributes:
        operation: What failed, such as ``"send_to_user"`` or ``"join_room"``.
        cause: The layer's own exception, also in ``__cause__``.
    """

    def __init__(self, operation: str, cause: BaseException | None = None) -> None:
        super().__init__(operation, cause)
        self.operation = operation
        self.cause = cause

    def __str__(self) -> str:
        detail = f": {self.cause!r}" if self.cause is not None else ""
        return f"{self.operation}: the channel layer is unavailable{detail}"
