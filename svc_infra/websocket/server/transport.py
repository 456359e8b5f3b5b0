"""The socket interface of the core, and how framework sockets are adapted to it.

The core knows a socket only through :class:`Transport`. Framework adapters live
in the integrations (:mod:`svc_infra.websocket.integrations.starlette`,
:mod:`svc_infra.websocket.djangoapp.consumers`) and register themselves here with
:func:`register_transport`; the core never imports them. So that
``manager.connect(user_id, websocket)`` works before an integration was imported,
the package's ``__init__`` (the one place that knows every part) registers a
*loader* per framework socket class: called on the first socket of that class, it
imports the integration, which registers its adapter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from ..layer_messages import Frame

__all__ = [
    "AsgiTransport",
    "Transport",
    "adapt",
    "register_transport",
    "register_transport_loader",
]


@runtime_checkable
class Transport(Protocol):
    """The part of a server-side WebSocket the manager uses.

    A transport may also have a ``write_now`` attribute: None, or a callable
    ``(frame) -> bool`` that writes the frame at once, without a coroutine, and
    returns True, or returns False (nothing written) for the frame to take
    :meth:`send`. Starlette's has one under uvicorn's ``websockets-sansio``
    (``integrations/_compat_uvicorn.py``).
    """

    @property
    def accepted(self) -> bool:
        """Whether the handshake was accepted."""
        ...

    @property
    def subprotocols(self) -> list[str]:
        """Subprotocols the client offered."""
        ...

    async def accept(self, subprotocol: str | None = None) -> None:
        """Accept the handshake."""
        ...

    async def send(self, frame: Frame) -> None:
        """Send a text (``str``) or binary (``bytes``) frame.

        Raises:
            Exception: Any error if the socket is gone; the manager drops it.
        """
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket; must not raise if it is already closed."""
        ...


_Key = tuple[str, str]  # (module, qualified name) of a socket class
_adapters: dict[_Key, Callable[[Any], Transport]] = {}
_loaders: dict[_Key, Callable[[], None]] = {}
_by_class: dict[type, Callable[[Any], Transport]] = {}  # what adapt() found, per class


class AsgiTransport:
    """What every ASGI socket's adapter reads from the handshake's scope: the
    offered subprotocols and the query string. A subclass gives :attr:`scope`."""

    __slots__ = ()

    @property
    def scope(self) -> Any:
        """The ASGI scope (also where the manager finds the principal, its expiry)."""
        raise NotImplementedError

    @property
    def subprotocols(self) -> list[str]:
        # From the scope, not a header: uvicorn's wsproto backend drops the header.
        return list(self.scope.get("subprotocols") or ())

    @property
    def query_string(self) -> bytes:
        # Where a v1 client's positions travel.
        return bytes(self.scope.get("query_string") or b"")


def _key(cls: type) -> _Key:
    return cls.__module__, cls.__qualname__


def register_transport(socket_class: type, adapter: Callable[[Any], Transport]) -> None:
    """Make :func:`adapt` wrap instances of ``socket_class`` (and subclasses) with ``adapter``."""
    _adapters[_key(socket_class)] = adapter
    _by_class.clear()


def register_transport_loader(module: str, qualname: str, loader: Callable[[], None]) -> None:
    """Call ``loader`` when a socket whose class (or a base) is ``module.qualname`` first
    arrives and no adapter is registered for it; ``loader`` registers one.

    Keys are names, not classes, so registering imports no framework.
    """
    _loaders[(module, qualname)] = loader


def adapt(websocket: Any) -> Transport:
    """Wrap ``websocket`` in the :class:`Transport` registered for its class.

    Raises:
        TypeError: If no adapter is registered for the socket's class or its bases.
    """
    # Once per socket class: the lookup below (and the protocol check, which is
    # slow) would otherwise cost every connection.
    adapter = _by_class.get(type(websocket))
    if adapter is None:
        adapter = _by_class[type(websocket)] = _adapter_for(websocket)
    return adapter(websocket)


def _same(websocket: Any) -> Transport:
    return websocket  # type: ignore[no-any-return]


def _adapter_for(websocket: Any) -> Callable[[Any], Transport]:
    if isinstance(websocket, Transport):
        return _same
    mro = type(websocket).__mro__
    for cls in mro:
        adapter = _adapters.get(_key(cls))
        if adapter is not None:
            return adapter
    for cls in mro:
        loader = _loaders.pop(_key(cls), None)
        if loader is not None:
            loader()
            return _adapter_for(websocket)
    raise TypeError(
        f"unsupported websocket type {type(websocket).__module__}.{type(websocket).__name__}: "
        "expected a Starlette/FastAPI WebSocket, a Channels AsyncWebsocketConsumer, "
        "or a Transport"
    )
