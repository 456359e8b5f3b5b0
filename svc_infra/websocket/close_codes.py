"""Close codes: the one vocabulary of WebSocket close codes this package sends or reads.

Standard codes (RFC 6455) take their values from :class:`websockets.frames.CloseCode`;
application codes live in 4000-4999, where RFC 6455 leaves them to applications.

======  ==========================  ====================================================
Code    Name                        When
======  ==========================  ====================================================
1000    ``NORMAL_CLOSURE``          ``disconnect()``, a normal end
1001    ``GOING_AWAY``              server shutdown (``shutdown()``, SIGTERM)
1006    ``ABNORMAL_CLOSURE``        never sent: the TCP connection dropped (client side)
1008    ``POLICY_VIOLATION``        authentication refused, before accept
1009    ``MESSAGE_TOO_BIG``         a message over ``max_message_size``
1011    ``INTERNAL_ERROR``          a write to the socket failed
1012    ``SERVICE_RESTART``         never sent by us: uvicorn's own shutdown close
1013    ``TRY_AGAIN_LATER``         slow consumer: the outbox overflowed
4008    ``TOO_MANY_CONNECTIONS``    a user over ``WS_MAX_CONNECTIONS_PER_USER`` (the spec's code)
4401    ``TOKEN_EXPIRED``           the connection's credential expired (reconnect with a new one)
4409    ``REPLACED``                a newer connection of the user took its place
                                    (``WS_CAP_POLICY=newest``): do not reconnect
4429    ``RATE_LIMITED``            the client sent faster than ``WS_INBOUND_RATE``
======  ==========================  ====================================================

Under Daphne, 1001, 1009, 1011 and 1013 go out as 4001, 4009, 4011 and 4013
(:data:`DAPHNE_CODES`): autobahn sends no other codes from a server.
"""

from __future__ import annotations

import enum

from websockets.frames import CloseCode as _Std

__all__ = ["DAPHNE_CODES", "OK_CLOSE_CODES", "CloseCode", "daphne_code"]


class CloseCode(enum.IntEnum):
    """Close codes, standard and application-defined (see the module's table)."""

    NORMAL_CLOSURE = _Std.NORMAL_CLOSURE.value
    GOING_AWAY = _Std.GOING_AWAY.value
    ABNORMAL_CLOSURE = _Std.ABNORMAL_CLOSURE.value
    POLICY_VIOLATION = _Std.POLICY_VIOLATION.value
    MESSAGE_TOO_BIG = _Std.MESSAGE_TOO_BIG.value
    INTERNAL_ERROR = _Std.INTERNAL_ERROR.value
    SERVICE_RESTART = _Std.SERVICE_RESTART.value
    TRY_AGAIN_LATER = _Std.TRY_AGAIN_LATER.value
    # Application codes (4000-4999).
    TOO_MANY_CONNECTIONS = 4008
    TOKEN_EXPIRED = 4401
    REPLACED = 4409
    RATE_LIMITED = 4429


def daphne_code(code: int) -> int:
    """The code Daphne can send for ``code``: autobahn only sends 1000 and 3000-4999
    from a server, so any other becomes 4000 + its last three digits (1009 -> 4009)."""
    code = int(code)
    return code if code == 1000 or 3000 <= code <= 4999 else 4000 + code % 1000


#: The standard codes the manager sends, as Daphne sends them: Daphne's -> standard.
DAPHNE_CODES = {daphne_code(c): c for c in (1001, 1009, 1011, 1013)}

#: Codes that end a connection normally: no error, no reconnect needed.
OK_CLOSE_CODES = frozenset(
    {CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY, daphne_code(CloseCode.GOING_AWAY)}
)
