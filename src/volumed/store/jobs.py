"""The SQL store's background jobs: claimed under a lease whose epoch fences every
transition of the holder, renewed, retried later, parked, ended.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from volumed.domain.audit import WORKER, EventResult
from volumed.domain.states import VolumeState
from volumed.domain.transitions import Step
from volumed.domain.values import Job, JobStarts, Lease, StoreStats
from volumed.store import _states
from volumed.store._base import _HELD, _NO_JOB, SqlBase, now_us
from volumed.store._rows import _QUOTA_POLICIES, _VOLUME_STATES, _chunks, _marks
from volumed.store.db import Queries

__all__ = ["SqlJobs"]


class SqlJobs(SqlBase):
    """Jobs and leases (:class:`~volumed.domain.store.JobStore`)."""

    async def claim_job(
        self, worker_id: str, lease_us: int, starts: JobStarts | None = None
    ) -> Job | None:
        """Take the oldest job whose lease has expired, under a new lease for ``worker_id``;
        with ``starts``, the job's start too (see the port)."""
        if not starts:
            return await self._claim(self._db, worker_id, lease_us, {})
        async with self._db.transaction() as db:
            return await self._claim(db, worker_id, lease_us, starts)

    async def _claim(
        self, db: Queries, worker_id: str, lease_us: int, starts: JobStarts
    ) -> Job | None:
        now = now_us()
        # Replicas claiming at once skip each other's candidate rows (PostgreSQL); the
        # outer WHERE re-checks the lease, so a job is never claimed twice anyway.
        skip_locked = " FOR UPDATE SKIP LOCKED" if db.dialect == "postgresql" else ""
        row = await db.fetchone(
            "UPDATE volumes SET lease_owner = ?, lease_until_us = ?, "
            "job_attempts = job_attempts + 1, lease_epoch = lease_epoch + 1 "
            "WHERE uuid = (SELECT uuid FROM volumes WHERE job IS NOT NULL AND job_parked = 0 "
            "AND lease_until_us < ? ORDER BY lease_until_us, created_at_us LIMIT 1"
            f"{skip_locked}) AND job IS NOT NULL AND job_parked = 0 AND lease_until_us < ? "
            "RETURNING uuid, job, job_args, state, size_mb, quota_policy, job_attempts, "
            "lease_epoch, publish_epoch",
            (worker_id, now + lease_us, now, now),
        )
        if row is None:
            return None
        state = _VOLUME_STATES[row[3]]
        start = starts.get(row[1])
        started = start.target(state) if start is not None and state in start.expected else state
        if started is not state:
            # The row is ours (claimed in this transaction): the state alone is checked.
            await db.execute("UPDATE volumes SET state = ? WHERE uuid = ?", (started.value, row[0]))
            await self._events.record(
                db,
                row[0],
                row[1],
                EventResult.OK,
                actor=WORKER,
                state_from=state.value,
                state_to=started.value,
                message=f"Started (attempt {row[6]})",
            )
            state = started
        return Job(
            uuid=row[0],
            kind=row[1],
            args=json.loads(row[2] or "{}"),
            state=state,
            size_mb=row[4],
            quota_policy=_QUOTA_POLICIES[row[5]],
            attempts=row[6],
            lease_owner=worker_id,
            epoch=int(row[7]),
            published=None if row[8] is None else int(row[8]),
        )

    async def renew_lease(self, uuid: str, lease: Lease, lease_us: int) -> bool:
        db: Queries = self._db
        cur = await db.execute(
            f"UPDATE volumes SET lease_until_us = ? WHERE uuid = ? AND {_HELD} AND job IS NOT NULL",
            (now_us() + lease_us, uuid, lease.owner, lease.epoch),
        )
        return cur == 1

    async def commit_stage(self, uuid: str, lease: Lease) -> bool:
        db: Queries = self._db
        cur = await db.execute(
            f"UPDATE volumes SET publish_epoch = lease_epoch WHERE uuid = ? AND {_HELD} "
            "AND job IS NOT NULL",
            (uuid, lease.owner, lease.epoch),
        )
        return cur == 1

    async def volumes_known(self, uuids: Sequence[str]) -> set[str]:
        db: Queries = self._db
        known: set[str] = set()
        for chunk in _chunks(list(uuids), 500):
            rows = await db.fetchall(
                f"SELECT uuid FROM volumes WHERE uuid IN ({_marks(chunk)})", tuple(chunk)
            )
            known.update(str(row[0]) for row in rows)
        return known

    async def image_wanted(self, uuid: str) -> bool:
        db: Queries = self._db
        row = await db.fetchone(
            "SELECT 1 FROM volumes WHERE uuid = ? AND deleted = 0 "
            "AND (job = 'format' OR free_mb IS NOT NULL)",
            (uuid,),
        )
        return row is not None

    async def retry_job_later(self, uuid: str, lease: Lease, delay_us: int) -> bool:
        db: Queries = self._db
        cur = await db.execute(
            "UPDATE volumes SET lease_owner = NULL, lease_until_us = ? "
            f"WHERE uuid = ? AND {_HELD} AND job IS NOT NULL",
            (now_us() + delay_us, uuid, lease.owner, lease.epoch),
        )
        return cur == 1

    async def park_job(self, uuid: str, lease: Lease, message: str) -> bool:
        async with self._db.transaction() as db:
            job = await db.fetchone(
                "UPDATE volumes SET job_parked = 1, lease_owner = NULL, lease_until_us = 0 "
                f"WHERE uuid = ? AND {_HELD} AND job IS NOT NULL RETURNING job",
                (uuid, lease.owner, lease.epoch),
            )
            if job is not None:
                await self._events.record(
                    db, uuid, job[0], EventResult.ERROR, actor=WORKER, message=message
                )
        return job is not None

    async def parked_jobs(self) -> list[dict[str, Any]]:
        """Parked jobs, oldest volume first: uuid, job, attempts, state, deleted, and the
        message of the volume's last event (why it was parked)."""
        db: Queries = self._db
        rows = await db.fetchall(
            "SELECT v.uuid, v.job, v.job_attempts AS attempts, v.state, v.deleted, "
            "(SELECT e.message FROM volume_events e WHERE e.volume_uuid = v.uuid "
            "ORDER BY e.id DESC LIMIT 1) AS reason "
            "FROM volumes v WHERE v.job IS NOT NULL AND v.job_parked = 1 "
            "ORDER BY v.created_at_us"
        )
        return [dict(r) for r in rows]

    async def unpark_job(self, uuid: str) -> bool:
        async with self._db.transaction() as db:
            job = await db.fetchone(
                "UPDATE volumes SET job_parked = 0, job_attempts = 0, lease_owner = NULL, "
                "lease_until_us = 0 WHERE uuid = ? AND job IS NOT NULL AND job_parked = 1 "
                "RETURNING job",
                (uuid,),
            )
            if job is not None:
                await self._events.record(
                    db, uuid, job[0], EventResult.OK, message="Retry requested by an operator"
                )
        return job is not None

    async def release_leases(self, worker_id: str | None = None) -> int:
        """Make leased jobs claimable at once: all of them (a lone SQLite server
        restarting owns every lease) or those of one worker (graceful shutdown)."""
        db: Queries = self._db
        if worker_id is None:
            cur = await db.execute(
                "UPDATE volumes SET lease_owner = NULL, lease_until_us = 0 WHERE job IS NOT NULL"
            )
        else:
            cur = await db.execute(
                "UPDATE volumes SET lease_owner = NULL, lease_until_us = 0 "
                "WHERE job IS NOT NULL AND lease_owner = ?",
                (worker_id,),
            )
        return cur

    async def set_job_state(self, uuid: str, lease: Lease, step: Step[VolumeState]) -> bool:
        """Compare-and-set the state of a volume whose job ``lease`` holds."""
        expected, expected_params = _states.expect(step)
        target, target_params = _states.assign(step)
        async with self._db.transaction() as db:
            before = await db.fetchone(
                "SELECT state, job, job_attempts FROM volumes WHERE uuid = ?", (uuid,)
            )
            cur = await db.execute(
                f"UPDATE volumes SET state = {target} WHERE uuid = ? AND {_HELD} "
                f"AND job IS NOT NULL AND {expected}",
                (*target_params, uuid, lease.owner, lease.epoch, *expected_params),
            )
            state_to = step.target(_VOLUME_STATES[before[0]]) if cur == 1 else None
            if state_to is not None and before[0] != state_to:
                await self._events.record(
                    db,
                    uuid,
                    before[1],
                    EventResult.OK,
                    actor=WORKER,
                    state_from=before[0],
                    state_to=state_to.value,
                    message=f"Started (attempt {before[2]})",
                )
        return cur == 1

    async def finish_job(
        self,
        uuid: str,
        lease: Lease,
        step: Step[VolumeState],
        *,
        free_mb: int | None = None,
        size_mb: int | None = None,
        message: str | None = None,
    ) -> bool:
        """Compare-and-set: end the job held by ``lease`` as ``step`` says."""
        expected, expected_params = _states.expect(step)
        # A volume created with its instance is attached before it is formatted.
        when_attached, attached_params = _states.assign(_states.attached(step))
        target, target_params = _states.assign(step)
        async with self._db.transaction() as db:
            before = await db.fetchone("SELECT state, job FROM volumes WHERE uuid = ?", (uuid,))
            won = await db.fetchall(
                "UPDATE volumes SET state = CASE WHEN EXISTS "
                f"(SELECT 1 FROM attachments WHERE volume_uuid = volumes.uuid) "
                f"THEN {when_attached} ELSE {target} END, free_mb = COALESCE(?, free_mb), "
                f"size_mb = COALESCE(?, size_mb), message = ?, {_NO_JOB} "
                f"WHERE uuid = ? AND {_HELD} AND job IS NOT NULL "
                f"AND {expected} RETURNING state",
                (
                    *attached_params,
                    *target_params,
                    free_mb,
                    size_mb,
                    message,
                    uuid,
                    lease.owner,
                    lease.epoch,
                    *expected_params,
                ),
            )
            if won:
                failed = won[0][0] == VolumeState.ERROR.value
                await self._events.record(
                    db,
                    uuid,
                    before[1],
                    EventResult.ERROR if failed else EventResult.OK,
                    actor=WORKER,
                    state_from=before[0],
                    state_to=won[0][0],
                    message=message,
                )
        return bool(won)

    async def stats(self) -> StoreStats:
        db: Queries = self._db
        by_state: dict[VolumeState, int] = {}
        provisioned = used = 0
        for state, count, size_mb, used_mb in await db.fetchall(
            "SELECT state, count(*), COALESCE(SUM(size_mb), 0), "
            "COALESCE(SUM(size_mb - free_mb), 0) FROM volumes WHERE deleted = 0 GROUP BY state"
        ):
            by_state[_VOLUME_STATES[state]] = int(count)
            provisioned += int(size_mb)
            used += int(used_mb)
        tenants = (await db.fetchone("SELECT count(*) FROM users"))[0]
        jobs = await db.fetchone(
            "SELECT count(*), COALESCE(SUM(job_parked), 0) FROM volumes WHERE job IS NOT NULL"
        )
        return StoreStats(by_state, provisioned, used, int(tenants), int(jobs[0]), int(jobs[1]))
