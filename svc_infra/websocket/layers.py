"""Building the channel layer a manager delivers through.

Imports Channels (and so Django) only when a layer is built, never at import.
"""

from __future__ import annotations

import fnmatch
import re
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from .exceptions import ConfigurationError

__all__ = [
    "MANAGER_CHANNEL_CAPACITY",
    "REDIS_HOST_DEFAULTS",
    "batch_receiver",
    "build_layer",
    "manager_channel",
    "presence_client",
    "redis_host",
    "reserve_capacity",
    "with_redis_defaults",
]

# A manager's own channel carries every message for this process. Channels'
# default of 100 would drop bursts silently (group_send never raises when full).
MANAGER_CHANNEL_CAPACITY = 10_000

#: redis-py settings for each Redis host of the layers built here:
#:
#: - ``max_connections``: redis-py's pool refuses a 101st connection ("Too many
#:   connections"); 500 sockets opening at once each join a group, so the pool
#:   must be larger than any storm.
#: - ``socket_connect_timeout``: a Redis that cannot be reached fails fast.
#: - ``socket_timeout``: must exceed the core layer's 5 s BZPOPMIN; redis-py 8
#:   defaults it to exactly 5 s, and every idle receive then fails.
#: - :func:`redis_host` adds ``retry_on_error=[ConnectionError]``: after Redis
#:   restarts, each pooled connection is stale, and without one retry its next
#:   command fails although Redis is back.
REDIS_HOST_DEFAULTS: dict[str, Any] = {
    "max_connections": 2000,
    "socket_connect_timeout": 2.0,
    "socket_timeout": 15.0,
}

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def redis_host(url: str, **overrides: Any) -> dict[str, Any]:
    """A ``channels_redis`` host entry for ``url`` with this library's defaults.

    Use it in Django's ``CHANNEL_LAYERS`` too::

        CHANNEL_LAYERS = {"default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_host("redis://redis:6379/0")]},
        }}
    """
    return {"address": url, **with_redis_defaults(overrides)}


