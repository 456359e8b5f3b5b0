"""The interfaces between the core and what scale-out implements: presence, history.

The core calls a :class:`Presence` (implemented on Redis by
:class:`svc_infra.websocket.scaleout.presence.RedisPresence`), and hands it a
:class:`PresenceHost` for what presence needs back from the core. Neither side
imports the other's implementation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, Protocol

from ..layer_messages import Frame
from ..models import ConnectionInfo
from ._history import Replay

__all__ = ["Backend", "Directory", "HistoryStore", "Presence", "PresenceHost"]


class HistoryStore(Protocol):
    """Where streams' recent messages are kept (memory, or Redis for a cluster)."""

    async def append(
        self,
        stream: str,
        frame: Frame,
        exclude: str | None,
        size: int,
        ttl: float,
        message_id: str | None = None,
    ) -> tuple[int, str, bool]:
        """Record ``frame`` as the next message of ``stream``; return (offset, epoch,
        True). With a ``message_id`` the store recorded before (a publisher's retry),
        record nothing and return the offset it got then, the epoch, and False.

        Raises:
            Exception: Whatever the store raises when it cannot be reached.
        """
        ...

    async def since(
        self, stream: str, position: tuple[str, int] | None, size: int, ttl: float
    ) -> Replay:
        """The messages of ``stream`` after ``position`` (epoch, offset), or why not.

        Raises:
            Exception: Whatever the store raises when it cannot be reached.
        """
        ...

    async def close(self) -> None:
        """Release the store's connections."""
        ...


class PresenceHost(Protocol):
    """What presence needs from the manager's parts."""

    @property
    def id(self) -> str:
        """The manager's id (this process's name in the cluster)."""
        ...

    def local_connections(self) -> list[ConnectionInfo]:
        """This process's connections."""
        ...

    def known_rooms(self) -> list[tuple[str, int, list[str]]]:
        """(user, version, rooms) of each user with rooms: written back after an outage."""
        ...

    async def apply_rooms(self, user: str, rooms: list[str], version: int) -> None:
        """Make ``rooms`` the user's room set, if ``version`` is newer than the one held."""
        ...

    def room_version(self, user: str) -> int:
        """The version of the user's room set held here (0: none)."""
        ...

    async def announce(self, message: dict[str, Any]) -> None:
        """Send a presence message to every process.

        Raises:
            ChannelLayerError: If the layer failed.
        """
        ...

    @property
    def channel(self) -> str | None:
        """The manager's channel, when the layer keeps its groups in Redis (so a
        process that reaps this one can remove it from them); else None."""
        ...

    async def rejoin_groups(self, again_after: float | None = None) -> None:
        """Join again every group this process belongs to (Redis came back, or
        this process was reaped), and once more ``again_after`` seconds later."""
        ...

    async def evict_channel(self, channel: str, users: list[str], rooms: list[str]) -> None:
        """Remove a dead process's ``channel`` from the broadcast group and the
        groups of ``users`` and ``rooms``. Never raises: a removal that fails is
        logged, and the layer's ``group_expiry`` removes the channel in the end."""
        ...


class Directory(Protocol):
    """Cluster-wide queries answered by the store, read when asked (the index mode).

    Each coroutine raises whatever the store raises when it cannot be reached.
    Listings come in parts: ``(names, cursor)``, the cursor "" after the last part.
    """

    async def counts(self) -> tuple[int, int, int]:
        """(connections, users, rooms) in the whole cluster."""
        ...

    async def user_connections(self, user: str) -> list[ConnectionInfo]:
        """The user's connections in every live process."""
        ...

    async def user_rooms(self, user: str) -> tuple[int, list[str]]:
        """The user's room set: (version, rooms)."""
        ...

    async def room_users(
        self, room: str, cursor: str = "", count: int = 500
    ) -> tuple[list[str], str]:
        """A part of the room's users."""
        ...

    async def users(self, cursor: str = "", count: int = 500) -> tuple[list[str], str]:
        """A part of the users connected somewhere."""
        ...

    async def rooms(self, cursor: str = "", count: int = 500) -> tuple[list[str], str]:
        """A part of the rooms with at least one user."""
        ...


