"""Channels group names for users, rooms and everyone.

Channels group names must be ASCII letters, digits, ``-``, ``_`` or ``.``, and
shorter than 100 characters. User ids and room names are free text, so this
module maps them, in one place, to valid names that never collide:

==================  ===================================  ==========================
What                Name                                 Example (prefix ``ws.``)
==================  ===================================  ==========================
everyone            ``<prefix>all``                      ``ws.all``
user, plain id      ``<prefix>u.<id>``                   ``ws.u.alice``
user, other ids     ``<prefix>uh.<sha256 hex, 40>``      ``ws.uh.3f9a...``
room, plain name    ``<prefix>r.<name>``                 ``ws.r.general``
room, other names   ``<prefix>rh.<sha256 hex, 40>``      ``ws.rh.b1c2...``
==================  ===================================  ==========================

A *plain* id uses only the allowed characters and keeps the whole name under the
limit; anything else is hashed. Plain and hashed names differ in their kind
marker (``u.`` against ``uh.``), so no plain id can produce a hashed name.
"""

from __future__ import annotations

import hashlib
import re

from .exceptions import ConfigurationError

__all__ = [
    "DEFAULT_PREFIX",
    "check_utf8",
    "user_key",
    "MAX_GROUP_NAME_LENGTH",
    "broadcast_group",
    "normalize_prefix",
    "room_group",
    "user_group",
]

DEFAULT_PREFIX = "ws."
# Channels rejects names of 100 characters or more.
MAX_GROUP_NAME_LENGTH = 99
_MAX_PREFIX_LENGTH = 40
_VALID = re.compile(r"^[A-Za-z0-9._-]+$")
_INVALID_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def normalize_prefix(prefix: str) -> str:
    """Return ``prefix`` with characters Channels refuses replaced by ``.``.

    ``"ws:"`` (the spirit of the spec's Redis example) becomes ``"ws."``.

    Raises:
        ConfigurationError: If the prefix is empty or longer than 40 characters.
    """
    if not prefix or len(prefix) > _MAX_PREFIX_LENGTH:
        raise ConfigurationError("channel_prefix", prefix, f"1 to {_MAX_PREFIX_LENGTH} characters")
    return _INVALID_CHARS.sub(".", prefix)


def _name(prefix: str, kind: str, key: str) -> str:
    plain = f"{prefix}{kind}.{key}"
    if _VALID.match(key) and len(plain) <= MAX_GROUP_NAME_LENGTH:
        return plain
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"{prefix}{kind}h.{digest}"


def user_group(user_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The group every process holding a connection of ``user_id`` belongs to."""
    return _name(prefix, "u", user_id)


def room_group(room: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The group every process holding a connection of a member of ``room`` belongs to."""
    return _name(prefix, "r", room)


def broadcast_group(prefix: str = DEFAULT_PREFIX) -> str:
    """The group every process with a manager on this prefix belongs to."""
    return f"{prefix}all"


def user_key(user_id: object) -> str:
    """The one spelling of a user id: ``str``, or an ``int`` converted.

    Raises:
        TypeError: For any other type.
    """
    # FastAPI path parameters and database ids are often ints: accept them, and
    # use one spelling everywhere (presence, group names, hooks).
    if isinstance(user_id, str):
        return user_id
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        return str(user_id)
    raise TypeError(f"user_id must be str or int, not {type(user_id).__name__}")


def check_utf8(what: str, value: str) -> None:
    """Redis and msgpack carry UTF-8 only: refuse a lone surrogate at the call.

    Raises:
        ValueError: If ``value`` cannot be encoded as UTF-8.
    """
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError(f"{what} {value!r} is not valid UTF-8 text (Redis needs it)") from None
