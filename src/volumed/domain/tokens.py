"""API tokens: how they are minted and the digest under which they are stored.

Tokens are 256-bit random strings, so a fast digest is enough (no password hashing
needed). One module for the server (which checks them) and the admin CLI (which mints
them), so both agree on the form by construction.
"""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "vd_"  # noqa: S105 - a public marker, not a secret


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
