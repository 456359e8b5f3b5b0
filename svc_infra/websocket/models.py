"""Data models shared by the client and the connection manager."""

from __future__ import annotations

import enum
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["ConnectionInfo", "ConnectionState", "WebSocketMessage"]


class ConnectionState(enum.StrEnum):
    """Where a connection is in its life.

    A client goes ``CONNECTING -> CONNECTED -> CLOSING -> CLOSED``; a reconnect
    loop shows ``RECONNECTING`` while it waits before the next attempt.
    """

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class WebSocketMessage:
    """One message, text or binary, with the time it was received.

    Attributes:
        data: The payload: :class:`str` for a text frame, :class:`bytes` for binary.
        timestamp: Wall-clock time of receipt, seconds since the epoch.
    """

    data: str | bytes
    timestamp: float = field(default_factory=time.time)

    @property
    def is_binary(self) -> bool:
        """Whether the message came in a binary frame."""
        return isinstance(self.data, bytes)

    @property
    def text(self) -> str:
        """The payload as text (binary payloads are decoded as UTF-8).

        Raises:
            UnicodeDecodeError: If a binary payload is not valid UTF-8.
        """
        return self.data.decode() if isinstance(self.data, bytes) else self.data

    def json(self) -> Any:
        """Parse the payload as JSON.

        Raises:
            ValueError: If the payload is not valid JSON (a
                :exc:`json.JSONDecodeError`) or not valid UTF-8.
        """
        return json.loads(self.data)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class ConnectionInfo:
    """What the manager knows about one server-side connection.

    Attributes:
        user_id: The user the connection belongs to.
        connection_id: Unique id of the connection, returned by ``connect()``.
        connected_at: When the connection was registered (UTC).
        last_activity: When a message last went through it (UTC).
        metadata: Free-form data given to ``connect()``; keep it JSON-serializable
            so it can be shared across processes.
    """

    user_id: str
    connection_id: str
    connected_at: datetime = field(default_factory=_utcnow)
    last_activity: datetime = field(default_factory=_utcnow)
    metadata: dict[str, Any] = field(default_factory=dict)

    def touch(self) -> None:
        """Record activity now."""
        self.last_activity = _utcnow()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serializable representation (ISO 8601 timestamps)."""
        return {
            "user_id": self.user_id,
            "connection_id": self.connection_id,
            "connected_at": self.connected_at.isoformat(),
            "last_activity": self.last_activity.isoformat(),
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConnectionInfo:
        """Rebuild an instance from :meth:`to_dict` output.

        Raises:
            KeyError: If a required field is missing.
            ValueError: If a timestamp is not ISO 8601.
        """
        return cls(
            user_id=str(data["user_id"]),
            connection_id=str(data["connection_id"]),
            connected_at=datetime.fromisoformat(data["connected_at"]),
            last_activity=datetime.fromisoformat(data["last_activity"]),
            metadata=dict(data.get("metadata") or {}),
        )
