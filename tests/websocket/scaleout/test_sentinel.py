"""Redis Sentinel: the layer and presence find the primary through a real sentinel."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.utils.module_loading import import_string

from svc_infra.websocket import ConfigurationError, ConnectionManager, WebSocketConfig
from svc_infra.websocket.djangoapp import channel_layers_from_env
from svc_infra.websocket.testing import MemoryTransport
from tests.support import (
    close_layer,
    free_port,
    redis_answers,
    start_redis_server,
    timeout,
    wait_until,
)

pytestmark = pytest.mark.redis


@pytest.fixture
def sentinel() -> Iterator[int]:
    """A redis-server of our own and a sentinel watching it as ``svc``; the sentinel's port."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    primary, primary_port = start_redis_server()
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="svc-infra-sentinel-"))
    conf = workdir / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
        f"sentinel monitor svc 127.0.0.1 {primary_port} 1\n"
    )
    proc = subprocess.Popen(
        [binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + timeout(10)
        while not redis_answers("127.0.0.1", port):
            assert proc.poll() is None and time.monotonic() < deadline, "sentinel did not start"
            time.sleep(0.05)
        yield port
    finally:
        for p in (proc, primary):
            p.terminate()
            p.wait(timeout=timeout(10))


def build_layer(settings: dict[str, object]) -> object:
    """What Channels does with a CHANNEL_LAYERS entry."""
    entry = settings["default"]
    assert isinstance(entry, dict)
    return import_string(entry["BACKEND"])(**entry.get("CONFIG", {}))


@pytest.mark.parametrize("kind", ["core", "pubsub"])
async def test_managers_deliver_and_share_presence_through_sentinel(
    sentinel: int, kind: str
) -> None:
    settings = channel_layers_from_env(
        {
            "WS_REDIS_SENTINELS": f"127.0.0.1:{sentinel}",
            "WS_REDIS_SENTINEL_MASTER": "svc",
            "WS_REDIS_LAYER": kind,
        }
    )
    config = WebSocketConfig(close_timeout=timeout(2), presence_ttl=2)
    a = ConnectionManager(build_layer(settings), config=config)
    b = ConnectionManager(build_layer(settings), config=config)
    bob = MemoryTransport(timeout=timeout(5))
    try:
        await a.connect("alice", MemoryTransport(timeout=timeout(5)))
        await b.connect("bob", bob)
        await wait_until(lambda: a.connection_count == 2 and b.connection_count == 2)
        await a.send_to_user("bob", {"via": "sentinel"})
        assert await bob.next_json() == {"via": "sentinel"}
    finally:
        for m in (a, b):
            await m.shutdown()
            await close_layer(m.ops.layer)


def test_a_malformed_sentinel_list_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="WS_REDIS_SENTINELS"):
        channel_layers_from_env({"WS_REDIS_SENTINELS": "localhost"})
