"""The SQL store's maintenance jobs on a volume: grow, quota policy switch, clone,
template, import. Each begins by a compare-and-set that makes the volume ``busy`` and
owes a job, and ends by a fenced one of the job's holder.
"""

from __future__ import annotations

import json

from volumed.domain.audit import WORKER, EventAction, EventResult
from volumed.domain.model import Volume
from volumed.domain.states import QuotaPolicy, VolumeState
from volumed.domain.store import QuotaRefused
from volumed.domain.transitions import Step
from volumed.domain.values import Lease, QuotaLimits, QuotaUsage
from volumed.store import _states
from volumed.store._base import _HELD, _NEW_JOB, _NO_JOB, SqlBase, now_us
from volumed.store.db import Queries

__all__ = ["SqlMaintenance"]


class SqlMaintenance(SqlBase):
    """Grow, quota policy, clone, template and import
    (:class:`~volumed.domain.store.MaintenanceStore`)."""

    async def begin_grow(
        self,
        owner_id: str,
        uuid: str,
        step: Step[VolumeState],
        expected_size_mb: int,
        size_mb: int,
        limits: QuotaLimits,
    ) -> bool:
        ((previous, busy),) = step.moves
        args = {"size_mb": size_mb, "previous_state": previous.value}
        async with self._db.transaction() as db:
            await self._lock_tenant(db, owner_id)  # before the volume row, as every quota check
            cur = await db.execute(
                "UPDATE volumes SET state = ?, job = 'grow', job_args = ?, "
                f"pending_size_mb = ?, message = NULL, {_NEW_JOB} "
                "WHERE uuid = ? AND owner_id = ? AND deleted = 0 "
                "AND job IS NULL AND state = ? AND size_mb = ?",
                (busy.value, json.dumps(args), size_mb, uuid, owner_id, previous.value,
                 expected_size_mb),
            )  # fmt: skip
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
                state_from=previous.value,
                state_to=busy.value,
                message=f"Growing from {expected_size_mb} MB to {size_mb} MB",
            )
        return True

    async def finish_grow(
        self,
        uuid: str,
        lease: Lease,
        step: Step[VolumeState],
        *,
        size_mb: int | None,
        free_mb: int | None,
        message: str | None = None,
    ) -> bool:
        target, target_params = _states.assign(step)
        expected, expected_params = _states.expect(step)
        async with self._db.transaction() as db:
            before = await self._volume_state(db, uuid)
            cur = await db.execute(
                f"UPDATE volumes SET state = {target}, size_mb = COALESCE(?, size_mb), "
                f"free_mb = COALESCE(?, free_mb), pending_size_mb = NULL, message = ?, {_NO_JOB} "
                f"WHERE uuid = ? AND {_HELD} AND job = 'grow' AND {expected}",
                (*target_params, size_mb, free_mb, message, uuid, lease.owner, lease.epoch,
                 *expected_params),
            )  # fmt: skip
            if cur == 1:
                await self._job_end_event(db, uuid, EventAction.GROW, before, message)
        return cur == 1

    async def begin_reservation(
        self, owner_id: str, uuid: str, step: Step[VolumeState], reserve: bool
    ) -> bool:
        ((previous, busy),) = step.moves
        job, current = (
            ("reserve", QuotaPolicy.DYNAMIC) if reserve else ("release", QuotaPolicy.STATIC)
        )
        async with self._db.transaction() as db:
            cur = await db.execute(
                "UPDATE volumes SET state = ?, job = ?, job_args = ?, message = NULL, "
                f"{_NEW_JOB} "
                "WHERE uuid = ? AND owner_id = ? AND deleted = 0 AND job IS NULL AND state = ? "
                "AND quota_policy = ?",
                (busy.value, job, json.dumps({"previous_state": previous.value}), uuid,
                 owner_id, previous.value, current.value),
            )  # fmt: skip
            if cur == 1:
                await self._events.record(
                    db,
                    uuid,
                    job,
                    EventResult.OK,
                    state_from=previous.value,
                    state_to=busy.value,
                    message=f"Quota policy changing from {current.value}",
                )
        return cur == 1

    async def finish_reservation(
        self,
        uuid: str,
        lease: Lease,
        step: Step[VolumeState],
        *,
        quota_policy: QuotaPolicy | None,
        free_mb: int | None,
        message: str | None = None,
    ) -> bool:
        target, target_params = _states.assign(step)
        expected, expected_params = _states.expect(step)
        policy = None if quota_policy is None else quota_policy.value
        async with self._db.transaction() as db:
            job = await db.fetchone("SELECT job, state FROM volumes WHERE uuid = ?", (uuid,))
            cur = await db.execute(
                f"UPDATE volumes SET state = {target}, quota_policy = COALESCE(?, quota_policy), "
                f"free_mb = COALESCE(?, free_mb), message = ?, {_NO_JOB} "
                f"WHERE uuid = ? AND {_HELD} AND job IN ('reserve', 'release') AND {expected}",
                (*target_params, policy, free_mb, message, uuid, lease.owner, lease.epoch,
                 *expected_params),
            )  # fmt: skip
            if cur == 1:
                await self._job_end_event(db, uuid, job[0], job[1], message)
        return cur == 1

    async def begin_clone(
        self,
        source_uuid: str,
        step: Step[VolumeState],
        clone: Volume,
        limits: QuotaLimits,
        *,
        all_readonly: bool = False,
    ) -> bool:
        ((expected_state, target),) = step.moves
        source_busy = target is not expected_state
        source = "uuid = ? AND owner_id = ? AND deleted = 0 AND job IS NULL AND state = ?" + (
            " AND NOT EXISTS (SELECT 1 FROM attachments "
            "WHERE volume_uuid = volumes.uuid AND readonly = 0)"
            if all_readonly
            else ""
        )
        params = (source_uuid, clone.owner_id, expected_state.value)
        # The state to give the source back once the copy is done (None: it stays as is).
        args = {
            "source": source_uuid,
            "source_state": expected_state.value if source_busy else None,
        }
        async with self._db.transaction() as db:
            await self._lock_tenant(db, clone.owner_id)  # before the volume rows
            if source_busy:
                won = await db.execute(
                    f"UPDATE volumes SET state = ? WHERE {source}", (target.value, *params)
                )
                if won != 1:
                    return False
                await self._events.record(
                    db,
                    source_uuid,
                    EventAction.CLONE,
                    EventResult.OK,
                    state_from=expected_state.value,
                    state_to=target.value,
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
        step: Step[VolumeState],
        *,
        source_uuid: str,
        source_back: Step[VolumeState] | None,
        free_mb: int | None,
        message: str | None = None,
    ) -> bool:
        target, target_params = _states.assign(step)
        expected, expected_params = _states.expect(step)
        async with self._db.transaction() as db:
            before = await self._volume_state(db, uuid)
            cur = await db.execute(
                f"UPDATE volumes SET state = {target}, free_mb = COALESCE(?, free_mb), "
                f"message = ?, {_NO_JOB} WHERE uuid = ? AND {_HELD} AND job = 'clone' "
                f"AND {expected}",
                (*target_params, free_mb, message, uuid, lease.owner, lease.epoch,
                 *expected_params),
            )  # fmt: skip
            if cur != 1:
                return False
            await self._job_end_event(db, uuid, EventAction.CLONE, before, message)
            if source_back is not None:
                await self._give_back(db, source_uuid, source_back, uuid)
        return True

    async def _give_back(
        self, db: Queries, source_uuid: str, back: Step[VolumeState], clone_uuid: str
    ) -> None:
        """The source a clone made busy is itself again (End.SOURCE_RETURNED)."""
        target, target_params = _states.assign(back)
        expected, expected_params = _states.expect(back)
        before = await self._volume_state(db, source_uuid)
        # Only a clone makes a volume busy without a job of its own.
        done = await db.execute(
            f"UPDATE volumes SET state = {target} WHERE uuid = ? AND {expected} AND job IS NULL",
            (*target_params, source_uuid, *expected_params),
        )
        if done == 1:
            await self._events.record(
                db,
                source_uuid,
                EventAction.CLONE,
                EventResult.OK,
                actor=WORKER,
                state_from=before,
                state_to=await self._volume_state(db, source_uuid),
                message=f"Cloned to {clone_uuid}",
            )

    async def make_template(self, owner_id: str, uuid: str, step: Step[VolumeState]) -> bool:
        ((expected_state, template),) = step.moves
        async with self._db.transaction() as db:
            cur = await db.execute(
                "UPDATE volumes SET state = ? WHERE uuid = ? AND owner_id = ? "
                "AND deleted = 0 AND job IS NULL AND state = ? "
                "AND NOT EXISTS (SELECT 1 FROM attachments WHERE volume_uuid = volumes.uuid)",
                (template.value, uuid, owner_id, expected_state.value),
            )
            if cur == 1:
                await self._events.record(
                    db,
                    uuid,
                    EventAction.STATE,
                    EventResult.OK,
                    state_from=expected_state.value,
                    state_to=template.value,
                    message="Converted to a template",
                )
        return cur == 1

    async def begin_import(
        self, owner_id: str, uuid: str, step: Step[VolumeState], worker_id: str, lease_us: int
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
            if before is None or before[0] not in _states.values(step.expected):
                return None
            target = step.target(VolumeState(before[0])).value
            won = await db.fetchone(
                "UPDATE volumes SET state = ?, job = 'import', job_args = ?, "
                "message = NULL, lease_owner = ?, lease_until_us = ?, job_attempts = 1, "
                "lease_epoch = lease_epoch + 1, publish_epoch = NULL, job_parked = 0 "
                "WHERE uuid = ? AND owner_id = ? AND deleted = 0 AND job IS NULL "
                "AND state = ? AND NOT EXISTS "
                "(SELECT 1 FROM attachments WHERE volume_uuid = volumes.uuid) "
                "RETURNING lease_epoch",
                (target, json.dumps({"previous_state": before[0]}), worker_id,
                 now_us() + lease_us, uuid, owner_id, before[0]),
            )  # fmt: skip
            if won is not None:
                await self._events.record(
                    db,
                    uuid,
                    EventAction.IMPORT,
                    EventResult.OK,
                    state_from=before[0],
                    state_to=target,
                )
        return None if won is None else Lease(worker_id, int(won[0]))
