"""Faults in a cluster of real processes: a server killed with SIGKILL, Redis restarted.

Each test starts its own servers; the Redis restart test also starts its own
``redis-server`` on a free port (the shared one on 6379 is never stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.servers import Server, daphne, everywhere, ok, uvicorn
from tests.support import flush_db, start_redis_server, timeout, wait_until
from tests.websocket.scaleout.test_cluster import (
    DB,
    DJANGO,
    FASTAPI,
    client,
    cluster_env,
    recv,
    uid,
)

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

LAYERS = ["core", "pubsub"]


@pytest.mark.parametrize("layer", LAYERS)
async def test_a_killed_server_leaves_presence_within_the_ttl(
    layer: str, redis_server: str
) -> None:
    """kill -9 fa: its users disappear from fb's and dj's presence within
    WS_PRESENCE_TTL, its users' rooms empty, and the others keep delivering."""
    ttl = 3.0
    url = f"{redis_server}/{DB}"
    env = cluster_env(url, layer, ttl=ttl)
    alice, bob, carol, room = uid("alice"), uid("bob"), uid("carol"), uid("room")
    try:
        with (
            uvicorn(FASTAPI, {**env, "CLUSTER_NAME": "fa"}) as fa,
            uvicorn(FASTAPI, {**env, "CLUSTER_NAME": "fb"}) as fb,
            daphne(DJANGO, {**env, "CLUSTER_NAME": "dj"}) as dj,
        ):
            survivors = [fb, dj]
            async with client(fa, alice), client(fb, bob) as b, client(dj, carol) as c:
                await everywhere([fa, *survivors], lambda s: s["connection_count"] == 3)
                ok(fb, "join", user=alice, room=room)
                await everywhere(survivors, lambda s: s["room_users"] == [alice], room=room)

                fa.proc.kill()  # SIGKILL: no shutdown, no cleanup
                killed = time.monotonic()
                fa.proc.wait(timeout=timeout(10))
                await everywhere(survivors, lambda s: alice not in s["active_users"], limit=ttl * 3)
                gone_after = time.monotonic() - killed
                print(f"[{layer}] killed process left presence after {gone_after:.2f}s (ttl {ttl})")
                assert gone_after <= ttl, f"presence kept a dead process for {gone_after:.2f}s"
                await everywhere(
                    survivors,
                    lambda s: s["connection_count"] == 2 and s["room_users"] == [],
                    room=room,
                )
                ok(dj, "send", user=bob, msg={"n": 1})
                assert await recv(b) == {"n": 1}
                ok(fb, "send", user=carol, msg={"n": 2})
                assert await recv(c) == {"n": 2}
    finally:
        flush_db(url)


def _groups(url: str) -> dict[str, set[str]]:
    """Every channels_redis core group in the database: name -> member channels."""
    import redis

    r = redis.Redis.from_url(url, decode_responses=True)
    try:
        return {
            key.removeprefix("asgi:group:"): set(r.zrange(key, 0, -1))
            for key in r.scan_iter("asgi:group:*")
        }
    finally:
        r.close()


async def test_a_killed_servers_channel_leaves_its_groups(redis_server: str) -> None:
    """kill -9 fa: one TTL after reaping it, a survivor removes fa's channel from
    the broadcast group and from the groups of its users and their rooms (on the
    core layer groups live in Redis, and would take every message for a day)."""
    from svc_infra.websocket.groups import broadcast_group, room_group, user_group

    ttl = 3.0
    url = f"{redis_server}/{DB}"
    env = cluster_env(url, "core", ttl=ttl)
    prefix = env["WS_CHANNEL_PREFIX"]
    alice, bob, room = uid("alice"), uid("bob"), uid("room")
    mine = [broadcast_group(prefix), user_group(alice, prefix), room_group(room, prefix)]
    try:
        with (
            uvicorn(FASTAPI, {**env, "CLUSTER_NAME": "fa"}) as fa,
            uvicorn(FASTAPI, {**env, "CLUSTER_NAME": "fb"}) as fb,
        ):
            async with client(fa, alice), client(fb, bob) as b:
                await everywhere([fa, fb], lambda s: s["connection_count"] == 2)
                ok(fb, "join", user=alice, room=room)
                await everywhere([fb], lambda s: s["room_users"] == [alice], room=room)
                await wait_until(lambda: len(_groups(url).get(mine[1], ())) == 1)
                (dead,) = _groups(url)[mine[1]]  # fa's channel: alice's only process
                before = _groups(url)
                assert all(dead in before[g] for g in mine), before  # the check can fail
                fa.proc.kill()  # SIGKILL: no shutdown, no cleanup
                fa.proc.wait(timeout=timeout(10))
                await wait_until(
                    lambda: all(dead not in m for m in _groups(url).values()), limit=ttl * 4
                )
                assert len(_groups(url).get(broadcast_group(prefix), ())) == 1  # fb's
                ok(fb, "send", user=bob, msg={"n": 1})
                assert await recv(b) == {"n": 1}
    finally:
        flush_db(url)


