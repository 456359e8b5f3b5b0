"""What a manager counts: :class:`ManagerStats`."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["ManagerStats"]


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

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
