"""The SQL store's maintenance jobs on a volume: grow, quota policy switch, clone,
template, import. Each begins by a compare-and-set that makes the volume ``busy`` and
owes a job, and ends by a fenced one of the job's holder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from volumed.domain.audit import WORKER, EventAction, EventResult
from volumed.domain.model import Volume
from volumed.domain.states import VolumeState
from volumed.domain.store import QuotaRefused
from volumed.domain.values import Lease, QuotaLimits, QuotaUsage
from volumed.store._base import _HELD, _NEW_JOB, _NO_JOB, SqlBase, now_us

__all__ = ["SqlMaintenance"]


class SqlMaintenance(SqlBase):
    """Grow, quota policy, clone, template and import
    (:class:`~volumed.domain.store.MaintenanceStore`)."""

    async def begin_grow(
        self,
        owner_id: str,
        uuid: str,
        expected_state: str,
        expected_size_mb: int,
        size_mb: int,
        limits: QuotaLimits,
    ) -> bool:
        args = {"size_mb": size_mb, "previous_state": expected_state}
        async with self._db.transaction() as db:
            await self._lock_tenant(db, owner_id)  # before the volume row, as every quota check
            cur = await db.execute(
                "UPDATE volumes SET state = 'busy', job = 'grow', job_args = ?, "
                f"pending_size_mb = ?, message = NULL, {_NEW_JOB} "
                "WHERE uuid = ? AND owner_id = ? AND deleted = 0 "
                "AND job IS NULL AND state = ? AND size_mb = ?",
                (json.dumps(args), size_mb, uuid, owner_id, expected_state, expected_size_mb),
            )
            if cur != 1:
                return False
            # The usage now counts this volume at its new size.
            count, total_mb = await self._volume_usage(db, owner_id)
            if total_mb > limits.max_total_volume_mb:
                raise QuotaRefused(QuotaUsage(count, total_mb - (size_mb - expected_size_mb)))
            await self._events.record(
                db,
                uuid,
                EventAction.GROW,
                EventResult.OK,
                state_from=expected_state,
                state_to=VolumeState.BUSY.value,
                message=f"Growing from {expected_size_mb} MB to {size_mb} MB",
            )
        return True

    async def finish_grow(
        self,
        uuid: str,
        lease: Lease,
        state: str,
        *,
        size_mb: int | None,
        free_mb: int | None,
        message: str | None = None,
    ) -> bool:
        async with self._db.transaction() as db:
            cur = await db.execute(
                "UPDATE volumes SET state = ?, size_mb = COALESCE(?, size_mb), "
                f"free_mb = COALESCE(?, free_mb), pending_size_mb = NULL, message = ?, {_NO_JOB} "
                f"WHERE uuid = ? AND {_HELD} AND job = 'grow' AND state = 'busy'",
                (state, size_mb, free_mb, message, uuid, lease.owner, lease.epoch),
            )
            if cur == 1:
                await self._job_end_event(
                    db, uuid, EventAction.GROW, VolumeState.BUSY.value, message
                )
        return cur == 1

    async def begin_reservation(
        self, owner_id: str, uuid: str, expected_state: str, reserve: bool
    ) -> bool:
        job, current = ("reserve", "dynamic") if reserve else ("release", "static")
        async with self._db.transaction() as db:
            cur = await db.execute(
                "UPDATE volumes SET state = 'busy', job = ?, job_args = ?, message = NULL, "
                f"{_NEW_JOB} "
                "WHERE uuid = ? AND owner_id = ? AND deleted = 0 AND job IS NULL AND state = ? "
                "AND quota_policy = ?",
                (job, json.dumps({"previous_state": expected_state}), uuid, owner_id,
                 expected_state, current),
            )  # fmt: skip
            if cur == 1:
                await self._events.record(
                    db,
                    uuid,
                    job,
                    EventResult.OK,
                    state_from=expected_state,
                    state_to=VolumeState.BUSY.value,
                    message=f"Quota policy changing from {current}",
                )
        return cur == 1

    async def finish_reservation(
        self,
        uuid: str,
        lease: Lease,
        state: str,
        *,
        quota_policy: str | None,
        free_mb: int | None,
        message: str | None = None,
    ) -> bool:
        async with self._db.transaction() as db:
            job = await db.fetchone("SELECT job FROM volumes WHERE uuid = ?", (uuid,))
            cur = await db.execute(
                "UPDATE volumes SET state = ?, quota_policy = COALESCE(?, quota_policy), "
                f"free_mb = COALESCE(?, free_mb), message = ?, {_NO_JOB} "
                f"WHERE uuid = ? AND {_HELD} AND job IN ('reserve', 'release') "
                "AND state = 'busy'",
                (state, quota_policy, free_mb, message, uuid, lease.owner, lease.epoch),
            )
            if cur == 1:
                await self._job_end_event(db, uuid, job[0], VolumeState.BUSY.value, message)
        return cur == 1

    async def begin_clone(
        self,
        source_uuid: str,
        expected_state: str,
        source_busy: bool,
        clone: Volume,
        limits: QuotaLimits,
        *,
        all_readonly: bool = False,
    ) -> bool:
        source = "uuid = ? AND owner_id = ? AND deleted = 0 AND job IS NULL AND state = ?" + (
            " AND NOT EXISTS (SELECT 1 FROM attachments "
            "WHERE volume_uuid = volumes.uuid AND readonly = 0)"
            if all_readonly
            else ""
        )
        params = (source_uuid, clone.owner_id, expected_state)
        args = {"source": source_uuid, "source_state": expected_state if source_busy else None}
        async with self._db.transaction() as db:
            await self._lock_tenant(db, clone.owner_id)  # before the volume rows
            if source_busy:
                won = await db.execute(f"UPDATE volumes SET state = 'busy' WHERE {source}", params)
                if won != 1:
                    return False
                await self._events.record(
                    db,
                    source_uuid,
                    EventAction.CLONE,
                    EventResult.OK,
                    state_from=expected_state,
                    state_to=VolumeState.BUSY.value,
                    message=f"Being cloned to '{clone.name}' ({clone.uuid})",
                )
            elif await db.fetchone(f"SELECT 1 FROM volumes WHERE {source}", params) is None:
                return False
            await self._check_room(db, clone.owner_id, limits, 1, clone.size_mb)
            await self._insert_row(db, clone, "clone", args, clone_source=source_uuid)
        return True

    async def finish_clone(
        self,
        uuid: str,
        lease: Lease,
        state: str,
        *,
        source_uuid: str,
        source_state: str | None,
        free_mb: int | None,
        message: str | None = None,
    ) -> bool:
        async with self._db.transaction() as db:
            before = await self._volume_state(db, uuid)
            cur = await db.execute(
                f"UPDATE volumes SET state = ?, free_mb = COALESCE(?, free_mb), message = ?, "
                f"{_NO_JOB} WHERE uuid = ? AND {_HELD} AND job = 'clone' "
                "AND state IN ('uninitialized', 'initializing')",
                (state, free_mb, message, uuid, lease.owner, lease.epoch),
            )
            if cur != 1:
                return False
            await self._job_end_event(db, uuid, EventAction.CLONE, before, message)
            if source_state is not None:
                # Only a clone makes a volume busy without a job of its own.
                back = await db.execute(
                    "UPDATE volumes SET state = ? WHERE uuid = ? AND state = 'busy' "
                    "AND job IS NULL",
                    (source_state, source_uuid),
                )
                if back == 1:
                    await self._events.record(
                        db,
                        source_uuid,
                        EventAction.CLONE,
                        EventResult.OK,
                        actor=WORKER,
                        state_from=VolumeState.BUSY.value,
                        state_to=source_state,
                        message=f"Cloned to {uuid}",
                    )
        return True

    async def make_template(self, owner_id: str, uuid: str, expected_state: str) -> bool:
        async with self._db.transaction() as db:
            cur = await db.execute(
                "UPDATE volumes SET state = 'template' WHERE uuid = ? AND owner_id = ? "
                "AND deleted = 0 AND job IS NULL AND state = ? "
                "AND NOT EXISTS (SELECT 1 FROM attachments WHERE volume_uuid = volumes.uuid)",
                (uuid, owner_id, expected_state),
            )
            if cur == 1:
                await self._events.record(
                    db,
                    uuid,
                    EventAction.STATE,
                    EventResult.OK,
                    state_from=expected_state,
                    state_to=VolumeState.TEMPLATE.value,
                    message="Converted to a template",
                )
        return cur == 1

    async def begin_import(
        self, owner_id: str, uuid: str, expected: Sequence[str], worker_id: str, lease_us: int
    ) -> Lease | None:
        """Compare-and-set: an unattached volume in ``expected`` becomes ``busy`` and owes
        an ``import`` job, leased to ``worker_id`` (the process streaming the archive
        renews it). If that process dies, the lease runs out and the reconciler ends the
        job, putting the volume back as it was."""
        async with self._db.transaction() as db:
            before = await db.fetchone(
                "SELECT state FROM volumes WHERE uuid = ? AND owner_id = ? AND deleted = 0",
                (uuid, owner_id),
            )
            if before is None or before[0] not in expected:
                return None
            won = await db.fetchone(
                "UPDATE volumes SET state = 'busy', job = 'import', job_args = ?, "
                "message = NULL, lease_owner = ?, lease_until_us = ?, job_attempts = 1, "
                "lease_epoch = lease_epoch + 1, publish_epoch = NULL, job_parked = 0 "
                "WHERE uuid = ? AND owner_id = ? AND deleted = 0 AND job IS NULL "
                "AND state = ? AND NOT EXISTS "
                "(SELECT 1 FROM attachments WHERE volume_uuid = volumes.uuid) "
                "RETURNING lease_epoch",
                (json.dumps({"previous_state": before[0]}), worker_id, now_us() + lease_us,
                 uuid, owner_id, before[0]),
            )  # fmt: skip
            if won is not None:
                await self._events.record(
                    db,
                    uuid,
                    EventAction.IMPORT,
                    EventResult.OK,
                    state_from=before[0],
                    state_to="busy",
                )
        return None if won is None else Lease(worker_id, int(won[0]))
