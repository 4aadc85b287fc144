"""Authentication under attack: failed attempts from one address are refused with 429 once
their budget is spent, good tokens keep working, and no token reaches the log."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import LiveServer
from tests.hardening.conftest import AUTH_BURST

WRONG = "vd_" + "x" * 43


def attempt(live: LiveServer, token: str) -> httpx.Response:
    return httpx.get(live.url + "/v1/volumes", headers={"Authorization": f"Bearer {token}"})


def test_repeated_failures_get_429_and_good_tokens_keep_working(
    fresh_server: Callable[..., LiveServer],
) -> None:
    live = fresh_server(
        VOLUMED_AUTH_FAILURES_BURST=AUTH_BURST,
        VOLUMED_AUTH_FAILURES_PER_S=0.25,  # slow refill: a busy machine does not refill it
        VOLUMED_METRICS_PORT=0,
    )
    assert attempt(live, live.token).status_code == 200  # known good: cached
    answers = [attempt(live, f"{WRONG}{n}") for n in range(AUTH_BURST + 3)]
    assert [a.status_code for a in answers[:AUTH_BURST]] == [401] * AUTH_BURST
    for throttled in answers[AUTH_BURST:]:
        assert throttled.status_code == 429, throttled.text
        assert int(throttled.headers["retry-after"]) >= 1
        body = throttled.json()
        assert body["status"] == "error" and "Too many failed authentication" in body["message"]
        assert body["errors"] == [{"status": 429, "message": body["message"]}]
    # A missing header is still a plain 401: no guess was made.
    assert httpx.get(live.url + "/v1/volumes").status_code == 401
    # The token this client has used successfully keeps working while it is limited.
    assert attempt(live, live.token).status_code == 200
    # Another tenant's good token (never seen) waits like any guess from this address...
    other = live.add_user("other")
    assert attempt(live, other).status_code == 429
    # ... until the budget refills (one attempt per 4 s here).
    time.sleep(4.2)
    assert attempt(live, other).status_code == 200
    assert attempt(live, other).status_code == 200
    # Public routes are never limited.
    assert httpx.get(live.url + "/healthz").status_code == 200
    # No token, good or bad, and no Authorization header value reaches the log.
    log = live.log()
    for token in (live.token, other, WRONG):
        assert token not in log
        assert hashlib.sha256(token.encode()).hexdigest() not in log
    assert "Bearer" not in log and "authorization" not in log.lower()


# Reads the SQLite file and its WAL byte for byte (issue 6: SQLite pass only).
@pytest.mark.sqlite_only
def test_tokens_are_stored_as_digests_only(fresh_server: Callable[..., LiveServer]) -> None:
    live = fresh_server(VOLUMED_METRICS_PORT=0)
    database = (live.data_dir / "volumed.db").read_bytes()
    assert live.token.encode() not in database
    wal = live.data_dir / "volumed.db-wal"
    assert not wal.exists() or live.token.encode() not in wal.read_bytes()
    assert hashlib.sha256(live.token.encode()).hexdigest().encode() in database + (
        wal.read_bytes() if wal.exists() else b""
    )
