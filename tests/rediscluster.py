"""A real Redis Cluster for tests: 3 masters and 3 replicas of ``redis-server`` on
free 127.0.0.1 ports, made a cluster with ``redis-cli --cluster create``."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

NODE_TIMEOUT_MS = 2000


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


@dataclass
class RedisCluster:
    """A running cluster: its nodes' ports and processes."""

    directory: Path
    ports: list[int]
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """A seed node URL (``redis://127.0.0.1:<port>``)."""
        return f"redis://127.0.0.1:{self.ports[0]}"

    @property
    def seed_url(self) -> str:
        """The same seed node as a ``redis+cluster://`` URL (``WS_REDIS_URL``)."""
        return self.url.replace("redis://", "redis+cluster://")

    @property
    def urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{port}" for port in self.ports]

    def start_node(self, port: int) -> None:
        node_dir = self.directory / str(port)
        node_dir.mkdir(exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [
                "redis-server",
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                "--save", "",
                "--appendonly", "no",
                "--dir", str(node_dir),
                "--logfile", "redis.log",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def cli(self, port: int, *args: str, timeout: float = 10) -> str:
        out = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        return out.stdout

    def masters(self) -> list[int]:
        """The ports of the nodes that are masters now (from a live node's view)."""
        for port in self.ports:
            if self.procs[port].poll() is not None:
                continue
            with contextlib.suppress(subprocess.SubprocessError):
                lines = self.cli(port, "cluster", "nodes").splitlines()
                return sorted(
                    int(line.split()[1].split("@")[0].rsplit(":", 1)[1])
                    for line in lines
                    if "master" in line.split()[2] and "fail" not in line.split()[2]
                )
        raise RuntimeError("no live cluster node")

    def replicas_synced(self, expected: int) -> bool:
        """Whether ``expected`` live replicas have their link to their master up."""
        synced = 0
        for port in self.ports:
            if self.procs[port].poll() is not None:
                continue
            with contextlib.suppress(subprocess.SubprocessError):
                info = self.cli(port, "info", "replication")
                synced += "role:slave" in info and "master_link_status:up" in info
        return synced >= expected

    def wait_ok(self, limit: float = 30.0) -> None:
        """Until every live node reports ``cluster_state:ok`` and agrees on the slots."""
        deadline = time.monotonic() + limit
        while True:
            live = [p for p in self.ports if self.procs[p].poll() is None]
            states = []
            for port in live:
                try:
                    states.append("cluster_state:ok" in self.cli(port, "cluster", "info"))
                except subprocess.SubprocessError:
                    states.append(False)
            if states and all(states):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster not ok after {limit} s")
            time.sleep(0.1)

    def node_id(self, port: int) -> str:
        return self.cli(port, "cluster", "myid").strip()

    def owner(self, slot: int) -> int:
        """The port of the master that serves ``slot`` now."""
        for line in self.cli(self.masters()[0], "cluster", "nodes").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for part in fields[8:]:
                low, _, high = part.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return int(fields[1].split("@")[0].rsplit(":", 1)[1])
        raise LookupError(f"no master serves slot {slot}")

    def move_slot(self, slot: int, to: int) -> None:
        """Migrate ``slot`` and its keys to the master on port ``to``, as a resharding
        does (IMPORTING/MIGRATING, MIGRATE of each key, then SETSLOT NODE)."""
        source = self.owner(slot)
        source_id, target_id = self.node_id(source), self.node_id(to)
        self.cli(to, "cluster", "setslot", str(slot), "importing", source_id)
        self.cli(source, "cluster", "setslot", str(slot), "migrating", target_id)
        while keys := self.cli(source, "cluster", "getkeysinslot", str(slot), "100").split():
            self.cli(source, "migrate", "127.0.0.1", str(to), "", "0", "5000", "keys", *keys)
        for port in self.masters():
            self.cli(port, "cluster", "setslot", str(slot), "node", target_id)

    def kill(self, port: int) -> None:
        """SIGKILL a node."""
        proc = self.procs[port]
        proc.kill()
        proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def redis_cluster(masters: int = 3, replicas: int = 1, attempts: int = 3) -> Iterator[RedisCluster]:
    """Start a cluster of ``masters * (1 + replicas)`` nodes; stop and delete it after.

    A start that fails (a port taken between its choice and its use, a create that
    does not converge) is retried on fresh ports, ``attempts`` times in all.

    Raises:
        FileNotFoundError: Without ``redis-server`` or ``redis-cli``.
        RuntimeError: If no attempt made a healthy cluster (with the last error).
    """
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            raise FileNotFoundError(tool)
    errors: list[str] = []
    for _ in range(attempts):
        cluster = _new_cluster(masters * (1 + replicas))
        try:
            _start(cluster, masters, replicas)
        except (OSError, subprocess.SubprocessError, TimeoutError) as exc:
            output = getattr(exc, "stdout", None) or b""
            errors.append(f"{exc!r} {output[-500:]!r}")
            cluster.stop()
            continue
        try:
            yield cluster
        finally:
            cluster.stop()
        return
    raise RuntimeError(f"no Redis Cluster after {attempts} attempts: {errors}")


def _new_cluster(nodes: int) -> RedisCluster:
    ports: list[int] = []
    while len(ports) < nodes:
        port = _free_cluster_port()
        if port not in ports:
            ports.append(port)
    return RedisCluster(Path(tempfile.mkdtemp(prefix="svc-infra-cluster-")), ports)


def _start(cluster: RedisCluster, masters: int, replicas: int) -> None:
    for port in cluster.ports:
        cluster.start_node(port)
    for port in cluster.ports:
        _wait_port(port)
    subprocess.run(
        [
            "redis-cli", "--cluster", "create",
            *(f"127.0.0.1:{port}" for port in cluster.ports),
            "--cluster-replicas", str(replicas),
            "--cluster-yes",
        ],
        capture_output=True,
        check=True,
        timeout=20,
    )  # fmt: skip
    cluster.wait_ok(20)
    # The replicas are assigned after the slots, and sync after that. A replica
    # that never synced cannot be promoted (its data counts as too old): wait
    # until every one has its link to its master up.
    deadline = time.monotonic() + 20
    while len(cluster.masters()) != masters or not cluster.replicas_synced(masters * replicas):
        if time.monotonic() > deadline:
            raise TimeoutError("the cluster's replicas did not sync")
        time.sleep(0.1)


def _wait_port(port: int, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"redis-server did not listen on {port}")
        time.sleep(0.05)
