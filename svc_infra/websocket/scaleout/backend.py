"""What the manager needs from its layer's kind: its channel, receiving, presence, history.

The one place that turns :func:`~.layers.capabilities` into the manager's
machinery: a plain channel with batched receives on a single-host core layer,
Redis presence and Redis history on channels_redis layers, in-memory history
elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from ..server._history import META_TTL, MemoryHistory
from ..server._router import Receive
from ..server.protocols import HistoryStore, Presence, PresenceHost
from .groups import GroupBatcher
from .history import RedisHistory
from .indexed import IndexedPresence
from .layers import (
    LayerCapabilities,
    batch_receiver,
    history_client,
    manager_channel,
    presence_client,
)
from .presence import RedisPresence

__all__ = ["LayerBackend"]

logger = logging.getLogger("svc_infra.websocket.presence")


class LayerBackend:
    """The manager's channel, receive, presence and history for one layer.

    Args:
        layer: The Channels layer.
        caps: What it can do.
        prefix: The manager's group prefix.
        presence_ttl: ``WebSocketConfig.presence_ttl``.
        presence: False keeps presence per process even on Redis.
        presence_url: ``presence_redis_url``: where presence and history live
            (None: the layer's first Redis host).
        presence_mode: ``presence_mode``: ``"mirror"`` or ``"index"``.
    """

    def __init__(
        self,
        layer: Any,
        caps: LayerCapabilities,
        *,
        prefix: str,
        presence_ttl: float,
        presence: bool | None,
        presence_url: str | None = None,
        presence_mode: str = "mirror",
    ) -> None:
        self.presence_url = presence_url
        self.presence_mode = presence_mode
        self.layer = layer
        self.caps = caps
        self.prefix = prefix
        self.presence_ttl = presence_ttl
        self.want_presence = presence

    @property
    def networked(self) -> bool:
        """Whether layer calls can suspend (only a layer behind a network can hang)."""
        return self.caps.networked

    @property
    def local_groups(self) -> Mapping[str, Mapping[str, float]] | None:
        """The in-memory layer's table of groups, or None."""
        return self.caps.local_groups

    @property
    def groups_in_redis(self) -> bool:
        """channels_redis' core layer: groups are sorted sets in Redis, which keep a
        dead process's channel until ``group_expiry``."""
        return self.caps.redis == "core"

    async def open_channel(self) -> str:
        """Open the manager's channel on the layer.

        Raises:
            Exception: Whatever the layer raises when it cannot be reached.
        """
        return await manager_channel(self.layer, self.caps, f"{self.prefix}mgr")

    def group_change(
        self, timeout: Callable[[], float | None]
    ) -> Callable[[str, str, bool], Coroutine[Any, Any, None]] | None:
        """How to add the channel to a group or remove it: batched on the
        channels_redis core layer (:class:`~.groups.GroupBatcher`, each round trip
        bounded by ``timeout()``); None for the layer's own calls."""
        if self.caps.redis != "core":
            return None
        return GroupBatcher(self.layer, timeout).change

    def receiver_for(self, channel: str) -> Receive:
        """How to receive from ``channel``: in batches where possible."""
        return batch_receiver(self.layer, self.caps, channel) or self._receive_one

    async def _receive_one(self, channel: str) -> list[dict[str, Any]]:
        return [await self.layer.receive(channel)]

    def make_presence(self, host: PresenceHost) -> Presence | None:
        """Cluster-wide presence on ``presence_url`` or the layer's Redis, or None
        (per-process presence; a warning says so on a layer shared by processes)."""
        if self.want_presence is False:
            if self.presence_url is not None:
                logger.warning(
                    "presence=False: presence is per process; WS_PRESENCE_REDIS_URL "
                    "(presence_redis_url) serves history only"
                )
            return None
        index = self.presence_mode == "index"
        client, key_prefix = presence_client(self.caps, self.prefix, self.presence_url)
        if client is None and index and self.caps.redis == "cluster":
            # The index mode's scripts each touch one slot: it runs on the Cluster.
            client, key_prefix = history_client(self.caps, self.prefix)
        if client is None:
            if index:
                logger.warning(
                    "WS_PRESENCE_MODE=index needs a Redis (WS_PRESENCE_REDIS_URL or a "
                    "channels_redis layer): presence is per process"
                )
            elif self.caps.redis == "cluster":
                logger.warning(
                    "presence is per process on a Redis Cluster layer: set "
                    "WS_PRESENCE_REDIS_URL (presence_redis_url) to one Redis for "
                    "cluster-wide presence and connection caps"
                )
            elif self.caps.networked:  # a layer that other processes share
                logger.warning(
                    "presence and history are per process on %s: set "
                    "WS_PRESENCE_REDIS_URL (presence_redis_url) to one Redis for "
                    "cluster-wide presence, recovery and connection caps",
                    getattr(self.layer, "name", None) or type(self.layer).__name__,
                )
            return None
        if index:
            return IndexedPresence(client, host, key_prefix=key_prefix, ttl=self.presence_ttl)
        return RedisPresence(client, host, key_prefix=key_prefix, ttl=self.presence_ttl)

    def make_history(self, meta_ttl: float = META_TTL) -> HistoryStore:
        """History on the layer's Redis (shared by the cluster), else in memory;
        ``meta_ttl`` is ``history_meta_ttl``."""
        client, key_prefix = history_client(self.caps, self.prefix, self.presence_url)
        if client is None:  # one process: history in memory
            return MemoryHistory(meta_ttl)
        return RedisHistory(
            client, key_prefix=key_prefix, meta_ttl=meta_ttl, hash_tags=self.caps.redis == "cluster"
        )
