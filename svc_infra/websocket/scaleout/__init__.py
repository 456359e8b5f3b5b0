"""Scale-out on Redis: building channels_redis layers, and cluster-wide presence.

Depends on the core (:mod:`svc_infra.websocket.server`), never the other way:
the manager composes both. Imports channels_redis and redis-py only when used.

- :mod:`.layers`: :func:`~.layers.build_layer`, :func:`~.layers.redis_host`,
  :func:`~.layers.capabilities` (what a layer can do).
- :mod:`.presence`: :class:`~.presence.RedisPresence`.
- :mod:`._scripts`: the Lua scripts presence runs on Redis.
- :mod:`.cluster`: :class:`~.cluster.RedisClusterChannelLayer`, a Channels layer
  on Redis Cluster (``svc_infra.websocket.scaleout.RedisClusterChannelLayer``).
"""

from typing import Any

__all__ = ["RedisClusterChannelLayer"]


def __getattr__(name: str) -> Any:
    # Imported on first use: redis-py is an optional dependency.
    if name == "RedisClusterChannelLayer":
        from .cluster import RedisClusterChannelLayer

        return RedisClusterChannelLayer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
