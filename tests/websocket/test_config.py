"""Tests of svc_infra.websocket.config: defaults, WS_* variables, validation."""

from __future__ import annotations

import dataclasses

import pytest

from svc_infra.websocket import (
    ConfigurationError,
    WebSocketConfig,
    WebSocketError,
    get_default_config,
)

SPEC_DEFAULTS = {
    "WS_OPEN_TIMEOUT": ("open_timeout", 10.0),
    "WS_CLOSE_TIMEOUT": ("close_timeout", 10.0),
    "WS_PING_INTERVAL": ("ping_interval", 20.0),
    "WS_PING_TIMEOUT": ("ping_timeout", 20.0),
    "WS_MAX_MESSAGE_SIZE": ("max_message_size", 1048576),
    "WS_MAX_QUEUE_SIZE": ("max_queue_size", 16),
    "WS_RECONNECT_ENABLED": ("reconnect_enabled", True),
    "WS_RECONNECT_MAX_ATTEMPTS": ("reconnect_max_attempts", 5),
    "WS_RECONNECT_BACKOFF_BASE": ("reconnect_backoff_base", 1.0),
    "WS_RECONNECT_BACKOFF_MAX": ("reconnect_backoff_max", 60.0),
    "WS_RECONNECT_JITTER": ("reconnect_jitter", 0.1),
}
# Server-side settings beyond the spec's eleven.
EXTRA_DEFAULTS = {
    "WS_OUTBOX_LIMIT": ("outbox_limit", 1048576),
    "WS_CHANNEL_PREFIX": ("channel_prefix", "ws."),
    "WS_REDIS_URL": ("redis_url", None),
    "WS_REDIS_LAYER": ("redis_layer", "core"),
    "WS_REDIS_SENTINELS": ("redis_sentinels", None),
    "WS_REDIS_SENTINEL_MASTER": ("redis_sentinel_master", "mymaster"),
    "WS_PRESENCE_TTL": ("presence_ttl", 30.0),
    "WS_PRESENCE_REDIS_URL": ("presence_redis_url", None),
    "WS_PRESENCE_MODE": ("presence_mode", "mirror"),
    "WS_HISTORY_SIZE": ("history_size", 0),
    "WS_HISTORY_TTL": ("history_ttl", 300.0),
    "WS_HISTORY_META_TTL": ("history_meta_ttl", 86_400.0),
    "WS_ROOM_GRACE": ("room_grace", 0.0),
    "WS_CLOSE_ON_TOKEN_EXPIRY": ("close_on_token_expiry", True),
    "WS_INBOUND_RATE": ("inbound_rate", 0.0),
    "WS_INBOUND_BURST": ("inbound_burst", 0),
    "WS_MAX_CONNECTIONS_PER_USER": ("max_connections_per_user", 0),
    "WS_CAP_POLICY": ("cap_policy", "refuse"),
    "WS_DRAIN_BATCH": ("drain_batch", 500),
    "WS_DRAIN_INTERVAL": ("drain_interval", 0.5),
    "WS_DRAIN_TIMEOUT": ("drain_timeout", 10.0),
    "WS_DRAIN_NOTICE": ("drain_notice", None),
    "WS_RELAY_POLL_INTERVAL": ("relay_poll_interval", 1.0),
    "WS_RELAY_BATCH": ("relay_batch", 100),
    "WS_RELAY_RETENTION": ("relay_retention", 86_400.0),
    "WS_RELAY_IN_PROCESS": ("relay_in_process", False),
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no WS_* variable set."""
    for var in (*SPEC_DEFAULTS, *EXTRA_DEFAULTS):
        monkeypatch.delenv(var, raising=False)


def test_defaults_are_the_specs() -> None:
    """Every field defaults to the spec's value, from the class and from the env reader."""
    fields = {f.name for f in dataclasses.fields(WebSocketConfig)}
    assert fields == {f for f, _ in (*SPEC_DEFAULTS.values(), *EXTRA_DEFAULTS.values())}
    for config in (WebSocketConfig(), get_default_config()):
        for _var, (field, default) in {**SPEC_DEFAULTS, **EXTRA_DEFAULTS}.items():
            assert getattr(config, field) == default, field
            assert type(getattr(config, field)) is type(default), field


@pytest.mark.parametrize(
    ("var", "raw", "expected"),
    [
        ("WS_OPEN_TIMEOUT", "30", 30.0),
        ("WS_CLOSE_TIMEOUT", "0", 0.0),
        ("WS_PING_INTERVAL", "2.5", 2.5),
        ("WS_PING_TIMEOUT", " 7 ", 7.0),
        ("WS_MAX_MESSAGE_SIZE", "16777216", 16 * 1024 * 1024),
        ("WS_MAX_QUEUE_SIZE", "64", 64),
        ("WS_RECONNECT_ENABLED", "false", False),
        ("WS_RECONNECT_ENABLED", "Off", False),
        ("WS_RECONNECT_ENABLED", "1", True),
        ("WS_RECONNECT_MAX_ATTEMPTS", "0", 0),
        ("WS_RECONNECT_BACKOFF_BASE", "0.25", 0.25),
        ("WS_RECONNECT_BACKOFF_MAX", "5", 5.0),
        ("WS_RECONNECT_JITTER", "1", 1.0),
        ("WS_OUTBOX_LIMIT", "65536", 65536),
        ("WS_CHANNEL_PREFIX", "app.", "app."),
        ("WS_REDIS_URL", "redis://127.0.0.1:6379/3", "redis://127.0.0.1:6379/3"),
        ("WS_REDIS_URL", "", None),
    ],
)
def test_each_variable_is_read(
    monkeypatch: pytest.MonkeyPatch, var: str, raw: str, expected: object
) -> None:
    """Each WS_* variable sets its field, parsed to the field's type."""
    monkeypatch.setenv(var, raw)
    field = {**SPEC_DEFAULTS, **EXTRA_DEFAULTS}[var][0]
    assert getattr(get_default_config(), field) == expected


@pytest.mark.parametrize("var", ["WS_PING_INTERVAL", "WS_PING_TIMEOUT"])
@pytest.mark.parametrize("raw", ["None", "none", "NULL", "null", "", "  "])
def test_pings_can_be_disabled(monkeypatch: pytest.MonkeyPatch, var: str, raw: str) -> None:
    """None, none, null or an empty value disables pings."""
    monkeypatch.setenv(var, raw)
    assert getattr(get_default_config(), SPEC_DEFAULTS[var][0]) is None


def test_keyword_arguments_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """An override wins over its variable; the other variables still apply."""
    monkeypatch.setenv("WS_OPEN_TIMEOUT", "3")
    monkeypatch.setenv("WS_MAX_QUEUE_SIZE", "8")
    config = get_default_config(open_timeout=30.0, ping_interval=None)
    assert config.open_timeout == 30.0
    assert config.ping_interval is None
    assert config.max_queue_size == 8


def test_environment_is_read_when_built_not_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable set after import is seen by the next config built."""
    assert get_default_config().open_timeout == 10.0
    monkeypatch.setenv("WS_OPEN_TIMEOUT", "1.5")
    assert get_default_config().open_timeout == 1.5
    # The class itself never reads the environment.
    assert WebSocketConfig().open_timeout == 10.0


def test_from_env_reads_a_given_mapping() -> None:
    """from_env accepts an explicit mapping instead of os.environ."""
    config = WebSocketConfig.from_env({"WS_RECONNECT_JITTER": "0.5"})
    assert config.reconnect_jitter == 0.5


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("WS_OPEN_TIMEOUT", "ten"),
        ("WS_OPEN_TIMEOUT", "-1"),
        ("WS_OPEN_TIMEOUT", "0"),
        ("WS_OPEN_TIMEOUT", "nan"),
        ("WS_OPEN_TIMEOUT", "inf"),
        ("WS_OPEN_TIMEOUT", ""),
        ("WS_CLOSE_TIMEOUT", "-0.5"),
        ("WS_PING_INTERVAL", "-5"),
        ("WS_PING_INTERVAL", "0"),
        ("WS_PING_INTERVAL", "often"),
        ("WS_PING_TIMEOUT", "-1"),
        ("WS_MAX_MESSAGE_SIZE", "0"),
        ("WS_MAX_MESSAGE_SIZE", "-1"),
        ("WS_MAX_MESSAGE_SIZE", "1.5"),
        ("WS_MAX_MESSAGE_SIZE", "1MB"),
        ("WS_MAX_QUEUE_SIZE", "0"),
        ("WS_RECONNECT_ENABLED", "maybe"),
        ("WS_RECONNECT_ENABLED", ""),
        ("WS_RECONNECT_MAX_ATTEMPTS", "-1"),
        ("WS_RECONNECT_MAX_ATTEMPTS", "three"),
        ("WS_RECONNECT_BACKOFF_BASE", "-1"),
        ("WS_RECONNECT_BACKOFF_MAX", "-1"),
        ("WS_RECONNECT_JITTER", "1.5"),
        ("WS_RECONNECT_JITTER", "-0.1"),
        ("WS_OUTBOX_LIMIT", "0"),
        ("WS_OUTBOX_LIMIT", "1MiB"),
        ("WS_CHANNEL_PREFIX", ""),
        ("WS_CAP_POLICY", "oldest"),
        ("WS_PRESENCE_MODE", "redis"),
        ("WS_RELAY_POLL_INTERVAL", "0"),
        ("WS_RELAY_BATCH", "0"),
    ],
)
def test_bad_variables_name_the_variable_and_value(
    monkeypatch: pytest.MonkeyPatch, var: str, raw: str
) -> None:
    """A bad value raises ConfigurationError (a ValueError) naming the variable and value."""
    monkeypatch.setenv(var, raw)
    with pytest.raises(ConfigurationError) as info:
        get_default_config()
    err = info.value
    assert isinstance(err, ValueError)
    assert isinstance(err, WebSocketError)
    assert err.name == var
    assert err.value == raw
    assert var in str(err)
    assert repr(raw) in str(err)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("open_timeout", -1.0),
        ("open_timeout", "10"),
        ("open_timeout", True),
        ("ping_interval", 0),
        ("max_message_size", 0),
        ("max_message_size", 1.5),
        ("max_queue_size", -3),
        ("reconnect_enabled", "yes"),
        ("reconnect_max_attempts", -1),
        ("reconnect_jitter", 2.0),
    ],
)
def test_bad_keywords_name_the_field(field: str, value: object) -> None:
    """Constructing with a bad value names the keyword and the value."""
    with pytest.raises(ConfigurationError) as info:
        WebSocketConfig(**{field: value})  # type: ignore[arg-type]
    assert info.value.name == field
    assert info.value.value == value


def test_backoff_max_below_base_is_rejected() -> None:
    """A cap below the first delay is a mistake and is reported."""
    with pytest.raises(ConfigurationError, match="reconnect_backoff_max"):
        WebSocketConfig(reconnect_backoff_base=5.0, reconnect_backoff_max=1.0)


def test_unknown_override_is_a_type_error() -> None:
    """A misspelt keyword is not silently ignored."""
    with pytest.raises(TypeError, match="open_timout"):
        get_default_config(open_timout=3)


def test_config_is_frozen_and_replace_validates() -> None:
    """Configs are immutable; replace() returns a validated copy."""
    config = WebSocketConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.open_timeout = 1.0  # type: ignore[misc]
    assert config.replace(open_timeout=1.0).open_timeout == 1.0
    with pytest.raises(ConfigurationError):
        config.replace(open_timeout=-1.0)


def test_integers_are_accepted_for_float_fields() -> None:
    """open_timeout=30 (an int) is as good as 30.0."""
    assert WebSocketConfig(open_timeout=30).open_timeout == 30


def test_a_presence_redis_url_that_is_not_one_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WS_PRESENCE_REDIS_URL", "localhost:6379")
    with pytest.raises(ConfigurationError, match="WS_PRESENCE_REDIS_URL"):
        get_default_config()
    monkeypatch.setenv("WS_PRESENCE_REDIS_URL", "redis://127.0.0.1:6390/2")
    assert get_default_config().presence_redis_url == "redis://127.0.0.1:6390/2"


def test_redis_urls_are_checked_in_one_place_for_every_way_in() -> None:
    """A URL that is not Redis is refused by the same check from the environment,
    from the constructor, and from ConnectionManager(redis_url=...)."""
    from svc_infra.websocket import ConnectionManager

    with pytest.raises(ConfigurationError, match="WS_REDIS_URL"):
        WebSocketConfig.from_env({"WS_REDIS_URL": "http://cache:6379"})
    with pytest.raises(ConfigurationError, match="presence_redis_url"):
        WebSocketConfig(presence_redis_url="cache:6379")
    with pytest.raises(ConfigurationError, match="redis_url"):
        ConnectionManager(redis_url="http://cache:6379")
    with pytest.raises(ConfigurationError, match="WS_REDIS_SENTINELS"):
        WebSocketConfig.from_env({"WS_REDIS_SENTINELS": "a:1,b"})
    assert WebSocketConfig(redis_sentinels="a:1, b:2").redis_sentinels == "a:1, b:2"
