"""What _compat_channels_redis relies on, pinned on the installed channels_redis and
a real Redis: the shard of a name, the key layout, the message encoding, the
pub/sub layer's arguments."""

from __future__ import annotations

import time
import uuid

import pytest
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

from svc_infra.websocket.scaleout._compat_channels_redis import (
    channel_key,
    decode_message,
    group_key,
    pubsub_arguments,
    shard_client,
    shard_of,
)
from svc_infra.websocket.scaleout.layers import redis_host
from tests.support import close_layer

pytestmark = [pytest.mark.redis]


@pytest.fixture
async def layer(redis_server: str, redis_prefix: str) -> RedisChannelLayer:
    # Two hosts (two databases of one server) so that sharding is exercised.
    hosts = [redis_host(f"{redis_server}/1"), redis_host(f"{redis_server}/2")]
    built = RedisChannelLayer(hosts=hosts, prefix=redis_prefix)
    yield built
    await built.flush()
    await close_layer(built)


async def test_group_send_queues_a_plain_channels_messages_in_a_sorted_set_on_its_shard(
    layer: RedisChannelLayer,
) -> None:
    """What the batched receive reads: a plain channel's messages from group_send."""
    group, channel = f"g{uuid.uuid4().hex[:8]}", f"mgr.{uuid.uuid4().hex}"
    await layer.group_add(group, channel)
    await layer.group_send(group, {"type": "ws.send", "text": "hi"})
    index = shard_of(layer, channel)
    assert index in range(len(layer.hosts))
    client = shard_client(layer, index)
    members = await client.zrange(channel_key(layer, channel), 0, -1)
    assert len(members) == 1
    assert decode_message(layer, members[0]) == {"type": "ws.send", "text": "hi"}
    other = shard_client(layer, 1 - index)
    assert await other.zcard(channel_key(layer, channel)) == 0


async def test_a_group_is_a_sorted_set_of_channels_scored_by_join_time(
    layer: RedisChannelLayer,
) -> None:
    group, channel = f"g{uuid.uuid4().hex[:8]}", f"mgr.{uuid.uuid4().hex}"
    before = time.time()
    await layer.group_add(group, channel)
    client = shard_client(layer, shard_of(layer, group))
    score = await client.zscore(group_key(layer, group), channel)
    assert score is not None and before - 1 <= score <= time.time() + 1
    await layer.group_discard(group, channel)
    assert await client.zscore(group_key(layer, group), channel) is None


def test_the_pubsub_layer_keeps_its_arguments() -> None:
    hosts = ["redis://127.0.0.1:6379/3"]
    layer = RedisPubSubChannelLayer(hosts=hosts, prefix="pin")
    args, kwargs = pubsub_arguments(layer)
    assert args == ()
    assert kwargs["hosts"] == hosts and kwargs["prefix"] == "pin"
