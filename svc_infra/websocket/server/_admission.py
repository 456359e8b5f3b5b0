"""Admission: whether a new connection may open, and what watches it once it has.

- ``max_connections_per_user``: a slot is claimed in cluster presence when there is
  one (atomic for the cluster), else counted here, including connections whose
  accept is still in flight. Under ``cap_policy="newest"`` the new connection
  always gets a slot, and the user's oldest connection is closed (4409), here or,
  through the layer, in the process that holds it;
- once registered, a connection gets its inbound check (size and rate, installed
  on the socket by its integration) and its credential's expiry (one heap and one
  timer for all, :class:`~._limits.ExpiryTimers`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from .. import layer_messages as lm
from ..close_codes import CloseCode
from ..exceptions import ChannelLayerError
from ..groups import user_group
from ._limits import ExpiryTimers, InboundLimits, expiry_of
from ._publisher import Publisher
from ._registry import Registry
from ._runtime import Runtime
from .connection import LocalConnection
from .stats import ManagerStats

__all__ = ["REPLACED_REASON", "Admission"]

#: The close reason of a connection that a newer one replaced (``cap_policy="newest"``).
REPLACED_REASON = "replaced by a newer connection"

logger = logging.getLogger("svc_infra.websocket.manager")


class Admission:
    """Admits connections under the per-user cap and watches the admitted ones.

    Args:
        registry: Who is connected here.
        runtime: The manager's presence while it runs (None: per process).
        limits: Builds each connection's inbound check.
        stats: Where expired credentials are counted.
        end: Ends a connection with (code, reason), at once.
        cap: ``max_connections_per_user`` (0: none).
        policy: ``cap_policy``: ``"refuse"`` or ``"newest"``.
        origin: The manager's id (whose slots are its own).
        publisher: Tells another process to close a replaced connection.
        prefix: The manager's group prefix.
        close_on_expiry: ``close_on_token_expiry``.
        leeway: Returns ``AUTH_JWT__LEEWAY`` (called once, when first needed).
    """

    def __init__(
        self,
        *,
        registry: Registry,
        runtime: Runtime,
        limits: InboundLimits,
        stats: ManagerStats,
        end: Callable[[LocalConnection, int, str], None],
        cap: int,
        close_on_expiry: bool,
        leeway: Callable[[], float],
        policy: str = "refuse",
        origin: str = "",
        publisher: Publisher | None = None,
        prefix: str = "",
    ) -> None:
        self.policy = policy
        self.origin = origin
        self.publisher = publisher
        self.prefix = prefix
        self.registry = registry
        self.runtime = runtime
        self.limits = limits
        self.stats = stats
        self.end = end
        self.cap = cap
        self.close_on_expiry = close_on_expiry
        self._leeway_of = leeway
        self._leeway: float | None = None
        self.expiry = ExpiryTimers(registry, self._expired)
        self._claims: dict[str, int] = {}  # users with a connection being admitted here

    @contextlib.contextmanager
    def claiming(self, user: str) -> Iterator[None]:
        """Count a connection of ``user`` as being admitted until it is registered
        (or refused): its accept may be in flight."""
        claims = self._claims
        claims[user] = claims.get(user, 0) + 1
        try:
            yield
        finally:
            claims[user] -= 1
            if not claims[user]:
                del claims[user]

    async def admit(self, user: str, connection_id: str) -> bool:
        """Whether a new connection of ``user`` fits under the cap (claimed in Redis,
        atomically for the cluster, with Redis presence). Call within :meth:`claiming`.

        Never raises: with Redis away, this process's own count decides.
        """
        cap = self.cap
        if not cap:
            return True
        newest = self.policy == "newest"
        presence = self.runtime.presence
        if presence is not None:
            try:
                if not newest:
                    return await presence.claim(user, connection_id, cap)
                freed = await presence.claim_newest(user, connection_id, cap)
            except Exception as exc:
                logger.warning("connection cap of %r checked locally: %r", user, exc)
            else:
                await self._replace(user, freed)
                return True
        # Connections being admitted count too: their accept may be in flight.
        local = self.registry.users.get(user, {})
        over = len(local) + self._claims.get(user, 1) - cap
        if over <= 0:
            return True
        if not newest:
            return False
        for conn in list(local.values())[:over]:  # oldest first (registration order)
            self.end(conn, CloseCode.REPLACED, REPLACED_REASON)
        return True

    async def _replace(self, user: str, freed: list[tuple[str, str]]) -> None:
        """Close the connections whose slots a newer one took: here at once,
        elsewhere with a ``ws.close`` naming the connection on the user's group.
        Never raises: a close that cannot be sent is logged (the slot is taken)."""
        for connection_id, owner in freed:
            if owner == self.origin:
                conn = self.registry.conns.get(connection_id)
                if conn is not None:
                    self.end(conn, CloseCode.REPLACED, REPLACED_REASON)
                continue
            if self.publisher is None:
                continue
            message = {
                "type": lm.CLOSE,
                "user": user,
                "connection": connection_id,
                "code": int(CloseCode.REPLACED),
                "reason": REPLACED_REASON,
            }
            with contextlib.suppress(ChannelLayerError):  # logged and counted by the publisher
                await self.publisher.publish(user_group(user, self.prefix), message, "connect")

    def watch(self, conn: LocalConnection, transport: Any) -> None:
        """Install the inbound check and the credential's expiry on a new connection."""
        guard = getattr(transport, "guard_inbound", None)
        if guard is not None:
            guard(self.limits.check_for(conn))
        if self.close_on_expiry:
            scope = getattr(transport, "scope", None)
            principal = scope.get("principal") if isinstance(scope, dict) else None
            expires = expiry_of(principal)
            if expires is not None:
                if self._leeway is None:
                    self._leeway = self._leeway_of()
                self.expiry.add(conn, expires + self._leeway)

    def _expired(self, conn: LocalConnection) -> None:
        self.stats.limited_expired += 1
        self.end(conn, CloseCode.TOKEN_EXPIRED, "token expired")
