"""What every room of the SQL store shares: the database handle, the audit trail it
writes in the same transaction as each change, the tenant lock and quota check of
the rooms that add volumes, and the SQL fragments of job fencing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from volumed.domain.audit import WORKER, EventAction, EventResult
from volumed.domain.model import Volume
from volumed.domain.states import VolumeState
from volumed.domain.store import NameTaken, QuotaRefused
from volumed.domain.values import (
    FIRST_EPOCH,
    AttachOutcome,
    Claim,
    InsertOutcome,
    InstanceOutcome,
    Job,
    QuotaLimits,
    QuotaUsage,
)
from volumed.store._events import EventLog
from volumed.store._rows import _VOLUME_COLUMNS, _as_json, _marks, _volume_values
from volumed.store.db import Database, Queries, UniqueViolation

__all__ = ["SqlBase", "now_us"]


_PG_USAGE = (
    "SELECT COALESCE((SELECT volumes FROM tenant_usage WHERE owner_id = ?), 0) "
    "+ COALESCE(SUM(volumes), 0), "
    "COALESCE((SELECT total_mb FROM tenant_usage WHERE owner_id = ?), 0) "
    "+ COALESCE(SUM(total_mb), 0) "
    "FROM tenant_usage_delta WHERE owner_id = ?"
)
_PG_FOLD_USAGE = (
    "WITH folded AS (DELETE FROM tenant_usage_delta WHERE owner_id = ? "
    "RETURNING volumes, total_mb) "
    "INSERT INTO tenant_usage AS u (owner_id, volumes, total_mb) "
    "SELECT ?, COALESCE(SUM(volumes), 0), COALESCE(SUM(total_mb), 0) FROM folded "
    "ON CONFLICT (owner_id) DO UPDATE "
    "SET volumes = u.volumes + EXCLUDED.volumes, total_mb = u.total_mb + EXCLUDED.total_mb"
)


def now_us() -> int:
    return time.time_ns() // 1000


_NO_JOB = (
    "job = NULL, job_args = NULL, lease_owner = NULL, lease_until_us = 0, job_attempts = 0, "
    "publish_epoch = NULL, job_parked = 0"
)
# A row that owes a new job: unclaimed, and a new epoch, so that a holder of the last
# one (a frozen worker) is fenced off even before the new job is claimed.
_NEW_JOB = (
    "lease_owner = NULL, lease_until_us = 0, job_attempts = 0, "
    "lease_epoch = lease_epoch + 1, publish_epoch = NULL, job_parked = 0"
)
# The WHERE clause of every transition by a job's holder: its fencing token.
_HELD = "lease_owner = ? AND lease_epoch = ?"


class _Abort(Exception):
    """Roll the transaction back and report ``outcome`` (a lost compare-and-set)."""

    def __init__(self, outcome: AttachOutcome | InstanceOutcome | InsertOutcome) -> None:
        super().__init__(str(outcome))
        self.outcome = outcome


class SqlBase:
    """The database handle and the helpers the rooms share. A room is a subclass adding
    the methods of one role; :class:`~volumed.store.sql.SqlStore` composes them."""

    def __init__(
        self,
        db: Database,
        *,
        events_per_volume: int = 100,
        events_retention_us: int = 30 * 86_400_000_000,
    ) -> None:
        self._db = db
        self.dialect = db.dialect
        self._strpos = "instr" if db.dialect == "sqlite" else "strpos"
        self._events = EventLog(per_volume=events_per_volume, retention_us=events_retention_us)

    async def _lock_tenant(self, db: Queries, owner_id: str) -> None:
        """Inside a write transaction, before counting a tenant's usage: serialise the
        tenant's count-then-write transactions. SQLite's BEGIN IMMEDIATE already does;
        PostgreSQL's READ COMMITTED does not, so lock the tenant's users row."""
        if db.dialect == "postgresql":
            # NO KEY UPDATE: exclusive among quota checks, yet compatible with the KEY
            # SHARE lock that foreign-key checks of volume and instance updates take.
            await db.execute("SELECT 1 FROM users WHERE id = ? FOR NO KEY UPDATE", (owner_id,))

    async def _volume_state(self, db: Queries, uuid: str) -> str | None:
        row = await db.fetchone("SELECT state FROM volumes WHERE uuid = ?", (uuid,))
        return None if row is None else str(row[0])

    async def _created_event(
        self, db: Queries, volume: Volume, clone_source: str | None = None
    ) -> None:
        origin = f", a clone of {clone_source}" if clone_source else ""
        await self._events.record(
            db,
            volume.uuid,
            EventAction.CREATE,
            EventResult.OK,
            state_to=volume.state.value,
            message=(
                f"Created '{volume.name}' ({volume.size_mb} MB, {volume.quota_policy}{origin})"
            ),
            fresh=1,
        )

    async def _job_end_event(
        self, db: Queries, uuid: str, action: str, state_from: str | None, message: str | None
    ) -> None:
        """A job's end, by the worker: ``error`` when it left the volume in error."""
        state_to = await self._volume_state(db, uuid)
        failed = state_to == VolumeState.ERROR.value
        await self._events.record(
            db,
            uuid,
            action,
            EventResult.ERROR if failed else EventResult.OK,
            actor=WORKER,
            state_from=state_from,
            state_to=state_to,
            message=message,
        )

    async def _states_of(
        self, db: Queries, uuids_sql: str, params: tuple[str, ...]
    ) -> dict[str, str]:
        """The states of the volumes ``uuids_sql`` selects, before a bulk update."""
        rows = await db.fetchall(
            f"SELECT uuid, state FROM volumes WHERE uuid IN ({uuids_sql})", params
        )
        return {r[0]: r[1] for r in rows}

    async def _state_events(self, db: Queries, before: dict[str, str], message: str) -> None:
        """Record a ``state`` event for each volume of ``before`` whose state changed."""
        for uuid, state_from in before.items():
            state_to = await self._volume_state(db, uuid)
            if state_to is not None and state_to != state_from:
                await self._events.record(
                    db,
                    uuid,
                    EventAction.STATE,
                    EventResult.OK,
                    state_from=state_from,
                    state_to=state_to,
                    message=message,
                )

    async def _link_event(
        self,
        db: Queries,
        action: EventAction,
        uuid: str,
        instances: Sequence[str],
        state_from: str | None,
    ) -> None:
        """Record an attach or a detach, naming the instances (call it while they exist)."""
        names = [
            r[0]
            for r in await db.fetchall(
                f"SELECT name FROM instances WHERE uuid IN ({_marks(instances)}) ORDER BY name",
                tuple(instances),
            )
        ]
        quoted = ", ".join(f"'{n}'" for n in names)
        where = "to" if action is EventAction.ATTACH else "from"
        await self._events.record(
            db,
            uuid,
            action,
            EventResult.OK,
            state_from=state_from,
            state_to=await self._volume_state(db, uuid),
            message=f"{action.value.capitalize()}ed {where} instance {quoted}",
        )

    async def _volume_usage(self, db: Queries, owner_id: str) -> tuple[int, int]:
        # Kept by triggers in the transaction of every volume change: on SQLite in
        # tenant_usage itself (0009), on PostgreSQL as deltas beside it (0017).
        if db.dialect == "postgresql":
            row = await db.fetchone(_PG_USAGE, (owner_id, owner_id, owner_id))
        else:
            row = await db.fetchone(
                "SELECT volumes, total_mb FROM tenant_usage WHERE owner_id = ?", (owner_id,)
            )
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def _locked_volume_usage(self, db: Queries, owner_id: str) -> tuple[int, int]:
        """The usage a quota check reads, under the tenant lock. On PostgreSQL it also
        folds the committed deltas into tenant_usage, so they stay few; only holders of
        the tenant lock write that row, so nobody else ever waits for it."""
        if db.dialect != "postgresql":
            return await self._volume_usage(db, owner_id)
        await db.execute(_PG_FOLD_USAGE, (owner_id, owner_id))
        return await self._volume_usage(db, owner_id)

    async def _check_room(
        self, db: Queries, owner_id: str, limits: QuotaLimits, volumes: int, size_mb: int
    ) -> None:
        """Inside a write transaction: refuse what would take the tenant over its limits."""
        await self._lock_tenant(db, owner_id)
        count, total_mb = await self._locked_volume_usage(db, owner_id)
        if count + volumes > limits.max_volumes or total_mb + size_mb > limits.max_total_volume_mb:
            raise QuotaRefused(QuotaUsage(count, total_mb))

    async def _insert_row(
        self,
        db: Queries,
        volume: Volume,
        job: str | None,
        job_args: dict[str, Any],
        clone_source: str | None = None,
    ) -> None:
        try:
            await db.execute(
                f"INSERT INTO volumes ({_VOLUME_COLUMNS}, job, job_args, clone_source) "
                f"VALUES ({_marks(range(17))})",
                (*_volume_values(volume), job, _as_json(job_args) if job else None, clone_source),
            )
        except UniqueViolation:
            raise NameTaken(volume.name) from None
        await self._created_event(db, volume, clone_source)

    async def _insert_claimed(
        self, db: Queries, volume: Volume, job: str, job_args: dict[str, Any], claim: Claim
    ) -> Job:
        """Insert ``volume`` owing ``job``, as the first claim of the job leaves the row:
        leased to ``claim.worker_id``, attempt 1, epoch 1 (the row starts at 0), moved to
        the state ``claim.start`` gives, with the events of a create and of that start."""
        start = claim.start
        state = volume.state
        started = start.target(state) if start is not None and state in start.expected else state
        try:
            await db.execute(
                f"INSERT INTO volumes ({_VOLUME_COLUMNS}, job, job_args, lease_owner, "
                f"lease_until_us, job_attempts, lease_epoch) VALUES ({_marks(range(20))})",
                (*_volume_values(replace(volume, state=started)), job, _as_json(job_args),
                 claim.worker_id, now_us() + claim.lease_us, 1, FIRST_EPOCH),
            )  # fmt: skip
        except UniqueViolation:
            raise NameTaken(volume.name) from None
        await self._created_event(db, volume)
        if started is not state:
            await self._events.record(
                db,
                volume.uuid,
                job,
                EventResult.OK,
                actor=WORKER,
                state_from=state.value,
                state_to=started.value,
                message="Started (attempt 1)",
                fresh=2,
            )
        return Job(
            uuid=volume.uuid,
            kind=job,
            args=dict(job_args),
            state=started,
            size_mb=volume.size_mb,
            quota_policy=volume.quota_policy,
            attempts=1,
            lease_owner=claim.worker_id,
            epoch=FIRST_EPOCH,
        )
