"""Run every benchmark and print its table (``make bench``)."""

from __future__ import annotations

import asyncio
import sys

from bench import (
    broadcast,
    client_overhead,
    cluster,
    compression,
    core,
    fanout,
    flood,
    instructions,
    outbox,
    peers,
    presence,
    rcluster,
    scale,
)

BENCHMARKS = {
    "client": client_overhead.main,
    "broadcast": broadcast.main,
    "cluster": cluster.main,
    "compression": compression.main,
    "core": core.main,
    "fanout": fanout.main,
    "flood": flood.main,
    "instructions": instructions.main,
    "outbox": outbox.main,
    "peers": peers.main,
    "presence": presence.main,
    "redis-cluster": rcluster.main,
    "scale": scale.main,
}


def main() -> None:
    names = sys.argv[1:] or list(BENCHMARKS)
    for name in names:
        asyncio.run(BENCHMARKS[name]())


if __name__ == "__main__":
    main()
