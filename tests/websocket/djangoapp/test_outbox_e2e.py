"""The outbox end to end: the demo under Daphne (``manage.py runserver``) writes in a
transaction (``POST /api/outbox/<user>/``), ``manage.py ws_outbox`` relays, a real
socket receives; on SQLite and on PostgreSQL (127.0.0.1:5432, user postgres).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import threading
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.servers import Server, runserver
from tests.support import (
    ROOT,
    answers,
    flush_db,
    python_cmd,
    scratch_postgres,
    start_redis_server,
    timeout,
)
from tests.tokens import SECRET, token

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

DB = 7  # the layer's Redis database, flushed afterwards


@contextlib.contextmanager
def database(kind: str, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: its ``DATABASE_URL``."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'outbox.sqlite3'}"
        migrate(url)
        yield url
        return
    if not answers(5432):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("no PostgreSQL at 127.0.0.1:5432")
        pytest.skip("no PostgreSQL at 127.0.0.1:5432")
    with scratch_postgres("ws_outbox_") as name:
        url = f"postgres://postgres@127.0.0.1:5432/{name}"
        migrate(url)
        yield url


def migrate(url: str) -> None:
    subprocess.run(
        python_cmd("manage.py", "migrate", "--noinput", "--verbosity", "0"),
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        check=True,
        timeout=timeout(60),
    )


def server_env(db_url: str, redis_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": db_url,
        "WS_REDIS_URL": redis_url,
        "WS_RELAY_IN_PROCESS": "false",
        "WS_RELAY_POLL_INTERVAL": "0.2",
        "WS_CHANNEL_PREFIX": f"o{uuid.uuid4().hex[:8]}.",
        "AUTH_JWT__SECRET": SECRET,
    }


class Relay:
    """``manage.py ws_outbox`` in a process of its own."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            python_cmd("manage.py", "ws_outbox"),
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "ws_outbox: publishing ..." once it runs
        assert line.startswith(b"ws_outbox: publishing"), line

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout(15))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout(5))
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@contextlib.contextmanager
def relay(env: dict[str, str]) -> Iterator[Relay]:
    running = Relay(env)
    try:
        yield running
    finally:
        running.stop()


