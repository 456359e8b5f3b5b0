"""The manager on Channels layers that are not Redis: channels_postgres and channels_rabbitmq.

Per layer, three real processes: two FastAPI apps under plain ``uvicorn
tests.apps.other_layers:app`` (the README pattern: the manager made at import
time with ``layer=make_layer``, built on the running loop) and one Django app under
Daphne (``CHANNEL_LAYERS`` names the backend; ``get_process_manager()`` builds it
lazily). Presence and history are on Redis (``WS_PRESENCE_REDIS_URL``, DB 5,
flushed afterwards), so connection counts, users, rooms and recovery must hold
across processes exactly as on channels_redis.

PostgreSQL (127.0.0.1:5432, user ``postgres``) gets a database of its own per run,
migrated with channels_postgres' migrations and dropped afterwards; RabbitMQ
(127.0.0.1:5672, guest/guest) needs nothing set up (each process declares an
exclusive queue, gone when it disconnects). Without either server, its tests
are skipped (they fail under ``CI=true``: CI's machine runs both).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.servers import Server, daphne, everywhere, ok, uvicorn
from tests.support import (
    ROOT,
    answers,
    flush_db,
    python_cmd,
    scratch_postgres,
    timeout,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(60)]

DB = 5  # a Redis database of its own, flushed afterwards
TTL = 4.0  # WS_PRESENCE_TTL: a stale member must be gone within it
FASTAPI = "tests.apps.other_layers:app"
DJANGO = "tests.apps.cluster_django:application"  # with OTHER_LAYER set
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"

PROBE = {"probe": True}  # see reach()
# How each layer's new_channel() names a process's channel: channels_postgres
# "<prefix>.<5 hex>!<32 hex>", channels_rabbitmq "channels_<12 letters>!<12 letters>"
# (the first part is the process's exclusive queue).
CHANNEL_SHAPES = {
    "postgres": r"\.[0-9a-f]{5}![0-9a-f]{32}$",
    "rabbitmq": r"^channels_[A-Za-z]{12}![A-Za-z]{12}$",
}

LAYERS = [
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
]


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database with channels_postgres' tables (its Django migrations, run in
    a subprocess: this process's Django is the demo project's); dropped afterwards,
    open connections and all."""
    if not answers(5432):
        missing("no PostgreSQL at 127.0.0.1:5432")
    with scratch_postgres("ws_test_", PG_ADMIN) as name:
        subprocess.run(
            python_cmd("-m", "tests.apps.other_layers_config", "migrate"),
            cwd=ROOT,
            env={**os.environ, "OTHER_LAYER": "postgres", "OTHER_LAYER_PG_NAME": name},
            check=True,
            timeout=timeout(60),
        )
        yield name


def missing(why: str) -> None:
    """Skip, except under ``CI=true``: CI's machine runs both servers, so there a
    missing one is a failure, not a reason to test less."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="module", params=LAYERS)
def layer_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The ``OTHER_LAYER`` variables of the servers, with the layer's server ready."""
    if request.param == "postgres":
        with postgres_database() as name:
            yield {"OTHER_LAYER": "postgres", "OTHER_LAYER_PG_NAME": name}
    else:
        if not answers(5672):
            missing("no RabbitMQ at 127.0.0.1:5672")
        yield {"OTHER_LAYER": "rabbitmq"}


@pytest.fixture(scope="module")
def servers(layer_env: dict[str, str], redis_server: str) -> Iterator[list[Server]]:
    """fa and fb (FastAPI, plain uvicorn) and dj (Django, Daphne) on the layer."""
    url = f"{redis_server}/{DB}"
    env = {
        **layer_env,
        "WS_PRESENCE_REDIS_URL": url,
        "WS_PRESENCE_TTL": str(TTL),
        "WS_HISTORY_SIZE": "100",
        "WS_CHANNEL_PREFIX": f"o{uuid.uuid4().hex[:8]}.",
    }
    try:
        with contextlib.ExitStack() as stack:
            yield [
                stack.enter_context(uvicorn(FASTAPI, {**env, "CLUSTER_NAME": "fa"})),
                stack.enter_context(uvicorn(FASTAPI, {**env, "CLUSTER_NAME": "fb"})),
                stack.enter_context(daphne(DJANGO, {**env, "CLUSTER_NAME": "dj"})),
            ]
    finally:
        flush_db(url)


# --- helpers (as in test_cluster.py) ----------------------------------------------------


@contextlib.asynccontextmanager
async def client(server: Server, user: str, query: str = "") -> AsyncIterator[ClientConnection]:
    async with connect(server.ws(f"/ws/{user}{query}"), open_timeout=timeout(10)) as ws:
        yield ws


