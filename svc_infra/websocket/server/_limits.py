"""Limits: when a session must end. Credential expiry, inbound size and rate.

Nothing here costs a task or a timer per connection (10,000 sockets per process
is the design point):

- credential expiries sit in one heap with one timer armed for the earliest;
- a connection's rate is a token bucket refilled lazily, when a message arrives.

An inbound check runs on every message a client sends to a managed socket,
before the application sees it (the integrations install it on the socket).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from ..close_codes import CloseCode
from ..layer_messages import utf8_size
from ._registry import Registry
from .connection import LocalConnection
from .stats import ManagerStats

__all__ = ["Bucket", "ExpiryTimers", "InboundCheck", "InboundLimits", "expiry_of"]

#: What an inbound check answers: None to let the message through, else the
#: (code, reason) to close the connection with.
Verdict = tuple[int, str] | None
InboundCheck = Callable[[Mapping[str, Any]], Verdict]


def expiry_of(principal: Any) -> float | None:
    """The Unix time a principal's credential expires (its ``exp`` claim), if any."""
    claims = getattr(principal, "claims", None)
    exp = claims.get("exp") if isinstance(claims, Mapping) else None
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        return float(exp)
    return None


class Bucket:
    """A token bucket: ``rate`` messages a second, ``burst`` at once; refilled on use."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(max(burst, 1))
        self.tokens = self.burst
        self.stamp = time.monotonic()

    def take(self) -> bool:
        """Spend one token; False if none is left."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class ExpiryTimers:
    """Every connection's credential expiry in one heap, with one timer.

    Args:
        registry: Where connections are looked up when their time comes (the
            heap holds ids, so a closed connection is not kept alive by it).
        expired: Called with each connection whose credential expired.
    """

    def __init__(self, registry: Registry, expired: Callable[[LocalConnection], None]) -> None:
        self.registry = registry
        self.expired = expired
        self._heap: list[tuple[float, int, str]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, conn: LocalConnection, expires_at: float) -> None:
        """Call ``expired(conn)`` at the Unix time ``expires_at`` (at once if past)."""
        loop = asyncio.get_running_loop()
        when = loop.time() + max(0.0, expires_at - time.time())
        heapq.heappush(self._heap, (when, next(self._order), conn.id))
        if self._timer is None or when < self._timer.when():
            self._arm(loop, when)

    def clear(self) -> None:
        """Forget every expiry (shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._heap.clear()

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, conn_id = heapq.heappop(heap)
            conn = self.registry.conns.get(conn_id)
            if conn is not None:
                self.expired(conn)
        if heap:
            self._arm(loop, heap[0][0])


class InboundLimits:
    """Builds the inbound check of each connection.

    Args:
        stats: Where what was limited is counted.
        max_size: Bytes a message may have (``max_message_size``).
        rate: Messages per second (0: no limit).
        burst: The bucket's size (0: ``rate``).
        limited: Ends a connection with (code, reason), at once.
    """

    def __init__(
        self,
        *,
        stats: ManagerStats,
        max_size: int,
        rate: float,
        burst: int,
        limited: Callable[[LocalConnection, int, str], None],
    ) -> None:
        self.stats = stats
        self.max_size = max_size
        self.rate = rate
        self.burst = burst or max(int(rate), 1)
        self.limited = limited

    def check_for(self, conn: LocalConnection) -> InboundCheck:
        """The check to run on each message ``conn`` sends."""
        bucket = Bucket(self.rate, self.burst) if self.rate > 0 else None
        return _Check(self, conn, bucket)


class _Check:
    """One connection's inbound check: an object with slots rather than a closure,
    which costs a few hundred bytes more per connection (a function and its cells)."""

    __slots__ = ("bucket", "conn", "limits")

    def __init__(self, limits: InboundLimits, conn: LocalConnection, bucket: Bucket | None) -> None:
        self.limits, self.conn, self.bucket = limits, conn, bucket

    def __call__(self, message: Mapping[str, Any]) -> Verdict:
        limits = self.limits
        stats, max_size = limits.stats, limits.max_size
        stats.messages_received += 1
        data = message.get("bytes")
        text = message.get("text")
        if data is not None:
            size = len(data)
        elif text is not None:
            size = utf8_size(text, max_size)
        else:
            size = 0
        bucket = self.bucket
        if size > max_size:
            stats.limited_size += 1
            code, reason = CloseCode.MESSAGE_TOO_BIG, "message too big"
        elif bucket is not None and not bucket.take():
            stats.limited_rate += 1
            code, reason = CloseCode.RATE_LIMITED, "rate limit"
        else:
            self.conn.info.last_activity = datetime.now(UTC)
            return None
        limits.limited(self.conn, code, reason)
        return code, reason
