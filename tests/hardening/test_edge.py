"""The network edge under attack, without a token: idle and crowding connections do not
stall the API for others, and a second server cannot share a port that is in use."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import VOLUMED, LiveServer, free_port, make_server

IDLE_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 100
PER_ADDRESS = 20
ATTACKER = "127.0.0.2"  # all of 127/8 is loopback: a second client address on one host


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = make_server(
        tmp_path_factory.mktemp("edge"),
        VOLUMED_IDLE_TIMEOUT_S=IDLE_TIMEOUT_S,
        VOLUMED_MAX_CONNECTIONS=MAX_CONNECTIONS,
        VOLUMED_MAX_CONNECTIONS_PER_ADDRESS=PER_ADDRESS,
        VOLUMED_BODY_TIMEOUT_S=3,
        VOLUMED_METRICS_PORT=free_port(),
    )
    yield live
    live.stop()


def connect(live: LiveServer, source: str = ATTACKER, first: bytes = b"") -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", live.port))
    if first:
        sock.sendall(first)
    return sock


def closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """True once the server has ended the connection (EOF or reset) within ``within_s``."""
    sock.settimeout(within_s)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def timed_get(live: LiveServer) -> float:
    started = time.monotonic()
    with live.client() as api:
        assert api.get("/v1/volumes", timeout=5).status_code == 200
    return time.monotonic() - started


def test_idle_connections_from_one_address_do_not_stall_the_others(guarded: LiveServer) -> None:
    # More idle connections than the server serves at once: before the guard, every
    # other client waited for good (the report: 130 against 128).
    held = [connect(guarded) for _ in range(MAX_CONNECTIONS + 30)]
    try:
        assert max(timed_get(guarded) for _ in range(5)) < 2
        # The address keeps at most its share...
        time.sleep(0.5)
        still_open = [s for s in held if not closed_by_server(s, 0.01)]
        assert len(still_open) <= PER_ADDRESS
        # ... and those go too once idle for idle_timeout_s (no byte ever sent).
        for sock in still_open:
            assert closed_by_server(sock, IDLE_TIMEOUT_S + 1.5)
    finally:
        for sock in held:
            sock.close()
    scraped = httpx.get(f"http://127.0.0.1:{guarded.env['VOLUMED_METRICS_PORT']}/metrics").text
    closed = {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in scraped.splitlines()
        if line.startswith("volumed_connections_closed_total{")
    }
    # Every attacking connection was closed by the guard, for one reason or the other.
    assert closed["over_limit"] >= 1 and closed["idle"] >= 1, closed
    assert closed["over_limit"] + closed["idle"] >= MAX_CONNECTIONS + 30, closed
    assert "volumed_connections " in scraped


def test_slow_headers_are_capped_per_address(guarded: LiveServer) -> None:
    held = [connect(guarded, first=b"GET /v1/volumes HTTP/1.1\r\n") for _ in range(60)]
    try:
        time.sleep(0.5)
        for sock in held:  # a byte now and then keeps them from being idle
            sock.sendall(b"X-Slow: 1\r\n")
        assert timed_get(guarded) < 2
        still_open = [s for s in held if not closed_by_server(s, 0.01)]
        assert len(still_open) <= PER_ADDRESS
    finally:
        for sock in held:
            sock.close()


def test_an_idle_keep_alive_connection_is_closed(guarded: LiveServer) -> None:
    with connect(guarded, source="127.0.0.1") as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: volumed\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert closed_by_server(sock, IDLE_TIMEOUT_S + 1.5)
        assert time.monotonic() - started >= IDLE_TIMEOUT_S * 0.9


def test_a_request_in_flight_is_never_closed_as_idle(guarded: LiveServer) -> None:
    # Headers complete, body never sent: quiet for longer than idle_timeout_s, but the
    # request is in flight; it gets its 408 envelope after body_timeout_s (3 s).
    head = (
        b"POST /v1/volumes HTTP/1.1\r\nHost: volumed\r\nContent-Type: application/json\r\n"
        b"Content-Length: 50\r\nAuthorization: Bearer " + guarded.token.encode() + b"\r\n\r\n"
    )
    with connect(guarded, source="127.0.0.1", first=head) as sock:
        sock.settimeout(10)
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408"), answer


def refused_start(live: LiveServer, tmp: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``volumed serve`` on another data directory with ``env``: it must exit at once."""
    run_env = {**os.environ, "VOLUMED_DATA_DIR": tmp, **env}
    return subprocess.run(
        [*VOLUMED, "serve"], env=run_env, capture_output=True, text=True, timeout=30
    )


def test_a_second_server_on_a_used_port_refuses_to_start(
    guarded: LiveServer, tmp_path: os.PathLike[str]
) -> None:
    done = refused_start(
        guarded, str(tmp_path), VOLUMED_PORT=str(guarded.port), VOLUMED_METRICS_PORT="0"
    )
    assert done.returncode != 0
    assert f"cannot listen on 127.0.0.1:{guarded.port}" in done.stderr
    assert "already in use" in done.stderr
    # Every request still reaches the one server (a shared port took half of them).
    for _ in range(20):
        assert timed_get(guarded) < 2


def test_a_busy_metrics_port_refuses_to_start(
    guarded: LiveServer, tmp_path: os.PathLike[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        done = refused_start(
            guarded, str(tmp_path), VOLUMED_PORT=str(free_port()), VOLUMED_METRICS_PORT=str(busy)
        )
    assert done.returncode != 0
    assert f"cannot listen on 127.0.0.1:{busy}" in done.stderr
    assert "VOLUMED_METRICS_PORT" in done.stderr


def test_connections_count_per_ipv4_address_or_ipv6_64() -> None:
    from volumed.edge.tcp import address_key

    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::9")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")


def test_connections_are_fitted_to_the_open_files_limit() -> None:
    # A child with a hard limit of 600 descriptors: the soft limit is raised to it, and
    # 600 minus the spare descriptors are served, not the 4096 asked for.
    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (300, 600))\n"
        "from volumed.edge.listener import fit_open_files\n"
        "print(fit_open_files(4096), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["344", "600"], done.stderr


def test_guard_settings_are_checked() -> None:
    from volumed.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="idle_timeout_s"):
        Settings(idle_timeout_s=0).validate()
    with pytest.raises(SettingsError, match="max_connections must be at least"):
        Settings(max_connections=10, max_connections_per_address=20).validate()
