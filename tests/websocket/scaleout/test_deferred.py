"""Layers built on first use, on the running loop; presence and history on any layer."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer

from svc_infra.websocket import ConnectionManager, WebSocketConfig
from svc_infra.websocket.scaleout.deferred import DeferredLayer
from svc_infra.websocket.scaleout.history import RedisHistory
from svc_infra.websocket.scaleout.layers import MANAGER_CHANNEL_CAPACITY, reserve_capacity
from svc_infra.websocket.scaleout.presence import RedisPresence
from svc_infra.websocket.testing import MemoryTransport
from tests.support import flush_db, timeout, wait_until


class LoopBoundLayer(InMemoryChannelLayer):  # type: ignore[misc]
    """Refuses to exist without a running loop, as channels_rabbitmq's layer does."""

    built = 0

    def __init__(self) -> None:
        asyncio.get_running_loop()  # RuntimeError outside a loop
        super().__init__()
        type(self).built += 1
        self.loop = asyncio.get_running_loop()


class OtherLayer(InMemoryChannelLayer):  # type: ignore[misc]
    """An in-memory layer the manager does not recognise (as channels_postgres)."""


def test_a_manager_made_at_import_time_builds_its_layer_on_the_loop() -> None:
    """Created outside any loop (as at import), with a factory: nothing is built
    until the manager starts; then once, on the loop that serves it."""
    LoopBoundLayer.built = 0
    manager = ConnectionManager(layer=LoopBoundLayer, config=WebSocketConfig(close_timeout=1))
    layer = manager.ops.layer
    assert isinstance(layer, DeferredLayer) and not layer.built
    assert LoopBoundLayer.built == 0

    async def serve() -> None:
        sock = MemoryTransport(timeout=timeout(5))
        await manager.connect("u", sock)
        await manager.send_to_user("u", {"hi": 1})
        assert await sock.next_json() == {"hi": 1}
        assert layer.get().loop is asyncio.get_running_loop()
        await manager.shutdown()

    asyncio.run(serve())
    assert LoopBoundLayer.built == 1


def test_capacities_reserved_before_the_layer_exists_reach_it() -> None:
    from channels_redis.core import RedisChannelLayer

    layer = DeferredLayer(lambda: RedisChannelLayer(hosts=["redis://127.0.0.1:6379/5"]))
    reserve_capacity(layer, "ws.mgr*")
    assert layer.get().get_capacity("ws.mgr.x!y") == MANAGER_CHANNEL_CAPACITY
    assert layer.get_capacity("other") == 100  # read through the built layer


def test_an_unbuilt_deferred_layer_says_so() -> None:
    layer = DeferredLayer(LoopBoundLayer, "tests.LoopBoundLayer")
    with pytest.raises(AttributeError, match="not built yet"):
        layer.get_capacity("x")
    assert "not built" in repr(layer)


def test_a_django_layer_that_may_need_a_loop_is_deferred(settings: Any) -> None:
    """CHANNEL_LAYERS with a backend the library does not know: the process manager
    is made in a thread without a loop (a sync view) and builds its layer later."""
    from channels.layers import channel_layers

    from svc_infra.websocket.djangoapp import get_process_manager, reset_process_managers
    from svc_infra.websocket.scaleout.deferred import channels_default_layer

    backend = f"{__name__}.LoopBoundLayer"
    settings.CHANNEL_LAYERS = {"other": {"BACKEND": backend}}
    channel_layers.backends.pop("other", None)
    reset_process_managers()
    made: list[Any] = []
    thread = threading.Thread(target=lambda: made.append(get_process_manager("other")))
    thread.start()
    thread.join(timeout(5))
    manager = made[0]
    assert isinstance(manager.ops.layer, DeferredLayer) and not manager.ops.layer.built

    async def serve() -> None:
        await manager.start()
        assert isinstance(manager.ops.layer.get(), LoopBoundLayer)
        await manager.shutdown()

    asyncio.run(serve())
    settings.CHANNEL_LAYERS = {"memory": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    assert isinstance(channels_default_layer("memory"), InMemoryChannelLayer)
    assert channels_default_layer("missing") is None
    channel_layers.backends.pop("other", None)
    channel_layers.backends.pop("memory", None)
    reset_process_managers()


@pytest.mark.redis
async def test_presence_and_history_on_a_layer_that_is_not_redis(redis_server: str) -> None:
    """presence_redis_url on a layer the library does not know: both managers get
    Redis presence and Redis history, and see each other's connections."""
    url = f"{redis_server}/6"
    config = WebSocketConfig(
        presence_redis_url=url, close_timeout=1, presence_ttl=4, history_size=10
    )
    layer = OtherLayer()
    prefix = f"d{uuid.uuid4().hex[:6]}."
    a = ConnectionManager(layer, config=config, channel_prefix=prefix)
    b = ConnectionManager(layer, config=config, channel_prefix=prefix)
    await a.start()
    await b.start()
    try:
        assert isinstance(a.ops.presence, RedisPresence)
        assert isinstance(a._recovery.store, RedisHistory)
        sock = MemoryTransport(timeout=timeout(5))
        await a.connect("u", sock)
        await wait_until(lambda: b.is_user_connected("u") and b.connection_count == 1)
        await b.join_room("u", "lobby")
        await wait_until(lambda: a.get_room_users("lobby") == ["u"])
        await a.disconnect("u", sock)
        await wait_until(lambda: b.get_room_users("lobby") == [] and b.connection_count == 0)
    finally:
        await a.shutdown()
        await b.shutdown()
        flush_db(url)


async def test_a_shared_layer_without_presence_redis_logs_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No presence_redis_url on a layer other processes share: a warning names the
    setting (presence and history stay per process), never silence."""
    manager = ConnectionManager(OtherLayer(), config=WebSocketConfig(close_timeout=1))
    with caplog.at_level(logging.WARNING, logger="svc_infra.websocket.presence"):
        await manager.start()
    await manager.shutdown()
    assert manager.ops.presence is None
    assert any("WS_PRESENCE_REDIS_URL" in r.getMessage() for r in caplog.records)
