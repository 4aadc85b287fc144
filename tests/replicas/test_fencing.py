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
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from tests.api.lifecycle_helpers import (
    allocated_mb,
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


def _job_lines(live: LiveServer, kind: str, uuid: str) -> int:
    return live.log().count(f"job {kind} on {uuid}")


def _staged(live: LiveServer, uuid: str) -> list[str]:
    return [p.name for p in (live.data_dir / "images").glob(f"{uuid}.img.e*")]


def _freeze_a_mid_job(
    a: LiveServer,
    b: LiveServer,
    uuid: str,
    kinds: tuple[str, ...],
    starts: Sequence[Callable[[], object]],
) -> int:
    """Start jobs with B frozen (so that A claims them) until A is frozen in the middle of
    one; the index of that one. A stays frozen."""
    assert a.process is not None
    for n, start in enumerate(starts):
        with frozen(b):
            request = _in_background(start)
            # A job can start and end between two looks (a grow of this volume takes
            # ~50 ms); its request has then been answered, and the next start is tried.
            deadline = time.monotonic() + 20
            while _job_row(a, uuid)[1] is None and request.is_alive():
                assert time.monotonic() < deadline, "the job was not started"
                time.sleep(0.005)
            os.killpg(a.process.pid, signal.SIGSTOP)
        if _job_row(a, uuid)[0] in kinds:
            return n
        os.killpg(a.process.pid, signal.SIGCONT)  # it finished first: again
        with b.client() as cb:
            wait_until(cb, uuid, ("available",))
    raise AssertionError(f"no {' or '.join(kinds)} job was caught in the middle")


def _resume_a(a: LiveServer, kind: str, uuid: str) -> None:
    """SIGCONT A and wait until it ends its job (it logs the end in every case)."""
    assert a.process is not None
    logged = _job_lines(a, kind, uuid)
    os.killpg(a.process.pid, signal.SIGCONT)
    wait_for(lambda: _job_lines(a, kind, uuid) > logged, timeout=60)


def test_a_replica_frozen_mid_grow_cannot_touch_the_volume_after_resuming(
    replicas: Replicas, tmp_path: Path
) -> None:
    a, b = replicas(2, VOLUMED_WORKER_CONCURRENCY=1)
    with a.client() as ca, b.client() as cb:
        volume = new_volume(ca, size_mb=64, quota_policy="dynamic")
        # Data makes the grow's copy and check long enough to be caught in the middle.
        put_file(image(a, volume["uuid"]), "data", os.urandom(24 * 2**20), tmp_path)
        sizes = list(range(96, 96 + 32 * 10, 32))  # ten tries to catch A in a grow
        starts = [lambda s=s: patch(ca, volume, "size_mb", value=s) for s in sizes]
        size = sizes[_freeze_a_mid_job(a, b, volume["uuid"], ("grow",), starts)]
        try:
            # B takes the job over once A's lease ran out, and finishes it; then grows more.
            grown = wait_until(cb, volume["uuid"], ("available",), timeout=10 * LEASE_S)
            assert grown["size_mb"] == size
            assert patch(cb, volume, "size_mb", value=size + 64)["status"] == "success"
            wait_until(cb, volume["uuid"], ("available",))
        finally:
            # A resumes in the middle of its grow: it loses the fenced commit and drops
            # its copy.
            _resume_a(a, "grow", volume["uuid"])
        after = get(cb, volume["uuid"])
        assert (after["state"], after["size_mb"]) == ("available", size + 64)
        path = image(b, volume["uuid"])
        assert superblock_size_mb(path) == size + 64
        fsck_clean(path)
        assert len(read_file(path, "data")) == 24 * 2**20
        assert _staged(b, volume["uuid"]) == []
        assert "taken over by another worker" in a.log()


def test_a_replica_frozen_mid_policy_switch_leaves_the_newer_policy_alone(
    replicas: Replicas, tmp_path: Path
) -> None:
    a, b = replicas(2, VOLUMED_WORKER_CONCURRENCY=1)
    with a.client() as ca, b.client() as cb:
        volume = new_volume(ca, size_mb=64, quota_policy="dynamic")
        put_file(image(a, volume["uuid"]), "data", os.urandom(24 * 2**20), tmp_path)
        policies = ["static", "dynamic"] * 5
        starts = [lambda p=p: patch(ca, volume, "quota_policy", value=p) for p in policies]
        kinds = ("reserve", "release")
        policy = policies[_freeze_a_mid_job(a, b, volume["uuid"], kinds, starts)]
        kind = kinds[policies.index(policy)]
        newer = "dynamic" if policy == "static" else "static"
        try:
            # B takes the switch over and finishes it, then switches back.
            done = wait_until(cb, volume["uuid"], ("available",), timeout=10 * LEASE_S)
            assert done["quota_policy"] == policy
            assert patch(cb, volume, "quota_policy", value=newer)["status"] == "success"
            wait_until(cb, volume["uuid"], ("available",))
        finally:
            # A resumes its stale switch: its reservation (or release) must not land.
            _resume_a(a, kind, volume["uuid"])
        after = get(cb, volume["uuid"])
        assert (after["state"], after["quota_policy"]) == ("available", newer)
        path = image(b, volume["uuid"])
        if newer == "static":
            assert allocated_mb(path) >= 64
        else:
            assert allocated_mb(path) < 48  # the 24 MB of data and metadata, no more
        fsck_clean(path)
        assert len(read_file(path, "data")) == 24 * 2**20
        assert _staged(b, volume["uuid"]) == []


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
