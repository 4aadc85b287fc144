"""The SQL store's quotas: a tenant's overrides, its usage, and the create that counts
and inserts in one transaction.
"""

from __future__ import annotations

from typing import Any

from volumed.domain.model import Volume
from volumed.domain.values import Claim, Job, QuotaLimits, QuotaOverrides, QuotaUsage
from volumed.store import _states
from volumed.store._base import SqlBase
from volumed.store.db import Queries

__all__ = ["SqlQuotas"]


class SqlQuotas(SqlBase):
    """Quotas (:class:`~volumed.domain.store.QuotaStore`)."""

    async def quota_overrides(self, user_id: str) -> QuotaOverrides | None:
        db: Queries = self._db
        # Read by every create: reused while the database is unchanged (a load of
        # creates reads it once per group commit instead of once per create).
        rows = await db.fetchall_reused(
            "SELECT max_volumes, max_total_volume_mb, min_volume_mb, max_volume_mb "
            "FROM user_quotas WHERE user_id = ?",
            (user_id,),
        )
        return QuotaOverrides(*rows[0]) if rows else None

    async def set_quota_overrides(self, user_id: str, overrides: QuotaOverrides) -> None:
        values = (
            overrides.max_volumes,
            overrides.max_total_volume_mb,
            overrides.min_volume_mb,
            overrides.max_volume_mb,
        )
        async with self._db.transaction() as db:
            await db.execute("DELETE FROM user_quotas WHERE user_id = ?", (user_id,))
            if any(value is not None for value in values):
                await db.execute(
                    "INSERT INTO user_quotas (user_id, max_volumes, max_total_volume_mb, "
                    "min_volume_mb, max_volume_mb) VALUES (?,?,?,?,?)",
                    (user_id, *values),
                )

    async def quota_usage(self, owner_id: str) -> QuotaUsage:
        db: Queries = self._db
        volumes, total_mb = await self._volume_usage(db, owner_id)
        row = await db.fetchone(
            "SELECT count(*), "
            # Live: every instance that is not stopped.
            "COALESCE(SUM(CASE WHEN state <> ? THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN state <> ? THEN vcpus ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN state <> ? THEN memory_mb ELSE 0 END), 0) "
            "FROM instances WHERE owner_id = ?",
            (*(_states.STOPPED,) * 3, owner_id),
        )
        return QuotaUsage(volumes, total_mb, int(row[0]), int(row[1]), int(row[2]), int(row[3]))

    async def insert_volume_within_quota(
        self,
        volume: Volume,
        job: str | None,
        job_args: dict[str, Any],
        limits: QuotaLimits,
        *,
        claim: Claim | None = None,
    ) -> Job | None:
        """Count and insert in one write transaction, so concurrent creates of a tenant
        are serialised and cannot overshoot its limits together. Raises NameTaken if the
        tenant already uses the name; ``job`` None: the volume owes no job. With
        ``claim``, the row is inserted claimed (see the port) and the job returned."""
        async with self._db.transaction() as db:
            await self._check_room(db, volume.owner_id, limits, 1, volume.size_mb)
            if job is None or claim is None:
                await self._insert_row(db, volume, job, job_args)
                return None
            return await self._insert_claimed(db, volume, job, job_args, claim)

    async def pending_reserved_mb(self) -> int:
        """Host space already promised to jobs not done yet: static volumes being
        formatted or cloned, the growth of static volumes being grown, and volumes
        switching to static (counted whole)."""
        db: Queries = self._db
        row = await db.fetchone(
            "SELECT COALESCE(SUM(CASE "
            "WHEN job IN ('format', 'clone') AND quota_policy = 'static' THEN size_mb "
            "WHEN job = 'grow' AND quota_policy = 'static' THEN pending_size_mb - size_mb "
            "WHEN job = 'reserve' THEN size_mb ELSE 0 END), 0) "
            "FROM volumes "
            "WHERE job IS NOT NULL AND (quota_policy = 'static' OR job = 'reserve')"
        )
        return int(row[0])
