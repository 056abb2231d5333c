"""API keys: resolved to SHA-256 digests where the app is built, checked in constant time in the ingress.

Only digests travel to the ingress replicas (they are pickled into the Serve app), so no replica, log or
Ray object holds a key in clear.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from configs.security_schema import ApiKeyConfig, read_key_secret

BEARER = "bearer "


@dataclass(frozen=True, slots=True)
class ResolvedKey:
    name: str
    sha256: bytes
    requests_per_s: float | None
    burst: int | None
    tokens_per_min: int | None
    max_concurrent: int | None


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def resolve_key(config: ApiKeyConfig) -> ResolvedKey:
    secret = read_key_secret(config)
    sha256 = bytes.fromhex(config.key_sha256 or "") if secret is None else digest(secret)
    return ResolvedKey(config.name, sha256, config.requests_per_s, config.burst, config.tokens_per_min,
                       config.max_concurrent)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if authorization is None or not authorization[:len(BEARER)].lower() == BEARER:
        return None
    token = authorization[len(BEARER):].strip()
    return token or None


class KeyVerifier:
    def __init__(self, keys: list[ResolvedKey]) -> None:
        self._keys = list(keys)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def match(self, token: str) -> ResolvedKey | None:
        """The key whose digest equals the token's. Every digest is compared, with `hmac.compare_digest`,
        so the time taken says nothing about which key, or how much of one, matched."""
        presented = digest(token)
        found = None
        for key in self._keys:
            if hmac.compare_digest(presented, key.sha256):
                found = key
        return found
