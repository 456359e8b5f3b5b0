"""The way out of every message the manager sends: record, deliver here, publish.

One sequence for ``send_to_user``, ``broadcast`` and ``broadcast_to_room``: the
message gets its offset in history first (with history on), then goes to this
process's sockets (no await), then once to the layer for the other processes;
it is counted, and timed when metrics asked for it.

A message that history cannot record (its store away, or hung past the layer
timeout) is not sent at all: delivered without an offset, it would be missing
from the replay of a client that was away at the time, and that client would
never know. The caller gets ``ChannelLayerError("history")``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from .. import layer_messages as lm
from ..exceptions import ChannelLayerError
from ._history import HistoryPolicy
from ._publisher import Publisher
from ._recovery import Recovery
from .stats import ManagerStats, PublishTimer

__all__ = ["Outbound"]


class Outbound:
    """Sends a frame to a user, a room or everyone, here and in the cluster.

    Args:
        publisher: Local fan-out and the layer calls.
        recovery: Records messages in history.
        history: Which streams keep history.
        stats: Where messages are counted per target.
        start: Starts the manager (history needs its store).
        timings: Returns where publish times go (None: not measured).
    """

    def __init__(
        self,
        *,
        publisher: Publisher,
        recovery: Recovery,
        history: HistoryPolicy,
        stats: ManagerStats,
        start: Callable[[], Awaitable[None]],
        timings: Callable[[], PublishTimer | None],
    ) -> None:
        self.publisher = publisher
        self.recovery = recovery
        self.history = history
        self.stats = stats
        self.start = start
        self.timings = timings

    async def send(
        self,
        frame: lm.Frame,
        target: str,
        stream: str,
        group: str,
        operation: str,
        *,
        user: str | None = None,
        room: str | None = None,
        exclude: str | None = None,
    ) -> None:
        """Record ``frame`` on ``stream`` (with history on), write it to this
        process's sockets of ``user``, ``room`` or (neither) everyone, then publish
        it once to ``group`` for the other processes; count and time it as ``target``.

        Raises:
            ChannelLayerError: If other processes could not be reached (local
                sockets have the message), or, with history on, if history could
                not record it within the layer timeout (nothing was sent).

        Cancelling is safe: the message may or may not have reached the layer.
        """
        timings = self.timings()
        start = time.perf_counter() if timings is not None else 0.0
        try:
            offset, epoch = await self._record(stream, frame, exclude)
            publisher = self.publisher
            publisher.deliver(
                frame, user=user, room=room, exclude=exclude, offset=offset, epoch=epoch
            )
            everyone = True if user is None and room is None else None
            layer_message = lm.send_message(
                frame,
                user=user,
                room=room,
                all=everyone,
                exclude=exclude,
                offset=offset,
                epoch=epoch,
            )
            await publisher.publish(group, layer_message, operation)
        finally:
            counter = f"published_{target}"  # published_user, _room, _broadcast
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
            if timings is not None:
                timings.observe(target, time.perf_counter() - start)

    async def _record(
        self, stream: str, frame: lm.Frame, exclude: str | None
    ) -> tuple[int | None, str | None]:
        if not self.history.enabled:
            return None, None
        await self.start()
        try:
            # A store that hangs (Redis paused, a partition) fails here within the
            # layer timeout, not the client's socket timeout.
            async with asyncio.timeout(self.publisher.call_timeout):
                recorded = await self.recovery.record(stream, frame, exclude)
        except TimeoutError as exc:
            self.stats.layer_errors += 1
            raise ChannelLayerError("history", exc) from exc
        return (None, None) if recorded is None else recorded