class Traffic:
    """Sends numbered messages through ``server`` to ``user`` every few ms, in a thread
    (the HTTP calls block), and records what each call answered and how long it took."""

    def __init__(self, server: Server, user: str) -> None:
        self.server, self.user = server, user
        self.answers: list[tuple[int, float, int, Any]] = []  # seq, sent at, status, body
        # When each seq was sent, recorded before the call: its message can
        # arrive before the call returns and its answer is recorded.
        self.sent_at: list[float] = []
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout(20))

    def _run(self) -> None:
        seq = 0
        while not self._stop.is_set():
            started = time.monotonic()
            self.sent_at.append(started)
            status, body = self.server.ctl("send", user=self.user, msg={"seq": seq})
            self.longest = max(self.longest, time.monotonic() - started)
            self.answers.append((seq, started, status, body))
            seq += 1
            self._stop.wait(0.02)


@contextlib.contextmanager
def own_redis() -> Iterator[tuple[list[Any], int]]:
    """A redis-server of this test's own; the list holds the current process."""
    proc, port = start_redis_server()
    box = [proc]
    try:
        yield box, port
    finally:
        box[0].terminate()
        box[0].wait(timeout=timeout(10))


@pytest.mark.parametrize("layer", LAYERS)
async def test_delivery_resumes_after_redis_restarts(layer: str) -> None:
    """Redis stops mid-traffic and comes back empty: calls fail fast with
    ChannelLayerError meanwhile, nothing crashes, delivery resumes within 5 s,
    presence and rooms are rebuilt, losses are counted, no task leaks."""
    with own_redis() as (box, port):
        env = cluster_env(f"redis://127.0.0.1:{port}/0", layer, ttl=2)
        alice, bob, room = uid("alice"), uid("bob"), uid("room")
        with (
            uvicorn(FASTAPI, {**env, "CLUSTER_NAME": "fa"}) as fa,
            uvicorn(FASTAPI, {**env, "CLUSTER_NAME": "fb"}) as fb,
        ):
            servers = [fa, fb]
            async with client(fa, alice), client(fb, bob) as b:
                await everywhere(servers, lambda s: s["connection_count"] == 2)
                ok(fa, "join", user=bob, room=room)
                await everywhere(servers, lambda s: s["room_users"] == [bob], room=room)
                await asyncio.sleep(0.5)  # let start-up tasks settle before counting
                tasks_before = [s.stats()["tasks"] for s in servers]

                received: list[tuple[int, float]] = []

                async def read() -> None:
                    while True:
                        message = await b.recv()
                        received.append((json.loads(message)["seq"], time.monotonic()))

                reader = asyncio.create_task(read())
                with Traffic(fa, bob) as traffic:
                    await wait_until(lambda: len(received) >= 10)
                    box[0].send_signal(signal.SIGKILL)
                    box[0].wait(timeout=timeout(10))
                    await wait_until(
                        lambda: any(status == 503 for _, _, status, _ in traffic.answers)
                    )
                    await asyncio.sleep(1.0)  # an outage of about a second
                    box[0], _ = start_redis_server(port)
                    restarted = time.monotonic()
                    await wait_until(
                        lambda: any(
                            at > restarted and status == 200 and seq in {r for r, _ in received}
                            for seq, at, status, _ in traffic.answers
                        ),
                        limit=10,
                    )
                    resumed = min(t for seq, t in received if traffic.sent_at[seq] > restarted)
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

                print(
                    f"[{layer}] delivery resumed {resumed - restarted:.2f}s after Redis restarted;"
                    f" {len([1 for a in traffic.answers if a[2] == 503])} calls failed fast"
                    f" (longest call {traffic.longest:.3f}s)"
                )
                assert resumed - restarted <= 5.0, f"resumed after {resumed - restarted:.2f}s"
                statuses = {status for _, _, status, _ in traffic.answers}
                assert statuses == {200, 503}
                failed = [body for _, _, status, body in traffic.answers if status == 503]
                assert all(
                    body == {"error": "ChannelLayerError", "operation": "send_to_user"}
                    for body in failed
                )
                assert traffic.longest < 5.0, "a call hung while Redis was down"
                assert all(s.proc.poll() is None for s in servers)
                # Presence and rooms are rebuilt from the live processes.
                await everywhere(servers, lambda s: s["connection_count"] == 2 and s["healthy"])
                await everywhere(servers, lambda s: s["room_users"] == [bob], room=room)
                assert fa.stats()["lost"] == len(failed)
                ok(fa, "room", room=room, msg={"seq": -1})
                while (await recv(b)).get("seq") != -1:
                    pass
                await wait_until(
                    lambda: all(
                        s.stats()["tasks"] <= before
                        for s, before in zip(servers, tasks_before, strict=True)
                    ),
                    limit=10,
                    interval=0.05,
                )


