"""The :class:`~.protocols.PresenceHost` the manager hands to presence, built from its parts."""

from __future__ import annotations

from typing import Any

from ..models import ConnectionInfo
from ._publisher import Publisher
from ._registry import Registry
from ._rooms import Rooms

__all__ = ["PartsPresenceHost"]


class PartsPresenceHost:
    """What presence needs from the manager (:class:`PresenceHost`), from the parts that have it."""

    __slots__ = ("_publisher", "_registry", "_rooms", "id")

    def __init__(self, id: str, registry: Registry, rooms: Rooms, publisher: Publisher) -> None:
        self.id = id
        self._registry = registry
        self._rooms = rooms
        self._publisher = publisher

    def local_connections(self) -> list[ConnectionInfo]:
        return self._registry.infos()

    def known_rooms(self) -> list[tuple[str, int, list[str]]]:
        return self._registry.known_rooms()

    async def apply_rooms(self, user: str, rooms: list[str], version: int) -> None:
        await self._rooms.apply(user, rooms, version)

    async def announce(self, message: dict[str, Any]) -> None:
        group = self._rooms.membership.broadcast_group
        await self._publisher.publish(group, message, "presence")

    async def rejoin_groups(self) -> None:
        await self._rooms.membership.refresh()
