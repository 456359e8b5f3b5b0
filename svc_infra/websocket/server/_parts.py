"""The manager's parts, built in dependency order: the one place they are wired.

Each part gets only what it uses, and is built after all of it, so no part needs a
callback into the manager. What exists only while the manager runs (its channel,
its presence) is a :class:`~._runtime.Runtime` that the lifecycle fills and the
parts read. What depends on the layer's kind comes from a
:class:`~.protocols.Backend`.

::

    Runtime, Registry, HistoryPolicy
      -> Recovery(registry, policy)
      -> Publisher(registry, runtime, recovery)
      -> GroupMembership(registry, runtime, publisher)
      -> Rooms(registry, runtime, membership, publisher, recovery)
      -> Connections(registry, runtime, rooms)
      -> Admission(registry, runtime, InboundLimits(connections.end))
      -> LayerRouter(runtime, publisher, rooms, connections.close_user)
      -> Lifecycle(runtime, registry, connections, membership, router, recovery)
      -> ManagerOps(runtime, publisher, membership, lifecycle)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import WebSocketConfig
from ._admission import Admission
from ._connections import Connections
from ._history import HistoryPolicy
from ._lifecycle import Lifecycle
from ._limits import InboundLimits
from ._membership import GroupMembership
from ._publisher import Publisher
from ._recovery import Recovery
from ._registry import Registry
from ._rooms import Rooms
from ._router import LayerRouter
from ._runtime import Runtime
from .ops import ManagerOps
from .protocols import Backend
from .stats import ManagerStats

__all__ = ["Parts", "build_parts"]


@dataclass(frozen=True, slots=True)
class Parts:
    """A manager's parts (see the module docstring for what each one uses)."""

    runtime: Runtime
    registry: Registry
    history: HistoryPolicy
    recovery: Recovery
    publisher: Publisher
    membership: GroupMembership
    rooms: Rooms
    connections: Connections
    admission: Admission
    lifecycle: Lifecycle
    ops: ManagerOps


def build_parts(
    *,
    manager_id: str,
    layer: Any,
    prefix: str,
    config: WebSocketConfig,
    backend: Backend,
    stats: ManagerStats,
    leeway: Any,
) -> Parts:
    """Build the parts of a manager called ``manager_id`` on ``layer``.

    ``leeway()`` returns the seconds a credential stays valid after its expiry.
    """
    runtime = Runtime()
    registry = Registry()
    history = HistoryPolicy(config.history_size, config.history_ttl)
    # The store is made when the manager starts (configure_history may come first).
    recovery = Recovery(registry=registry, policy=history, store=None)
    publisher = Publisher(
        layer,
        origin=manager_id,
        registry=registry,
        runtime=runtime,
        recovery=recovery,
        stats=stats,
        call_timeout=None,  # set by ManagerOps.layer_timeout
        local_groups=backend.local_groups,
    )
    membership = GroupMembership(
        layer,
        prefix=prefix,
        registry=registry,
        runtime=runtime,
        publisher=publisher,
        networked=backend.networked,
        change=backend.group_change(lambda: publisher.call_timeout),
    )
    rooms = Rooms(
        registry=registry,
        membership=membership,
        publisher=publisher,
        runtime=runtime,
        recovery=recovery,
        grace=config.room_grace,
    )
    connections = Connections(
        registry=registry,
        rooms=rooms,
        runtime=runtime,
        stats=stats,
        outbox_limit=config.outbox_limit,
        close_timeout=config.close_timeout,
        user_cap=config.max_connections_per_user,
    )
    limits = InboundLimits(
        stats=stats,
        max_size=config.max_message_size,
        rate=config.inbound_rate,
        burst=config.inbound_burst,
        limited=connections.end,
    )
    admission = Admission(
        registry=registry,
        runtime=runtime,
        limits=limits,
        stats=stats,
        end=connections.end,
        cap=config.max_connections_per_user,
        close_on_expiry=config.close_on_token_expiry,
        leeway=leeway,
        policy=config.cap_policy,
        origin=manager_id,
        publisher=publisher,
        prefix=prefix,
    )
    router = LayerRouter(
        origin=manager_id,
        publisher=publisher,
        rooms=rooms,
        runtime=runtime,
        close_user=connections.close_user,
        stats=stats,
    )
    lifecycle = Lifecycle(
        id=manager_id,
        runtime=runtime,
        registry=registry,
        connections=connections,
        membership=membership,
        router=router,
        recovery=recovery,
        open_channel=backend.open_channel,
        receiver_for=backend.receiver_for,
        make_presence=backend.make_presence,
        make_history=lambda: backend.make_history(config.history_meta_ttl),
        close_timeout=config.close_timeout,
        groups_in_redis=backend.groups_in_redis,
    )
    ops = ManagerOps(
        id=manager_id,
        layer=layer,
        runtime=runtime,
        publisher=publisher,
        membership=membership,
        lifecycle=lifecycle,
        networked=backend.networked,
    )
    return Parts(
        runtime,
        registry,
        history,
        recovery,
        publisher,
        membership,
        rooms,
        connections,
        admission,
        lifecycle,
        ops,
    )