async def recv(ws: ClientConnection) -> Any:
    """The next message, past probes of :func:`reach` still arriving."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout(5)))
        if message != PROBE:
            return message


async def reach(
    receive: Callable[[], Awaitable[Any]], send: Callable[[Any], None], limit: float = 10
) -> None:
    """Wait until what ``send(message)`` sends arrives through ``receive()``, without
    relying on presence: the process holding a socket joins the layer groups after
    the handshake (and a remote join_room later still), and nothing else shows when
    that is done. A probe goes out until one arrives; the receivers skip probes
    still travelling."""
    async with asyncio.timeout(timeout(limit)):
        while True:
            await asyncio.to_thread(send, PROBE)
            try:
                message = await asyncio.wait_for(receive(), 0.2)
            except TimeoutError:
                continue
            assert message == PROBE, message
            return


def plain(ws: ClientConnection) -> Callable[[], Awaitable[Any]]:
    async def receive() -> Any:
        return json.loads(await ws.recv())

    return receive


def presence_on(servers: list[Server]) -> None:
    """Cluster presence is on everywhere (the stats' ``healthy`` is None without)."""
    views = {s.stats()["name"]: s.stats()["healthy"] for s in servers}
    assert all(v is True for v in views.values()), f"no Redis presence: {views}"


async def settled(servers: list[Server], limit: float = 10) -> None:
    """Wait until every process sees an empty cluster: no connection, user or room.
    Every test closes its sockets, but their closes may still be travelling (a
    room counts while a member is connected anywhere)."""
    await everywhere(
        servers,
        lambda s: s["connection_count"] == 0 and s["room_count"] == 0 and not s["active_users"],
        limit,
    )


def agree(servers: list[Server], **query: str) -> bool:
    keys = ("active_users", "connection_count", "room_count", "room_users", "user_servers")
    views = [{k: s.stats(**query)[k] for k in keys} for s in servers]
    return all(v == views[0] for v in views)


def uid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


# --- a minimal svc-infra.v1 client (docs/recovery.md) ------------------------------------


class V1:
    """A socket speaking ``svc-infra.v1``: every frame is a JSON header line, ``\\n``,
    then the payload. Keeps the position (epoch, offset) of every stream."""

    def __init__(self, ws: ClientConnection, positions: dict[str, list[Any]]) -> None:
        self.ws = ws
        self.positions = positions

    async def frame(self) -> tuple[dict[str, Any], str]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout(5))
        assert isinstance(raw, str), raw
        header_text, newline, payload = raw.partition("\n")
        assert newline, f"not a v1 frame: {raw!r}"
        header: dict[str, Any] = json.loads(header_text)
        if header.get("t") == "recovery":
            for stream, where in header["streams"].items():
                self.positions[stream] = [where["e"], where["o"]]
        elif header.get("t") == "stream" or "o" in header:  # a late join, a message
            self.positions[header["s"]] = [header["e"], header["o"]]
        return header, payload

    async def message(self, probes: bool = False) -> tuple[str, int, Any]:
        """The next message frame (control frames are applied, and probes skipped
        unless ``probes``): stream, offset, payload."""
        while True:
            header, payload = await self.frame()
            if "t" not in header and (probes or json.loads(payload) != PROBE):
                return header["s"], header.get("o", -1), json.loads(payload)

    async def payload(self) -> Any:
        """The next message's payload, probes included (for :func:`reach`)."""
        return (await self.message(probes=True))[2]


@contextlib.asynccontextmanager
async def v1_client(
    server: Server, user: str, positions: dict[str, list[Any]] | None = None
) -> AsyncIterator[tuple[V1, dict[str, Any]]]:
    """Connect with ``svc-infra.v1`` (claiming ``positions``); yield the client and
    its first frame, the recovery control frame."""
    query = ""
    if positions:
        claim = base64.urlsafe_b64encode(json.dumps(positions).encode()).decode()
        query = f"?svc_recover={claim.rstrip('=')}"
    async with connect(
        server.ws(f"/ws/{user}{query}"),
        subprotocols=["svc-infra.v1"],  # type: ignore[list-item]
        open_timeout=timeout(10),
    ) as ws:
        assert ws.subprotocol == "svc-infra.v1"
        socket_ = V1(ws, dict(positions or {}))
        header, payload = await socket_.frame()
        assert header.get("t") == "recovery" and payload == "", header
        yield socket_, header


# --- the tests -----------------------------------------------------------------------------


