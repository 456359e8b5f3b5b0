"""Real server processes for end-to-end tests: uvicorn on an inherited socket."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tests.support import ROOT, python_cmd, timeout, wait_for_port, wait_until

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection


def _answer(body: bytes) -> Any:
    """A ``/ctl`` answer: JSON, or the text of an error page."""
    try:
        return json.loads(body or b"null")
    except ValueError:
        return body.decode(errors="replace")


class Server:
    """A server process listening on 127.0.0.1:``port``."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc = proc
        self.port = port
        self.host = f"127.0.0.1:{port}"

    def ws(self, path: str) -> str:
        return f"ws://{self.host}{path}"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://{self.host}{path}", timeout=timeout(10)) as r:
            return json.loads(r.read() or b"null")

    def post(self, path: str) -> Any:
        request = urllib.request.Request(f"http://{self.host}{path}", method="POST")
        with urllib.request.urlopen(request, timeout=timeout(10)) as r:
            return json.loads(r.read() or b"null")

    def ctl(self, op: str, **body: Any) -> tuple[int, Any]:
        """POST ``/ctl/<op>`` with a JSON body (the cluster test apps); (status, answer)."""
        request = urllib.request.Request(
            f"http://{self.host}/ctl/{op}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            # 30 s: "pump_wait" answers when a pump of several seconds ends, which
            # on two shared cores under load can take twice as long as planned.
            with urllib.request.urlopen(request, timeout=timeout(30)) as r:
                return r.status, _answer(r.read())
        except urllib.error.HTTPError as exc:
            # A 500 from the server's own error page ("Internal Server Error", for
            # example while its Redis restarts) is text, not JSON: give it as is.
            return exc.code, _answer(exc.read())

    def notify(self, user: str, body: Any) -> None:
        """POST ``body`` to the demo's ``/api/notify/<user>/`` with a notify:send token."""
        from tests.tokens import token

        request = urllib.request.Request(
            f"http://{self.host}/api/notify/{user}/",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token('ops', scope='notify:send')}"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout(10)) as response:
            assert response.status == 200

    async def open_ws(self, path: str, user: str, **options: Any) -> ClientConnection:
        """A socket to the demo as a page opens it: same Origin, ``user``'s token as
        the ``bearer`` subprotocol."""
        from websockets.asyncio.client import connect

        from tests.tokens import token

        return await connect(
            self.ws(path),
            subprotocols=["bearer", token(user)],  # type: ignore[list-item]
            origin=f"http://{self.host}",  # type: ignore[arg-type]
            open_timeout=timeout(10),
            **options,
        )

    def stats(self, **query: str) -> Any:
        """GET ``/ctl/stats`` of a cluster test app."""
        return self.get("/ctl/stats?" + urllib.parse.urlencode(query))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and wait for the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout(20))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def wait_ready(server: Server) -> None:
    """Wait until the app answers HTTP (any status): its lifespan startup is done.

    The listening socket was bound here, so TCP connects succeed at once; the
    first request waits in the backlog until the server takes it.
    """
    try:
        with urllib.request.urlopen(f"http://{server.host}/", timeout=timeout(20)):
            pass
    except urllib.error.HTTPError:
        pass  # a 404 is an answer


#: The demo runs the outbox relay in its process; its tests that are not about the
#: outbox start it without (their database is the project's file, maybe unmigrated).
NO_RELAY = {"WS_RELAY_IN_PROCESS": "false"}


@contextlib.contextmanager
def demo(kind: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """The demo: the Django project under ``daphne`` (``manage.py runserver``) or
    ``uvicorn``, or its ``fastapi-twin`` under uvicorn."""
    if kind == "daphne":
        with runserver(env=env) as server:
            yield server
    elif kind == "uvicorn":
        with uvicorn("project.asgi:application", env={**NO_RELAY, **(env or {})}) as server:
            yield server
    else:
        with uvicorn("project.fastapi_app:app", env=env) as server:
            yield server


@contextlib.contextmanager
def runserver(env: dict[str, str] | None = None) -> Iterator[Server]:
    """``manage.py runserver`` (Daphne's ASGI server), as ``make run`` starts it."""
    from tests.support import free_port

    port = free_port()
    proc = subprocess.Popen(
        python_cmd("manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"),
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **NO_RELAY, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = Server(proc, port)
    try:
        wait_for_port(port, proc)
        wait_ready(server)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def uvicorn(app: str, env: dict[str, str] | None = None, *options: str) -> Iterator[Server]:
    """Run ``uvicorn [options] app`` on a socket bound here to port 0 and handed over by fd."""
    with _server_on_fd(lambda fd: [*_uvicorn_args(fd), *options, app], env) as server:
        yield server


@contextlib.contextmanager
def daphne(app: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """Run ``daphne app`` on a socket bound here to port 0 and handed over by fd."""
    with _server_on_fd(lambda fd: [*_daphne_args(fd), app], env) as server:
        yield server


def listener() -> socket.socket:
    """A listening socket on 127.0.0.1, port 0, for servers started on its fd."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


def start_on(sock: socket.socket, kind: str, app: str, env: dict[str, str] | None) -> Server:
    """Start ``uvicorn`` or ``daphne`` (``kind``) serving ``app`` on ``sock``, which
    the caller keeps: while one process stops and the next starts, connections wait
    in its backlog (a restart behind socket activation), none is refused."""
    fd = str(sock.fileno())
    args = _uvicorn_args(fd) if kind == "uvicorn" else _daphne_args(fd)
    proc = subprocess.Popen(
        python_cmd(*args, app),
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        pass_fds=(sock.fileno(),),
    )
    server = Server(proc, int(sock.getsockname()[1]))
    try:
        wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def _uvicorn_args(fd: str) -> list[str]:
    return [
        "-m",
        "uvicorn",
        "--fd",
        fd,
        "--log-level",
        "warning",
        "--timeout-graceful-shutdown",
        "5",
    ]


def _daphne_args(fd: str) -> list[str]:
    return ["-m", "daphne", "--fd", fd, "-v", "0"]


@contextlib.contextmanager
def _server_on_fd(args: Any, env: dict[str, str] | None) -> Iterator[Server]:
    sock = listener()
    port = sock.getsockname()[1]
    fd = sock.fileno()
    proc = subprocess.Popen(
        python_cmd(*args(str(fd))),
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        pass_fds=(fd,),
    )
    sock.close()  # the child holds its own copy
    server = Server(proc, port)
    try:
        wait_ready(server)
        yield server
    finally:
        server.stop()


def ok(server: Server, op: str, **body: Any) -> None:
    """``server.ctl(op, **body)``, which must answer 200."""
    status, answer = server.ctl(op, **body)
    assert status == 200, answer


async def everywhere(servers: list[Server], check: Any, limit: float = 10, **query: str) -> None:
    """Wait until ``check(stats)`` holds on every server; on timeout, say what each saw."""
    views: list[Any] = []

    def holds() -> bool:
        views[:] = [s.stats(**query) for s in servers]
        return all(check(v) for v in views)

    try:
        await wait_until(holds, limit, 0.05)
    except TimeoutError:
        keys = ("connection_count", "local", "active_users", "room_users", "room_count")
        seen = {v["name"]: {k: v[k] for k in (*keys, "healthy")} for v in views}
        raise AssertionError(f"not everywhere within {limit} s: {seen}") from None
