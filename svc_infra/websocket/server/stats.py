"""What a manager counts: :class:`ManagerStats`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

__all__ = ["PUBLISH_BUCKETS", "ManagerStats", "PublishTimer"]


@dataclass(slots=True)
class ManagerStats:
    """Counters of what the manager did and dropped, since it was created.

    Attributes:
        frames_queued: Frames queued for local sockets.
        frames_dropped: Frames lost because their connection was evicted or failed.
        slow_consumers: Connections closed because their outbox overflowed.
        send_failures: Connections dropped because a write failed.
        layer_errors: Errors talking to the channel layer (logged).
        messages_lost: Messages, room changes and closes that could not reach
            other processes because the layer failed (the caller got a
            :exc:`~svc_infra.websocket.exceptions.ChannelLayerError`).
        hook_errors: Lifecycle hooks that raised (logged).
        messages_received: Messages received from clients (where the manager
            sees them: every managed socket).
        limited_size: Connections closed (1009) for a message over the size limit.
        limited_rate: Connections closed (4429) for sending over the rate limit.
        limited_connections: Connections refused (4008) over the per-user cap.
        limited_expired: Connections closed (4401) when their credential expired.
        connections_opened: Connections registered.
        bytes_queued: Bytes (characters for text) of the frames queued.
        published_user: Messages published by ``send_to_user``.
        published_room: Messages published by ``broadcast_to_room``.
        published_broadcast: Messages published by ``broadcast``.
    """

    frames_queued: int = 0
    frames_dropped: int = 0
    slow_consumers: int = 0
    send_failures: int = 0
    layer_errors: int = 0
    messages_lost: int = 0
    hook_errors: int = 0
    messages_received: int = 0
    limited_size: int = 0
    limited_rate: int = 0
    limited_connections: int = 0
    limited_expired: int = 0
    connections_opened: int = 0
    bytes_queued: int = 0
    published_user: int = 0
    published_room: int = 0
    published_broadcast: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


#: Upper bounds (seconds) of the publish-time histogram buckets.
PUBLISH_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0)


class PublishTimer(Protocol):
    """Where the manager reports how long each publish took (one call per message,
    never per delivery); :mod:`svc_infra.websocket.metrics` provides one."""

    def observe(self, target: str, seconds: float) -> None:
        """``target`` is ``"user"``, ``"room"`` or ``"broadcast"``."""
        ...
