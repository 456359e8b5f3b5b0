"""The one place that recognises Daphne from what it hands an application.

Daphne (on autobahn) can only send the close codes 1000 and 3000-4999, so the
consumers must know whether Daphne serves them. ASGI has no way to say which
server runs the app; Daphne gives each application ``send`` as
``functools.partial(Server.handle_reply, protocol)``, and that is what we look at.
``tests/websocket/djangoapp/test_compat_daphne.py`` pins it on the installed Daphne.
"""

from __future__ import annotations

from typing import Any

__all__ = ["served_by_daphne"]


def served_by_daphne(send: Any) -> bool:
    """Whether ``send`` (a consumer's ``base_send``) is Daphne's."""
    owner = getattr(send, "func", None)
    return type(getattr(owner, "__self__", None)).__module__.startswith("daphne.")
