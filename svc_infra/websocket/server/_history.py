"""History: the recent messages of each stream, with offsets and an epoch, for recovery.

A *stream* is a delivery target: ``user:<id>``, ``room:<name>`` or ``broadcast``.
With history on, each message published to a stream gets the next *offset* (1, 2,
...) before it is delivered anywhere, and the stream has an *epoch*, a string that
changes whenever its history is lost. A client that reconnects with (epoch,
offset) gets every message after it, or is told the stream was not recovered.

:class:`HistoryPolicy` says which streams keep how much; :class:`MemoryHistory` is
the store for one process (the in-memory layer). The Redis store, shared by every
process, is :class:`svc_infra.websocket.scaleout.history.RedisHistory`.
"""

from __future__ import annotations

import fnmatch
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from ..layer_messages import Frame

__all__ = ["META_TTL", "Entry", "HistoryPolicy", "MemoryHistory", "Replay"]

#: Seconds a stream's epoch and top offset outlive its last message, by default
#: (``history_meta_ttl``). Longer than the messages themselves: a client idle past
#: ``history_ttl`` that missed nothing is still told "recovered", not "history lost".
META_TTL = 86_400.0


@dataclass(frozen=True, slots=True)
class Entry:
    """One recorded message: its offset, frame, and the user it was not for."""

    offset: int
    frame: Frame
    exclude: str | None = None


@dataclass(frozen=True, slots=True)
class Replay:
    """What a stream holds after a client's position.

    Attributes:
        recovered: True if ``entries`` are every message after the position;
            False if some are gone (too old, or the epoch changed); None if no
            position was given (the stream's current position is reported).
        epoch: The stream's epoch now.
        top: The stream's last offset now.
        entries: The messages after the position (when recovered), oldest first.
    """

    recovered: bool | None
    epoch: str
    top: int
    entries: list[Entry] = field(default_factory=list)


class HistoryPolicy:
    """How many messages each stream keeps, and for how long.

    Args:
        size: Messages per stream (0: none), from ``history_size``.
        ttl: Seconds, from ``history_ttl``.
    """

    def __init__(self, size: int, ttl: float) -> None:
        self.size = size
        self.ttl = ttl
        self._rules: list[tuple[str, int, float]] = []
        self._cache: dict[str, tuple[int, float] | None] = {}

    @property
    def enabled(self) -> bool:
        """Whether any stream keeps history."""
        return self.size > 0 or any(size > 0 for _, size, _ in self._rules)

    def set(self, pattern: str, *, size: int | None = None, ttl: float | None = None) -> None:
        """Streams matching the glob ``pattern`` keep ``size`` messages for ``ttl`` seconds
        (each defaults to the global setting). Later rules win.

        Raises:
            ValueError: If ``size`` is negative or ``ttl`` not positive.
        """
        size = self.size if size is None else size
        ttl = self.ttl if ttl is None else ttl
        if size < 0 or ttl <= 0:
            raise ValueError(f"history size must be >= 0 and ttl > 0, not {size!r}, {ttl!r}")
        self._rules.append((pattern, size, ttl))
        self._cache.clear()

    def of(self, stream: str) -> tuple[int, float] | None:
        """(size, ttl) for ``stream``, or None if it keeps no history."""
        try:
            return self._cache[stream]
        except KeyError:
            pass
        size, ttl = self.size, self.ttl
        for pattern, rule_size, rule_ttl in self._rules:
            if fnmatch.fnmatchcase(stream, pattern):
                size, ttl = rule_size, rule_ttl
        result = (size, ttl) if size > 0 else None
        if len(self._cache) > 10_000:  # streams are free text: keep the cache bounded
            self._cache.clear()
        self._cache[stream] = result
        return result


#: Message ids remembered per stream, beyond its size, by :meth:`MemoryHistory.append`
#: (a publisher that retries a message finds the offset it got the first time).
IDS_KEPT = 1000


