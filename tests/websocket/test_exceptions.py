"""Tests of the exception tree."""

from __future__ import annotations

import pytest

from svc_infra.websocket import exceptions
from svc_infra.websocket.exceptions import (
    AuthenticationError,
    ConfigurationError,
    ConnectionClosedError,
    ConnectionFailedError,
    MessageTooLargeError,
    WebSocketError,
)

LEAVES = [
    ConnectionFailedError,
    AuthenticationError,
    ConnectionClosedError,
    MessageTooLargeError,
    ConfigurationError,
]


@pytest.mark.parametrize("cls", LEAVES)
def test_every_error_derives_from_the_root_and_is_drawn(cls: type[Exception]) -> None:
    """Each exception is a WebSocketError and appears in the module's tree drawing."""
    assert issubclass(cls, WebSocketError)
    assert exceptions.__doc__ is not None
    assert cls.__name__ in exceptions.__doc__
    assert cls.__doc__ is not None and cls.__doc__.startswith("Raised when")


def test_configuration_error_is_a_value_error() -> None:
    """Generic settings validation (except ValueError) catches config errors."""
    err = ConfigurationError("WS_OPEN_TIMEOUT", "ten", "a number")
    assert isinstance(err, ValueError)
    assert str(err) == "invalid WS_OPEN_TIMEOUT='ten': expected a number"


def test_structured_attributes_and_messages() -> None:
    """Errors keep their fields and build readable messages from them."""
    closed = ConnectionClosedError(1001, "going away")
    assert (closed.code, closed.reason, closed.ok) == (1001, "going away", True)
    assert str(closed) == "connection closed with code 1001 'going away'"
    assert not ConnectionClosedError(4000).ok
    assert str(ConnectionClosedError(4000)) == "connection closed with code 4000"

    big = MessageTooLargeError(2048, 1024)
    assert (big.size, big.limit) == (2048, 1024)
    assert str(big) == "2048 bytes exceeds the limit of 1024 bytes"
    assert str(MessageTooLargeError(None, None)) == "message exceeds the limit"

    failed = ConnectionFailedError("ws://h/", "refused", attempts=3)
    assert (failed.url, failed.reason, failed.attempts) == ("ws://h/", "refused", 3)
    assert str(failed) == "could not connect to ws://h/ after 3 attempts: refused"

    auth = AuthenticationError("bad token", status=401)
    assert (auth.reason, auth.status) == ("bad token", 401)
    assert "401" in str(auth)
    assert str(AuthenticationError("no token")) == "authentication failed: no token"


def test_errors_survive_pickling() -> None:
    """Errors can cross process boundaries (multiprocessing, task queues)."""
    import pickle

    for err in (
        ConnectionClosedError(1001, "bye"),
        MessageTooLargeError(5, 4),
        ConnectionFailedError("ws://h/", "refused", attempts=2),
        AuthenticationError("x", status=403),
        ConfigurationError("WS_X", "1", "y"),
    ):
        copy = pickle.loads(pickle.dumps(err))
        assert type(copy) is type(err)
        assert str(copy) == str(err)
