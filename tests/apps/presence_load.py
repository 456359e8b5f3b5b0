"""A process holding many connections (fake transports), for presence memory tests.

``python -m tests.apps.presence_load URL PREFIX MODE N``: a manager on a
channels_redis layer at ``URL`` with presence there in ``MODE``, ``N`` connections
of distinct users; prints ``ready`` once they are open, shuts down when stdin closes.
"""

from __future__ import annotations

import asyncio
import sys

from svc_infra.websocket import ConnectionManager, WebSocketConfig
from svc_infra.websocket.testing import MemoryTransport


async def main(url: str, prefix: str, mode: str, n: int) -> None:
    config = WebSocketConfig(
        presence_redis_url=url, presence_mode=mode, presence_ttl=30, close_timeout=1
    )
    manager = ConnectionManager(redis_url=url, config=config, channel_prefix=prefix)
    await manager.start()
    socks = [MemoryTransport(timeout=60) for _ in range(n)]
    for i, sock in enumerate(socks):
        await manager.connect(f"user{i}", sock)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await manager.shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
