"""The registry: this process's connections, its users, and room membership. Pure state.

No I/O and no awaits: every method changes the state at once, so the parts that
talk to the layer (:mod:`._membership`, :mod:`._rooms`) can read a consistent
picture before they suspend.

- Connections: by id, by socket, and per user (``dict`` as an ordered set).
- Rooms: ``room -> members`` and ``user -> rooms``. Without Redis presence this
  is this process's own record; with it, a mirror of the room sets stored in
  Redis for every user of the cluster, each applied only if its version is
  newer than the one held (updates may cross in the layer).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from ..models import ConnectionInfo
from .connection import LocalConnection

__all__ = ["Registry"]

# Versions of users whose room sets became empty are kept this long, so a
# late, older update cannot bring the rooms back; then they are forgotten.
_TOMBSTONE_SECONDS = 600


class Registry:
    """This process's connections, users and rooms."""

    __slots__ = ("_by_socket", "_room_versions", "_user_rooms", "conns", "rooms", "users")

    def __init__(self) -> None:
        self.conns: dict[str, LocalConnection] = {}
        self._by_socket: dict[int, LocalConnection] = {}
        #: Users with a connection here -> their connections (ordered sets).
        self.users: dict[str, dict[str, LocalConnection]] = {}
        #: Room -> members, and user -> rooms (ordered sets).
        self.rooms: dict[str, dict[str, None]] = {}
        self._user_rooms: dict[str, dict[str, None]] = {}
        self._room_versions: dict[str, int] = {}

    # --- connections -------------------------------------------------------------------

    def by_socket(self, socket: object) -> LocalConnection | None:
        """The connection registered for ``socket`` (the framework object), if any."""
        return self._by_socket.get(id(socket))

    def add(self, conn: LocalConnection) -> bool:
        """Register ``conn``. True if it is its user's first connection here."""
        first = conn.user_id not in self.users
        self.conns[conn.id] = conn
        self._by_socket[id(conn.socket)] = conn
        self.users.setdefault(conn.user_id, {})[conn.id] = conn
        return first

    def remove(self, conn: LocalConnection) -> bool:
        """Forget ``conn``. False if it was already gone."""
        if self.conns.pop(conn.id, None) is None:
            return False
        self._by_socket.pop(id(conn.socket), None)
        user_conns = self.users.get(conn.user_id)
        if user_conns is not None:
            user_conns.pop(conn.id, None)
            if not user_conns:
                del self.users[conn.user_id]
        return True

    def user_connections(self, user: str) -> list[LocalConnection]:
        """The user's connections here, oldest first."""
        return list(self.users.get(user, {}).values())

    def infos(self) -> list[ConnectionInfo]:
        """What is known of each connection here."""
        return [c.info for c in self.conns.values()]

    def targets(
        self, *, user: str | None = None, room: str | None = None, exclude: str | None = None
    ) -> Iterable[LocalConnection]:
        """The connections a message for ``user``, ``room`` or (neither) everyone reaches,
        except those of ``exclude``; a snapshot, safe to iterate while pushing."""
        if user is not None:
            return () if user == exclude else list(self.users.get(user, {}).values())
        if room is not None:
            users = self.users
            return [
                conn
                for member in self.rooms.get(room, ())
                if member != exclude and member in users
                for conn in list(users[member].values())
            ]
        if exclude is None:
            return list(self.conns.values())
        return [c for c in list(self.conns.values()) if c.user_id != exclude]

    # --- rooms ---------------------------------------------------------------------------

    def rooms_of(self, user: str) -> list[str]:
        """The rooms ``user`` belongs to."""
        return list(self._user_rooms.get(user, ()))

    def members(self, room: str) -> list[str]:
        """The members of ``room``."""
        return list(self.rooms.get(room, ()))

    def wanted_here(self, room: str) -> bool:
        """Whether a member of ``room`` has a connection here."""
        users = self.users
        return any(m in users for m in self.rooms.get(room, ()))

    def set_member(self, user: str, room: str, member: bool) -> None:
        """Add ``user`` to ``room`` or remove it."""
        if member:
            self.rooms.setdefault(room, {})[user] = None
            self._user_rooms.setdefault(user, {})[room] = None
            return
        members = self.rooms.get(room)
        if members is not None:
            members.pop(user, None)
            if not members:
                del self.rooms[room]
        rooms = self._user_rooms.get(user)
        if rooms is not None:
            rooms.pop(room, None)
            if not rooms:
                del self._user_rooms[user]

    def replace_rooms(self, user: str, rooms: list[str], version: int) -> list[str]:
        """Make ``rooms`` the user's room set if ``version`` is newer than the one held.

        Returns:
            The rooms whose membership changed (none if the version is not newer).
        """
        if version <= self._room_versions.get(user, 0):
            return []
        self._room_versions[user] = version
        current = self._user_rooms.get(user, {})
        wanted = dict.fromkeys(rooms)
        changed = [r for r in current if r not in wanted] + [r for r in wanted if r not in current]
        for room in changed:
            self.set_member(user, room, room in wanted)
        return changed

    def room_version(self, user: str) -> int:
        """The version of the user's room set held here (0: none)."""
        return self._room_versions.get(user, 0)

    def known_rooms(self) -> list[tuple[str, int, list[str]]]:
        """(user, version, rooms) of each user with rooms; old tombstones are forgotten."""
        self.forget_old_tombstones()
        return [
            (user, self._room_versions.get(user, 0), list(rooms))
            for user, rooms in self._user_rooms.items()
        ]

    def forget_old_tombstones(self) -> None:
        """Forget versions of emptied room sets older than the tombstone horizon."""
        # Versions are Redis time in microseconds.
        horizon = (time.time() - _TOMBSTONE_SECONDS) * 1_000_000
        versions = self._room_versions
        for user in [u for u, v in versions.items() if v < horizon and u not in self._user_rooms]:
            del versions[user]
