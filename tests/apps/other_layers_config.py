"""The non-Redis Channels layers of the other-layer tests, and their configuration.

``OTHER_LAYER`` names the layer: ``postgres`` (channels_postgres) or ``rabbitmq``
(channels_rabbitmq). Both FastAPI (``other_layers.py``) and Django
(``cluster_django.py`` with ``OTHER_LAYER`` set) processes read their settings from here:

- ``OTHER_LAYER_PG_NAME``: the PostgreSQL database (127.0.0.1:5432, user
  ``postgres``, trust auth); the test creates it, migrates it (``python -m
  tests.apps.other_layers_config migrate``) and drops it.
- ``OTHER_LAYER_AMQP_URL``: the RabbitMQ broker (default guest/guest on
  127.0.0.1:5672, vhost ``/``).

channels_postgres keeps its groups and messages in two Django models (its
migrations create the tables, a NOTIFY trigger and its function) and removes
group members with the Django ORM on the database alias ``channels_postgres``: so
even a FastAPI process needs Django configured (that app installed, that alias),
which :func:`configure_django` does.
"""

from __future__ import annotations

import os
import sys
from typing import Any

LAYER = os.environ.get("OTHER_LAYER", "")
AMQP_URL = os.environ.get("OTHER_LAYER_AMQP_URL", "amqp://guest:guest@127.0.0.1")

# channels_rabbitmq's defaults are 100 and 100: each process has ONE queue for all
# its channels, and past remote_capacity RabbitMQ rejects the publish (ChannelFull on
# send, a silent drop with a logged warning on group_send). Room for bursts here.
RABBITMQ_CONFIG: dict[str, Any] = {
    "host": AMQP_URL,  # no trailing "/": carehare warns that it means vhost ""
    "local_capacity": 1000,
    "remote_capacity": 1000,
    "expiry": 60,  # seconds a message may wait in RabbitMQ (x-message-ttl)
}


def postgres_database() -> dict[str, Any]:
    """The Django DATABASES entry of the test database (also the layer's CONFIG)."""
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["OTHER_LAYER_PG_NAME"],
        "USER": os.environ.get("OTHER_LAYER_PG_USER", "postgres"),
        "PASSWORD": os.environ.get("OTHER_LAYER_PG_PASSWORD", ""),
        "HOST": os.environ.get("OTHER_LAYER_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("OTHER_LAYER_PG_PORT", "5432"),
    }


def postgres_config() -> dict[str, Any]:
    """PostgresChannelLayer's arguments: the database entry, plus its own options."""
    # The layer hands this dict to Django's DatabaseWrapper as it is, without the
    # defaults Django fills into DATABASES entries: without TIME_ZONE it raises
    # KeyError when it first connects. expiry: message lifetime (s); group_expiry 0:
    # group members never expire.
    return {**postgres_database(), "TIME_ZONE": None, "expiry": 60, "group_expiry": 0}


def channel_layers() -> dict[str, Any]:
    """Django's CHANNEL_LAYERS for ``OTHER_LAYER``."""
    if LAYER == "postgres":
        backend, config = "channels_postgres.core.PostgresChannelLayer", postgres_config()
    elif LAYER == "rabbitmq":
        backend, config = "channels_rabbitmq.core.RabbitmqChannelLayer", RABBITMQ_CONFIG
    else:
        raise ValueError(f"OTHER_LAYER must be postgres or rabbitmq, not {LAYER!r}")
    return {"default": {"BACKEND": backend, "CONFIG": config}}


def installed_apps() -> list[str]:
    return ["channels_postgres"] if LAYER == "postgres" else []


def databases() -> dict[str, Any]:
    """``default`` and ``channels_postgres`` (the alias the layer's ORM calls use)."""
    if LAYER != "postgres":
        return {}
    database = postgres_database()
    return {"default": database, "channels_postgres": dict(database)}


def configure_django() -> None:
    """Minimal Django settings for channels_postgres in a process that is not a
    Django project (the FastAPI app); nothing when Django is configured already."""
    import django
    from django.conf import settings

    if settings.configured:
        return
    settings.configure(
        INSTALLED_APPS=installed_apps(),
        DATABASES=databases(),
        USE_TZ=True,
    )
    django.setup()


def make_layer() -> Any:
    """The layer named by ``OTHER_LAYER``: a factory for ``ConnectionManager(layer=...)``,
    called on the running loop (channels_rabbitmq refuses to exist without one)."""
    if LAYER == "rabbitmq":
        from channels_rabbitmq.core import RabbitmqChannelLayer

        return RabbitmqChannelLayer(**RABBITMQ_CONFIG)
    if LAYER == "postgres":
        configure_django()  # channels_postgres.core imports its Django models
        from channels_postgres.core import PostgresChannelLayer

        return PostgresChannelLayer(**postgres_config())
    raise ValueError(f"OTHER_LAYER must be postgres or rabbitmq, not {LAYER!r}")


def migrate() -> None:
    """Create channels_postgres' tables, trigger and function in the test database."""
    from django.core.management import call_command

    configure_django()
    call_command("migrate", "channels_postgres", verbosity=0, interactive=False)


if __name__ == "__main__":
    if sys.argv[1:] != ["migrate"]:
        raise SystemExit("usage: python -m tests.apps.other_layers_config migrate")
    migrate()
