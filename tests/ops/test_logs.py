"""Structured logs: every line is a JSON object (stderr is not a terminal); one access
line per request with the id the response carried; job lifecycle lines; no secrets."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import VOLUMED, free_port, wait_for_state
from tests.ops.conftest import Ops, hold_a_request_open

BAD_TOKEN = "not-a-token-but-long-enough-0123456789"


def access_line(records: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    found = [r for r in records if r.get("request_id") == request_id]
    assert len(found) == 1, (request_id, found)
    return found[0]


def wait_for_access_lines(ops: Ops, request_ids: list[str]) -> list[dict[str, Any]]:
    """Access lines are written in batches, a few tens of milliseconds apart."""
    deadline = time.monotonic() + 5
    while True:
        records = ops.records()
        if set(request_ids) <= {r.get("request_id") for r in records}:
            return records
        assert time.monotonic() < deadline, records
        time.sleep(0.05)


def test_every_line_is_json_with_one_access_line_per_request(
    ops_server: Callable[..., Ops],
) -> None:
    ops = ops_server()
    live = ops.live
    with live.client() as api:
        made = api.post("/v1/volumes", json={"name": "logged", "size_mb": 4})
        uuid = made.json()["data"]["volumes"][0]["uuid"]
        wait_for_state(api, uuid)
        missing = api.get("/v1/volumes/00000000-0000-4000-8000-000000000000")
        taken = api.post("/v1/volumes", json=[{"name": "logged", "size_mb": 4}, {"size_mb": 4}])
    with live.client(BAD_TOKEN) as intruder:
        refused = intruder.get("/v1/volumes")
    probe = httpx.get(live.url + "/readyz")
    anonymous = httpx.get(live.url + "/v1/volumes", headers={"x-api-key": live.token})
    answers = [made, missing, taken, refused, anonymous]
    ids = [r.headers["x-request-id"] for r in answers]
    assert len(set(ids)) == len(ids)

    # The probe answered before the last request, so its line would be written by now.
    records = wait_for_access_lines(ops, ids)
    assert not [r for r in records if r.get("request_id") == probe.headers["x-request-id"]]
    for record in records:
        assert {"ts", "level", "logger", "msg"} <= record.keys(), record
        assert record["ts"].endswith("Z")
    line = access_line(records, ids[0])
    assert line["level"] == "info"
    assert line["tenant"] == "default"
    assert line["method"] == "POST"
    assert line["route"] == "/v1/volumes"
    assert line["status"] == 200
    assert line["item_errors"] == []
    assert 0 < line["duration_ms"] < 10_000
    assert access_line(records, ids[1])["item_errors"] == [8]
    assert access_line(records, ids[1])["route"] == "/v1/volumes/{uuid}"
    assert access_line(records, ids[2])["item_errors"] == [23]
    for rejected in (ids[3], ids[4]):
        line = access_line(records, rejected)
        assert (line["status"], line["tenant"], line["route"]) == (401, None, "/v1/volumes")

    # Job lifecycle lines carry the job, the volume and the attempt.
    jobs = [r for r in records if r["logger"] == "volumed.worker" and r.get("volume") == uuid]
    assert [(r["job"], r["attempt"]) for r in jobs] == [("format", 1), ("format", 1)]
    assert "duration_ms" in jobs[1]

    # No token, good or bad, and no Authorization header anywhere in the log.
    text = live.log()
    assert live.token not in text
    assert BAD_TOKEN not in text
    assert "Bearer" not in text and "authorization" not in text.lower()


def test_log_level_is_configurable(ops_server: Callable[..., Ops]) -> None:
    ops = ops_server(VOLUMED_LOG_LEVEL="warning", VOLUMED_SHUTDOWN_TIMEOUT_S=0.5)
    with ops.live.client() as api:
        assert api.get("/v1/volumes").status_code == 200
    # Something worth a warning: a request still in flight when the shutdown gives up.
    stuck = hold_a_request_open(ops.live)
    ops.live.stop()
    stuck.close()
    records = ops.records()
    assert any("did not finish" in r["msg"] for r in records), records
    assert all(r["level"] in ("warning", "error") for r in records), records


def test_the_embedded_server_notice_is_not_logged(ops_server: Callable[..., Ops]) -> None:
    """volumed runs granian embedded on purpose; its "experimental" warning on every start
    would set off log alerts (docs/operations.md). Other granian lines still come through."""
    ops = ops_server(VOLUMED_LOG_LEVEL="debug")
    ops.live.stop()
    records = ops.records()
    assert not [r for r in records if "experimental" in r["msg"]], records
    assert any(r["logger"] == "_granian" for r in records), records


def spawn(data_dir: Path, output: int) -> subprocess.Popen[bytes]:
    """``volumed serve`` with a generated token (none preset), its output to ``output``."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOLUMED_")}
    env |= {"VOLUMED_DATA_DIR": str(data_dir), "VOLUMED_PORT": str(port)}
    env["VOLUMED_METRICS_PORT"] = "0"
    process = subprocess.Popen(
        [*VOLUMED, "serve"], env=env, stdout=output, stderr=output, start_new_session=True
    )
    deadline = time.monotonic() + 20
    while True:
        assert process.poll() is None and time.monotonic() < deadline
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    return process


def test_a_generated_token_goes_to_the_token_file_not_the_log(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with open(log, "wb") as output:
        spawn(tmp_path / "data", output.fileno())
    token = (tmp_path / "data" / "token").read_text().strip()
    text = log.read_text()
    assert token not in text
    records = [json.loads(line) for line in text.splitlines()]
    assert any("token is in" in r["msg"] for r in records)


def test_lines_are_readable_on_a_terminal(tmp_path: Path) -> None:
    main, secondary = os.openpty()
    try:
        spawn(tmp_path / "data", secondary)
        os.close(secondary)
        output = b""
        while select.select([main], [], [], 0.5)[0]:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: every writer is gone
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(main)
    text = output.decode()
    token = (tmp_path / "data" / "token").read_text().strip()
    assert token in text, "a generated token is shown once, on the terminal"
    lines = [line for line in text.splitlines() if " INFO " in line]
    assert any("volumed listening on http://127.0.0.1:" in line for line in lines), text
    assert not any(line.lstrip().startswith("{") for line in text.splitlines()), text
