"""The router's vocabulary and the transport registry."""

from __future__ import annotations

import pytest

from svc_infra.websocket import layer_messages as lm
from svc_infra.websocket.close_codes import OK_CLOSE_CODES, CloseCode
from svc_infra.websocket.server import transport
from svc_infra.websocket.server._router import LayerRouter


def test_every_layer_message_type_has_a_handler_named_after_it() -> None:
    """ws.send -> ws_send, as Channels names consumer handlers; and no handler without a type."""
    handlers = {name for name in vars(LayerRouter) if name.startswith("ws_")}
    assert handlers == {lm.handler_name(kind) for kind in lm.TYPES}
    assert lm.handler_name("ws.send") == "ws_send"


def test_an_unknown_socket_type_is_refused_by_name() -> None:
    """adapt() names the unsupported type."""
    with pytest.raises(TypeError, match=r"unsupported websocket type builtins\.object"):
        transport.adapt(object())


def test_a_loader_runs_once_for_the_first_socket_of_its_class() -> None:
    """A registered loader imports (here: registers) the adapter on first use only."""

    class Socket:
        pass

    class Adapted:
        def __init__(self, socket: Socket) -> None:
            self.socket = socket

    calls = []

    def load() -> None:
        calls.append(1)
        transport.register_transport(Socket, Adapted)  # type: ignore[arg-type]

    transport.register_transport_loader(Socket.__module__, Socket.__qualname__, load)
    first, second = transport.adapt(Socket()), transport.adapt(Socket())
    assert isinstance(first, Adapted) and isinstance(second, Adapted)
    assert calls == [1]


def test_close_codes_take_the_standard_values_and_compare_as_ints() -> None:
    """The standard codes are websockets' values; members equal their numbers."""
    from websockets.frames import CloseCode as Std

    assert CloseCode.GOING_AWAY == Std.GOING_AWAY == 1001
    assert CloseCode.TRY_AGAIN_LATER == 1013 and CloseCode.TOO_MANY_CONNECTIONS == 4008
    assert {1000, 1001, 4001} == OK_CLOSE_CODES  # 4001: 1001 as Daphne sends it
    assert all(4000 <= c < 5000 for c in CloseCode if c >= 3000)
