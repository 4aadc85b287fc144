"""Graceful shutdown: SIGTERM in the middle of a burst of creates. Every request is
either answered in full or refused before it is read; the process exits 0 with its
leases handed back; after a restart every acknowledged volume is there and formatted,
and no unacknowledged one is."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

import httpx

from tests.conftest import LiveServer
from tests.ops.conftest import Ops, hold_a_request_open

CLIENTS = 12
REFUSED = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class Burst:
    def __init__(self, live: LiveServer) -> None:
        self.live = live
        self.acknowledged: dict[str, str] = {}
        self.refused = 0
        self.bad: list[str] = []
        self.lock = threading.Lock()

    def client(self, index: int) -> None:
        with self.live.client() as api:
            n = 0
            while True:
                n += 1
                name = f"burst-{index}-{n}"
                try:
                    response = api.post(
                        "/v1/volumes", json={"name": name, "size_mb": 1, "quota_policy": "dynamic"}
                    )
                except REFUSED:
                    with self.lock:
                        self.refused += 1
                    return
                except Exception as exc:
                    with self.lock:
                        self.bad.append(f"{name}: {exc!r}")
                    return
                item = response.json()["data"]["volumes"][0] if response.status_code == 200 else {}
                with self.lock:
                    if item.get("status") == "success":
                        self.acknowledged[name] = item["uuid"]
                    else:
                        self.bad.append(f"{name}: {response.status_code} {response.text}")
                        return


def rows(live: LiveServer, sql: str) -> list[tuple[object, ...]]:
    return live.sql(sql)


def test_sigterm_during_a_burst_loses_nothing(ops_server: Callable[..., Ops]) -> None:
    live = ops_server(VOLUMED_SHUTDOWN_TIMEOUT_S=15).live
    burst = Burst(live)
    threads = [threading.Thread(target=burst.client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 15
    while len(burst.acknowledged) < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert live.process is not None
    acknowledged_before = len(burst.acknowledged)
    live.process.send_signal(signal.SIGTERM)
    code = live.process.wait(timeout=30)
    for thread in threads:
        thread.join(timeout=30)

    assert code == 0, live.log()
    assert burst.bad == []
    assert acknowledged_before >= 20, "the burst was under way when the signal came"
    assert burst.refused == CLIENTS
    assert '"volumed stopped"' in live.log()
    assert "Traceback" not in live.log()
    # The worker handed its leases back.
    assert rows(live, "SELECT uuid FROM volumes WHERE lease_owner IS NOT NULL") == []

    live.restart()
    with live.client() as api:
        deadline = time.monotonic() + 60
        while True:
            volumes = api.get("/v1/volumes").json()["data"]["volumes"]
            states = {v["name"]: v["state"] for v in volumes}
            if all(s == "available" for s in states.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    # Exactly the acknowledged creates exist, and every one of them was formatted.
    assert set(states) == set(burst.acknowledged)
    assert set(states.values()) == {"available"}


def test_shutdown_gives_up_on_a_stuck_request_after_the_timeout(
    ops_server: Callable[..., Ops],
) -> None:
    live = ops_server(VOLUMED_SHUTDOWN_TIMEOUT_S=1).live
    stuck = hold_a_request_open(live)
    assert live.process is not None
    started = time.monotonic()
    live.process.send_signal(signal.SIGTERM)
    code = live.process.wait(timeout=20)
    elapsed = time.monotonic() - started
    stuck.close()
    assert code == 0, live.log()
    assert 0.9 < elapsed < 6, elapsed
    assert "did not finish within 1.0 s" in live.log()
