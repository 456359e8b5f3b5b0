"""Scale-out on Redis: building channels_redis layers, and cluster-wide presence.

Depends on the core (:mod:`svc_infra.websocket.server`), never the other way:
the manager composes both. Imports channels_redis and redis-py only when used.

- :mod:`.layers`: :func:`~.layers.build_layer`, :func:`~.layers.redis_host`,
  :func:`~.layers.capabilities` (what a layer can do).
- :mod:`.presence`: :class:`~.presence.RedisPresence`.
- :mod:`._scripts`: the Lua scripts presence runs on Redis.
"""
