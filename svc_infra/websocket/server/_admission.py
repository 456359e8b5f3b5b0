"""Admission: whether a new connection may open, and what watches it once it has.

- ``max_connections_per_user``: a slot is claimed in cluster presence when there is
  one (atomic for the cluster), else counted here, including connections whose
  accept is still in flight;
- once registered, a connection gets its inbound check (size and rate, installed
  on the socket by its integration) and its credential's expiry (one heap and one
  timer for all, :class:`~._limits.ExpiryTimers`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from ..close_codes import CloseCode
from ._limits import ExpiryTimers, InboundLimits, expiry_of
from ._registry import Registry
from ._runtime import Runtime
from .connection import LocalConnection
from .stats import ManagerStats

__all__ = ["Admission"]

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
    ) -> None:
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
        presence = self.runtime.presence
        if presence is not None:
            try:
                return await presence.claim(user, connection_id, cap)
            except Exception as exc:
                logger.warning("connection cap of %r checked locally: %r", user, exc)
        # Connections being admitted count too: their accept may be in flight.
        return len(self.registry.users.get(user, {})) + self._claims.get(user, 1) - 1 < cap

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
