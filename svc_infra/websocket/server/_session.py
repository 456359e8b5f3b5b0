"""A ``svc-infra.v1`` connection's session: the positions it claimed, what it was sent.

No I/O: the session decides, for each frame, whether to send it now, hold it
(its stream is being replayed) or drop it (already delivered).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from ..layer_messages import Frame

__all__ = ["Outbox", "Session"]

# Frames a session may hold while a replay is fetched, at most; past it the
# connection is evicted as a slow consumer.
_HOLD_LIMIT_FRAMES = 10_000


class Outbox(Protocol):
    """What a session writes to: the connection's outbox."""

    def push(self, frame: Frame) -> bool: ...

    def overflow(self) -> None: ...


class Session:
    """What a v1 connection's recovery needs: the positions it claimed, what it got."""

    __slots__ = ("claimed", "held", "held_streams", "hold_all", "last")

    def __init__(self, claimed: dict[str, tuple[str, int]]) -> None:
        #: Positions from the handshake, consumed when their stream is replayed.
        self.claimed = claimed
        #: Last (epoch, offset) delivered per stream.
        self.last: dict[str, tuple[str, int]] = {}
        #: Until the first control frame is out, every frame is held.
        self.hold_all = True
        #: Streams being replayed: their live frames are held.
        self.held_streams: set[str] = set()
        self.held: list[tuple[str, int | None, str | None, Frame]] = []

    def offer(
        self,
        conn: Outbox,
        stream: str,
        offset: int | None,
        epoch: str | None,
        frame: Frame,
    ) -> bool:
        """Deliver (or hold, or drop as a duplicate) a v1 frame. True if queued."""
        if self.hold_all or stream in self.held_streams:
            if len(self.held) >= _HOLD_LIMIT_FRAMES:
                conn.overflow()
                return False
            self.held.append((stream, offset, epoch, frame))
            return True
        return self._send(conn, stream, offset, epoch, frame)

    def _send(
        self,
        conn: Outbox,
        stream: str,
        offset: int | None,
        epoch: str | None,
        frame: Frame,
    ) -> bool:
        if offset is not None and epoch is not None:
            last = self.last.get(stream)
            if last is not None and last[0] == epoch and offset <= last[1]:
                return False  # already delivered (replayed, or a duplicate)
            self.last[stream] = (epoch, offset)
        return conn.push(frame)

    def release(self, conn: Outbox, streams: Iterable[str] | None) -> None:
        """Stop holding ``streams`` (None: everything) and send what was held, in order."""
        if streams is None:
            self.hold_all = False
        else:
            self.held_streams.difference_update(streams)
        keep: list[tuple[str, int | None, str | None, Frame]] = []
        for item in self.held:
            if self.hold_all or item[0] in self.held_streams:
                keep.append(item)
            else:
                self._send(conn, *item)
        self.held = keep
