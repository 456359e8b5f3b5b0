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
    """

    frames_queued: int = 0
    frames_dropped: int = 0
    slow_consumers: int = 0
    send_failures: int = 0
    layer_errors: int = 0
    messages_lost: int = 0
    hook_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
