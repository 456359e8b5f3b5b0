"""``manager.ops``: what operating a manager needs, apart from what an app calls.

An app uses the :class:`~svc_infra.websocket.manager.ConnectionManager` verbs of the
spec (connect, send, rooms, queries, start and shutdown). Monitoring, tests and
tuning reach below that, into the running machinery: the layer, the manager's
channel on it, presence, the publish timings, the layer timeout. They are here,
under one name, so that the manager's own surface stays the spec's.
"""

from __future__ import annotations

from typing import Any

from ..layer_messages import Frame
from ._lifecycle import Lifecycle
from ._membership import GroupMembership
from ._publisher import Publisher
from ._runtime import Runtime
from ._target import Target
from .protocols import Presence
from .stats import PublishTimer

__all__ = ["ManagerOps"]


class ManagerOps:
    """The operational side of one manager (``manager.ops``).

    Attributes:
        id: The manager's id: its name in the cluster (presence, layer messages).
        layer: The Channels layer the manager delivers through.
    """

    __slots__ = (
        "_layer_timeout",
        "_lifecycle",
        "_membership",
        "_networked",
        "_publisher",
        "_runtime",
        "id",
        "layer",
    )

    def __init__(
        self,
        *,
        id: str,
        layer: Any,
        runtime: Runtime,
        publisher: Publisher,
        membership: GroupMembership,
        lifecycle: Lifecycle,
        networked: bool,
    ) -> None:
        self.id = id
        self.layer = layer
        self._runtime = runtime
        self._publisher = publisher
        self._membership = membership
        self._lifecycle = lifecycle
        self._networked = networked
        self._layer_timeout = 5.0
        self.layer_timeout = 5.0  # bounds the publisher's calls, on a networked layer

    @property
    def channel_name(self) -> str | None:
        """The manager's channel on the layer, once started."""
        return self._runtime.channel

    @property
    def presence(self) -> Presence | None:
        """Cluster-wide presence while started with it (on Redis), else None."""
        return self._runtime.presence

    @property
    def timings(self) -> PublishTimer | None:
        """Where publish times go, per target (set by ``svc_infra.websocket.metrics``);
        None, the default, measures nothing."""
        return self._publisher.timings

    @timings.setter
    def timings(self, timer: PublishTimer | None) -> None:
        self._publisher.timings = timer

    @property
    def layer_timeout(self) -> float:
        """Seconds a layer call may take before it counts as failed (5 by default):
        a Redis that hangs must not hang the caller. Not applied to the in-memory
        layer, which cannot hang."""
        return self._layer_timeout

    @layer_timeout.setter
    def layer_timeout(self, seconds: float) -> None:
        self._layer_timeout = seconds
        self._publisher.call_timeout = seconds if self._networked else None

    @property
    def group_refresh_interval(self) -> float:
        """Seconds between re-joins of the manager's groups (an hour by default):
        layers forget a member after their ``group_expiry`` (a day by default)."""
        return self._lifecycle.refresh_interval

    @group_refresh_interval.setter
    def group_refresh_interval(self, seconds: float) -> None:
        self._lifecycle.refresh_interval = seconds

    async def send_once(
        self,
        kind: str,
        target: str | None,
        frame: Frame,
        message_id: str,
        exclude: str | None = None,
    ) -> None:
        """Send an encoded ``frame`` as ``send_to_user`` (``kind="user"``, ``target``
        the user), ``broadcast_to_room`` (``"room"``) or ``broadcast`` (``"all"``)
        would, carrying ``message_id``: a second send of the same id (a relay that
        died before marking it sent, and retried) reaches no socket twice (see
        ``docs/outbox.md`` for what is guaranteed with and without history).

        Raises:
            ValueError: For another ``kind``, or a user or room target without a name.
            ChannelLayerError: As ``send_to_user``.
        """
        prefix = self._membership.prefix
        if kind == "all":
            where = Target.everyone(prefix)
        elif kind in ("user", "room") and target:
            where = (Target.of_user if kind == "user" else Target.of_room)(target, prefix)
        else:
            raise ValueError(f"cannot send to kind={kind!r}, target={target!r}")
        await self._lifecycle.start()
        await self._publisher.send(where, frame, exclude, message_id)

    async def refresh_groups(self) -> None:
        """Join again every group the manager's channel belongs to (it runs every
        :attr:`group_refresh_interval` seconds by itself). Errors are logged and
        counted, never raised."""
        await self._membership.refresh()