class _Ring:
    __slots__ = ("entries", "epoch", "ids", "keep", "times", "top", "touched")

    def __init__(self, size: int, now: float, keep: float) -> None:
        self.keep = keep  # seconds the ring outlives its last use
        self.epoch = uuid.uuid4().hex[:16]
        self.top = 0
        self.entries: deque[Entry] = deque(maxlen=size)
        self.times: deque[float] = deque(maxlen=size)
        self.touched = now
        self.ids: OrderedDict[str, int] = OrderedDict()  # message id -> its offset

    def expire(self, now: float, ttl: float) -> None:
        while self.times and now - self.times[0] > ttl:
            self.times.popleft()
            self.entries.popleft()


class MemoryHistory:
    """History in this process: a bounded ring per stream.

    Each ring holds at most its stream's ``size`` messages, none older than its
    ``ttl``; a stream idle for ``meta_ttl`` (or its ``ttl``, if longer) is
    forgotten (its next message starts a new epoch).

    Args:
        meta_ttl: ``history_meta_ttl``.
    """

    def __init__(self, meta_ttl: float = META_TTL) -> None:
        self.meta_ttl = meta_ttl
        self._streams: OrderedDict[str, _Ring] = OrderedDict()
        self._clock = time.monotonic

    def _ring(self, stream: str, size: int, ttl: float, now: float) -> _Ring:
        ring = self._streams.get(stream)
        keep = max(self.meta_ttl, ttl)
        if ring is None or now - ring.touched > ring.keep:
            ring = self._streams[stream] = _Ring(size, now, keep)
        ring.touched, ring.keep = now, keep
        self._streams.move_to_end(stream)
        # Least recently touched first: forget the streams idle for too long (a
        # stream kept longer than the meta TTL, by its own ttl, stops the sweep
        # until it goes too: the others wait in order, and expire when touched).
        while self._streams:
            oldest = next(iter(self._streams.values()))
            if now - oldest.touched <= oldest.keep:
                break
            self._streams.popitem(last=False)
        return ring

    async def append(
        self,
        stream: str,
        frame: Frame,
        exclude: str | None,
        size: int,
        ttl: float,
        message_id: str | None = None,
    ) -> tuple[int, str, bool]:
        """Record ``frame`` on ``stream``; return its (offset, epoch, True). A
        ``message_id`` recorded before returns the offset it got then, and False.
        Never waits."""
        now = self._clock()
        ring = self._ring(stream, size, ttl, now)
        if message_id is not None:
            known = ring.ids.get(message_id)
            if known is not None:
                return known, ring.epoch, False
            ring.ids[message_id] = ring.top + 1
            while len(ring.ids) > size + IDS_KEPT:
                ring.ids.popitem(last=False)
        ring.top += 1
        ring.entries.append(Entry(ring.top, frame, exclude))
        ring.times.append(now)
        ring.expire(now, ttl)
        return ring.top, ring.epoch, True

    async def since(
        self, stream: str, position: tuple[str, int] | None, size: int, ttl: float
    ) -> Replay:
        """What ``stream`` holds after ``position`` (epoch, offset). Never waits."""
        now = self._clock()
        ring = self._ring(stream, size, ttl, now)
        ring.expire(now, ttl)
        return replay_of(ring.epoch, ring.top, list(ring.entries), position)

    async def close(self) -> None:
        """Nothing to release."""


def replay_of(
    epoch: str, top: int, entries: list[Entry], position: tuple[str, int] | None
) -> Replay:
    """Decide recovery for ``position`` against a stream's (epoch, top, entries kept).

    Recovered only if the epoch is the same and the entries kept start right after
    the position (nothing in between was trimmed): never a silent gap.
    """
    if position is None:
        return Replay(None, epoch, top)
    their_epoch, offset = position
    if their_epoch != epoch or offset > top or offset < 0:
        return Replay(False, epoch, top)
    if offset == top:
        return Replay(True, epoch, top)
    wanted = [e for e in entries if e.offset > offset]
    if not wanted or wanted[0].offset != offset + 1 or wanted[-1].offset != top:
        return Replay(False, epoch, top)
    return Replay(True, epoch, top, wanted)
