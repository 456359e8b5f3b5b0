"""Suite-wide fixtures: a Redis server for the tests that need one; a headless
Chromium (Debian's chromium, driven by Playwright) for the browser tests."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.support import redis_answers, start_redis_server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """``redis://host:port`` of a Redis server for this run.

    Uses ``WS_TEST_REDIS_URL`` when set, else the server at 127.0.0.1:6379, else
    starts ``redis-server`` on a free port for the session. With none to be had
    the test fails when ``CI=true`` and is skipped otherwise.
    """
    explicit = os.environ.get("WS_TEST_REDIS_URL")
    if explicit:
        yield explicit.rstrip("/")
        return
    if redis_answers("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379"
        return
    try:
        proc, port = start_redis_server()
    except (FileNotFoundError, TimeoutError) as exc:
        message = f"no Redis at 127.0.0.1:6379 and none could be started: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def redis_prefix(redis_server: str) -> Iterator[str]:
    """A key prefix owned by one test; its keys are deleted afterwards."""
    import redis

    prefix = f"svc-infra-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_server)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Any]:
    """A real Redis Cluster (3 masters, 3 replicas) of ``redis-server`` processes
    for the session (:mod:`tests.rediscluster`). Skipped without ``redis-server``
    and ``redis-cli``, except under ``CI=true``, and with redis-py < 8.0 (no asyncio
    sharded pub/sub, which the Cluster layer needs)."""
    from tests.rediscluster import redis_cluster as start_cluster

    pytest.importorskip("redis", "8.0", reason="redis-py < 8.0: no async sharded pub/sub")

    try:
        context = start_cluster()
        cluster = context.__enter__()
    except FileNotFoundError as exc:
        message = f"{exc.filename or exc} is not installed: no Redis Cluster"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield cluster
    finally:
        context.__exit__(None, None, None)


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless Chromium; skipped without ``chromium``, except under ``CI=true``."""
    executable = shutil.which("chromium")
    if executable is None:
        message = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()
