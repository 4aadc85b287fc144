"""Requests that wait for data-plane work (issue 12): creates and clones answer once
the work is done, a request that finds a volume held by a short job waits for it, and
error 24 comes only when the bound (``VOLUMED_JOB_WAIT_S``) runs out, naming the job.

A job "held by another replica" is a real ``format`` job whose lease the test hands to
a worker id that no process has: the server must wait for it exactly as it would for a
job running elsewhere, until the lease runs out and its own worker redoes the job.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from tests.api.lifecycle_helpers import (
    Item,
    failed,
    get,
    image,
    items,
    new_instance,
    new_volume,
    ok,
    unique,
)
from tests.conftest import LiveServer
from tests.inprocess import make_inprocess_server


@pytest.fixture(scope="module")
def waiting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Waits up to 5 s; the worker looks for expired leases every 50 ms."""
    live = make_inprocess_server(
        tmp_path_factory.mktemp("waits"), VOLUMED_JOB_WAIT_S=5, VOLUMED_WORKER_POLL_S=0.05
    )
    yield live
    live.stop()


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Waits 0.5 s at most; the worker only claims when a request wakes it."""
    live = make_inprocess_server(
        tmp_path_factory.mktemp("impatient"),
        VOLUMED_JOB_WAIT_S=0.5,
        VOLUMED_WORKER_POLL_S=3600,
    )
    yield live
    live.stop()


def owe_format(live: LiveServer, uuid: str, *, owner: str | None, lease_s: float) -> None:
    """Put the volume back to owing its format, leased to ``owner`` for ``lease_s``."""
    until = 0 if owner is None else int((time.time() + lease_s) * 1_000_000)
    live.sql(
        "UPDATE volumes SET state = ?, job = 'format', job_args = '{}', lease_owner = ?, "
        "lease_until_us = ?, job_attempts = ? WHERE uuid = ?",
        (
            "uninitialized" if owner is None else "initializing",
            owner,
            until,
            0 if owner is None else 1,
            uuid,
        ),
    )


def events(api: httpx.Client, uuid: str) -> list[Item]:
    found: list[Item] = api.get(f"/volumed/v1/volumes/{uuid}/events").json()["data"]["events"]
    return found


# ---------------------------------------------------------------------- answers


def test_create_and_clone_answer_available(waiting: LiveServer) -> None:
    with waiting.client() as api:
        created = ok(api.post("/v1/volumes", json={"size_mb": 16}))
        assert created["state"] == "available"
        assert get(api, created["uuid"])["free_mb"] > 0
        copy = ok(api.post(f"/v1/volumes/{created['uuid']}/clone", json={}))
        assert copy["state"] == "available"
        # The source is back to its own state in the same transaction.
        assert get(api, created["uuid"])["state"] == "available"


def test_bulk_create_formats_in_parallel(waiting: LiveServer) -> None:
    """Eight items in one request: every answer says available, and the audit trail
    shows formats overlapping (the worker ran several at once)."""
    tag = unique("par")
    with waiting.client() as api:
        body = [{"size_mb": 64, "tags": [tag]} for _ in range(8)]
        made = items(api.post("/v1/volumes", json=body))
        assert [m["state"] for m in made] == ["available"] * 8
        spans = []
        for item in made:
            trail = {e["state_to"]: e["at"] for e in events(api, item["uuid"])}
            spans.append(
                (
                    datetime.fromisoformat(trail["initializing"]),
                    datetime.fromisoformat(trail["available"]),
                )
            )
        overlapping = max(
            sum(1 for begin, end in spans if begin <= start < end) for start, _ in spans
        )
        assert overlapping > 1, spans


def test_instance_with_a_new_volume_answers_once_formatted(waiting: LiveServer) -> None:
    with waiting.client() as api:
        inst = new_instance(api)
        made = ok(
            api.post(
                "/v1/instances",
                json={"name": unique("i"), "image": "x", "volumes": [{"size_mb": 8, "at": "/d"}]},
            ),
            "instances",
        )
        assert get(api, made["volumes"][0]["uuid"])["state"] == "idle"
        # Detach at once: the volume is no longer being formatted.
        ok(api.put(f"/v1/volumes/{made['volumes'][0]['uuid']}/detach"))
        api.delete(f"/v1/instances/{made['uuid']}")
        api.delete(f"/v1/instances/{inst['uuid']}")


# ---------------------------------------------------------------------- waiting for a job


def test_attach_waits_for_a_format_held_elsewhere(waiting: LiveServer) -> None:
    """The format is held by a replica that is gone; its lease runs out after 0.3 s,
    this server's worker redoes it, and the attach waiting for it then goes through."""
    with waiting.client() as api:
        volume, inst = new_volume(api), new_instance(api)
        owe_format(waiting, volume["uuid"], owner="replica-gone", lease_s=0.3)
        assert get(api, volume["uuid"])["state"] == "initializing"
        body = {"attach_to": {"uuid": inst["uuid"]}, "at": "/data"}
        ok(api.put(f"/v1/volumes/{volume['uuid']}/attach", json=body))
        assert get(api, volume["uuid"])["state"] == "idle"


def test_delete_waits_for_a_running_format(waiting: LiveServer) -> None:
    with waiting.client() as api:
        volume = new_volume(api)
        owe_format(waiting, volume["uuid"], owner="replica-gone", lease_s=0.3)
        ok(api.delete(f"/v1/volumes/{volume['uuid']}"))
        failed(api.get(f"/v1/volumes/{volume['uuid']}"), 8)
        assert not image(waiting, volume["uuid"]).exists()


