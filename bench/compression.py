"""Browsers' compression: the fan-out with clients that offer permessage-deflate as
Chromium does (``python -m bench compression``).

Every browser offers ``permessage-deflate; client_max_window_bits``, and uvicorn
accepts it by default (``--ws-per-message-deflate``, true), so a broadcast to
browsers is compressed once per connection, and each connection keeps its own
compressor. The benchmarks' other clients offer nothing, so none of them saw it.

Servers, each started fresh on core 0 with ours (:mod:`bench.apps.fastapi_manager`,
FastAPI + the ConnectionManager, in-memory layer) and chat-like JSON messages that
differ each time (``BENCH_PAYLOAD=json``: "x" * size would compress to nothing):
uvicorn with each of its WebSocket implementations (``websockets``,
``websockets-sansio``, ``wsproto``), ``--ws-per-message-deflate`` true and false,
and Daphne (autobahn, which declines the offer: measured, not assumed). The clients
are the frame counters of :mod:`bench.rawclient` on core 1, offering the extension
(:class:`DeflateCounter`); they parse every frame header, since compressed frames
differ in size, and never inflate (a browser's cost is not the server's).

Per server and round: ``CLIENTS`` connections, one broadcast, then ``MESSAGES``
broadcasts of ``SIZE`` bytes: the server's CPU per delivery (schedstat, every
thread). Then ``IDLE`` connections: RSS growth per connection once they are open,
and again after one message has gone to each (zlib allocates its window on first
use). ``ROUNDS`` rounds, the servers in rotated order; medians with their spread,
and each server's ratio to uvicorn's default without compression, per round.
"""

from __future__ import annotations

import os
import sys
from datetime import date

from bench.fanout import (
    CLIENT_CORE,
    PINNED,
    SERVER_CORE,
    UVICORN,
    broadcast_time,
    on_client_core,
    open_clients,
    ratios,
    rss_kib,
    settle,
    spread,
)
from bench.rawclient import FrameCounter
from bench.servers import server_on_fd

CLIENTS = int(os.environ.get("BENCH_CLIENTS", 200))
MESSAGES = int(os.environ.get("BENCH_MESSAGES", 50))
SIZE = 300
IDLE = int(os.environ.get("BENCH_IDLE", 1000))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
APP = "bench.apps.fastapi_manager:app"
DAPHNE = [
    *(sys.executable, "-m", "daphne", "-v", "0"),
    *("--ping-interval", "600", "--ping-timeout", "600"),
]
BASELINE = "uvicorn websockets, deflate off"


class DeflateCounter(FrameCounter):
    """A :class:`FrameCounter` that offers permessage-deflate as Chromium does and
    keeps parsing frame headers (compressed frames differ in size). Compressed
    frames are counted, not inflated. :attr:`negotiated`: the server accepted."""

    negotiated = False
    extra_headers = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"

    def data_received(self, data: bytes) -> None:
        if self._handshake and b"\r\n\r\n" in self._buffer + data:
            head = (self._buffer + data).split(b"\r\n\r\n", 1)[0].lower()
            self.negotiated = b"sec-websocket-extensions: permessage-deflate" in head
        super().data_received(data)

    def count_bytes(self) -> None:
        """Never: frame sizes vary with compression."""


def servers() -> dict[str, list[str]]:
    """Name -> command line, with ``{fd}`` where the socket's fd goes."""
    out = {}
    for impl in ("websockets", "websockets-sansio", "wsproto"):
        for deflate in ("on", "off"):
            flag = "true" if deflate == "on" else "false"
            cmd = [*UVICORN, "--ws", impl, "--ws-per-message-deflate", flag, APP, "--fd", "{fd}"]
            out[f"uvicorn {impl}, deflate {deflate}"] = cmd
    out["Daphne (autobahn)"] = [*DAPHNE, "--fd", "{fd}", APP]
    return out


async def measure(cmd: list[str]) -> tuple[float, float, float, bool]:
    """One server: CPU µs per delivery, KiB per idle connection, KiB per connection
    after one message, whether deflate was negotiated."""
    pin = ["taskset", "-c", str(SERVER_CORE)] if PINNED else []
    env = {"BENCH_PAYLOAD": "json"}

    def args(fd: str) -> list[str]:
        return [*pin, *(fd if part == "{fd}" else part for part in cmd)]

    async with server_on_fd(args, "/ws", env) as (base, proc):
        url, pid = base + "/ws", proc.pid
        clients = await open_clients(url, CLIENTS, DeflateCounter)
        try:
            await settle(pid)
            negotiated = all(getattr(c, "negotiated", False) for c in clients)
            await broadcast_time(clients, 1, pid, SIZE)
            _, used = await broadcast_time(clients, MESSAGES, pid, SIZE)
        finally:
            for c in clients:
                c.close()
        await settle(pid)
        before = rss_kib(pid)
        idle = await open_clients(url, IDLE, DeflateCounter)
        try:
            await settle(pid)
            opened = rss_kib(pid)
            await broadcast_time(idle, 1, pid, SIZE)
            await settle(pid)
            used_once = rss_kib(pid)
        finally:
            for c in idle:
                c.close()
    cpu = used * 1e6 / (CLIENTS * MESSAGES)
    return cpu, (opened - before) / IDLE, (used_once - before) / IDLE, negotiated


async def compare() -> None:
    table = servers()
    names = list(table)
    cpu: dict[str, dict[int, float]] = {n: {} for n in names}
    idle: dict[str, list[float]] = {n: [] for n in names}
    used: dict[str, list[float]] = {n: [] for n in names}
    negotiated: dict[str, bool] = {}
    for r in range(ROUNDS):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            c, i, u, n = await measure(table[name])
            cpu[name][r] = c
            idle[name].append(i)
            used[name].append(u)
            negotiated[name] = n
            print(f"  round {r + 1} {name}: {c:.2f} us/delivery, {i:.1f}/{u:.1f} KiB", flush=True)
    print(
        f"\nBrowsers' compression: ours (FastAPI + manager), {CLIENTS} clients offering "
        f"permessage-deflate x {MESSAGES} broadcasts of {SIZE} B of chat-like JSON; "
        f"then {IDLE} idle connections. {ROUNDS} interleaved rounds, server on core "
        f"{SERVER_CORE}, clients on core {CLIENT_CORE} (pinned={PINNED}); {date.today()}"
    )
    heads = ("deflate", "CPU µs/delivery", "vs baseline", "KiB/conn idle", "after 1 msg")
    print(f"{'server':<36}{heads[0]:>9}" + "".join(f"{h:>22}" for h in heads[1:]))
    base = cpu[BASELINE]
    for name in names:
        rounds = sorted(cpu[name])
        ratio = ratios([cpu[name][r] for r in rounds], [base[r] for r in rounds])
        print(
            f"{name:<36}{'yes' if negotiated[name] else 'no':>9}"
            f"{spread(list(cpu[name].values()), '{:.2f}'):>22}{ratio:>22}"
            f"{spread(idle[name], '{:.1f}'):>22}{spread(used[name], '{:.1f}'):>22}"
        )
    print(f"  (vs baseline: CPU per delivery / {BASELINE}'s in the same round, the median)")


async def main() -> None:
    await on_client_core(compare)
