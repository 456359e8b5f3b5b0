"""Prometheus metrics, scraped from real servers and parsed with prometheus_client's parser."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection

from tests.servers import Server
from tests.servers import demo as demo_server
from tests.support import timeout, wait_until
from tests.tokens import SECRET

pytestmark = [pytest.mark.e2e]

ENV = {"AUTH_JWT__SECRET": SECRET}


@pytest.fixture(scope="module", params=["django", "fastapi"])
def demo(request: pytest.FixtureRequest) -> Iterator[Server]:
    with demo_server("daphne" if request.param == "django" else "fastapi-twin", ENV) as srv:
        yield srv


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(server: Server) -> Samples:
    with urllib.request.urlopen(f"http://{server.host}/metrics", timeout=timeout(10)) as r:
        text = r.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_move_as_connections_open_messages_flow_and_close(demo: Server) -> None:
    before = scrape(demo)
    users = [f"m{uuid.uuid4().hex[:6]}" for _ in range(3)]
    sockets: list[ClientConnection] = [await demo.open_ws("/ws/notifications/", u) for u in users]
    await wait_until(
        lambda: (
            value(scrape(demo), "svc_infra_ws_connections")
            == value(before, "svc_infra_ws_connections") + 3
        ),
        limit=10,
    )
    await asyncio.to_thread(demo.notify, users[0], {"hi": 1})
    assert json.loads(await asyncio.wait_for(sockets[0].recv(), timeout(5)))["data"] == {"hi": 1}
    during = scrape(demo)
    assert value(during, "svc_infra_ws_users") >= 3
    assert (
        value(during, "svc_infra_ws_connections_opened_total")
        >= value(before, "svc_infra_ws_connections_opened_total") + 3
    )
    published = "svc_infra_ws_messages_published_total"
    assert value(during, published, target="user") == value(before, published, target="user") + 1
    frames = "svc_infra_ws_frames_sent_total"
    assert value(during, frames) >= value(before, frames) + 1
    assert value(during, "svc_infra_ws_bytes_sent_total") > value(
        before, "svc_infra_ws_bytes_sent_total"
    )
    histogram = "svc_infra_ws_publish_seconds_count"
    assert value(during, histogram, target="user") == value(before, histogram, target="user") + 1
    for ws in sockets:
        await ws.close()
    closed = "svc_infra_ws_connections_closed_total"
    await wait_until(
        lambda: value(scrape(demo), closed, code="1000") >= value(before, closed, code="1000") + 3,
        limit=10,
    )
    after = scrape(demo)
    assert value(after, "svc_infra_ws_connections") == value(before, "svc_infra_ws_connections")
    # Every documented name is exported (with its labels where it has some).
    names = {name for name, _ in after}
    for name in (
        "svc_infra_ws_cluster_connections",
        "svc_infra_ws_rooms",
        "svc_infra_ws_messages_received_total",
        "svc_infra_ws_slow_consumer_evictions_total",
        "svc_infra_ws_layer_errors_total",
        "svc_infra_ws_messages_lost_total",
    ):
        assert name in names, name


async def test_uvicorn_workers_share_their_metrics(tmp_path: object) -> None:
    """Two uvicorn workers with PROMETHEUS_MULTIPROC_DIR: whichever answers the scrape
    counts the connections of both."""
    from tests.servers import _server_on_fd

    env = {**ENV, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    args = ["-m", "uvicorn", "project.fastapi_app:app", "--workers", "2", "--log-level", "warning"]
    with _server_on_fd(lambda fd: [*args, "--fd", fd], env) as server:
        sockets = [await server.open_ws("/ws/notifications/", f"w{i}") for i in range(10)]
        # Each worker syncs once a second; several scrapes reach both workers.
        await wait_until(
            lambda: all(value(scrape(server), "svc_infra_ws_connections") == 10 for _ in range(4)),
            limit=15,
            interval=0.2,
        )
        for ws in sockets:
            await ws.close()
