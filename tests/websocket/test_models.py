"""Tests of the data models."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from svc_infra.websocket import ConnectionInfo, ConnectionState, WebSocketMessage


def test_connection_states() -> None:
    """States are string enums usable in JSON."""
    assert [s.value for s in ConnectionState] == [
        "connecting",
        "connected",
        "reconnecting",
        "closing",
        "closed",
    ]
    assert json.dumps({"state": ConnectionState.CONNECTED}) == '{"state": "connected"}'


def test_websocket_message() -> None:
    """A message knows whether it is binary and parses JSON from text or bytes."""
    text = WebSocketMessage('{"a": 1}')
    assert not text.is_binary
    assert text.text == '{"a": 1}'
    assert text.json() == {"a": 1}
    assert text.timestamp > 0
    binary = WebSocketMessage(b'{"b": 2}', timestamp=5.0)
    assert binary.is_binary
    assert binary.json() == {"b": 2}
    assert binary.timestamp == 5.0
    with pytest.raises(ValueError, match="Expecting value"):
        WebSocketMessage("not json").json()


def test_connection_info_round_trips_through_json() -> None:
    """ConnectionInfo serializes to JSON-safe data and back."""
    info = ConnectionInfo("user-1", "conn-1", metadata={"device": "phone"})
    assert info.connected_at.tzinfo is UTC
    before = info.last_activity
    info.touch()
    assert info.last_activity >= before
    data = json.loads(json.dumps(info.to_dict()))
    assert ConnectionInfo.from_dict(data) == info


def test_connection_info_defaults() -> None:
    """Timestamps default to now and metadata to an empty dict of its own."""
    a = ConnectionInfo("u", "c1")
    b = ConnectionInfo("u", "c2")
    a.metadata["x"] = 1
    assert b.metadata == {}
    assert abs((datetime.now(UTC) - a.connected_at).total_seconds()) < 60