def with_redis_defaults(host: dict[str, Any]) -> dict[str, Any]:
    """``host`` (a channels_redis host entry) with :data:`REDIS_HOST_DEFAULTS` filled in."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    return {**REDIS_HOST_DEFAULTS, "retry_on_error": [RedisConnectionError], **host}


def build_layer(*, redis_url: str | None = None, kind: str = "core") -> Any:
    """Return the layer for a manager built without one.

    - ``redis_url`` set: a ``channels_redis`` layer on it, ``RedisChannelLayer``
      (``kind="core"``) or ``RedisPubSubChannelLayer`` (``kind="pubsub"``);
    - else, Django configured with ``CHANNEL_LAYERS``: its ``default`` layer;
    - else: a new ``InMemoryChannelLayer`` (this process only).

    Raises:
        ConfigurationError: If the URL is not a Redis URL, or ``channels-redis``
            is not installed.
    """
    if redis_url:
        if not redis_url.startswith(_REDIS_SCHEMES):
            raise ConfigurationError("redis_url", redis_url, "a redis://, rediss:// or unix:// URL")
        try:
            from channels_redis.core import RedisChannelLayer
            from channels_redis.pubsub import RedisPubSubChannelLayer
        except ImportError:  # pragma: no cover - depends on the installation
            raise ConfigurationError(
                "redis_url", redis_url, "channels-redis installed (the 'redis' extra)"
            ) from None
        if kind == "pubsub":
            return RedisPubSubChannelLayer(hosts=[redis_host(redis_url)])
        return RedisChannelLayer(hosts=[redis_host(redis_url)])
    django_layer = _django_default_layer()
    if django_layer is not None:
        return django_layer
    from channels.layers import InMemoryChannelLayer

    return InMemoryChannelLayer()


def _django_default_layer() -> Any:
    if "django.conf" not in sys.modules:
        return None  # a FastAPI app that never imported Django
    from django.conf import settings

    if not settings.configured or not getattr(settings, "CHANNEL_LAYERS", None):
        return None
    from channels.layers import get_channel_layer

    return get_channel_layer()


def reserve_capacity(layer: Any, pattern: str, capacity: int = MANAGER_CHANNEL_CAPACITY) -> None:
    """Give channels matching the glob ``pattern`` their own capacity on ``layer``.

    Channels layers look capacities up in ``layer.channel_capacity``, a list of
    ``(regex, capacity)`` pairs, first match wins. Layers without it are left as
    they are.
    """
    # An instance attribute on Channels' layers; read it without getattr, which
    # RedisPubSubChannelLayer forwards to a per-loop layer (and needs a loop).
    table = getattr(layer, "__dict__", {}).get("channel_capacity")
    if not isinstance(table, list):
        return
    regex = re.compile(fnmatch.translate(pattern))
    if not any(getattr(p, "pattern", None) == regex.pattern for p, _ in table):
        table.insert(0, (regex, capacity))


def presence_client(layer: Any, manager_prefix: str) -> tuple[Any, str]:
    """A Redis client for cluster-wide presence on ``layer``'s Redis, and the key prefix.

    ``(None, "")`` when ``layer`` is not a ``channels_redis`` layer. With several
    hosts (sharding), presence lives on the first. Sentinel host entries work:
    the pool comes from channels_redis' own ``create_pool``.
    """
    module = type(layer).__module__
    if module == "channels_redis.core":
        hosts = list(layer.hosts)
        layer_prefix = str(layer.prefix)
    elif module == "channels_redis.pubsub":
        from channels_redis.utils import decode_hosts

        kwargs = layer._kwargs
        hosts = decode_hosts(kwargs.get("hosts", layer._args[0] if layer._args else None))
        layer_prefix = str(kwargs.get("prefix", "asgi"))
    else:
        return None, ""
    import redis.asyncio
    from channels_redis.utils import create_pool

    # Presence commands are short: unlike the layer's blocking reads, they may
    # carry a read timeout, so a Redis that hangs makes them fail, not wait.
    host = {**with_redis_defaults(hosts[0]), "socket_timeout": 5.0}
    client = redis.asyncio.Redis(connection_pool=create_pool(host))
    return client, f"{layer_prefix}:{manager_prefix}p:"


#: Messages taken from Redis per round trip by :func:`batch_receiver`.
RECEIVE_BATCH = 100


def _single_host_core(layer: Any) -> bool:
    return type(layer).__module__ == "channels_redis.core" and int(layer.ring_size) == 1


async def manager_channel(layer: Any, prefix: str) -> str:
    """A channel name for a manager on ``layer``.

    On channels_redis' core layer with one host, a plain channel (no ``!``): its
    messages sit in a key of their own, which only the manager reads, so
    :func:`batch_receiver` may take many per round trip. Elsewhere the layer's
    ``new_channel()``.
    """
    if _single_host_core(layer):
        return f"{prefix}.{uuid.uuid4().hex}"
    try:
        return str(await layer.new_channel(prefix=prefix))
    except TypeError:  # a layer whose new_channel() takes no prefix
        return str(await layer.new_channel())


def batch_receiver(layer: Any, channel: str) -> Callable[[str], Awaitable[list[Any]]] | None:
    """A receive that takes up to :data:`RECEIVE_BATCH` messages per round trip.

    channels_redis' core ``receive()`` costs four round trips per message (a
    cleanup script, BZPOPMIN, a backup copy, its removal), which caps one
    process near a thousand messages a second here. For a plain channel that
    only the manager reads (:func:`manager_channel`) one BZPOPMIN waits for the
    first message and one ZPOPMIN takes what queued behind it. What it gives up
    is the backup copy that makes a *cancelled* receive lose nothing: the
    manager cancels its receive only when it shuts down.

    ``None`` for other layers and channels: they use the layer's ``receive()``.
    """
    if not _single_host_core(layer) or "!" in channel:
        return None
    key = f"{layer.prefix}{channel}"

    async def receive(_: str) -> list[Any]:
        connection = layer.connection(0)
        first = await connection.bzpopmin(key, timeout=layer.brpop_timeout)
        if first is None:
            return []
        members = [first[1]]
        members += [member for member, _ in await connection.zpopmin(key, RECEIVE_BATCH - 1)]
        messages = []
        for member in members:
            message = layer.deserialize(member)
            message.pop("__asgi_channel__", None)
            messages.append(message)
        return messages

    return receive