def test_past_the_bound_error_24_names_the_job(impatient: LiveServer) -> None:
    with impatient.client() as api:
        volume, inst = new_volume(api), new_instance(api)
        owe_format(impatient, volume["uuid"], owner="replica-gone", lease_s=600)
        body = {"attach_to": {"uuid": inst["uuid"]}, "at": "/data"}
        began = time.monotonic()
        refused = failed(api.put(f"/v1/volumes/{volume['uuid']}/attach", json=body), 24)
        assert time.monotonic() - began >= 0.5
        assert "format job" in refused["message"] and "0.5 s" in refused["message"]
        assert "format job" in failed(api.delete(f"/v1/volumes/{volume['uuid']}"), 24)["message"]
        failed(api.post(f"/v1/volumes/{volume['uuid']}/clone", json={}), 24)
        assert get(api, volume["uuid"])["state"] == "initializing"


def test_delete_cancels_a_format_no_worker_holds(impatient: LiveServer) -> None:
    """An owed format nobody has claimed is cancelled by the delete: the volume goes at
    once, straight from uninitialized, and no worker makes its image afterwards."""
    with impatient.client() as api:
        volume = new_volume(api)
        owe_format(impatient, volume["uuid"], owner=None, lease_s=0)
        assert get(api, volume["uuid"])["state"] == "uninitialized"
        ok(api.delete(f"/v1/volumes/{volume['uuid']}"))
        trail = events(api, volume["uuid"])
        assert (trail[-1]["action"], trail[-1]["state_from"]) == ("delete", "uninitialized")
        new_volume(api)  # wakes the worker: there is no format left to claim
        assert not image(impatient, volume["uuid"]).exists()
        assert impatient.sql("SELECT count(*) FROM volumes WHERE uuid = ?", (volume["uuid"],)) == [
            (0,)
        ]


def test_template_delete_waits_for_a_copy_being_made(waiting: LiveServer) -> None:
    """A copy of the template is being made by a replica that is gone; once its lease
    runs out this server's worker makes it, and the template delete waiting on it goes
    through."""
    with waiting.client() as api:
        source = new_volume(api, size_mb=8)
        ok(api.post("/v1/volumes/templates", json={"uuid": source["uuid"]}))
        copy = ok(api.post("/v1/volumes", json={"template": {"uuid": source["uuid"]}}))
        until = int((time.time() + 0.3) * 1_000_000)
        args = json.dumps({"source": source["uuid"], "source_state": None})
        waiting.sql(
            "UPDATE volumes SET state = 'uninitialized', job = 'clone', job_args = ?, "
            "lease_owner = 'replica-gone', lease_until_us = ?, job_attempts = 1 WHERE uuid = ?",
            (args, until, copy["uuid"]),
        )
        ok(api.delete(f"/v1/volumes/templates/{source['uuid']}"))
        assert get(api, copy["uuid"])["state"] == "available"


def test_a_job_finished_by_another_replica_is_noticed(waiting: LiveServer) -> None:
    """No signal comes from a job another replica ends: the waiting attach notices the
    row change by re-reading the store, and goes through."""
    with waiting.client() as api:
        volume, inst = new_volume(api), new_instance(api)
        owe_format(waiting, volume["uuid"], owner="replica-elsewhere", lease_s=600)

        def finish_elsewhere() -> None:
            waiting.sql(
                "UPDATE volumes SET state = 'available', job = NULL, job_args = NULL, "
                "lease_owner = NULL, lease_until_us = 0 WHERE uuid = ?",
                (volume["uuid"],),
            )

        timer = threading.Timer(0.3, finish_elsewhere)
        timer.start()
        try:
            body = {"attach_to": {"uuid": inst["uuid"]}, "at": "/data"}
            ok(api.put(f"/v1/volumes/{volume['uuid']}/attach", json=body))
        finally:
            timer.join()
        assert get(api, volume["uuid"])["state"] == "idle"


@pytest.fixture(scope="module")
def unwaiting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Never waits (the acknowledgement, issue 15); one format at a time."""
    live = make_inprocess_server(
        tmp_path_factory.mktemp("unwaiting"), VOLUMED_JOB_WAIT_S=0, VOLUMED_WORKER_CONCURRENCY=1
    )
    yield live
    live.stop()


def test_without_a_wait_a_create_is_answered_as_inserted(unwaiting: LiveServer) -> None:
    """With a bound of 0 the rows are not read again: the answer is each volume as its
    insert left it, which is what the row says then."""
    with unwaiting.client() as api:
        body = [{"name": unique(), "size_mb": 4} for _ in range(3)]
        answered = items(api.post("/v1/volumes", json=body))
        assert [a["status"] for a in answered] == ["success"] * 3, answered
        # The first claims the free worker slot in its insert, which starts its format
        # (initializing); the others are left for the worker (uninitialized) unless a
        # slot was free again by then.
        assert answered[0]["state"] == "initializing", answered
        assert {a["state"] for a in answered[1:]} <= {"uninitialized", "initializing"}
        for answer in answered:
            deadline = time.monotonic() + 20
            while (done := get(api, answer["uuid"]))["state"] != "available":
                assert time.monotonic() < deadline, done
                time.sleep(0.05)
            assert {k: v for k, v in answer.items() if k != "state"} == {
                k: done[k] for k in answer if k != "state"
            }, (answer, done)
