"""Lease fencing between two real replicas (issue 11): a replica frozen with SIGSTOP
past its lease, whose job another replica took over and finished, resumes (SIGCONT) and
changes nothing: the volume keeps the newer size and contents and stays clean."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.lifecycle_helpers import (
    fsck_clean,
    get,
    image,
    new_volume,
    ok,
    patch,
    put_file,
    read_file,
    superblock_size_mb,
    wait_for,
    wait_until,
)
from tests.conftest import LiveServer
from tests.replicas.conftest import LEASE_S
from tests.replicas.test_replicas import Replicas

pytestmark = pytest.mark.postgresql_only


@contextlib.contextmanager
def frozen(live: LiveServer) -> Iterator[None]:
    """SIGSTOP the replica's whole process group (its e2fsck and cp too), then SIGCONT."""
    assert live.process is not None
    os.killpg(live.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(live.process.pid, signal.SIGCONT)


def _job_row(live: LiveServer, uuid: str) -> tuple[str | None, str | None]:
    rows = live.sql("SELECT job, lease_owner FROM volumes WHERE uuid = ?", (uuid,))
    return rows[0][0], rows[0][1]


def _in_background(call: object) -> threading.Thread:
    def run() -> None:
        with contextlib.suppress(httpx.HTTPError):
            call()  # type: ignore[operator]

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _job_lines(live: LiveServer, uuid: str) -> int:
    return live.log().count(f"job grow on {uuid}")


def _staged(live: LiveServer, uuid: str) -> list[str]:
    return [p.name for p in (live.data_dir / "images").glob(f"{uuid}.img.e*")]


def test_a_replica_frozen_mid_grow_cannot_touch_the_volume_after_resuming(
    replicas: Replicas, tmp_path: Path
) -> None:
    a, b = replicas(2, VOLUMED_WORKER_CONCURRENCY=1)
    with a.client() as ca, b.client() as cb:
        volume = new_volume(ca, size_mb=64, quota_policy="dynamic")
        # Data makes the grow's copy and check long enough to be caught in the middle.
        put_file(image(a, volume["uuid"]), "data", os.urandom(24 * 2**20), tmp_path)
        caught = False
        for size in (96, 128, 160, 192, 224):
            with frozen(b):  # so that A claims the grow
                _in_background(lambda s=size: patch(ca, volume, "size_mb", value=s))
                wait_for(lambda: _job_row(a, volume["uuid"])[1] is not None)
                os.killpg(a.process.pid, signal.SIGSTOP)  # type: ignore[union-attr]
            caught = _job_row(a, volume["uuid"])[0] == "grow"
            if caught:
                break
            os.killpg(a.process.pid, signal.SIGCONT)  # type: ignore[union-attr]
            wait_until(cb, volume["uuid"], ("available",))
        assert caught, "the grow never was caught in the middle"
        try:
            # B takes the job over once A's lease ran out, and finishes it; then grows more.
            grown = wait_until(cb, volume["uuid"], ("available",), timeout=10 * LEASE_S)
            assert grown["size_mb"] == size
            assert patch(cb, volume, "size_mb", value=size + 64)["status"] == "success"
            wait_until(cb, volume["uuid"], ("available",))
        finally:
            logged = _job_lines(a, volume["uuid"])
            os.killpg(a.process.pid, signal.SIGCONT)  # type: ignore[union-attr]
        # A resumes in the middle of its grow and ends it (it logs the end in every case):
        # it loses the fenced commit and drops its copy.
        wait_for(lambda: _job_lines(a, volume["uuid"]) > logged, timeout=60)
        after = get(cb, volume["uuid"])
        assert (after["state"], after["size_mb"]) == ("available", size + 64)
        path = image(b, volume["uuid"])
        assert superblock_size_mb(path) == size + 64
        fsck_clean(path)
        assert len(read_file(path, "data")) == 24 * 2**20
        assert _staged(b, volume["uuid"]) == []
        assert "taken over by another worker" in a.log()


def _archive(who: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("who")
        info.size = len(who)
        tar.addfile(info, io.BytesIO(who))
        filler = os.urandom(512 * 1024)
        info = tarfile.TarInfo("filler")
        info.size = len(filler)
        tar.addfile(info, io.BytesIO(filler))
    return buffer.getvalue()


def test_a_stale_import_does_not_overwrite_a_newer_acknowledged_one(
    replicas: Replicas,
) -> None:
    a, b = replicas(2)
    with a.client() as ca, b.client() as cb:
        volume = new_volume(ca, size_mb=16, quota_policy="dynamic")
        url = f"/volumed/v1/volumes/{volume['uuid']}/import"
        stale = _archive(b"stale")
        half_sent, go_on = threading.Event(), threading.Event()

        def slow_body() -> Iterator[bytes]:
            yield stale[:4096]
            half_sent.set()
            go_on.wait(60)
            yield stale[4096:]

        answers: list[httpx.Response] = []
        importer = _in_background(lambda: answers.append(ca.put(url, content=slow_body())))
        half_sent.wait(10)
        wait_for(lambda: _job_row(a, volume["uuid"])[0] == "import")
        with frozen(a):
            # B's worker hands the volume back once A's lease ran out; a newer import
            # through B is acknowledged.
            wait_until(cb, volume["uuid"], ("available",), timeout=10 * LEASE_S)
            ok(cb.put(url, content=_archive(b"newer")))
        go_on.set()
        importer.join(60)
        assert answers, "the stale import got no answer"
        refused = answers[0].json()["data"]["volumes"][0]
        assert refused["status"] == "error", refused
        after = wait_until(cb, volume["uuid"], ("available",))
        assert after["state"] == "available"
        path = image(b, volume["uuid"])
        assert read_file(path, "who") == b"newer"
        fsck_clean(path)
        assert _staged(b, volume["uuid"]) == []
