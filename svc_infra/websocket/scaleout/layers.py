"""The channel layer a manager delivers through: building it, and what it can do.

:func:`build_layer` builds the default layer (channels_redis on a URL, Django's, or
in-memory); :func:`capabilities` is the one place that recognises a layer's kind
and says what it can do, computed once per manager. Imports Channels (and so
Django) only when a layer is built, never at import.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..config import check_redis_url, check_server_url, is_cluster_url
from ..exceptions import ConfigurationError
from ._compat_channels import inmemory_groups
from ._compat_channels_redis import (
    channel_key,
    decode_message,
    pubsub_arguments,
    shard_client,
    shard_of,
)

__all__ = [
    "MANAGER_CHANNEL_CAPACITY",
    "REDIS_HOST_DEFAULTS",
    "LayerCapabilities",
    "batch_receiver",
    "build_layer",
    "capabilities",
    "close_client",
    "history_client",
    "manager_channel",
    "presence_client",
    "redis_host",
    "redis_text",
    "reserve_capacity",
    "with_redis_defaults",
]

logger = logging.getLogger("svc_infra.websocket.presence")

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

    - ``redis_url`` a ``redis+cluster://`` URL: a
      :class:`~.cluster.RedisClusterChannelLayer` on that seed node;
    - ``redis_url`` set: a ``channels_redis`` layer on it, ``RedisChannelLayer``
      (``kind="core"``) or ``RedisPubSubChannelLayer`` (``kind="pubsub"``);
    - else, Django configured with ``CHANNEL_LAYERS``: its ``default`` layer (a
      :class:`~.deferred.DeferredLayer` for a backend that may need a running
      loop: built on first use);
    - else: a new ``InMemoryChannelLayer`` (this process only).

    Raises:
        ConfigurationError: If the URL is not a Redis URL, ``channels-redis`` (or,
            for a Cluster, redis-py 8) is not installed, or ``kind="pubsub"`` is
            asked of a Cluster.
    """
    if redis_url:
        check_redis_url(redis_url, "redis_url")
        if is_cluster_url(redis_url):
            if kind != "core":
                raise ConfigurationError(
                    "redis_layer", kind, '"core" on a Redis Cluster (it has one layer)'
                )
            from .cluster import RedisClusterChannelLayer

            return RedisClusterChannelLayer(hosts=[redis_url])
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
    from .deferred import channels_default_layer

    return channels_default_layer()


@dataclass(frozen=True, slots=True)
class LayerCapabilities:
    """What a channel layer can do, as far as the manager cares.

    Attributes:
        networked: Calls may suspend and hang (a layer behind a network): they get
            a timeout, and calls for one group are serialised. False for
            Channels' in-memory layer.
        redis: ``"core"`` or ``"pubsub"`` for channels_redis' layers,
            ``"cluster"`` for :class:`~.cluster.RedisClusterChannelLayer`, else None.
        redis_hosts: The layer's host entries (where presence lives; a Cluster's
            seed nodes).
        redis_prefix: The layer's key prefix.
        batch_receive: A plain channel with batched receives is possible: the
            channels_redis' core layer, on any number of hosts (see :func:`batch_receiver`).
        local_groups: For Channels' in-memory layer, its own table of groups
            (group name to ``{channel: expiry}``): who listens is known without a
            call, so a message no other channel would get is not sent at all.
    """

    networked: bool
    redis: Literal["core", "pubsub", "cluster"] | None = None
    redis_hosts: tuple[Any, ...] = ()
    redis_prefix: str = ""
    batch_receive: bool = False
    local_groups: Mapping[str, Mapping[str, float]] | None = None


def _instance_of(layer: Any, module: str, name: str) -> bool:
    # Only a layer of a loaded module can be an instance of its class: look the
    # class up without importing anything (channels_redis is optional).
    cls = getattr(sys.modules.get(module), name, None)
    return isinstance(cls, type) and isinstance(layer, cls)


def capabilities(layer: Any) -> LayerCapabilities:
    """What ``layer`` can do; the one place that recognises a layer's kind."""
    if _instance_of(layer, "channels_redis.core", "RedisChannelLayer"):
        return LayerCapabilities(
            networked=True,
            redis="core",
            redis_hosts=tuple(layer.hosts),
            redis_prefix=str(layer.prefix),
            batch_receive=True,
        )
    if _instance_of(layer, "channels_redis.pubsub", "RedisPubSubChannelLayer"):
        from channels_redis.utils import decode_hosts

        args, kwargs = pubsub_arguments(layer)
        hosts = decode_hosts(kwargs.get("hosts", args[0] if args else None))
        return LayerCapabilities(
            networked=True,
            redis="pubsub",
            redis_hosts=tuple(hosts),
            redis_prefix=str(kwargs.get("prefix", "asgi")),
        )
    if _instance_of(layer, "svc_infra.websocket.scaleout.cluster", "RedisClusterChannelLayer"):
        return LayerCapabilities(
            networked=True,
            redis="cluster",
            redis_hosts=tuple(layer.hosts),
            redis_prefix=str(layer.prefix),
        )
    # Exactly Channels' own class: a subclass may well suspend in its group calls.
    memory = getattr(sys.modules.get("channels.layers"), "InMemoryChannelLayer", None)
    if type(layer) is memory:
        # Its ``groups`` attribute is the layer's live table (the layer has no public
        # way to ask who is in a group); read here only.
        return LayerCapabilities(networked=False, local_groups=inmemory_groups(layer))
    return LayerCapabilities(networked=True)


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


