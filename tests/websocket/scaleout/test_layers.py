"""Building layers: kinds, host defaults, and why the defaults are what they are."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

from svc_infra.websocket import ConfigurationError, ConnectionManager, WebSocketConfig
from svc_infra.websocket.djangoapp import channel_layers_from_env
from svc_infra.websocket.scaleout.layers import (
    MANAGER_CHANNEL_CAPACITY,
    REDIS_HOST_DEFAULTS,
    build_layer,
    capabilities,
    presence_client,
    redis_host,
)
from tests.support import close_layer


def test_redis_url_builds_the_core_layer_by_default_and_pubsub_on_request() -> None:
    core = build_layer(redis_url="redis://127.0.0.1:6379/3")
    assert isinstance(core, RedisChannelLayer)
    assert core.hosts[0]["address"] == "redis://127.0.0.1:6379/3"
    assert core.hosts[0]["max_connections"] == REDIS_HOST_DEFAULTS["max_connections"]
    pubsub = build_layer(redis_url="redis://127.0.0.1:6379/3", kind="pubsub")
    assert isinstance(pubsub, RedisPubSubChannelLayer)


def test_a_manager_on_pubsub_gets_its_layer_from_the_config() -> None:
    config = WebSocketConfig(redis_url="redis://127.0.0.1:6379/3", redis_layer="pubsub")
    manager = ConnectionManager(config=config)
    assert isinstance(manager.ops.layer, RedisPubSubChannelLayer)


def test_a_non_redis_url_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="redis_url"):
        build_layer(redis_url="http://127.0.0.1:6379")


def test_the_manager_channel_capacity_is_reserved_on_redis_layers() -> None:
    manager = ConnectionManager(redis_url="redis://127.0.0.1:6379/3")
    assert (
        manager.ops.layer.get_capacity(f"{manager.prefix}mgr.abc!def") == MANAGER_CHANNEL_CAPACITY
    )


def test_presence_needs_a_channels_redis_layer() -> None:
    assert presence_client(capabilities(InMemoryChannelLayer()), "ws.") == (None, "")


def test_env_layers_carry_the_host_defaults() -> None:
    settings = channel_layers_from_env({"WS_REDIS_URL": "redis://h:6379/1"})
    host = settings["default"]["CONFIG"]["hosts"][0]
    assert host["address"] == "redis://h:6379/1"
    assert host["socket_timeout"] > RedisChannelLayer.brpop_timeout
    assert channel_layers_from_env({}) == {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    }


@pytest.mark.redis
async def test_a_storm_of_group_joins_needs_the_larger_pool(
    redis_server: str, redis_prefix: str
) -> None:
    """500 sockets opening at once make 500 concurrent group_add calls: redis-py's
    default pool (100 connections) refuses some; the pool redis_host() sets does not."""
    import redis
    import redis.exceptions

    async def storm(layer: RedisChannelLayer) -> list[BaseException]:
        results = await asyncio.gather(
            *(layer.group_add(f"g{i}", f"specific.x!{i}") for i in range(500)),
            return_exceptions=True,
        )
        return [r for r in results if isinstance(r, BaseException)]

    stock = RedisChannelLayer(hosts=[redis_server], prefix=redis_prefix)
    ours = RedisChannelLayer(hosts=[redis_host(redis_server)], prefix=redis_prefix)
    try:
        if stock.connection(0).connection_pool.max_connections > 500:
            pytest.skip(f"redis-py {redis.__version__}'s default pool has no small bound")
        failures = await storm(stock)
        assert failures
        assert all(isinstance(f, redis.exceptions.ConnectionError) for f in failures)
        assert "Too many connections" in str(failures[0])
        assert await storm(ours) == []
    finally:
        await close_layer(stock)
        await close_layer(ours)


def test_the_cluster_layer_names_its_extra_on_an_old_redis_py() -> None:
    """On redis-py < 8 (no asyncio sharded pub/sub), a Cluster URL is refused with a
    ConfigurationError that says what to install (run by ``make test-oldest``)."""
    import redis

    if int(redis.__version__.split(".")[0]) >= 8:
        pytest.skip("redis-py 8 or newer: the Cluster layer works")
    with pytest.raises(ConfigurationError, match=r"svc-infra-websocket\[cluster\]"):
        build_layer(redis_url="redis+cluster://127.0.0.1:7000")
