"""The manager on a Redis Cluster (``redis+cluster://``): which layer it builds,
history on the Cluster with each stream in a slot of its own, and settings that
cannot apply there refused by name.

The multi-process scenarios (two uvicorn processes and Daphne) run on the
Cluster in ``test_cluster.py``."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from svc_infra.websocket import ConnectionManager, WebSocketConfig
from svc_infra.websocket.config import check_redis_url
from svc_infra.websocket.djangoapp import channel_layers_from_env
from svc_infra.websocket.exceptions import ConfigurationError
from svc_infra.websocket.scaleout.layers import build_layer, capabilities

pytest.importorskip("redis", "8.0", reason="redis-py < 8.0: no async sharded pub/sub")

from svc_infra.websocket.scaleout import RedisClusterChannelLayer
from svc_infra.websocket.scaleout.history import RedisHistory

SEED = "redis+cluster://127.0.0.1:7000"


@pytest.mark.parametrize("url", [SEED, "rediss+cluster://user:pw@node:7000"])
def test_cluster_urls_are_redis_urls(url: str) -> None:
    check_redis_url(url, "redis_url")
    layer = build_layer(redis_url=url)
    assert isinstance(layer, RedisClusterChannelLayer)
    caps = capabilities(layer)
    assert (caps.redis, caps.networked, caps.batch_receive) == ("cluster", True, False)


def test_the_pubsub_layer_is_refused_on_a_cluster() -> None:
    with pytest.raises(ConfigurationError) as caught:
        build_layer(redis_url=SEED, kind="pubsub")
    assert caught.value.name == "redis_layer"
    with pytest.raises(ConfigurationError) as caught:
        channel_layers_from_env({"WS_REDIS_URL": SEED, "WS_REDIS_LAYER": "pubsub"})
    assert caught.value.name == "WS_REDIS_LAYER"


def test_presence_needs_one_redis_not_a_cluster() -> None:
    with pytest.raises(ConfigurationError) as caught:
        WebSocketConfig.from_env({"WS_PRESENCE_REDIS_URL": SEED})
    assert caught.value.name == "WS_PRESENCE_REDIS_URL"


def test_django_settings_from_the_environment() -> None:
    layers = channel_layers_from_env({"WS_REDIS_URL": SEED})
    assert layers == {
        "default": {
            "BACKEND": "svc_infra.websocket.scaleout.RedisClusterChannelLayer",
            "CONFIG": {"hosts": [SEED]},
        }
    }


def manager_on(cluster: Any, prefix: str, **config: Any) -> ConnectionManager:
    settings = WebSocketConfig(
        redis_url=cluster.seed_url,
        channel_prefix=prefix,
        history_size=10,
        close_timeout=1,
        **config,
    )
    return ConnectionManager(config=settings)


@pytest.mark.cluster
@pytest.mark.redis
async def test_history_on_the_cluster_is_shared_and_spread(
    redis_cluster: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Two managers (two processes) on the Cluster: what one records the other
    replays; each stream's two keys share a slot, and 60 users' streams land on
    every master. Without a presence Redis, the log says presence is per process."""
    prefix = f"h{uuid.uuid4().hex[:6]}."
    a, b = manager_on(redis_cluster, prefix), manager_on(redis_cluster, prefix)
    try:
        with caplog.at_level(logging.WARNING, "svc_infra.websocket.presence"):
            await a.start()
            await b.start()
        assert "WS_PRESENCE_REDIS_URL" in caplog.text
        assert a.ops.presence is None
        store = b._recovery.store
        assert isinstance(store, RedisHistory)
        start = await store.since("user:u0", None, 10, 30)
        for n in range(60):
            await a.send_to_user(f"u{n}", {"n": n})
        replay = await store.since("user:u0", (start.epoch, start.top), 10, 30)
        assert replay.recovered is True
        assert [e.frame for e in replay.entries] == ['{"n":0}']
        counts = []
        for port in redis_cluster.masters():
            keys = redis_cluster.cli(port, "--scan", "--pattern", f"asgi:{prefix}*").split()
            counts.append(len(keys))
            for key in keys:  # meta and stream of one stream: one master holds both
                twin = key.replace(":hm:", ":h:") if ":hm:" in key else key.replace(":h:", ":hm:")
                assert twin in keys
        assert sum(counts) == 120
        assert min(counts) >= 12, counts
    finally:
        for m in (a, b):
            await m.shutdown()
            await m.ops.layer.flush()
            await m.ops.layer.close()