class Presence(Protocol):
    """Cluster-wide presence, as the core uses it."""

    @property
    def mirrors(self) -> bool:
        """True: every process holds every connection and room set (the mirror
        mode; room changes go to every process). False: each process holds its own
        users' (the index mode; room changes go to the user's processes, and
        cluster-wide questions go to :meth:`directory`)."""
        ...

    def directory(self) -> Directory | None:
        """The store's cluster-wide queries (None: the mirrors answer them)."""
        ...

    @property
    def healthy(self) -> bool:
        """False from a store error until the next successful resync."""
        ...

    def launch(self) -> None:
        """Start presence's own tasks."""
        ...

    async def wait_ready(self) -> None:
        """Wait for the first heartbeat (successful or not)."""
        ...

    async def stop(self) -> None:
        """Leave the cluster and close the store's client."""
        ...

    def opened(self, info: ConnectionInfo) -> None:
        """A local connection opened."""
        ...

    def closed(self, info: ConnectionInfo) -> None:
        """A local connection closed."""
        ...

    def user_left_here(self, user: str) -> None:
        """The user's last local connection closed."""
        ...

    async def update_rooms(self, user: str, op: str, room: str) -> tuple[int, list[str]]:
        """Join (``op="join"``) or leave a room in the store; return (version, rooms).

        Raises:
            Exception: Whatever the store raises when it cannot be reached.
        """
        ...

    async def claim(self, user: str, connection_id: str, cap: int) -> bool:
        """Take one of the user's ``cap`` connection slots, cluster-wide, atomically.

        Raises:
            Exception: Whatever the store raises when it cannot be reached.
        """
        ...

    async def claim_newest(self, user: str, connection_id: str, cap: int) -> list[tuple[str, str]]:
        """Take a slot for the connection, freeing the user's oldest while they are
        full; return (connection id, process id) of the freed slots' connections.

        Raises:
            Exception: Whatever the store raises when it cannot be reached.
        """
        ...

    def release(self, user: str, connection_id: str) -> None:
        """Give a claimed slot back (never raises)."""
        ...

    def handle(self, origin: str, message: dict[str, Any]) -> None:
        """Apply a ``ws.presence`` message from process ``origin``."""
        ...

    def remote_users(self) -> Iterable[str]:
        """Users with a connection in another process."""
        ...

    def remote_count(self) -> int:
        """Connections in other processes."""
        ...

    def remote_connections(self, user: str) -> list[ConnectionInfo]:
        """The user's connections in other processes."""
        ...

    def has_remote(self, user: str) -> bool:
        """Whether the user has a connection in another process."""
        ...


class Backend(Protocol):
    """What the core needs from the scale-out side for one layer (implemented by
    :class:`svc_infra.websocket.scaleout.backend.LayerBackend`)."""

    @property
    def networked(self) -> bool:
        """Whether layer calls can suspend (a layer behind a network can hang)."""
        ...

    @property
    def local_groups(self) -> Mapping[str, Mapping[str, float]] | None:
        """The in-memory layer's table of groups, or None."""
        ...

    @property
    def groups_in_redis(self) -> bool:
        """The layer keeps groups in Redis (a dead process's channel stays in them)."""
        ...

    def group_change(
        self, timeout: Callable[[], float | None]
    ) -> Callable[[str, str, bool], Coroutine[Any, Any, None]] | None:
        """How to add a channel to a group or remove it (None: the layer's calls)."""
        ...

    def open_channel(self) -> Awaitable[str]:
        """Open the manager's channel on the layer."""
        ...

    def receiver_for(self, channel: str) -> Callable[[str], Awaitable[list[dict[str, Any]]]]:
        """How to receive from ``channel``."""
        ...

    def make_presence(self, host: PresenceHost) -> Presence | None:
        """Cluster-wide presence for ``host``, or None (presence per process)."""
        ...

    def make_history(self, meta_ttl: float) -> HistoryStore:
        """The history store (``meta_ttl`` is ``history_meta_ttl``)."""
        ...
