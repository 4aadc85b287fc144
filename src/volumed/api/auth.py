"""Bearer-token authentication. Tokens are stored as SHA-256 digests only.

Tokens are 256-bit random strings, so a fast digest is enough (no password hashing
needed), and looking the digest up in the store compares no secret byte by byte.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from volumed.api.http import RequestError
from volumed.domain.model import User
from volumed.domain.ports import Store

TOKEN_PREFIX = "vd_"  # noqa: S105 - a public marker, not a secret
_CACHE_TTL_S = 2.0
_CACHE_MAX = 10_000


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Authenticator:
    """Resolves ``Authorization: Bearer …`` to a user, with a short cache so that a
    revoked token stops working within ``_CACHE_TTL_S`` seconds."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cache: dict[str, tuple[User, float]] = {}

    async def authenticate(self, header: bytes | None) -> User:
        if not header:
            raise _unauthorized(
                "Missing Authorization header: send 'Authorization: Bearer <token>'"
            )
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            raise _unauthorized("Authorization header must be 'Bearer <token>'")
        digest = hashlib.sha256(token.strip()).hexdigest()
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        user = await self._store.user_for_token(digest)
        if user is None:
            self._cache.pop(digest, None)
            raise _unauthorized("Invalid token")
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[digest] = (user, now + _CACHE_TTL_S)
        return user


def _unauthorized(message: str) -> RequestError:
    return RequestError(401, message, [(b"www-authenticate", b'Bearer realm="volumed"')])
