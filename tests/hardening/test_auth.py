"""Authentication under attack: failed attempts from one address are refused with 429 once
their budget is spent, valid tokens from that address are never refused, and no token
reaches the log."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import LiveServer
from tests.hardening.conftest import AUTH_BURST

WRONG = "vd_" + "x" * 43


def attempt(live: LiveServer, token: str) -> httpx.Response:
    return httpx.get(live.url + "/v1/volumes", headers={"Authorization": f"Bearer {token}"})


def assert_still_limited(live: LiveServer) -> None:
    """The address is still limited: a burst of wrong tokens ends in 429. (One wrong token
    alone may find a token refilled while a slow machine answered the requests before.)"""
    guesses = [attempt(live, f"{WRONG}-{n}").status_code for n in range(AUTH_BURST + 1)]
    assert guesses[-1] == 429, guesses


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
    # Another tenant's good token, never seen before, is not refused either: the limit
    # never stands between a valid token and its tenant (issue 11).
    other = live.add_user("other")
    assert attempt(live, other).status_code == 200
    # Wrong tokens from the address are still refused with 429.
    assert_still_limited(live)
    # Public routes are never limited.
    assert httpx.get(live.url + "/healthz").status_code == 200
    # No token, good or bad, and no Authorization header value reaches the log.
    log = live.log()
    for token in (live.token, other, WRONG):
        assert token not in log
        assert hashlib.sha256(token.encode()).hexdigest() not in log
    assert "Bearer" not in log and "authorization" not in log.lower()


def test_a_valid_client_behind_a_guessing_neighbour_is_never_throttled(
    fresh_server: Callable[..., LiveServer],
) -> None:
    # Two clients behind one address (NAT): one sends bad tokens without pause, the other
    # a valid token it has never used before (so no cache helps). The report: 10/10 429s.
    live = fresh_server(
        VOLUMED_AUTH_FAILURES_BURST=AUTH_BURST,
        VOLUMED_AUTH_FAILURES_PER_S=0.25,
        VOLUMED_METRICS_PORT=0,
    )
    valid = [live.add_user(f"neighbour{n}") for n in range(10)]
    answers = []
    for n, token in enumerate(valid):
        for guess in range(AUTH_BURST):
            attempt(live, f"{WRONG}{n}-{guess}")
        answers.append(attempt(live, token).status_code)
    assert answers == [200] * 10
    assert_still_limited(live)


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
