"""Signing test tokens."""

from __future__ import annotations

import base64
import json
import time
from functools import cache
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

SECRET = "test-secret-with-enough-entropy-0123456789"
OLD_SECRET = "the-previous-secret-still-valid-9876543210"


@cache
def rsa_keys() -> tuple[str, str]:
    """A private and a public key (PEM), generated once per run."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def token(
    sub: str | None = "alice",
    *,
    key: str = SECRET,
    algorithm: str = "HS256",
    exp: float | None = 300,
    **claims: Any,
) -> str:
    """A signed JWT; ``exp`` is seconds from now (None: no exp claim)."""
    payload: dict[str, Any] = dict(claims)
    if sub is not None:
        payload["sub"] = sub
    if exp is not None:
        payload["exp"] = int(time.time() + exp)
    return jwt.encode(payload, key, algorithm=algorithm)


def unsigned_token(sub: str = "alice") -> str:
    """A token with ``alg: none``, as an attacker would send it."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({'sub': sub, 'exp': 2**31})}."


def hs256_signed_with_public_key(sub: str = "alice") -> str:
    """The algorithm-confusion attack: HS256 with the server's RSA public key as secret."""
    import hashlib
    import hmac

    header = {"alg": "HS256", "typ": "JWT"}

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signing_input = f"{part(header)}.{part({'sub': sub, 'exp': 2**31})}"
    signature = hmac.new(rsa_keys()[1].encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
