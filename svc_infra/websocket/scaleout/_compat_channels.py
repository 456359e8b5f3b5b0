"""The one place that reaches into Channels' in-memory layer.

On ``InMemoryChannelLayer`` a ``group_send`` to a group whose only member is our
own channel would copy the message to that channel, for us to drop, and walk
every group to expire old members: O(users) per broadcast. Reading the layer's
group table (``groups``: group -> {channel: join time}) lets the manager skip the
call. ``tests/websocket/scaleout/test_compat_channels.py`` pins the table's shape
on the installed Channels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["inmemory_groups"]


def inmemory_groups(layer: Any) -> Mapping[str, Mapping[str, float]]:
    """The in-memory layer's live group table: group -> {channel: join time}."""
    groups: Mapping[str, Mapping[str, float]] = vars(layer)["groups"]
    return groups
