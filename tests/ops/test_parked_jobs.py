"""A job that keeps failing is retried with a back-off, then parked where an operator
sees it (the audit trail, ``volumed job list``, the ``volumed_jobs_parked`` gauge) and
retries it (``volumed job retry``) once the cause is fixed (issue 11: an immutable image
made the delete job retry for ever)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.api.lifecycle_helpers import image, new_volume, wait_for
from tests.cli.conftest import run_cli
from tests.ops.conftest import Ops, value


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    """``chattr +i``: not even root may unlink it (the tests run as root, as CI does)."""
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def _job(ops: Ops, uuid: str) -> tuple[str | None, int] | None:
    rows = ops.live.sql("SELECT job, job_parked FROM volumes WHERE uuid = ?", (uuid,))
    return (rows[0][0], int(rows[0][1])) if rows else None


def test_a_delete_of_an_immutable_image_is_parked_then_retried(
    ops_server: Callable[..., Ops],
) -> None:
    ops = ops_server(VOLUMED_WORKER_MAX_ATTEMPTS=3, VOLUMED_WORKER_RETRY_BACKOFF_S=0.05)
    with ops.live.client() as api:
        uuid = new_volume(api, size_mb=4)["uuid"]
        path = image(ops.live, uuid)
        with immutable(path):
            assert api.delete(f"/v1/volumes/{uuid}").status_code == 200
            wait_for(lambda: _job(ops, uuid) == ("delete", 1))
            # Parked: no more attempts, and an operator can see why.
            attempts = ops.live.sql("SELECT job_attempts FROM volumes WHERE uuid = ?", (uuid,))
            assert attempts[0][0] == 3
            assert value(ops.scrape(), "volumed_jobs_parked") == 1
            listed = run_cli("job", "list", server=ops.live)
            assert listed.code == 0, listed.err
            assert uuid in listed.out and "delete (deleted)" in listed.out
            assert "volumed job retry" in listed.out and "not permitted" in listed.out
            as_json = run_cli("job", "list", "-o", "json", server=ops.live).json()
            assert [(j["uuid"], j["job"], j["attempts"], j["deleted"]) for j in as_json] == [
                (uuid, "delete", 3, True)
            ]
            messages = [
                r[0]
                for r in ops.live.sql(
                    "SELECT message FROM volume_events WHERE volume_uuid = ? AND result = 'error'",
                    (uuid,),
                )
            ]
            assert any("retried in 0.05 s" in m for m in messages), messages
            assert any("parked" in m for m in messages), messages
        # The cause fixed, the operator retries: the delete completes.
        retried = run_cli("job", "retry", uuid, server=ops.live)
        assert retried.code == 0, retried.err
        wait_for(lambda: _job(ops, uuid) is None)
        assert not path.exists()
        assert value(ops.scrape(), "volumed_jobs_parked") == 0
        again = run_cli("job", "retry", uuid, server=ops.live)
        assert again.code == 1 and "no parked job" in again.err
        none = run_cli("job", "list", server=ops.live)
        assert none.code == 0 and none.out == "" and "no parked jobs" in none.err
