"""Message ids delivered recently, so that a message published twice goes out once.

A transactional outbox's relay may publish a message, die before marking it sent,
and publish it again from its next run (``svc_infra.websocket.djangoapp.outbox``).
Such messages carry an id (``mid`` in ``ws.send``); every manager remembers the
ids it delivered recently and drops a second copy. History, when on, does better:
it gives the id its first offset again, and v1 sessions drop an offset they sent.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["RecentIds"]


class RecentIds:
    """The last ``limit`` message ids seen (insertion order, oldest forgotten first).

    Args:
        limit: How many ids are remembered: at 100,000 and a thousand outbox
            messages a second, a copy published up to 100 s after the first is
            still recognised.
    """

    __slots__ = ("_ids", "limit")

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen(self, message_id: str) -> bool:
        """Whether ``message_id`` was seen before; remember it if not."""
        ids = self._ids
        if message_id in ids:
            return True
        ids[message_id] = None
        if len(ids) > self.limit:
            ids.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._ids)
