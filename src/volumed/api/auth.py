"""Bearer-token authentication. Tokens are stored as SHA-256 digests only.

Tokens are 256-bit random strings, so a fast digest is enough (no password hashing
needed), and looking the digest up in the store compares no secret byte by byte: what is
compared (in the store's index and in the cache) is a SHA-256 digest, and learning a prefix
of a digest by timing tells nothing about the token it came from.

Failed attempts are limited per client address (:class:`FailureLimiter`): once an address
has spent its budget of wrong tokens, a wrong token from it gets HTTP 429 with
``Retry-After`` instead of 401. A valid token is never refused by the limit, whatever its
address did: many clients share one address (NAT, a proxy), and one of them sending bad
tokens must not lock the others out. So every token is looked up (one indexed read by
digest, what any request with a token not in the cache costs); the limit tells a guesser to
back off, and guessing a 256-bit token is hopeless anyway.
"""

from __future__ import annotations

import hashlib
import math
import time

from volumed.api.http import RequestError
from volumed.domain.model import User
from volumed.domain.store import UserStore

_CACHE_TTL_S = 2.0
_SPACE = frozenset(b" \t\n\r\x0b\x0c")
"""What ``bytes.strip()`` removes."""
_sha256 = hashlib.sha256
_CACHE_MAX = 10_000


class FailureLimiter:
    """A token bucket of failed authentications per client address: ``burst`` failures at
    once, then ``per_s`` more per second. The table is capped at ``max_clients`` addresses;
    when full, addresses whose bucket has refilled are forgotten first."""

    def __init__(self, burst: int, per_s: float, *, max_clients: int = 10_000) -> None:
        self._burst = float(burst)
        self._per_s = per_s
        self._max = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}

    def _level(self, client: str, now: float) -> float:
        found = self._buckets.get(client)
        if found is None:
            return self._burst
        tokens, stamp = found
        return min(self._burst, tokens + (now - stamp) * self._per_s)

    def retry_after(self, client: str | None) -> int:
        """0 if ``client`` may try a token now, else the seconds until it may."""
        if client is None or self._burst <= 0 or client not in self._buckets:
            return 0
        level = self._level(client, time.monotonic())
        return 0 if level >= 1 else max(1, math.ceil((1 - level) / self._per_s))

    def failed(self, client: str | None) -> None:
        if client is None or self._burst <= 0:
            return
        now = time.monotonic()
        level = self._level(client, now) - 1
        if client not in self._buckets and len(self._buckets) >= self._max:
            self._forget_refilled(now)
        self._buckets[client] = (level, now)

    def _forget_refilled(self, now: float) -> None:
        for client in [c for c in self._buckets if self._level(c, now) >= self._burst]:
            del self._buckets[client]
        if len(self._buckets) >= self._max:
            self._buckets.clear()  # a flood of addresses: forget rather than grow


class Authenticator:
    """Resolves ``Authorization: Bearer …`` to a user, with a short cache so that a
    revoked token stops working within ``_CACHE_TTL_S`` seconds."""

    def __init__(self, store: UserStore, limiter: FailureLimiter | None = None) -> None:
        self._store = store
        self._cache: dict[str, tuple[User, float]] = {}
        self._limiter = limiter or FailureLimiter(0, 1.0)

    def cached(self, header: bytes | None) -> User | None:
        """The user of a well-formed ``Bearer`` header whose token was accepted less than
        ``_CACHE_TTL_S`` ago, without a store call; None for anything else (then
        :meth:`authenticate` decides). The cache is keyed by the token's digest, as the
        store is: no token is kept."""
        if header is None or header[:7] != b"Bearer " or len(header) < 8:
            return None
        token = header[7:]
        if token[0] in _SPACE or token[-1] in _SPACE:
            return None  # authenticate strips it
        cached = self._cache.get(_sha256(token).hexdigest())
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        return None

    async def authenticate(self, header: bytes | None, client: str | None = None) -> User:
        """The user of the bearer token in ``header``; ``client`` is the caller's address,
        for limiting failed attempts."""
        if not header:
            raise _unauthorized(
                "Missing Authorization header: send 'Authorization: Bearer <token>'"
            )
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            self._limiter.failed(client)
            raise _unauthorized("Authorization header must be 'Bearer <token>'")
        digest = hashlib.sha256(token.strip()).hexdigest()
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        user = await self._store.user_for_token(digest)
        if user is None:
            self._cache.pop(digest, None)
            wait_s = self._limiter.retry_after(client)
            if wait_s:
                raise RequestError(
                    429,
                    f"Too many failed authentication attempts; retry in {wait_s} s",
                    [(b"retry-after", str(wait_s).encode())],
                )
            self._limiter.failed(client)
            raise _unauthorized("Invalid token")
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[digest] = (user, now + _CACHE_TTL_S)
        return user


def _unauthorized(message: str) -> RequestError:
    return RequestError(401, message, [(b"www-authenticate", b'Bearer realm="volumed"')])
