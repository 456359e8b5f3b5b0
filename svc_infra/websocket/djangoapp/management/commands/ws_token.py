"""``manage.py ws_token <user> [--scopes a b] [--ttl 3600]``: print a JWT for trying things out."""

from __future__ import annotations

import time
from typing import Any

import jwt
from django.core.management.base import BaseCommand, CommandError

from svc_infra.websocket.auth.core import JWTSettings


class Command(BaseCommand):
    help = "Print a signed JWT (HS*) for a user, with the configured AUTH_JWT secret."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("user")
        parser.add_argument("--scopes", nargs="*", default=[], help="scopes to grant")
        parser.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
        parser.add_argument("--email", default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        settings = JWTSettings.load()
        algorithm = next((a for a in settings.algorithms if a.startswith("HS")), None)
        if settings.secret is None or algorithm is None:
            raise CommandError(
                "set AUTH_JWT__SECRET (or settings.AUTH_JWT['SECRET']) with an HS* algorithm"
            )
        claims: dict[str, Any] = {"sub": options["user"], "exp": int(time.time()) + options["ttl"]}
        if options["scopes"]:
            claims["scope"] = " ".join(options["scopes"])
        if options["email"]:
            claims["email"] = options["email"]
        if settings.audience:
            claims["aud"] = settings.audience
        if settings.issuer:
            claims["iss"] = settings.issuer
        self.stdout.write(jwt.encode(claims, settings.secret, algorithm=algorithm))
