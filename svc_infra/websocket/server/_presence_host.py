"""The :class:`~.protocols.PresenceHost` the manager hands to presence, built from its parts."""

from __future__ import annotations

import logging
from typing import Any

from ..models import ConnectionInfo
from ._publisher import Publisher
from ._registry import Registry
from ._rooms import Rooms

__all__ = ["PartsPresenceHost"]

logger = logging.getLogger("svc_infra.websocket.presence")


class PartsPresenceHost:
    """What presence needs from the manager (:class:`PresenceHost`), from the parts that have it."""

    __slots__ = ("_groups_in_redis", "_publisher", "_registry", "_rooms", "id")

    def __init__(
        self,
        id: str,
        registry: Registry,
        rooms: Rooms,
        publisher: Publisher,
        *,
        groups_in_redis: bool = False,
    ) -> None:
        self.id = id
        self._registry = registry
        self._rooms = rooms
        self._publisher = publisher
        # channels_redis' core layer: groups are sorted sets in Redis, which keep a
        # dead process's channel until group_expiry. (The pub/sub layer's groups
        # are subscriptions, gone with the process's connection.)
        self._groups_in_redis = groups_in_redis

    @property
    def channel(self) -> str | None:
        return self._rooms.membership.channel if self._groups_in_redis else None

    def local_connections(self) -> list[ConnectionInfo]:
        return self._registry.infos()

    def known_rooms(self) -> list[tuple[str, int, list[str]]]:
        return self._registry.known_rooms()

    async def apply_rooms(self, user: str, rooms: list[str], version: int) -> None:
        await self._rooms.apply(user, rooms, version)

    async def announce(self, message: dict[str, Any]) -> None:
        group = self._rooms.membership.broadcast_group
        await self._publisher.publish(group, message, "presence")

    async def rejoin_groups(self, again_after: float | None = None) -> None:
        membership = self._rooms.membership
        await membership.refresh()
        if again_after is not None:
            membership.refresh_later(again_after)

    async def evict_channel(self, channel: str, users: list[str], rooms: list[str]) -> None:
        if channel == self._rooms.membership.channel:
            return  # our own (reaped after a hang, and back): the resync rejoins
        if not await self._rooms.membership.evict(channel, users, rooms):
            logger.warning(
                "could not remove dead channel %s from all of its %d groups; "
                "the layer's group_expiry will",
                channel,
                len(users) + len(rooms) + 1,
            )
