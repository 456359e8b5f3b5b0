"""Against the peers: server CPU per delivery and memory per connection, ours beside
other WebSocket servers, the same broadcast on each (``python -m bench peers``).

Servers, each started fresh on core 0 (``taskset -c 0``) from a listening socket
handed over by file descriptor (:func:`bench.servers.server_on_fd`):

- ``raw ASGI loop on uvicorn``: :mod:`bench.apps.raw_asgi`, the ceiling of any app
  on uvicorn, and the baseline of the ratios;
- ``ours``: :mod:`bench.apps.fastapi_manager`, FastAPI + the ConnectionManager
  (in-memory layer) on the same uvicorn command line;
- ``bare websockets``: :mod:`bench.apps.bare`, ``websockets.broadcast`` on its own
  server;
- ``python-socketio``: :mod:`bench.apps.socketio_app`, ``AsyncServer(async_mode="asgi")``
  in ``socketio.ASGIApp`` on the same uvicorn, ``await sio.emit("m", payload)``;
- Node ``ws`` and Node socket.io: ``bench/node/*.mjs``, installed from
  ``bench/node/package-lock.json`` with ``npm ci`` into ``BENCH_NODE_DIR`` (default
  ``~/.cache/svc-infra-bench/node``, outside the git tree; skipped when installed).

The trigger is the one of :mod:`bench.fanout`: one client sends ``"count size"``
(a text frame; for Socket.IO the event ``go``) and the server broadcasts ``count``
messages of ``size`` bytes to every client. The clients are the frame counters of
:mod:`bench.rawclient` on core 1 (:class:`~bench.rawclient.SocketIOCounter` does the
Engine.IO v4 handshake on the websocket transport). Pings are off everywhere
(uvicorn's and Engine.IO's every 600 s; bare websockets and ``ws`` send none).

Per server and round: ``WARM`` connections opened and closed (code paths, allocator),
then RSS before, ``CLIENTS`` connections, RSS after: KiB per connection; one
broadcast parsed frame by frame, then ``MESSAGES`` broadcasts of ``SIZE`` bytes: the
server's CPU (every thread, ``/proc/<pid>/task/*/schedstat``) per delivery. Each
round runs every server once, in rotated order; ``ROUNDS`` rounds; the figures are
medians with their spread (min-max), the ratios to raw ASGI taken per round, then
their median. A peer that cannot be installed or started is left out with a line
that says why.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from bench.fanout import (
    CLIENT_CORE,
    PINNED,
    SERVER_CORE,
    SIZE,
    UVICORN,
    broadcast_time,
    on_client_core,
    open_clients,
    ratios,
    rss_kib,
    settle,
    spread,
    warm_up,
)
from bench.rawclient import FrameCounter, SocketIOCounter
from bench.servers import ROOT, server_on_fd

CLIENTS = int(os.environ.get("BENCH_CLIENTS", 500))
MESSAGES = int(os.environ.get("BENCH_MESSAGES", 100))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
WARM = min(100, CLIENTS)  # connections opened and closed before the memory baseline
NODE_SRC = ROOT / "bench" / "node"
NODE_DIR = Path(
    os.environ.get("BENCH_NODE_DIR") or Path.home() / ".cache" / "svc-infra-bench" / "node"
)
NODE_SCRIPTS = ("ws_server.mjs", "socketio_server.mjs")
SOCKETIO_PATH = "/socket.io/?EIO=4&transport=websocket"
RAW = "raw ASGI loop on uvicorn"
OURS, BARE = "bench.apps.fastapi_manager:app", "bench.apps.bare"


@dataclass(frozen=True)
class Peer:
    name: str
    args: Callable[[str], list[str]]  # the command line, given the socket's fd
    path: str
    protocol: type[FrameCounter] = FrameCounter


def uvicorn(app: str) -> Callable[[str], list[str]]:
    return lambda fd: [*UVICORN, app, "--fd", fd]


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def node_package_version(name: str) -> str:
    manifest = NODE_DIR / "node_modules" / name / "package.json"
    return str(json.loads(manifest.read_text())["version"])


def install_node() -> str:
    """Install the Node peers into :data:`NODE_DIR` (``npm ci``, unless the same
    lockfile is installed there already) and copy their scripts next to their
    ``node_modules``. Returns ``node --version``.

    Raises:
        RuntimeError: If ``node`` or ``npm`` is missing or the install fails.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError("node or npm is not installed")
    manifests = ("package.json", "package-lock.json")
    digest = hashlib.sha256(b"".join((NODE_SRC / m).read_bytes() for m in manifests))
    stamp = NODE_DIR / "node_modules" / ".bench-installed"
    if not stamp.exists() or stamp.read_text() != digest.hexdigest():
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        for m in manifests:
            shutil.copyfile(NODE_SRC / m, NODE_DIR / m)
        command = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"]
        try:
            subprocess.run(command, cwd=NODE_DIR, check=True, capture_output=True, timeout=600)
        except subprocess.CalledProcessError as exc:
            lines = [
                line.removeprefix("npm error").strip()
                for line in exc.stderr.decode(errors="replace").split("\n")
            ]
            noise = ("code ", "syscall ", "errno ", "at ", "A complete log", "{", "}")
            reason = next((x for x in lines if x and not x.startswith(noise)), "no output")
            raise RuntimeError(f"npm ci in {NODE_DIR} failed: {reason}") from exc
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"npm ci in {NODE_DIR} timed out") from exc
        stamp.write_text(digest.hexdigest())
    for script in NODE_SCRIPTS:  # ESM resolves `ws` and `socket.io` next to the script
        shutil.copyfile(NODE_SRC / script, NODE_DIR / script)
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def peers() -> tuple[list[Peer], dict[str, str], list[str]]:
    """The servers that can run here, the ones left out (name: why), and the
    versions to print."""
    python = sys.executable
    found = [
        Peer(RAW, uvicorn("bench.apps.raw_asgi:app"), "/"),
        Peer("ours (FastAPI + manager) on uvicorn", uvicorn(OURS), "/ws"),
        Peer("bare `websockets` (`broadcast()`)", lambda fd: [python, "-m", BARE, fd], "/"),
    ]
    skipped: dict[str, str] = {}
    versions = [f"Python {platform.python_version()}"]
    versions += [f"{d} {version(d)}" for d in ("uvicorn", "websockets", "fastapi")]
    sio = version("python-socketio")
    name = f"python-socketio {sio.split('.')[0]}.x on uvicorn"
    if importlib.util.find_spec("socketio") is None:
        name = "python-socketio 5.x on uvicorn"
        skipped[name] = "python-socketio is not installed (make .venv/.bench-installed)"
    else:
        versions.append(f"python-socketio {sio}")
        app = uvicorn("bench.apps.socketio_app:app")
        found.append(Peer(name, app, SOCKETIO_PATH, SocketIOCounter))
    try:
        node = install_node()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        for name in ("Node 20 `ws` 8", "Node 20 socket.io 4.8"):
            skipped[name] = str(exc)
    else:
        ws, socketio = node_package_version("ws"), node_package_version("socket.io")
        versions += [f"Node {node}", f"ws {ws}", f"socket.io {socketio}"]
        major = node.lstrip("v").split(".")[0]

        def script(name: str) -> Callable[[str], list[str]]:
            return lambda fd: ["node", str(NODE_DIR / name), fd]

        found.append(Peer(f"Node {major} `ws` {ws.split('.')[0]}", script("ws_server.mjs"), "/"))
        found.append(
            Peer(
                f"Node {major} socket.io {'.'.join(socketio.split('.')[:2])}",
                script("socketio_server.mjs"),
                SOCKETIO_PATH,
                SocketIOCounter,
            )
        )
    return found, skipped, versions


