"""The background jobs of grows, clones and copies of templates, caught in the middle.

An image moved away for a while makes each job fail and be retried (after a 1 s lease)
until it is back: the in-between states become observable, and a ``kill -9`` can land
while a job is owed. Requests wait for such jobs only 0.5 s here (``job_wait_s``), so
they answer past the bound: with the state at that moment, or 24 naming the job. No
mocks: the real server, the real worker, the real images.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.lifecycle_helpers import (
    Item,
    attach,
    failed,
    fsck_clean,
    get,
    image,
    image_held,
    items,
    new_instance,
    new_volume,
    ok,
    patch,
    put_file,
    read_file,
    superblock_size_mb,
    wait_for,
    wait_until,
)
from tests.conftest import LiveServer, make_server


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = make_server(
        tmp_path_factory.mktemp("jobs"), VOLUMED_WORKER_LEASE_S=1, VOLUMED_JOB_WAIT_S=0.5
    )
    yield live
    live.stop()


def _patch_in(live: LiveServer, volume: Item, answers: list[Item], value: int) -> None:
    """A PATCH of size_mb from another thread (it waits for the job)."""
    try:
        with live.client() as client:
            answers.append(patch(client, volume, "size_mb", value=value))
    except httpx.HTTPError:
        pass  # the server was killed under it


def _template(api: httpx.Client) -> Item:
    # Static: its copies need no look at the (held) image up front.
    volume = new_volume(api, size_mb=16)
    ok(api.post("/v1/volumes/templates", json={"uuid": volume["uuid"]}))
    return volume


def test_volume_is_busy_while_it_grows_and_the_patch_waits(jobs: LiveServer) -> None:
    with jobs.client() as client:
        volume = new_volume(client, size_mb=16, quota_policy="dynamic")
        answers: list[Item] = []
        with image_held(jobs, volume["uuid"]):
            worker = threading.Thread(
                target=_patch_in, args=(jobs, volume, answers), kwargs={"value": 40}
            )
            worker.start()
            wait_for(lambda: get(client, volume["uuid"])["state"] == "busy")
            # Busy: nothing else may start on it meanwhile (each waits out the bound,
            # then is refused naming the job); metadata may change.
            switch = patch(client, volume, "quota_policy", value="static")
            assert switch["error"] == 24 and "grow job" in switch["message"], switch
            failed(client.delete(f"/v1/volumes/{volume['uuid']}"), 24)
            failed(client.post("/v1/volumes/clone", json={"uuid": volume["uuid"]}), 24)
            assert patch(client, volume, "tags", value=["meta-ok"])["status"] == "success"
            worker.join(timeout=30)
        # The PATCH answered success when its wait ran out; the job carried on.
        assert answers and answers[0]["status"] == "success", answers
        after = wait_until(client, volume["uuid"], ("available",))
        assert (after["state"], after["size_mb"], after["tags"]) == ("available", 40, ["meta-ok"])


def test_source_is_busy_while_copied_then_back_to_its_state(jobs: LiveServer) -> None:
    with jobs.client() as api:
        source = new_volume(api, size_mb=16)
        instance = new_instance(api)
        attach(api, source, instance)
        assert get(api, source["uuid"])["state"] == "idle"
        with image_held(jobs, source["uuid"]):
            created = ok(api.post("/v1/volumes/clone", json={"uuid": source["uuid"]}))
            wait_for(lambda: get(api, created["uuid"])["state"] == "initializing")
            assert get(api, source["uuid"])["state"] == "busy"
            # A busy source can be neither cloned again, grown, detached nor deleted.
            failed(api.post("/v1/volumes/clone", json={"uuid": source["uuid"]}), 24)
            body = {"uuid": source["uuid"], "prop": "size_mb", "op": "set", "value": 32}
            assert items(api.patch("/v1/volumes", json=body))[0]["error"] == 24
            failed(api.put("/v1/volumes/detach", json=[{"uuid": source["uuid"]}]), 24)
            failed(api.delete(f"/v1/volumes/{source['uuid']}"), 24)
            # The clone itself is being made: it cannot be deleted yet.
            failed(api.delete(f"/v1/volumes/{created['uuid']}"), 24)
        clone = wait_until(api, created["uuid"], ("available",))
        back = get(api, source["uuid"])
        assert back["state"] == "idle"
        assert back["attached_to"] == [{"uuid": instance["uuid"], "name": instance["name"]}]
        fsck_clean(image(jobs, clone["uuid"]))


def test_template_cannot_be_deleted_while_copied(jobs: LiveServer) -> None:
    with jobs.client() as api:
        template = _template(api)
        with image_held(jobs, template["uuid"]):
            created = ok(api.post("/v1/volumes", json={"template": {"uuid": template["uuid"]}}))
            wait_for(lambda: get(api, created["uuid"])["state"] == "initializing")
            refused = failed(api.delete(f"/v1/volumes/templates/{template['uuid']}"), 24)
            assert "being copied" in refused["message"]
            # Templates are not made busy: another copy may start meanwhile.
            second = ok(api.post("/v1/volumes", json={"template": {"uuid": template["uuid"]}}))
        for uuid in (created["uuid"], second["uuid"]):
            wait_until(api, uuid, ("available",))
        ok(api.delete(f"/v1/volumes/templates/{template['uuid']}"))


def test_jobs_survive_kill_9(fresh_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    """A grow, a clone and a copy of a template are owed when the server is killed:
    after the restart each is redone and finishes, and the sources are themselves."""
    live = fresh_server(VOLUMED_WORKER_LEASE_S=1, VOLUMED_JOB_WAIT_S=0.5)
    with live.client() as api:
        grown, source = new_volume(api, size_mb=16), new_volume(api, size_mb=16)
        template = _template(api)
        put_file(image(live, source["uuid"]), "f", b"survives", tmp_path)
        with (
            image_held(live, grown["uuid"]),
            image_held(live, source["uuid"]),
            image_held(live, template["uuid"]),
        ):
            threading.Thread(
                target=_patch_in, args=(live, grown, []), kwargs={"value": 48}, daemon=True
            ).start()
            clone = ok(api.post("/v1/volumes/clone", json={"uuid": source["uuid"]}))
            copy = ok(api.post("/v1/volumes", json={"template": {"uuid": template["uuid"]}}))
            wait_for(lambda: get(api, grown["uuid"])["state"] == "busy")
            wait_for(lambda: get(api, source["uuid"])["state"] == "busy")
            live.kill()
    live.restart()
    with live.client() as api:
        after = wait_until(api, grown["uuid"], ("available",))
        assert after["size_mb"] == 48
        assert superblock_size_mb(image(live, grown["uuid"])) == 48
        for made in (clone, copy):
            wait_until(api, made["uuid"], ("available",))
            fsck_clean(image(live, made["uuid"]))
        assert read_file(image(live, clone["uuid"]), "f") == b"survives"
        assert get(api, source["uuid"])["state"] == "available"
        assert get(api, template["uuid"])["state"] == "template"
        fsck_clean(image(live, grown["uuid"]))
        assert not list((live.data_dir / "images").glob("*.tmp"))
        assert not list((live.data_dir / "images").glob("*.img.e*"))  # no staged leftovers
