"""Where a message goes: a user, a room or everyone, with its stream, group and counter.

The manager's three send verbs build a :class:`Target`; everything downstream
(history, local fan-out, the layer message, the counters, the timings) reads it,
instead of five positional strings that must agree with each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..groups import broadcast_group, room_group, user_group
from ._recovery import BROADCAST_STREAM, room_stream, user_stream
from .stats import ManagerStats

__all__ = ["Target"]

Kind = Literal["user", "room", "broadcast"]


@dataclass(frozen=True, slots=True)
class Target:
    """A delivery target.

    Attributes:
        kind: ``"user"``, ``"room"`` or ``"broadcast"`` (the label of its counter
            and of its publish timings).
        user: The user, for a user target.
        room: The room, for a room target.
        stream: Its history stream (``user:<id>``, ``room:<name>``, ``broadcast``).
        group: Its layer group.
        operation: The manager verb that sends to it (named in errors).
    """

    kind: Kind
    user: str | None
    room: str | None
    stream: str
    group: str
    operation: str

    @classmethod
    def of_user(cls, user: str, prefix: str) -> Target:
        return cls("user", user, None, user_stream(user), user_group(user, prefix), "send_to_user")

    @classmethod
    def of_room(cls, room: str, prefix: str) -> Target:
        return cls(
            "room", None, room, room_stream(room), room_group(room, prefix), "broadcast_to_room"
        )

    @classmethod
    def everyone(cls, prefix: str) -> Target:
        return cls("broadcast", None, None, BROADCAST_STREAM, broadcast_group(prefix), "broadcast")

    def count(self, stats: ManagerStats) -> None:
        """Count one message published to this target."""
        if self.kind == "user":
            stats.published_user += 1
        elif self.kind == "room":
            stats.published_room += 1
        else:
            stats.published_broadcast += 1