def presence_client(
    caps: LayerCapabilities, manager_prefix: str, url: str | None = None
) -> tuple[Any, str]:
    """A Redis client for cluster-wide presence, and the key prefix.

    On ``url`` (``presence_redis_url``) when given, whatever the layer (Postgres,
    RabbitMQ, in-memory...); else on a ``channels_redis`` layer's Redis (with
    several hosts, the first; Sentinel host entries work: the pool comes from
    channels_redis' own ``create_pool``). ``(None, "")`` otherwise: presence stays
    per process, which on a Redis Cluster layer means that ``url`` is missing
    (presence's scripts need one server, see ``docs/scaling.md``).

    Raises:
        ConfigurationError: If ``url`` is not the URL of one Redis.
    """
    if url is not None:
        check_server_url(url, "presence_redis_url")
        return _redis_client({"address": url}), _key_prefix(caps, manager_prefix)
    if caps.redis in ("core", "pubsub"):
        return _redis_client(caps.redis_hosts[0]), _key_prefix(caps, manager_prefix)
    return None, ""


def _key_prefix(caps: LayerCapabilities, manager_prefix: str) -> str:
    # The layer's prefix keeps two layers' managers apart on one Redis; a layer
    # that has none (not a Redis one) gets Channels' usual "asgi".
    return f"{caps.redis_prefix or 'asgi'}:{manager_prefix}p:"


def _redis_client(entry: Any) -> Any:
    import redis.asyncio

    # Presence commands are short: unlike the layer's blocking reads, they may
    # carry a read timeout, so a Redis that hangs makes them fail, not wait.
    host = {**with_redis_defaults(entry), "socket_timeout": 5.0}
    try:
        from channels_redis.utils import create_pool
    except ImportError:  # redis-py without channels_redis: a plain URL
        options = {k: v for k, v in host.items() if k != "address"}
        pool = redis.asyncio.ConnectionPool.from_url(host["address"], **options)
    else:
        pool = create_pool(host)
    return redis.asyncio.Redis(connection_pool=pool)


def history_client(
    caps: LayerCapabilities, manager_prefix: str, url: str | None = None
) -> tuple[Any, str]:
    """A Redis client for history shared by every process, and the key prefix.

    On a Redis Cluster layer, a client of the Cluster (each stream's keys share
    one hash slot, and streams spread over the slots); elsewhere where
    :func:`presence_client` puts presence (so on any layer with ``url``). ``(None, "")``: history
    in memory (one process).

    Raises:
        ConfigurationError: If ``url`` is not the URL of one Redis.
    """
    if caps.redis != "cluster":
        return presence_client(caps, manager_prefix, url)
    from .cluster import cluster_client

    return cluster_client(caps.redis_hosts), _key_prefix(caps, manager_prefix)


#: Messages taken from Redis per round trip by :func:`batch_receiver`.
RECEIVE_BATCH = 100


async def close_client(client: Any) -> None:
    """Close a redis-py client of :func:`presence_client` or :func:`history_client`,
    its pool, and a Sentinel pool's sentinel clients (closing the pool alone leaves
    those open)."""
    try:
        if not hasattr(client, "connection_pool"):  # a RedisCluster: pools per node
            await client.aclose()
            return
        await client.aclose(close_connection_pool=True)
        manager = getattr(client.connection_pool, "sentinel_manager", None)
        if manager is not None:
            # One by one: Sentinel.aclose() exists only from redis-py 8.1.
            for sentinel in manager.sentinels:
                await sentinel.aclose()
    except Exception:  # pragma: no cover - closing a broken pool
        logger.debug("closing a Redis client failed", exc_info=True)


def redis_text(value: Any) -> str:
    """A Redis reply as text (redis-py answers bytes unless told to decode)."""
    return value.decode() if isinstance(value, bytes) else str(value)


async def manager_channel(layer: Any, caps: LayerCapabilities, prefix: str) -> str:
    """A channel name for a manager on ``layer``.

    On channels_redis' core layer, a plain channel (no ``!``): its
    messages sit in a key of their own, which only the manager reads, so
    :func:`batch_receiver` may take many per round trip. Elsewhere the layer's
    ``new_channel()``.
    """
    if caps.batch_receive:
        return f"{prefix}.{uuid.uuid4().hex}"
    try:
        return str(await layer.new_channel(prefix=prefix))
    except TypeError:  # a layer whose new_channel() takes no prefix
        return str(await layer.new_channel())


def batch_receiver(
    layer: Any, caps: LayerCapabilities, channel: str
) -> Callable[[str], Awaitable[list[Any]]] | None:
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
    if not caps.batch_receive or "!" in channel:
        return None
    key = channel_key(layer, channel)
    # The shard group_send() writes a plain channel's messages to.
    index = shard_of(layer, channel)

    async def receive(_: str) -> list[Any]:
        connection = shard_client(layer, index)
        first = await connection.bzpopmin(key, timeout=layer.brpop_timeout)
        if first is None:
            return []
        members = [first[1]]
        members += [member for member, _ in await connection.zpopmin(key, RECEIVE_BATCH - 1)]
        return [decode_message(layer, member) for member in members]

    return receive
