"""What _compat_daphne relies on, pinned on the installed Daphne."""

from __future__ import annotations

import functools
import inspect

from daphne.server import Server

from svc_infra.websocket.djangoapp._compat_daphne import served_by_daphne


def test_daphne_hands_applications_a_partial_of_its_handle_reply() -> None:
    """Daphne builds each application's send as partial(self.handle_reply, protocol)."""
    source = inspect.getsource(Server.create_application)
    assert "partial(self.handle_reply, protocol)" in source
    server = Server.__new__(Server)
    send = functools.partial(server.handle_reply, object())
    assert served_by_daphne(send)


def test_other_servers_sends_are_not_daphnes() -> None:
    async def send(message: object) -> None:
        pass

    assert not served_by_daphne(send)
    assert not served_by_daphne(None)
    assert not served_by_daphne(functools.partial(send))
