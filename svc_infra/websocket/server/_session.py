"""A ``svc-infra.v1`` connection's session: the positions it claimed, what it was sent.

No I/O: the session decides, for each frame, whether to send it now, hold it, or
drop it. Frames of a stream go out in offset order, each offset once:

- while the stream is being replayed, its live frames are *held*, then sent after
  the replay;
- a frame whose offset is not the next one waits in the stream's *pending* set:
  with two publishers in two processes, offset 8 may be delivered here before
  offset 7 arrives through the layer. When 7 comes, both go out. If it does not
  come soon, :attr:`Session.on_gap` asks the recovery part to fetch it from
  history (``_recovery.py``);
- an offset at or below the last one sent is a duplicate, and dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ..layer_messages import Frame

__all__ = ["Outbox", "Session"]

# Frames a session may hold or keep pending, at most; past it the connection is
# evicted as a slow consumer.
_HOLD_LIMIT_FRAMES = 10_000


class Outbox(Protocol):
    """What a session writes to: the connection's outbox."""

    def push(self, frame: Frame) -> bool: ...

    def overflow(self) -> None: ...


class Session:
    """What a v1 connection's recovery needs: the positions it claimed, what it got."""

    __slots__ = (
        "claimed",
        "held",
        "held_streams",
        "hold_all",
        "last",
        "on_gap",
        "pending",
    )

    def __init__(self, claimed: dict[str, tuple[str, int]]) -> None:
        #: Positions from the handshake, consumed when their stream is replayed.
        self.claimed = claimed
        #: Last [epoch, offset] sent per stream (a list: updated in place, no
        #: allocation per delivery).
        self.last: dict[str, list[Any]] = {}
        #: Until the first control frame is out, every frame is held.
        self.hold_all = True
        #: Streams being replayed: their live frames are held.
        self.held_streams: set[str] = set()
        self.held: list[tuple[str, int | None, str | None, Frame | None]] = []
        #: Frames that came before an earlier offset of their stream: offset -> frame.
        self.pending: dict[str, dict[int, Frame | None]] = {}
        #: Called with a stream when a gap opens in it (set by the recovery part).
        self.on_gap: Callable[[str], None] | None = None

    def offer(
        self,
        conn: Outbox,
        stream: str,
        offset: int | None,
        epoch: str | None,
        frame: Frame | None,
    ) -> bool:
        """Deliver, hold or drop a v1 frame (``None``: an offset not for this
        connection, which only moves its position). True if queued or kept."""
        if self.hold_all or stream in self.held_streams:
            if len(self.held) >= _HOLD_LIMIT_FRAMES:
                conn.overflow()
                return False
            self.held.append((stream, offset, epoch, frame))
            return True
        return self.deliver(conn, stream, offset, epoch, frame)

    def deliver(
        self,
        conn: Outbox,
        stream: str,
        offset: int | None,
        epoch: str | None,
        frame: Frame | None,
    ) -> bool:
        """Send a v1 frame in offset order (no hold check): now, when the offsets
        before it came, or never if it was already sent."""
        if offset is None:
            return frame is not None and conn.push(frame)
        last = self.last.get(stream)
        if last is None or last[0] != epoch:  # a stream's first frame, or a new epoch
            self.last[stream] = [epoch, offset]
            self.pending.pop(stream, None)
            return frame is not None and conn.push(frame)
        top = last[1]
        if offset == top + 1:
            last[1] = offset
            ok = frame is None or conn.push(frame)
            waiting = self.pending.get(stream)
            if waiting:
                self._drain(conn, stream, last, waiting)
            return ok
        if offset <= top:
            return False  # already sent (replayed, or a duplicate)
        waiting = self.pending.setdefault(stream, {})
        if sum(len(p) for p in self.pending.values()) >= _HOLD_LIMIT_FRAMES:
            conn.overflow()
            return False
        gap_opens = not waiting
        waiting[offset] = frame
        if gap_opens and self.on_gap is not None:
            self.on_gap(stream)
        return True

    def _drain(
        self, conn: Outbox, stream: str, last: list[Any], waiting: dict[int, Frame | None]
    ) -> None:
        while (following := last[1] + 1) in waiting:
            frame = waiting.pop(following)
            last[1] = following
            if frame is not None:
                conn.push(frame)
        if not waiting:
            del self.pending[stream]

    def give_up_gap(self, conn: Outbox, stream: str) -> None:
        """The missing offsets cannot be had: send what is pending, in order, from the
        first offset after the gap."""
        waiting = self.pending.get(stream)
        last = self.last.get(stream)
        if not waiting or last is None:
            return
        last[1] = min(waiting) - 1
        self._drain(conn, stream, last, waiting)

    def advance(self, conn: Outbox, stream: str, epoch: str, top: int) -> None:
        """The client now stands at ``top`` of ``stream`` (after a replay, or none)."""
        last = self.last.get(stream)
        if last is not None and last[0] == epoch and last[1] >= top:
            return
        last = self.last[stream] = [epoch, top]
        waiting = self.pending.get(stream)
        if waiting is not None:
            for offset in [o for o in waiting if o <= top]:
                del waiting[offset]
            self._drain(conn, stream, last, waiting)

    def release(self, conn: Outbox, streams: Iterable[str] | None) -> None:
        """Stop holding ``streams`` (None: everything) and send what was held, in order."""
        if streams is None:
            self.hold_all = False
        else:
            self.held_streams.difference_update(streams)
        keep: list[tuple[str, int | None, str | None, Frame | None]] = []
        for item in self.held:
            if self.hold_all or item[0] in self.held_streams:
                keep.append(item)
            else:
                self.deliver(conn, *item)
        self.held = keep
