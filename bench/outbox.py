"""The transactional outbox on PostgreSQL: commit-to-socket latency and relay throughput.

``python -m bench outbox``. The demo project (``project.asgi:application``) runs
under uvicorn on a PostgreSQL database of its own (``ws_bench_<hex>`` on
``BENCH_PG_URL``, default postgresql://postgres@127.0.0.1:5432/postgres; created,
migrated, dropped ``WITH (FORCE)`` at the end) and channels_redis' core layer on
Redis database 15 (``BENCH_REDIS_URL``, flushed before and after), with its own
``WS_CHANNEL_PREFIX``, history on (the demo's ``WS_HISTORY_SIZE=1000``, so every
message, outbox or direct, runs the history script before its ``group_send``) and
``DJANGO_DEBUG=0`` (no query log). Relays are ``manage.py ws_outbox`` processes;
the writer is a long-lived process of this module (``--writer``) with Django on
the same database; the receiving sockets are ``websockets`` clients in this process,
on ``/ws/notifications/`` with the user's JWT.

Pinning (2 cores, ``BENCH_OUTBOX_PIN=0`` to turn it off): the server and this
process (the receiving sockets) on core 0, the writer and the first relay on core 1:
the delivery side and the producing side, so the outbox's relay and the direct
path's ``send_to_user`` (in the writer) get the same core. The second relay is on
core 0. PostgreSQL and Redis are system services and float.

1. Latency: the writer commits one transaction per message to one user at a fixed
   rate (10/s, the unsaturated reference; 100/s and 1,000/s, the issue's) for
   SECONDS (3), with WRITERS (16) transactions in flight at most (one thread and
   database connection each: a commit here takes ~10 ms), each message stamped
   ``t = time.time()`` as its transaction opens:

   - *outbox*: ``with transaction.atomic(): outbox.send_to_user(user, msg)`` (the
     row's INSERT and its ``NOTIFY``), one relay running;
   - *direct*: the same ORM insert of the same row, born sent (so no relay takes
     it, and no ``NOTIFY``), then ``await manager.send_to_user(user, msg)`` after
     the commit, on the writer's manager (same layer and prefix).

   Latency = arrival at the socket - ``t`` (one machine clock), so both paths
   include their transaction and commit. A writer that falls behind sends fewer
   (the rate achieved is reported) and stamps each message when it really opens
   it. p50 and p99 per run; each round runs both paths (their order alternates);
   the median over ROUNDS (3) with the spread (min-max), and outbox/direct paired
   per round. Also the writer's median transaction time and, direct, its
   ``send_to_user`` time. A warm-up run of each path precedes the rounds.
2. Throughput: with the relays up and idle, one transaction inserts ROWS (600)
   pending rows (``bulk_create``, round-robin to the users, each with a socket
   open) and notifies; messages/s = ROWS / (the last row's ``sent`` - the commit).
   Every socket must get all its messages, once each (checked), and the relays
   must report ROWS published. Cases, interleaved (their order rotates per round):

   - the *send_to_user loop*: the writer's manager sends ROWS messages one after
     the other, no database: the publishing the relay does, without the outbox;
   - *1 relay* and *2 relays* over USERS (200) users: consecutive batches of the
     relay's 100 rows have no user in common (the best case for two relays);
   - *2 relays* over HOT_USERS (10) users: every batch holds every user, so a
     relay leaves the rows another relay's older rows hold (the worst case).

   Also each relay's (or the loop's) CPU time (``/proc/<pid>/stat``), as messages
   per CPU-second: the capacity of one core, which a loaded machine changes less
   than the wall-clock rate.

Targets (the issue): outbox p50 <= 2x direct; one relay >= 2,000 messages/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = float(os.environ.get("BENCH_OUTBOX_SECONDS", "3"))
#: Commits/s; 10/s is the unsaturated reference (the relay's fixed cost per message),
#: TARGET_RATES the issue's.
RATES = (10, 100, 1000)
TARGET_RATES = (100, 1000)
ROWS = int(os.environ.get("BENCH_OUTBOX_ROWS", "600"))
#: Transactions in flight in the writer (a PostgreSQL commit here takes ~10 ms).
WRITERS = 16
#: The throughput runs' users, round-robin: consecutive batches of the relay's 100
#: rows have no user in common (the best case for two relays); HOT_USERS: every
#: batch has every one of them (the worst).
USERS = 200
HOT_USERS = 10
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/") + "/15"
PG_ADMIN = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SERVER_CORE, PRODUCER_CORE = 0, 1
#: BENCH_OUTBOX_PIN=0: no taskset (the scheduler places everything).
PIN = os.environ.get("BENCH_OUTBOX_PIN", "1") != "0"
#: Seconds a run may take to drain before it counts as failed.
DRAIN = 30.0


def pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if PIN else []


# --- the database ----------------------------------------------------------------------


@contextlib.contextmanager
def database() -> Iterator[str]:
    """A migrated, empty PostgreSQL database of our own: its ``DATABASE_URL``."""
    from tests.support import scratch_postgres

    with scratch_postgres("ws_bench_", PG_ADMIN) as name:
        url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "--verbosity", "0"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url},
            check=True,
            timeout=120,
        )
        yield url


# --- processes -------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen[Any], limit: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextlib.asynccontextmanager
async def server(env: dict[str, str]) -> AsyncIterator[str]:
    """The demo under uvicorn on core 0; yields ``127.0.0.1:port`` once it answers HTTP."""
    from bench.servers import listening_socket

    sock = listening_socket()
    fd, port = sock.fileno(), sock.getsockname()[1]
    args = [*pin(SERVER_CORE), sys.executable, "-m", "uvicorn", "--fd", str(fd)]
    args += ["--log-level", "warning", "--ws-ping-interval", "600", "--ws-ping-timeout", "600"]
    args += ["--timeout-graceful-shutdown", "5", "project.asgi:application"]
    proc = subprocess.Popen(
        args, cwd=ROOT, pass_fds=(fd,), env={**os.environ, **env}, stdout=subprocess.DEVNULL
    )
    sock.close()  # the child holds its own copy
    host = f"127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://{host}/health/websocket", timeout=5):
                return True
        except urllib.error.HTTPError:
            return True  # an answer
        except OSError:
            return False

    try:
        async with asyncio.timeout(60):
            while not await asyncio.to_thread(answers):
                if proc.poll() is not None:
                    raise RuntimeError(f"the server exited with {proc.returncode}")
                await asyncio.sleep(0.1)  # no event to await: the app is starting
        yield host
    finally:
        stop(proc)


class Relay:
    """``manage.py ws_outbox`` in a process of its own, pinned to ``core``."""

    def __init__(self, env: dict[str, str], core: int) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by warnings())
        self.proc = subprocess.Popen(
            [*pin(core), sys.executable, "manage.py", "ws_outbox"],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        self.published: int | None = None

    async def ready(self) -> None:
        assert self.proc.stdout is not None
        async with asyncio.timeout(60):
            line = await asyncio.to_thread(self.proc.stdout.readline)
        if not line.startswith(b"ws_outbox: publishing"):
            raise RuntimeError(f"ws_outbox did not start: {line!r}")

    def stop(self) -> None:
        stop(self.proc)
        assert self.proc.stdout is not None
        rest = self.proc.stdout.read().decode()
        self.proc.stdout.close()
        for line in rest.splitlines():  # "ws_outbox: stopped after N messages"
            if "stopped after" in line:
                self.published = int(line.split("after", 1)[1].split()[0])

    def warnings(self) -> list[str]:
        self.log.seek(0)
        lines = self.log.read().decode(errors="replace").splitlines()
        self.log.close()
        return [line for line in lines if line.strip()]


@contextlib.asynccontextmanager
async def relays(env: dict[str, str], cores: list[int]) -> AsyncIterator[list[Relay]]:
    started = [Relay(env, core) for core in cores]
    try:
        await asyncio.gather(*(r.ready() for r in started))
        await asyncio.sleep(0.5)  # their LISTEN connections are up
        yield started
    finally:
        for r in started:
            r.stop()
        for r in started:
            for line in r.warnings()[:5]:
                print(f"  relay {r.proc.pid}: {line}")


class Writer:
    """This module's ``--writer`` process on core 1: one JSON command per line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [*pin(PRODUCER_CORE), sys.executable, "-m", "bench.outbox", "--writer"],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    async def call(self, limit: float = 120, **command: Any) -> Any:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        self.proc.stdin.flush()
        async with asyncio.timeout(limit):
            line = await asyncio.to_thread(self.proc.stdout.readline)
        if not line:
            raise RuntimeError(f"the writer exited with {self.proc.wait()}")
        return json.loads(line)

    def close(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # the writer's loop ends: it closes its connections
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        stop(self.proc)


# --- the receiving sockets -------------------------------------------------------------


class Inbox:
    """The sockets of some users; every message's arrival time, by its run tag."""

    def __init__(self) -> None:
        self.got: dict[str, list[tuple[float, dict[str, Any]]]] = defaultdict(list)
        self._waiting: dict[str, tuple[int, asyncio.Future[None]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._sockets: list[Any] = []

    async def open(self, host: str, users: list[str]) -> None:
        from websockets.asyncio.client import connect

        sys.path.insert(0, str(ROOT))
        from tests.tokens import SECRET, token

        for user in users:
            ws = await connect(
                f"ws://{host}/ws/notifications/",
                subprotocols=["bearer", token(user, key=SECRET, exp=3600)],  # type: ignore[list-item]
                origin=f"http://{host}",  # type: ignore[arg-type]
                compression=None,
                max_queue=None,
                ping_interval=None,
                open_timeout=20,
            )
            self._sockets.append(ws)
            self._tasks.append(asyncio.get_running_loop().create_task(self._read(ws)))

    async def _read(self, ws: Any) -> None:
        async for raw in ws:
            now = time.time()
            message = json.loads(raw)
            tag = message.get("r")
            if tag is None:
                continue
            got = self.got[tag]
            got.append((now, message))
            waiting = self._waiting.get(tag)
            if waiting is not None and len(got) >= waiting[0] and not waiting[1].done():
                waiting[1].set_result(None)

    async def wait(self, tag: str, count: int, limit: float = DRAIN) -> list[tuple[float, Any]]:
        """The messages of run ``tag`` once ``count`` arrived (fewer after ``limit`` s)."""
        if len(self.got[tag]) < count:
            future = asyncio.get_running_loop().create_future()
            self._waiting[tag] = (count, future)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, limit)
            del self._waiting[tag]
        await asyncio.sleep(0.2)  # duplicates, if any, come now
        return self.got.pop(tag, [])

    async def close(self) -> None:
        for ws in self._sockets:
            await ws.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


# --- the writer process ----------------------------------------------------------------


async def writer_main() -> None:
    """``--writer``: Django on ``DATABASE_URL``; commands on stdin, answers on stdout."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from asgiref.sync import sync_to_async
    from django.db import connection, connections, transaction
    from django.utils import timezone

    from svc_infra.websocket import layer_messages as lm
    from svc_infra.websocket.djangoapp import get_process_manager, outbox
    from svc_infra.websocket.djangoapp.models import OutboxMessage
    from svc_infra.websocket.groups import user_key

    manager = get_process_manager()
    loop = asyncio.get_running_loop()

    def commit_outbox(user: str, message: dict[str, Any]) -> None:
        with transaction.atomic():
            outbox.send_to_user(user, message)

    def commit_plain(user: str, message: dict[str, Any]) -> None:
        # The same row through the same ORM call, born sent: no relay takes it.
        frame = lm.encode_payload(message)
        with transaction.atomic():
            OutboxMessage(
                kind="user", target=user_key(user), text=frame, sent=timezone.now()
            ).save()

    # One thread per writer (Django connections are per thread): WRITERS
    # transactions in flight, as many concurrent requests of an app would be.
    threads = [ThreadPoolExecutor(1, thread_name_prefix=f"writer{w}") for w in range(WRITERS)]

    async def run(mode: str, user: str, rate: float, seconds: float, tag: str) -> Any:
        commit = commit_outbox if mode == "outbox" else commit_plain
        # Message ``seq`` is due at begin + seq / rate; the next free writer takes
        # it. For at most ``seconds``: writers that fall behind send fewer (the
        # rate achieved), each stamped when its transaction opens.
        begin = time.perf_counter() + 0.05
        end = begin + seconds
        total = int(rate * seconds)
        counter = iter(range(total))
        writing: list[float] = []  # the transaction and its commit, per message
        sending: list[float] = []  # send_to_user after the commit (direct)

        async def worker(thread: ThreadPoolExecutor) -> int:
            done = 0
            for seq in counter:
                delay = begin + seq / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if time.perf_counter() >= end:
                    break
                opened = time.time()
                message = {"t": opened, "seq": seq, "r": tag}
                await loop.run_in_executor(thread, commit, user, message)
                committed = time.time()
                writing.append(committed - opened)
                if mode == "direct":
                    await manager.send_to_user(user, message)
                    sending.append(time.time() - committed)
                done += 1
            return done

        sent = sum(await asyncio.gather(*(worker(t) for t in threads)))
        return {
            "sent": sent,
            "elapsed": max(time.perf_counter() - begin, seconds),
            "commit_ms": statistics.median(writing) * 1000 if writing else 0.0,
            "send_ms": statistics.median(sending) * 1000 if sending else 0.0,
        }

    async def burst(users: list[str], rows: int, tag: str) -> Any:
        """The relay's publishing without the outbox: ``send_to_user`` one after
        the other, as fast as it goes."""
        cpu, start = time.process_time(), time.perf_counter()
        for i in range(rows):
            await manager.send_to_user(users[i % len(users)], {"seq": i, "r": tag})
        return {"elapsed": time.perf_counter() - start, "cpu": time.process_time() - cpu}

    def fill(users: list[str], rows: int, tag: str) -> Any:
        batch = [
            OutboxMessage(
                kind="user",
                target=user_key(users[i % len(users)]),
                text=json.dumps({"seq": i, "r": tag}),
            )
            for i in range(rows)
        ]
        with transaction.atomic():
            made = OutboxMessage.objects.bulk_create(batch, batch_size=2000)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, '')", [outbox.NOTIFY_CHANNEL])
        return {"committed": time.time(), "first": made[0].id, "last": made[-1].id}

    for thread in threads:  # each writer's connection, opened before any timing
        await loop.run_in_executor(thread, lambda: connection.ensure_connection())
    await sync_to_async(lambda: connection.ensure_connection())()  # fill's thread
    print(json.dumps({"ready": True}), flush=True)
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            command = json.loads(line)
            op = command.pop("op")
            if op == "run":
                answer = await run(**command)
            elif op == "burst":
                answer = await burst(**command)
            elif op == "fill":
                answer = await sync_to_async(fill)(**command)
            else:
                break
            print(json.dumps(answer), flush=True)
    finally:
        for thread in threads:
            await loop.run_in_executor(thread, connections.close_all)
            thread.shutdown()
        await manager.shutdown()


# --- the measurements ------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)]


def spread(values: list[float], fmt: str = ".2f") -> str:
    med = statistics.median(values)
    return f"{med:{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


async def latency_run(
    writer: Writer,
    inbox: Inbox,
    mode: str,
    user: str,
    rate: int,
    tag: str,
    seconds: float = SECONDS,
) -> dict[str, float]:
    """One run: p50 and p99 (ms), the rate achieved, messages lost, and the writer's
    median transaction (``commit_ms``) and ``send_to_user`` (``send_ms``) times."""
    done = await writer.call(op="run", mode=mode, user=user, rate=rate, seconds=seconds, tag=tag)
    got = await inbox.wait(tag, done["sent"], limit=DRAIN + done["sent"] / 100)
    delays = [(arrived - m["t"]) * 1000 for arrived, m in got]
    seqs = {m["seq"] for _, m in got}
    if len(got) != len(seqs):
        print(f"  {tag}: {len(got) - len(seqs)} duplicates")
    return {
        "p50": percentile(delays, 0.5) if delays else float("nan"),
        "p99": percentile(delays, 0.99) if delays else float("nan"),
        "rate": done["sent"] / done["elapsed"],
        "lost": done["sent"] - len(seqs),
        "commit_ms": done["commit_ms"],
        "send_ms": done["send_ms"],
    }


async def throughput_run(
    env: dict[str, str],
    writer: Writer,
    inbox: Inbox,
    users: list[str],
    db: str,
    count: int,
    tag: str,
) -> tuple[float, float, int]:
    """Messages/s of ``count`` relays over ROWS rows, messages per relay CPU-second,
    and messages missing at the sockets. ``count`` 0: the writer's ``send_to_user``
    in a loop instead (no database), messages per writer CPU-second."""
    import psycopg

    if count == 0:
        done = await writer.call(op="burst", users=users, rows=ROWS, tag=tag)
        got = await inbox.wait(tag, ROWS, limit=DRAIN + ROWS / 100)
        missing = ROWS - len({m["seq"] for _, m in got})
        return ROWS / done["elapsed"], ROWS / max(done["cpu"], 1e-9), missing
    cores = [PRODUCER_CORE, SERVER_CORE][:count]
    async with relays(env, cores) as running:
        cpu = [cpu_seconds(r.proc.pid) for r in running]
        filled = await writer.call(op="fill", users=users, rows=ROWS, tag=tag)
        got = await inbox.wait(tag, ROWS, limit=DRAIN + ROWS / 100)
        cpu = [cpu_seconds(r.proc.pid) - c for r, c in zip(running, cpu, strict=True)]
    with psycopg.connect(db, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE sent IS NULL), extract(epoch FROM max(sent))"
            " FROM svc_infra_ws_outbox WHERE id BETWEEN %s AND %s",
            [filled["first"], filled["last"]],
        ).fetchone()
    assert row is not None
    pending, last_sent = int(row[0]), float(row[1] or 0)
    seqs = {m["seq"] for _, m in got}
    if len(got) != len(seqs):
        print(f"  {tag}: {len(got) - len(seqs)} duplicates at the sockets")
    if pending:
        print(f"  {tag}: {pending} rows still pending")
    published = sum(r.published or 0 for r in running)
    if published != ROWS:
        print(f"  {tag}: the relays published {published} (expected {ROWS})")
    rate = ROWS / (last_sent - filled["committed"]) if pending == 0 else float("nan")
    return rate, ROWS / max(sum(cpu), 1e-9), ROWS - len(seqs)


async def main() -> None:
    import redis

    from bench.servers import flush_db

    wall = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    from tests.tokens import SECRET

    client = redis.Redis.from_url(REDIS)
    client.ping()
    client.close()
    flush_db(REDIS)
    if PIN:
        os.sched_setaffinity(0, {SERVER_CORE})
    task = asyncio.current_task()
    assert task is not None

    def terminated() -> None:
        print("SIGTERM: cleaning up", flush=True)
        task.cancel()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminated)
    try:
        with database() as db:
            env = {
                "DATABASE_URL": db,
                "WS_REDIS_URL": REDIS,
                "WS_RELAY_IN_PROCESS": "false",
                "WS_CHANNEL_PREFIX": f"ob{uuid.uuid4().hex[:8]}.",
                "AUTH_JWT__SECRET": SECRET,
                "DJANGO_DEBUG": "0",
                "DJANGO_SETTINGS_MODULE": "project.settings",
            }
            await measure(env, db)
    finally:
        flush_db(REDIS)
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    print(f"\nwall time: {time.perf_counter() - wall:.0f} s")


#: The throughput cases: (label, relays, users).
CASES = (
    ("send_to_user loop", 0, USERS),
    ("1 relay", 1, USERS),
    ("2 relays", 2, USERS),
    (f"2 relays, {HOT_USERS} users", 2, HOT_USERS),
)


async def measure(env: dict[str, str], db: str) -> None:
    lat_user = "lat"
    tp_users = [f"tp{i}" for i in range(USERS)]
    latency: dict[tuple[int, str], list[dict[str, float]]] = defaultdict(list)
    ratios: dict[int, list[tuple[float, float]]] = defaultdict(list)
    throughput: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    writer = Writer(env)
    inbox = Inbox()
    try:
        assert writer.proc.stdout is not None
        await asyncio.to_thread(writer.proc.stdout.readline)  # {"ready": true}
        async with server(env) as host:
            await inbox.open(host, [lat_user, *tp_users])
            await asyncio.sleep(0.5)
            async with relays(env, [PRODUCER_CORE]):
                for mode in ("outbox", "direct"):  # warm-up: every connection and script
                    await latency_run(writer, inbox, mode, lat_user, 50, f"warm-{mode}", 1)
                for r in range(ROUNDS):
                    for rate in RATES:
                        order = ("outbox", "direct") if r % 2 == 0 else ("direct", "outbox")
                        runs = {}
                        for mode in order:
                            tag = f"lat{r}-{rate}-{mode}"
                            runs[mode] = await latency_run(writer, inbox, mode, lat_user, rate, tag)
                            latency[(rate, mode)].append(runs[mode])
                        o, d = runs["outbox"], runs["direct"]
                        ratios[rate].append((o["p50"] / d["p50"], o["p99"] / d["p99"]))
                        print(
                            f"  round {r} {rate}/s: outbox p50 {o['p50']:.1f} p99 {o['p99']:.1f}"
                            f" ({o['rate']:.0f}/s), direct p50 {d['p50']:.1f} p99 {d['p99']:.1f}"
                            f" ({d['rate']:.0f}/s) ms",
                            flush=True,
                        )
            for r in range(ROUNDS):
                shift = r % len(CASES)
                for label, count, users in CASES[shift:] + CASES[:shift]:
                    tag = f"tp{r}-{label}"
                    result = await throughput_run(
                        env, writer, inbox, tp_users[:users], db, count, tag
                    )
                    throughput[label].append(result)
                    print(
                        f"  round {r} {label}: {result[0]:,.0f} msg/s,"
                        f" {result[1]:,.0f} msg/CPU-s, {result[2]} missing",
                        flush=True,
                    )
            await inbox.close()
    finally:
        writer.close()
    report(latency, ratios, throughput)


def report(
    latency: dict[tuple[int, str], list[dict[str, float]]],
    ratios: dict[int, list[tuple[float, float]]],
    throughput: dict[str, list[tuple[float, float, int]]],
) -> None:
    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(run[key] for run in runs)

    print(
        f"\nCommit-to-socket latency to one user, {SECONDS:g} s per run, {WRITERS} writer"
        f" threads, median (min-max) of {ROUNDS} interleaved rounds"
    )
    head = f"{'rate/s':>6}  {'path':<7}{'achieved/s':>11}{'p50 ms':>26}{'p99 ms':>28}"
    print(f"{head}{'lost':>6}{'commit ms':>11}{'send ms':>9}")
    for rate in RATES:
        for mode in ("direct", "outbox"):
            runs = latency[(rate, mode)]
            print(
                f"{rate:>6}  {mode:<7}{med(runs, 'rate'):>11,.0f}"
                f"{spread([x['p50'] for x in runs], ',.1f'):>26}"
                f"{spread([x['p99'] for x in runs], ',.1f'):>28}"
                f"{sum(int(x['lost']) for x in runs):>6}"
                f"{med(runs, 'commit_ms'):>11.1f}"
                + (f"{med(runs, 'send_ms'):>9.1f}" if mode == "direct" else "")
            )
        p50s = [x[0] for x in ratios[rate]]
        p99s = [x[1] for x in ratios[rate]]
        print(f"{rate:>6}  {'ratio':<7}{'':>11}{spread(p50s):>26}{spread(p99s):>28}")
    worst = max(statistics.median(x[0] for x in ratios[rate]) for rate in TARGET_RATES)
    verdict = "met" if worst <= 2 else "NOT met"
    print(f"target: outbox p50 <= 2x direct's at both rates ({verdict}: {worst:.2f}x)")

    print(
        f"\nRelay throughput: {ROWS:,} rows committed at once, round-robin to the users,"
        f" median (min-max) of {ROUNDS} interleaved rounds"
    )
    print(f"{'case':<22}{'users':>6}{'messages/s':>22}{'msg per CPU-s':>24}{'missing':>9}")
    for label, _, users in CASES:
        done = throughput[label]
        print(
            f"{label:<22}{users:>6}{spread([x[0] for x in done], ',.0f'):>22}"
            f"{spread([x[1] for x in done], ',.0f'):>24}{sum(x[2] for x in done):>9}"
        )
    one = throughput["1 relay"]

    def paired(label: str, other: str) -> str:
        pairs = zip(throughput[label], throughput[other], strict=True)
        return spread([a[0] / b[0] for a, b in pairs])

    print(f"1 relay / the send_to_user loop: {paired('1 relay', 'send_to_user loop')}")
    for label, count, _ in CASES:
        if count == 2:
            print(f"{label} / 1 relay: {paired(label, '1 relay')}")
    best = statistics.median(x[0] for x in one)
    verdict = "met" if best >= 2000 else "NOT met"
    print(f"target: one relay >= 2,000 msg/s ({verdict}: {best:,.0f})")


if __name__ == "__main__":
    if "--writer" in sys.argv:
        asyncio.run(writer_main())
    else:
        asyncio.run(main())