async def measure(peer: Peer) -> tuple[float, float]:
    """Start ``peer`` on the server core; return its RSS growth in KiB per
    connection and its CPU in µs per delivery."""
    pin = ["taskset", "-c", str(SERVER_CORE)] if PINNED else []
    async with server_on_fd(lambda fd: [*pin, *peer.args(fd)], peer.path) as (base, proc):
        url, pid = base + peer.path, proc.pid
        for c in await open_clients(url, WARM, peer.protocol):
            c.close()
        await settle(pid)
        before = rss_kib(pid)
        clients = await open_clients(url, CLIENTS, peer.protocol)
        try:
            await settle(pid)
            memory = (rss_kib(pid) - before) / CLIENTS
            await warm_up(clients, pid)
            _, used = await broadcast_time(clients, MESSAGES, pid)
            stray = sum(c.stray_bytes for c in clients)
            if stray:
                raise RuntimeError(f"{stray} bytes of frames other than the broadcast's")
        finally:
            for c in clients:
                c.close()
    return memory, used * 1e6 / (CLIENTS * MESSAGES)


async def compare() -> None:
    found, skipped, versions = peers()
    for name, why in skipped.items():
        print(f"peers: skipped {name}: {why}", flush=True)
    names = [p.name for p in found]
    by_name = {p.name: p for p in found}
    cpu: dict[str, dict[int, float]] = {n: {} for n in names}
    memory: dict[str, dict[int, float]] = {n: {} for n in names}
    failed: dict[str, str] = {}
    for r in range(ROUNDS):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            if name in failed:
                continue
            try:
                memory[name][r], cpu[name][r] = await measure(by_name[name])
            except Exception as exc:  # one peer failing must not stop the others
                failed[name] = f"round {r + 1}: {exc!r}"
                print(f"peers: left out {name} from round {r + 1} on: {exc!r}", flush=True)
    print(
        f"\nAgainst the peers: {CLIENTS} clients x {MESSAGES} broadcasts of {SIZE} B, "
        f"{ROUNDS} interleaved rounds, server on core {SERVER_CORE}, clients on core "
        f"{CLIENT_CORE} (pinned={PINNED}), pings off; {date.today()}"
    )
    print("  " + ", ".join(versions))
    heads = ("CPU µs per delivery", "vs raw ASGI on uvicorn", "RSS KiB per connection")
    print(f"{'server':<38}" + "".join(f"{h:>26}" for h in heads))
    for name in names:
        if not cpu[name]:
            print(f"{name:<38}{'-':>26}{'-':>26}{'-':>26}")
            continue
        both = sorted(set(cpu[name]) & set(cpu[RAW]))
        ratio = ratios([cpu[name][r] for r in both], [cpu[RAW][r] for r in both]) if both else "-"
        print(
            f"{name:<38}{spread(list(cpu[name].values()), '{:.2f}'):>26}{ratio:>26}"
            f"{spread(list(memory[name].values()), '{:.1f}'):>26}"
        )
    print("  (median (min-max) over the rounds; vs raw ASGI: CPU per delivery / raw ASGI's")
    print("   in the same round, then the median: above 1 costs more CPU than raw ASGI)")
    for name, why in {**skipped, **failed}.items():
        print(f"  {name}: not measured ({why})" if name in skipped else f"  {name}: failed {why}")


async def main() -> None:
    await on_client_core(compare)