@pytest.mark.cluster
async def test_delivery_resumes_after_a_cluster_master_is_killed(redis_server: str) -> None:
    """kill -9 the Redis Cluster master that holds a user's group, under traffic to
    that user: calls fail fast with ChannelLayerError while its slots have no
    master, delivery to every user resumes within 10 s of the kill (a replica is
    promoted), presence stays right, and no process crashes or restarts."""
    pytest.importorskip("redis", "8.0", reason="redis-py < 8.0: no async sharded pub/sub")
    from redis.cluster import RedisCluster as SyncCluster

    from svc_infra.websocket.groups import user_group
    from tests.rediscluster import redis_cluster

    url = f"{redis_server}/{DB}"
    with redis_cluster() as cluster:
        env = {**cluster_env(cluster.seed_url, "core", ttl=5), "WS_PRESENCE_REDIS_URL": url}
        users = [uid(f"u{n}") for n in range(12)]  # their groups spread over the masters
        try:
            with (
                uvicorn(FASTAPI, {**env, "CLUSTER_NAME": "fa"}) as fa,
                uvicorn(FASTAPI, {**env, "CLUSTER_NAME": "fb"}) as fb,
            ):
                servers = [fa, fb]
                async with contextlib.AsyncExitStack() as stack:
                    sockets = [await stack.enter_async_context(client(fb, u)) for u in users]
                    total = len(users)
                    await everywhere(servers, lambda s: s["connection_count"] == total)
                    # The master that holds users[0]'s group (a sharded pub/sub channel).
                    group = user_group(users[0], env["WS_CHANNEL_PREFIX"])
                    view = SyncCluster.from_url(cluster.url)
                    victim = int(view.get_node_from_key(f"asgi:g:{{{group}}}").port)
                    view.close()

                    received: list[tuple[int, float]] = []

                    async def read() -> None:
                        while True:
                            message = json.loads(await sockets[0].recv())
                            received.append((message["seq"], time.monotonic()))

                    reader = asyncio.create_task(read())
                    with Traffic(fa, users[0]) as traffic:
                        await wait_until(lambda: len(received) >= 10)
                        cluster.kill(victim)
                        killed = time.monotonic()
                        await wait_until(
                            lambda: any(traffic.sent_at[seq] > killed for seq, _ in list(received)),
                            limit=timeout(15),
                        )
                        resumed = min(t for seq, t in received if traffic.sent_at[seq] > killed)
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reader
                    failed = [body for _, _, status, body in traffic.answers if status == 503]
                    print(
                        f"[redis-cluster] delivery resumed {resumed - killed:.2f}s after a master"
                        f" was killed; {len(failed)} calls failed fast"
                        f" (longest call {traffic.longest:.3f}s)"
                    )
                    assert resumed - killed <= 10.0, f"resumed after {resumed - killed:.2f}s"
                    assert failed, "the killed master held the user's group: calls must fail"
                    assert all(
                        body == {"error": "ChannelLayerError", "operation": "send_to_user"}
                        for body in failed
                    )
                    assert traffic.longest < 5.0, "a call hung while a master was down"
                    # Every user, whichever master their group lived on.
                    for user, ws in zip(users[1:], sockets[1:], strict=True):
                        ok(fa, "send", user=user, msg={"seq": -1})
                        assert await recv(ws) == {"seq": -1}
                    await everywhere(servers, lambda s: s["connection_count"] == total)
                    assert all(s.proc.poll() is None for s in servers)
        finally:
            flush_db(url)