async def test_the_readme_pattern_serves_under_plain_uvicorn(
    servers: list[Server], layer_env: dict[str, str]
) -> None:
    """The manager made at import (``layer=make_layer``) started under plain uvicorn
    on the real layer, and the Django process built its unrecognised
    ``CHANNEL_LAYERS`` backend as lazily: their channels are named as the layer
    names them. A socket opens and gets what its own process sends."""
    shape = CHANNEL_SHAPES[layer_env["OTHER_LAYER"]]
    for server in servers:
        stats = server.stats()
        assert re.search(shape, stats["channel"] or ""), stats
        user = uid("readme")
        async with client(server, user) as ws:
            await reach(plain(ws), lambda m, x=server, u=user: ok(x, "send", user=u, msg=m))
            ok(server, "send", user=user, msg={"hello": stats["name"]})
            assert await recv(ws) == {"hello": stats["name"]}


async def test_delivery_crosses_processes_and_frameworks(servers: list[Server]) -> None:
    """send_to_user, broadcast (with exclude), broadcast_to_room, join_room and
    disconnect from one process reach sockets held by the others. Presence is not
    relied on: this is the layer's part alone."""
    fa, fb, dj = servers
    alice, bob, carol, dave = (uid(n) for n in ("alice", "bob", "carol", "dave"))
    room = uid("room")
    async with (
        client(fa, alice) as a,
        client(fb, bob) as b,
        client(dj, carol) as c,
        client(fa, dave) as d1,
        client(dj, dave) as d2,
    ):
        for ws, user, sender in ((a, alice, dj), (b, bob, fa), (c, carol, fb)):
            await reach(plain(ws), lambda m, u=user, x=sender: ok(x, "send", user=u, msg=m))
        for ws in (d1, d2):
            await reach(plain(ws), lambda m: ok(fb, "send", user=dave, msg=m))

        ok(dj, "send", user=alice, msg={"n": 1})  # Django -> FastAPI
        assert await recv(a) == {"n": 1}
        ok(fa, "send", user=carol, msg={"n": 2})  # FastAPI -> Django
        assert await recv(c) == {"n": 2}
        ok(fa, "send", user=bob, msg={"n": 3})  # FastAPI -> FastAPI
        assert await recv(b) == {"n": 3}
        ok(fb, "send", user=dave, msg={"n": 4})  # both of dave's, in two other processes
        assert await recv(d1) == {"n": 4}
        assert await recv(d2) == {"n": 4}

        ok(fb, "broadcast", msg={"all": 1}, exclude=alice)
        for ws in (b, c, d1, d2):
            assert await recv(ws) == {"all": 1}
        ok(fb, "send", user=alice, msg={"marker": 1})  # after the broadcast would be
        assert await recv(a) == {"marker": 1}

        ok(dj, "join", user=bob, room=room)  # bob is on fb
        ok(fb, "join", user=carol, room=room)  # carol is on dj
        ok(fa, "join", user=alice, room=room)
        for ws in (a, b, c):  # each holder has joined the room's group
            await reach(plain(ws), lambda m: ok(fa, "room", room=room, msg=m))
        ok(dj, "room", room=room, msg={"room": 1}, exclude=carol)
        assert await recv(a) == {"room": 1}
        assert await recv(b) == {"room": 1}
        ok(dj, "send", user=carol, msg={"marker": 2})
        assert await recv(c) == {"marker": 2}
        ok(fb, "leave", user=alice, room=room)  # alice is on fa
        ok(fb, "room", room=room, msg={"room": 2})
        assert await recv(b) == {"room": 2}
        assert await recv(c) == {"room": 2}
        ok(fb, "send", user=alice, msg={"marker": 3})  # alice got no {"room": 2}
        assert await recv(a) == {"marker": 3}

        ok(dj, "disconnect", user=dave)  # both of dave's sockets, fa's included
        for ws in (d1, d2):
            await asyncio.wait_for(ws.wait_closed(), timeout(5))
        await everywhere(servers, lambda s: not s["connected"], user=dave)
        for server in servers:
            assert server.stats()["lost"] == 0


