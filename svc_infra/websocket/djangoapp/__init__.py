"""Django: the process's managers, layer settings from ``WS_REDIS_URL``, and a worker.

Add ``"svc_infra.websocket.djangoapp"`` to ``INSTALLED_APPS`` **before**
``"channels"``: its ``runworker`` refuses to start on an in-memory layer (a worker
in another process can reach nobody through it) and then runs Channels' own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..config import ENV_PREFIX, WebSocketConfig
from ..exceptions import ConfigurationError
from ..manager import ConnectionManager

__all__ = [
    "STATIC_DIR",
    "channel_layers_from_env",
    "django_config",
    "get_process_manager",
    "reset_process_managers",
]

_managers: dict[str, ConnectionManager] = {}

#: The package's static files (``svc_infra/websocket.js``, the browser client): add
#: it to ``STATICFILES_DIRS`` and ``{% static "svc_infra/websocket.js" %}`` serves it.
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def channel_layers_from_env(environ: Any = None) -> dict[str, Any]:
    """A ``CHANNEL_LAYERS`` setting from the environment.

    - ``WS_REDIS_SENTINELS=host:port,host:port`` (with ``WS_REDIS_SENTINEL_MASTER``,
      default ``mymaster``): channels_redis through Redis Sentinel;
    - else ``WS_REDIS_URL``: channels_redis on that URL, or, for a
      ``redis+cluster://`` URL,
      :class:`~svc_infra.websocket.scaleout.cluster.RedisClusterChannelLayer`;
    - else: the in-memory layer (one process).

    ``WS_REDIS_LAYER=pubsub`` picks channels_redis' pub/sub layer. Host entries
    carry :data:`~svc_infra.websocket.scaleout.layers.REDIS_HOST_DEFAULTS`.

    Raises:
        ConfigurationError: If a ``WS_*`` variable is invalid (it is named), such as
            ``WS_REDIS_SENTINELS`` that is not a list of host:port.
    """
    from ..config import is_cluster_url, sentinel_hosts
    from ..scaleout.layers import redis_host, with_redis_defaults

    config = WebSocketConfig.from_env(os.environ if environ is None else environ)
    url, sentinels = config.redis_url, config.redis_sentinels
    if url is None and sentinels is None:
        return {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    if sentinels is None and is_cluster_url(url):
        if config.redis_layer != "core":
            raise ConfigurationError(
                "WS_REDIS_LAYER", config.redis_layer, '"core" on a Redis Cluster (it has one layer)'
            )
        backend = "svc_infra.websocket.scaleout.RedisClusterChannelLayer"
        return {"default": {"BACKEND": backend, "CONFIG": {"hosts": [url]}}}
    backend = (
        "channels_redis.pubsub.RedisPubSubChannelLayer"
        if config.redis_layer == "pubsub"
        else "channels_redis.core.RedisChannelLayer"
    )
    if sentinels is None:
        assert url is not None
        return {"default": {"BACKEND": backend, "CONFIG": {"hosts": [redis_host(url)]}}}
    pairs = sentinel_hosts(sentinels)
    master = config.redis_sentinel_master
    host_entry = with_redis_defaults({"sentinels": pairs, "master_name": master})
    return {"default": {"BACKEND": backend, "CONFIG": {"hosts": [host_entry]}}}


def django_config() -> WebSocketConfig:
    """``WS_*`` values from Django settings, overridden by the environment."""
    from django.conf import settings

    from_settings = {
        name: "" if value is None else str(value)
        for name in dir(settings)
        if name.startswith(ENV_PREFIX) and not isinstance(value := getattr(settings, name), dict)
    }
    return WebSocketConfig.from_env({**from_settings, **os.environ})


def get_process_manager(alias: str = "default") -> ConnectionManager:
    """This process's manager on ``CHANNEL_LAYERS[alias]``, created on first use.

    Raises:
        WebSocketError: If ``CHANNEL_LAYERS`` has no such alias.
    """
    manager = _managers.get(alias)
    if manager is None:
        from ..exceptions import WebSocketError
        from ..scaleout.deferred import channels_default_layer

        layer = channels_default_layer(alias)
        if layer is None:
            raise WebSocketError(f"CHANNEL_LAYERS has no {alias!r} layer")
        manager = _managers[alias] = ConnectionManager(layer, config=django_config())
    return manager


def reset_process_managers() -> None:
    """Forget the process's managers (tests: each event loop needs fresh ones)."""
    _managers.clear()
