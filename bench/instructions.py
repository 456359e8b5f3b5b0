"""Fan-out in instructions: ours against the raw ASGI loop on the same uvicorn, under callgrind.

Wall and CPU times on these shared VMs swing by a factor of two between rounds
(`bench/fanout.py` reports both, with their spread); the number of instructions a
server executes per delivery does not. Each server runs under ``valgrind
--tool=callgrind`` with instrumentation off; once ``CLIENTS`` frame-counting clients
are connected and warmed up, instrumentation is switched on for exactly one
broadcast of ``MESSAGES`` messages, then off. User-space instructions only: the
kernel's share (one ``send`` syscall per frame, the same for both) is not counted,
so the ratio here is a bound on what our own code costs, not a throughput ratio.

Target (issue 14): ours >= 0.9x raw ASGI's instructions per delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from bench.fanout import UVICORN, warm_up
from bench.rawclient import FrameCounter, open_counter
from bench.servers import ROOT

CLIENTS = 200
MESSAGES = 20
APPS = {
    "raw ASGI": ("bench.apps.raw_asgi:app", "/"),
    "ours": ("bench.apps.fastapi_manager:app", "/ws"),
}


def instructions(out: Path) -> int:
    """Instructions of the dumps in ``out``'s directory (``totals:`` lines)."""
    total = 0
    for part in out.parent.glob(out.name + "*"):
        for line in part.read_text().splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
    return total


async def measure(name: str, workdir: Path) -> float:
    """Instructions per delivery of ``name`` for one broadcast."""
    app, path = APPS[name]
    out = workdir / name.replace(" ", "_")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    fd, port = sock.fileno(), sock.getsockname()[1]
    cmd = [
        *("valgrind", "--tool=callgrind", "--instr-atstart=no"),
        f"--callgrind-out-file={out}",
        *UVICORN,
        *(app, "--fd", str(fd)),
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        pass_fds=(fd,),
        env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dict layouts every run
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sock.close()
    url = f"ws://127.0.0.1:{port}{path}"
    clients: list[FrameCounter] = []
    try:
        async with asyncio.timeout(300):
            while True:  # valgrind takes a while to start the app
                try:
                    (await open_counter(url)).close()
                    break
                except OSError:
                    await asyncio.sleep(0.5)  # no event to await: the app is starting
            clients = [await open_counter(url) for _ in range(CLIENTS)]
            await warm_up(clients, proc.pid)
            control = ["callgrind_control", "-i"]
            subprocess.run([*control, "on", str(proc.pid)], check=True, capture_output=True)
            done = [c.wait_for(c.frames + MESSAGES) for c in clients]
            clients[0].send_text(f"{MESSAGES} 100")
            await asyncio.gather(*done)
            subprocess.run([*control, "off", str(proc.pid)], check=True, capture_output=True)
            dump = ["callgrind_control", "-d", str(proc.pid)]
            subprocess.run(dump, check=True, capture_output=True)
    finally:
        for c in clients:
            c.close()
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return instructions(out) / (CLIENTS * MESSAGES)


async def main() -> None:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("\nInstructions: valgrind is not installed; skipped")
        return
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-cg-")))
        counts = {name: await measure(name, workdir) for name in APPS}
    raw, ours = counts["raw ASGI"], counts["ours"]
    print(f"\nInstructions per delivery (callgrind, user space), {CLIENTS} clients x {MESSAGES}")
    for name, count in counts.items():
        print(f"  {name:<10}{count:>10,.0f}")
    print(f"  raw ASGI / ours {raw / ours:.3f}   (target >= 0.9; repeatable run to run)")


if __name__ == "__main__":
    asyncio.run(main())