async def test_presence_is_cluster_wide(servers: list[Server]) -> None:
    """Every process agrees on connection_count, active_users, is_user_connected,
    the user's connections and room members, through connects, joins, leaves and
    disconnects."""
    fa, fb, dj = servers
    presence_on(servers)
    await settled(servers)
    erin, frank, gina = uid("erin"), uid("frank"), uid("gina")
    room = uid("room")
    async with client(fa, erin) as e1, client(dj, erin), client(fb, frank):
        async with client(dj, gina):
            await everywhere(servers, lambda s: s["connection_count"] == 4)
            await everywhere(servers, lambda s: {erin, frank, gina} <= set(s["active_users"]))
            await everywhere(
                servers, lambda s: s["user_servers"] == ["dj", "fa"] and s["connected"], user=erin
            )
            ok(fb, "join", user=erin, room=room)
            ok(fa, "join", user=gina, room=room)
            ok(dj, "join", user=frank, room=room)
            members = sorted([erin, frank, gina])
            await everywhere(
                servers,
                lambda s: s["room_users"] == members and s["room_count"] == 1,
                room=room,
            )
            await wait_until(lambda: agree(servers, room=room, user=erin), timeout(10), 0.05)
            ok(fa, "leave", user=frank, room=room)  # frank is on fb
            await everywhere(servers, lambda s: s["room_users"] == sorted([erin, gina]), room=room)
        # gina's only socket closed: she leaves the room and the users
        await everywhere(
            servers,
            lambda s: s["room_users"] == [erin] and not s["connected"],
            room=room,
            user=gina,
        )
        await e1.close()  # erin is still on dj: still connected, still in the room
        await everywhere(
            servers,
            lambda s: s["user_servers"] == ["dj"] and s["connected"] and s["room_users"] == [erin],
            room=room,
            user=erin,
        )
    await everywhere(
        servers,
        lambda s: (
            s["connection_count"] == 0
            and s["room_count"] == 0
            and not {erin, frank, gina} & set(s["active_users"])
            and s["room_users"] == []
        ),
        room=room,
    )
    await wait_until(lambda: agree(servers, room=room, user=erin), timeout(10), 0.05)


@pytest.mark.parametrize(("joiner", "holder"), [(0, 1), (2, 0)], ids=["fa-fb", "dj-fa"])
async def test_a_member_joined_elsewhere_leaves_the_room_when_they_disconnect(
    servers: list[Server], joiner: int, holder: int
) -> None:
    """join_room on one process for a user connected only to another; the user
    disconnects: within WS_PRESENCE_TTL no process lists them in the room, and the
    room no longer counts."""
    a, b = servers[joiner], servers[holder]
    presence_on(servers)
    await settled(servers)
    user, room = uid("hana"), uid("room")
    async with client(b, user):
        await everywhere(servers, lambda s: s["connected"], user=user)
        ok(a, "join", user=user, room=room)
        await everywhere(
            servers,
            lambda s: s["room_users"] == [user] and s["room_count"] == 1,
            room=room,
        )
    await everywhere(
        servers,
        lambda s: (
            s["room_users"] == []
            and s["room_count"] == 0
            and not s["connected"]
            and user not in s["active_users"]
        ),
        limit=TTL,
        room=room,
        user=user,
    )


async def test_a_v1_client_recovers_on_the_other_process(servers: list[Server]) -> None:
    """A svc-infra.v1 client gets messages on fa, goes away, messages are sent
    meanwhile (from fa and dj), comes back to dj with its positions: it gets exactly
    the missed ones, in order, once, then live ones."""
    fa, fb, dj = servers
    user = uid("ivan")
    mine = f"user:{user}"
    async with v1_client(fa, user) as (ws, first):
        assert first["recovered"] is None  # nothing claimed
        assert {mine, "broadcast"} <= set(first["streams"]), first
        await reach(ws.payload, lambda m: ok(fa, "send", user=user, msg=m))
        ok(dj, "send", user=user, msg={"n": 1})
        ok(fb, "broadcast", msg={"b": 1})
        got = [await ws.message() for _ in range(2)]
        assert {stream: payload for stream, _, payload in got} == {
            mine: {"n": 1},
            "broadcast": {"b": 1},
        }
        positions = dict(ws.positions)
    await everywhere(servers, lambda s: not s["connected"], user=user)

    ok(fa, "send", user=user, msg={"n": 2})
    ok(dj, "send", user=user, msg={"n": 3})
    ok(fa, "broadcast", msg={"b": 2})
    async with v1_client(dj, user, positions) as (ws, recovery):
        assert recovery["recovered"] is True, recovery
        assert recovery["unrecovered"] == []
        replayed: dict[str, list[tuple[int, Any]]] = {mine: [], "broadcast": []}
        for _ in range(3):
            stream, offset, payload = await ws.message()
            replayed[stream].append((offset, payload))
        user_top, broadcast_top = positions[mine][1], positions["broadcast"][1]
        assert replayed == {
            mine: [(user_top + 1, {"n": 2}), (user_top + 2, {"n": 3})],
            "broadcast": [(broadcast_top + 1, {"b": 2})],
        }
        ok(fb, "send", user=user, msg={"live": 1})  # nothing else came before it
        assert await ws.message() == (mine, user_top + 3, {"live": 1})