def post(server: Server, user: str, body: Any, rollback: bool = False) -> Any:
    query = "?rollback=1" if rollback else ""
    request = urllib.request.Request(
        f"http://{server.host}/api/outbox/{user}/{query}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token('sender', scopes='notify:send')}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout(20)) as answer:
        return json.loads(answer.read())


@contextlib.asynccontextmanager
async def listen(server: Server, user: str) -> AsyncIterator[ClientConnection]:
    async with connect(
        server.ws("/ws/notifications/"),
        subprotocols=["bearer", token(user)],  # type: ignore[list-item]
        origin=f"http://{server.host}",  # type: ignore[arg-type]
        open_timeout=timeout(10),
    ) as ws:
        yield ws


async def data(ws: ClientConnection, limit: float = 15) -> Any:
    message = json.loads(await asyncio.wait_for(ws.recv(), timeout(limit)))
    assert message["type"] == "notification", message
    return message["data"]


@pytest.fixture(params=["sqlite", "postgres"])
def setup(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server: str
) -> Iterator[dict[str, str]]:
    """The environment of the demo and its relays, on a fresh database."""
    if request.param == "postgres":
        request.applymarker(pytest.mark.postgres)
    redis_url = f"{redis_server}/{DB}"
    with database(request.param, tmp_path) as url:
        yield server_env(url, redis_url)
    flush_db(redis_url)


async def test_a_rollback_sends_nothing_a_commit_sends_once(setup: dict[str, str]) -> None:
    user = f"u{uuid.uuid4().hex[:6]}"
    with runserver(setup) as demo, relay(setup):
        async with listen(demo, user) as ws:
            assert post(demo, user, {"n": 0}, rollback=True) == {"committed": False}
            assert post(demo, user, {"n": 1}) == {"committed": True}
            assert await data(ws) == {"n": 1}  # not n=0: it was rolled back
            assert post(demo, user, {"n": 2}) == {"committed": True}
            assert await data(ws) == {"n": 2}  # not n=1 again


async def test_a_relay_stopped_then_killed_loses_and_repeats_nothing(
    setup: dict[str, str],
) -> None:
    """The relay is frozen (SIGSTOP) while 50 messages commit, then killed (SIGKILL);
    a new relay publishes all 50, once each, in order."""
    user = f"u{uuid.uuid4().hex[:6]}"
    with runserver(setup) as demo:
        async with listen(demo, user) as ws:
            first = Relay(setup)
            try:
                first.proc.send_signal(signal.SIGSTOP)
                for n in range(50):
                    assert post(demo, user, {"n": n}) == {"committed": True}
                first.proc.send_signal(signal.SIGKILL)
            finally:
                first.stop()
            with relay(setup):
                got = [await data(ws) for _ in range(50)]
                assert post(demo, user, {"marker": 1}) == {"committed": True}
                assert await data(ws) == {"marker": 1}  # nothing came twice before it
    assert got == [{"n": n} for n in range(50)]


@pytest.mark.postgres
async def test_two_relays_four_writers_each_message_once_each_writer_in_order(
    tmp_path: Path, redis_server: str
) -> None:
    """Four threads commit 50 messages each to one user while two relays run: the
    user gets 200, each once, and each writer's in the order it committed them."""
    redis_url = f"{redis_server}/{DB}"
    user = f"u{uuid.uuid4().hex[:6]}"
    with database("postgres", tmp_path) as url:
        env = server_env(url, redis_url)
        with runserver(env) as demo, relay(env), relay(env):
            async with listen(demo, user) as ws:
                errors: list[BaseException] = []

                def writer(w: int) -> None:
                    try:
                        for n in range(50):
                            post(demo, user, {"w": w, "n": n})
                    except BaseException as exc:  # reported below
                        errors.append(exc)

                threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
                for thread in threads:
                    thread.start()
                got = [await data(ws, limit=30) for _ in range(200)]
                for thread in threads:
                    thread.join(timeout(30))
                assert not errors, errors
                assert post(demo, user, {"marker": 1}) == {"committed": True}
                assert await data(ws) == {"marker": 1}
    flush_db(redis_url)
    for w in range(4):
        assert [m["n"] for m in got if m["w"] == w] == list(range(50)), w


async def test_a_relay_started_while_redis_is_down_delivers_once_it_is_back(
    tmp_path: Path,
) -> None:
    proc, port = start_redis_server()
    user = f"u{uuid.uuid4().hex[:6]}"
    try:
        with database("sqlite", tmp_path) as url:
            env = server_env(url, f"redis://127.0.0.1:{port}/0")
            with runserver(env) as demo:
                async with listen(demo, user) as ws:
                    proc.kill()
                    proc.wait(timeout(10))
                    for n in range(10):
                        assert post(demo, user, {"n": n}) == {"committed": True}
                    with relay(env):
                        proc, _ = start_redis_server(port)
                        got = [await data(ws, limit=45) for _ in range(10)]
                        assert post(demo, user, {"marker": 1}) == {"committed": True}
                        assert await data(ws, limit=30) == {"marker": 1}
        assert got == [{"n": n} for n in range(10)]
    finally:
        proc.kill()
        proc.wait(timeout(10))


async def test_the_relay_in_the_server_process(tmp_path: Path, redis_server: str) -> None:
    """``WS_RELAY_IN_PROCESS``: no ``ws_outbox`` process; the server relays itself."""
    redis_url = f"{redis_server}/{DB}"
    user = f"u{uuid.uuid4().hex[:6]}"
    with database("sqlite", tmp_path) as url:
        env = {**server_env(url, redis_url), "WS_RELAY_IN_PROCESS": "true"}
        with runserver(env) as demo:
            async with listen(demo, user) as ws:  # its first socket starts the relay
                for n in range(3):
                    assert post(demo, user, {"n": n}) == {"committed": True}
                assert [await data(ws) for _ in range(3)] == [{"n": n} for n in range(3)]
    flush_db(redis_url)
