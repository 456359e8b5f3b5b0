"""The publisher: every message's way out, and the manager's every call to the layer.

:meth:`Publisher.send` is the one sequence behind ``send_to_user``, ``broadcast``
and ``broadcast_to_room``: the message gets its offset in history first (with
history on), then goes to this process's sockets (:meth:`Publisher.deliver`, no
await), then once to the layer for the other processes (:meth:`Publisher.publish`);
it is counted, and timed when metrics asked for it. A message that history cannot
record (its store away, or hung past the layer timeout) is not sent at all:
delivered without an offset, it would be missing from the replay of a client that
was away at the time, and that client would never know.

Every published message carries ``origin`` (the manager's id), so a manager skips
its own messages when they come back from the layer.

Only a layer behind a network can hang: for those, every call is bounded by
``layer_timeout``; for the in-memory layer a timer per call would be pure cost.
On the in-memory layer a message is published only when a channel other than
this manager's is in the group: otherwise the layer would copy it to our own
channel, for us to drop, and walk every group to expire old members (O(users)
per broadcast).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any

from .. import layer_messages as lm
from ..exceptions import ChannelLayerError
from ..layer_messages import Frame
from ._dedupe import RecentIds
from ._recovery import Recovery, stream_of, v1_frame
from ._registry import Registry
from ._runtime import Runtime
from ._target import Target
from .stats import ManagerStats, PublishTimer

__all__ = ["Publisher"]

logger = logging.getLogger("svc_infra.websocket.manager")


class Publisher:
    """Writes to local sockets and to the layer, counting what fails.

    Args:
        layer: The Channels layer.
        origin: The manager's id, stamped on every published message.
        registry: Whose connections :meth:`deliver` writes to.
        runtime: The manager's channel (its own, skipped on the in-memory layer).
        recovery: Records messages in history.
        stats: Where failures and queued frames are counted.
        call_timeout: Bound of each layer call in seconds; None for no bound.
        local_groups: The in-memory layer's table of groups, or None.
    """

    __slots__ = (
        "call_timeout",
        "layer",
        "local_groups",
        "origin",
        "recent",
        "recovery",
        "registry",
        "runtime",
        "stats",
        "timings",
    )

    def __init__(
        self,
        layer: Any,
        *,
        origin: str,
        registry: Registry,
        runtime: Runtime,
        recovery: Recovery,
        stats: ManagerStats,
        call_timeout: float | None,
        local_groups: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        self.layer = layer
        self.local_groups = local_groups
        self.runtime = runtime
        self.recovery = recovery
        self.origin = origin
        self.registry = registry
        self.stats = stats
        self.call_timeout = call_timeout
        #: Where publish times go, per target kind (None: not measured).
        self.timings: PublishTimer | None = None
        #: Message ids delivered here recently (outbox messages: see :mod:`._dedupe`).
        self.recent = RecentIds()

    async def send(
        self,
        target: Target,
        frame: Frame,
        exclude: str | None = None,
        message_id: str | None = None,
    ) -> None:
        """Record ``frame`` on the target's stream (with history on), write it to
        this process's sockets of the target, except ``exclude``'s, then publish it
        once to the target's group for the other processes; count and time it.

        A ``message_id`` (an outbox message, which a relay may publish twice) goes
        with the message: this process and every other deliver an id once (see
        :mod:`._dedupe`), and history gives a retried id the offset it got first.

        Raises:
            ChannelLayerError: If other processes could not be reached (local
                sockets have the message), or, with history on, if history could
                not record it within the layer timeout (nothing was sent).

        Cancelling is safe: the message may or may not have reached the layer.
        """
        timings = self.timings
        start = time.perf_counter() if timings is not None else 0.0
        try:
            offset, epoch = await self._record(target.stream, frame, exclude, message_id)
            user, room = target.user, target.room
            if message_id is None or not self.recent.seen(message_id):
                self.deliver(
                    frame, user=user, room=room, exclude=exclude, offset=offset, epoch=epoch
                )
            # Published again even for an id seen before: the first try may have
            # died before it reached the layer; the other processes drop a copy.
            layer_message = lm.send_message(
                frame,
                user=user,
                room=room,
                all=True if target.kind == "broadcast" else None,
                exclude=exclude,
                offset=offset,
                epoch=epoch,
                mid=message_id,
            )
            await self.publish(target.group, layer_message, target.operation)
        finally:
            target.count(self.stats)
            if timings is not None:
                timings.observe(target.kind, time.perf_counter() - start)

    async def _record(
        self, stream: str, frame: Frame, exclude: str | None, message_id: str | None
    ) -> tuple[int | None, str | None]:
        if not self.recovery.policy.enabled:
            return None, None
        try:
            # A store that hangs (Redis paused, a partition) fails here within the
            # layer timeout, not the client's socket timeout.
            async with asyncio.timeout(self.call_timeout):
                recorded = await self.recovery.record(stream, frame, exclude, message_id)
        except TimeoutError as exc:
            self.stats.layer_errors += 1
            raise ChannelLayerError("history", exc) from exc
        return (None, None) if recorded is None else recorded[:2]

    def deliver(
        self,
        frame: Frame,
        *,
        user: str | None = None,
        room: str | None = None,
        exclude: str | None = None,
        stream: str | None = None,
        offset: int | None = None,
        epoch: str | None = None,
    ) -> None:
        """Queue ``frame`` on this process's connections of ``user``, of ``room``'s
        members, or (neither) of everyone, except ``exclude``'s. Never waits.

        v1 connections get the frame with its stream header (``offset`` and
        ``epoch`` when the message was recorded in history)."""
        now = datetime.now(UTC)  # one clock read per message, not per connection
        queued = 0
        v1: Frame | None = None  # built once, for the first v1 connection
        for conn in self.registry.targets(user=user, room=room, exclude=exclude):
            session = conn.session
            if session is None:
                ok = conn.push(frame)
            else:
                if stream is None:
                    stream = stream_of(user, room)
                if v1 is None:
                    v1 = v1_frame(stream, offset, epoch, frame)
                if session.hold_all or session.held_streams:
                    ok = session.offer(conn, stream, offset, epoch, v1)
                else:  # the common case, without the hold checks
                    ok = session.deliver(conn, stream, offset, epoch, v1)
            if ok:
                conn.info.last_activity = now
                queued += 1
        if exclude is not None and offset is not None:
            # The excluded user's v1 connections skip this offset: their streams
            # must stay in order, with no gap waiting for a frame that never comes.
            for conn in self.registry.user_connections(exclude):
                session = conn.session
                if session is not None:
                    stream = stream or stream_of(user, room)
                    if stream in session.last:
                        session.offer(conn, stream, offset, epoch, None)
        self.stats.frames_queued += queued
        self.stats.bytes_queued += queued * len(frame)

    async def publish(self, group: str, message: dict[str, Any], operation: str) -> None:
        """Send ``message`` to ``group`` for the other processes.

        Raises:
            ChannelLayerError: If the layer failed or took longer than the call
                timeout; counted in ``messages_lost``.

        Cancelling is safe: the message may or may not have reached the layer.
        """
        groups = self.local_groups
        if groups is not None:
            members = groups.get(group)
            if not members or (len(members) == 1 and self.runtime.channel in members):
                return  # no one else listens
        message["origin"] = self.origin
        try:
            async with asyncio.timeout(self.call_timeout):
                await self.layer.group_send(group, message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats.layer_errors += 1
            self.stats.messages_lost += 1
            logger.warning("%s could not reach other processes: %r", operation, exc)
            raise ChannelLayerError(operation, exc) from exc

    async def call(self, call: Coroutine[Any, Any, Any], *, bounded: bool = True) -> bool:
        """Await a group change; errors are logged and counted, never raised.
        ``bounded=False`` for a call that bounds its own round trips.

        Returns:
            False if the call failed or timed out.
        """
        bound = self.call_timeout if bounded else None
        try:
            if bound is None:  # no timer at all: a connect storm makes thousands of calls
                await call
            else:
                async with asyncio.timeout(bound):
                    await call
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats.layer_errors += 1
            logger.warning("channel layer call failed: %r", exc)
            return False
        return True
