"""The SQL store: metadata in SQLite or PostgreSQL, one statement (or one short
transaction) per transition.

Every transition is a compare-and-set (an ``UPDATE … WHERE`` on the expected state) or
one short transaction over the rows it changes. The SQL is written once, in the dialect
both databases share (``?`` placeholders, translated by :mod:`volumed.store.db`); the few
statements that must differ branch on ``db.dialect``:

* job claiming takes the oldest expired job ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
  replicas claiming at once take different jobs;
* count-then-write transactions (quotas) lock the tenant's ``users`` row first on
  PostgreSQL (``_lock_tenant``); SQLite's ``BEGIN IMMEDIATE`` serialises them anyway;
* tag membership uses ``instr`` on SQLite and ``strpos`` on PostgreSQL.

Transactions that take several rows take the instance before its volumes, so
transactions of replicas wait for each other instead of deadlocking.

On SQLite the adapter's coroutines never suspend, so a transaction never interleaves
with another request's statements; SQLite's own locking serialises us against the admin
CLI.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from volumed.domain.audit import WORKER, EventAction, EventResult, VolumeEvent
from volumed.domain.model import (
    Instance,
    InstanceRef,
    InstanceVolume,
    Mount,
    Ref,
    User,
    Volume,
)
from volumed.domain.ports import (
    AttachOutcome,
    InsertOutcome,
    InstanceOutcome,
    Job,
    Lease,
    ListQuery,
    NameTaken,
    NewAttachment,
    QuotaLimits,
    QuotaOverrides,
    QuotaRefused,
    QuotaUsage,
    StoreStats,
)
from volumed.domain.runtime import GuestExit
from volumed.domain.states import AccessMode, InstanceState, QuotaPolicy, VolumeState
from volumed.store import migrations
from volumed.store._events import EventLog
from volumed.store.db import Database, Queries, UniqueViolation

__all__ = ["SqlStore"]

_VOLUME_COLUMNS = (
    "uuid, owner_id, name, state, size_mb, persistent, created_at_us, quota_policy, "
    "access_mode, delete_lock, free_mb, filesystem, tags, message"
)
_VOLUME_FIELDS = [c.strip() for c in _VOLUME_COLUMNS.split(",")]
_GET_VOLUME = (
    "SELECT "
    + ", ".join("v." + c for c in _VOLUME_FIELDS)
    + ", i.uuid, i.name, i.state, a.readonly FROM volumes v "
    "LEFT JOIN attachments a ON a.volume_uuid = v.uuid "
    "LEFT JOIN instances i ON i.uuid = a.instance_uuid "
    "WHERE {where} AND v.deleted = 0 ORDER BY a.attached_at_us"
)
_GET_VOLUME_BY_UUID = _GET_VOLUME.format(where="v.uuid = ? AND v.owner_id = ?")
_GET_VOLUME_BY_NAME = _GET_VOLUME.format(where="v.owner_id = ? AND v.name = ?")
_VOLUME_STATES = {s.value: s for s in VolumeState}
_QUOTA_POLICIES = {p.value: p for p in QuotaPolicy}
_ACCESS_MODES = {m.value: m for m in AccessMode}
_RUNNING_STATES = ("starting", "running", "stopping")
_TOMBSTONE_US = 24 * 3600 * 1_000_000
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
"""How long a deleted volume's place in the list order is remembered."""


def now_us() -> int:
    return time.time_ns() // 1000


_MIGRATION_LOCK = 0x766F6C756D6564
"""The advisory lock key PostgreSQL replicas take while migrating ("volumed")."""


class SqlStore:
    """The :class:`~volumed.domain.ports.Store` over a :class:`~volumed.store.db.Database`."""

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

    # ------------------------------------------------------------------ lifecycle

    async def migrate(self) -> list[int]:
        """Apply the migrations not yet applied, in one transaction; returns the versions
        applied now. On PostgreSQL an advisory lock makes replicas starting together
        take turns: the second finds the work done."""
        applied_now = []
        async with self._db.transaction() as db:
            if db.dialect == "postgresql":
                await db.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            await db.execute(migrations.CREATE_VERSION_TABLE)
            done = {r[0] for r in await db.fetchall("SELECT version FROM schema_migrations")}
            migrations.check_known(done, self.dialect)
            for migration in migrations.all_migrations(self.dialect):
                if migration.version in done:
                    continue
                for statement in migration.statements():
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at_us) VALUES (?,?,?)",
                    (migration.version, migration.name, now_us()),
                )
                applied_now.append(migration.version)
        return applied_now

    async def pending_migrations(self) -> list[int]:
        done = await self.applied_migrations()
        return [m.version for m in migrations.all_migrations(self.dialect) if m.version not in done]

    async def applied_migrations(self) -> set[int]:
        """The versions recorded in the database (none before the first migration)."""
        found = await self._db.fetchone(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?"
            if self.dialect == "postgresql"
            else "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
            ("schema_migrations",),
        )
        if not found[0]:
            return set()
        return {r[0] for r in await self._db.fetchall("SELECT version FROM schema_migrations")}

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers (and, for SQLite, is still
        the file it was opened as)."""
        await self._db.ping()

    async def probe_write(self) -> None:
        """Raise StoreFull unless the database has room for a write now."""
        await self._db.probe_write()

    async def close(self) -> None:
        await self._db.close()

    async def _lock_tenant(self, db: Queries, owner_id: str) -> None:
        """Inside a write transaction, before counting a tenant's usage: serialise the
        tenant's count-then-write transactions. SQLite's BEGIN IMMEDIATE already does;
        PostgreSQL's READ COMMITTED does not, so lock the tenant's users row."""
        if db.dialect == "postgresql":
            # NO KEY UPDATE: exclusive among quota checks, yet compatible with the KEY
            # SHARE lock that foreign-key checks of volume and instance updates take.
            await db.execute("SELECT 1 FROM users WHERE id = ? FOR NO KEY UPDATE", (owner_id,))

    # ------------------------------------------------------------------ users and tokens

    async def user_for_token(self, token_hash: str) -> User | None:
        db: Queries = self._db
        row = await db.fetchone(
            "SELECT u.id, u.name FROM tokens t JOIN users u ON u.id = t.user_id "
            "WHERE t.token_hash = ?",
            (token_hash,),
        )
        return User(row[0], row[1]) if row else None

    async def create_user(self, user: User) -> None:
        db: Queries = self._db
        try:
            await db.execute(
                "INSERT INTO users (id, name, created_at_us) VALUES (?,?,?)",
                (user.id, user.name, now_us()),
            )
        except UniqueViolation:
            raise NameTaken(user.name) from None

    async def find_user(self, name: str) -> User | None:
        db: Queries = self._db
        row = await db.fetchone("SELECT id, name FROM users WHERE name = ?", (name,))
        return User(row[0], row[1]) if row else None

    async def list_users(self) -> list[User]:
        db: Queries = self._db
        rows = await db.fetchall("SELECT id, name FROM users ORDER BY created_at_us, name")
        return [User(r[0], r[1]) for r in rows]

    async def delete_user(self, user_id: str) -> bool:
        """Remove a user and their tokens; refused (False) while they own anything."""
        async with self._db.transaction() as db:
            owns = await db.fetchone(
                "SELECT 1 FROM volumes WHERE owner_id = ? UNION ALL "
                "SELECT 1 FROM instances WHERE owner_id = ? LIMIT 1",
                (user_id, user_id),
            )
            if owns:
                return False
            await db.execute("DELETE FROM tokens WHERE user_id = ?", (user_id,))
            return (await db.execute("DELETE FROM users WHERE id = ?", (user_id,))) == 1

    async def add_token(self, token_id: str, user_id: str, token_hash: str, label: str) -> None:
        """Raises NameTaken if the token is registered already (replicas starting
        together with one preset token)."""
        db: Queries = self._db
        try:
            await db.execute(
                "INSERT INTO tokens (id, user_id, token_hash, label, created_at_us) "
                "VALUES (?,?,?,?,?)",
                (token_id, user_id, token_hash, label, now_us()),
            )
        except UniqueViolation:
            raise NameTaken(label) from None

    async def list_tokens(self, user_id: str | None = None) -> list[dict[str, Any]]:
        db: Queries = self._db
        sql = (
            "SELECT t.id, u.name AS user, t.label, t.created_at_us FROM tokens t "
            "JOIN users u ON u.id = t.user_id"
        )
        params: tuple[Any, ...] = ()
        if user_id is not None:
            sql += " WHERE t.user_id = ?"
            params = (user_id,)
        return [dict(r) for r in await db.fetchall(sql + " ORDER BY t.created_at_us", params)]

    async def revoke_token(self, token_id: str) -> bool:
        db: Queries = self._db
        return (await db.execute("DELETE FROM tokens WHERE id = ?", (token_id,))) == 1

    async def count_users(self) -> int:
        db: Queries = self._db
        return int((await db.fetchone("SELECT count(*) FROM users"))[0])

    # ------------------------------------------------------------------ volumes: reads

    async def get_volume(self, owner_id: str, ref: Ref) -> Volume | None:
        # One statement for the volume and its attachments: this is the hottest read.
        if ref.uuid is not None:
            rows = await self._db.fetchall(_GET_VOLUME_BY_UUID, (ref.uuid, owner_id))
        else:
            rows = await self._db.fetchall(_GET_VOLUME_BY_NAME, (owner_id, ref.name))
        if not rows:
            return None
        volume = _volume_from_row(rows[0])
        width = len(_VOLUME_FIELDS)
        for row in rows:
            inst_uuid, inst_name = row[width], row[width + 1]
            if inst_uuid is None:
                continue
            inst_state, readonly = row[width + 2], row[width + 3]
            volume.attached_to.append(InstanceRef(inst_uuid, inst_name))
            if inst_state in _RUNNING_STATES:
                volume.mounted_by.append(Mount(inst_uuid, inst_name, bool(readonly)))
        return volume

    async def list_volumes(self, owner_id: str, query: ListQuery) -> list[Volume]:
        db: Queries = self._db
        where = ["owner_id = ?", "deleted = 0"]
        params: list[Any] = [owner_id]
        if query.templates:
            where.append("state = 'template'")
        elif query.states:
            where.append(f"state IN ({','.join('?' * len(query.states))})")
            params.extend(query.states)
        else:
            where.append("state <> 'template'")
        if query.persistent is not None:
            where.append("persistent = ?")
            params.append(int(query.persistent))
        for tag in query.tags:
            # Tags are stored as a JSON array of validated strings (no quotes inside),
            # so an exact quoted match is a membership test.
            where.append(f"{self._strpos}(tags, ?) > 0")
            params.append(json.dumps(tag))
        op = "<=" if query.descending else ">="
        if query.from_uuid is not None:
            # A cursor deleted meanwhile still marks its place through its tombstone,
            # so a listing carries on after it instead of ending early.
            anchor = await db.fetchone(
                "SELECT created_at_us FROM volumes WHERE uuid = ? AND owner_id = ? UNION ALL "
                "SELECT created_at_us FROM volume_tombstones WHERE uuid = ? AND owner_id = ?",
                (query.from_uuid, owner_id, query.from_uuid, owner_id),
            )
            if anchor is None:
                return []
            where.append(f"(created_at_us, uuid) {op} (?, ?)")
            params.extend([anchor[0], query.from_uuid])
        elif query.from_time_us is not None:
            where.append(f"created_at_us {op} ?")
            params.append(query.from_time_us)
        order = "DESC" if query.descending else "ASC"
        sql = (
            f"SELECT {_VOLUME_COLUMNS} FROM volumes WHERE {' AND '.join(where)} "
            f"ORDER BY created_at_us {order}, uuid {order}"
        )
        if query.count:
            sql += " LIMIT ?"
            params.append(query.count)
        volumes = [_volume_from_row(r) for r in await db.fetchall(sql, params)]
        await self._fill_attachments(db, volumes)
        return volumes

    async def _fill_attachments(self, db: Queries, volumes: Sequence[Volume]) -> None:
        if not volumes:
            return
        by_uuid = {v.uuid: v for v in volumes}
        for chunk in _chunks(list(by_uuid), 500):
            rows = await db.fetchall(
                "SELECT a.volume_uuid, i.uuid, i.name, i.state, a.readonly "
                "FROM attachments a JOIN instances i ON i.uuid = a.instance_uuid "
                f"WHERE a.volume_uuid IN ({','.join('?' * len(chunk))}) "
                "ORDER BY a.attached_at_us",
                chunk,
            )
            for volume_uuid, inst_uuid, inst_name, inst_state, readonly in rows:
                volume = by_uuid[volume_uuid]
                volume.attached_to.append(InstanceRef(inst_uuid, inst_name))
                if inst_state in _RUNNING_STATES:
                    volume.mounted_by.append(Mount(inst_uuid, inst_name, bool(readonly)))

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
            "FROM volumes WHERE job IS NOT NULL"
        )
        return int(row[0])

    # ------------------------------------------------------------------ volumes: transitions

    async def insert_volume(
        self, volume: Volume, job: str | None, job_args: dict[str, Any]
    ) -> None:
        """Insert a new volume; raises NameTaken if the tenant already uses the name."""
        try:
            async with self._db.transaction() as db:
                await db.execute(
                    f"INSERT INTO volumes ({_VOLUME_COLUMNS}, job, job_args) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (*_volume_values(volume), job, json.dumps(job_args) if job else None),
                )
                await self._created_event(db, volume)
        except UniqueViolation:
            raise NameTaken(volume.name) from None

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

    async def _instance_deleted_events(
        self, db: Queries, instance_uuid: str, held: Sequence[tuple[str, str, Any]], gone: set[str]
    ) -> None:
        """Deleting an instance detaches its volumes and deletes the non-persistent ones."""
        for uuid, state, _job in held:
            if uuid in gone:
                await self._events.record(
                    db,
                    uuid,
                    EventAction.DELETE,
                    EventResult.OK,
                    state_from=state,
                    message="Deleted with its instance (the volume was not persistent)",
                )
            else:
                await self._link_event(db, EventAction.DETACH, uuid, [instance_uuid], state)

    async def _volume_state(self, db: Queries, uuid: str) -> str | None:
        row = await db.fetchone("SELECT state FROM volumes WHERE uuid = ?", (uuid,))
        return None if row is None else str(row[0])

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

    async def begin_delete(self, owner_id: str, uuid: str, expected: Sequence[str]) -> bool:
        """Compare-and-set: hide the volume and owe its deletion, if it is in an expected
        state, unlocked and unattached."""
        async with self._db.transaction() as db:
            won = await db.fetchall(
                "UPDATE volumes SET deleted = 1, job = 'delete', job_args = '{}', "
                f"{_NEW_JOB} "
                f"WHERE uuid = ? AND owner_id = ? AND deleted = 0 AND delete_lock = 0 "
                f"AND state IN ({','.join('?' * len(expected))}) "
                # No job, or a format no worker holds: it is cancelled (a running one
                # is waited for by the caller instead).
                "AND (job IS NULL OR (job = 'format' AND lease_until_us < ?)) "
                "AND NOT EXISTS (SELECT 1 FROM attachments WHERE volume_uuid = volumes.uuid) "
                # Not while a clone of it is being copied.
                "AND NOT EXISTS (SELECT 1 FROM volumes c "
                "WHERE c.clone_source = volumes.uuid AND c.job = 'clone') "
                "RETURNING state",
                (uuid, owner_id, *expected, now_us()),
            )
            if won:
                await self._events.record(
                    db, uuid, EventAction.DELETE, EventResult.OK, state_from=won[0][0]
                )
        return bool(won)

    async def purge_volume(self, uuid: str) -> bool:
        """Drop the row of a deleted volume once its image is gone, leaving a tombstone
        of its place in the list order (for listings whose ``from`` cursor it is)."""
        now = now_us()
        async with self._db.transaction() as db:
            await db.execute(
                "INSERT INTO volume_tombstones "
                "(uuid, owner_id, name, created_at_us, deleted_at_us) "
                "SELECT uuid, owner_id, name, created_at_us, CAST(? AS BIGINT) FROM volumes "
                "WHERE uuid = ? AND deleted = 1 "
                # The request and the worker may purge the same volume at once; under
                # PostgreSQL's READ COMMITTED both can pass a NOT EXISTS test.
                "ON CONFLICT (uuid) DO NOTHING",
                (now, uuid),
            )
            await db.execute(
                "DELETE FROM volume_tombstones WHERE deleted_at_us < ?", (now - _TOMBSTONE_US,)
            )
            cur = await db.execute("DELETE FROM volumes WHERE uuid = ? AND deleted = 1", (uuid,))
            await self._events.prune_gone(db)
        return cur == 1

    # ------------------------------------------------------------------ jobs

    async def claim_job(self, worker_id: str, lease_us: int) -> Job | None:
        """Take the oldest job whose lease has expired, under a new lease for ``worker_id``."""
        db: Queries = self._db
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
        return Job(
            uuid=row[0],
            kind=row[1],
            args=json.loads(row[2] or "{}"),
            state=row[3],
            size_mb=row[4],
            quota_policy=row[5],
            attempts=row[6],
            lease_owner=worker_id,
            epoch=int(row[7]),
            published=None if row[8] is None else int(row[8]),
        )

    async def stats(self) -> StoreStats:
        db: Queries = self._db
        by_state: dict[str, int] = {}
        provisioned = used = 0
        for state, count, size_mb, used_mb in await db.fetchall(
            "SELECT state, count(*), COALESCE(SUM(size_mb), 0), "
            "COALESCE(SUM(size_mb - free_mb), 0) FROM volumes WHERE deleted = 0 GROUP BY state"
        ):
            by_state[state] = int(count)
            provisioned += int(size_mb)
            used += int(used_mb)
        tenants = (await db.fetchone("SELECT count(*) FROM users"))[0]
        jobs = await db.fetchone(
            "SELECT count(*), COALESCE(SUM(job_parked), 0) FROM volumes WHERE job IS NOT NULL"
        )
        return StoreStats(by_state, provisioned, used, int(tenants), int(jobs[0]), int(jobs[1]))

    # ------------------------------------------------------------------ audit trail

    async def volume_events(self, owner_id: str, uuid: str) -> list[VolumeEvent]:
        return await self._events.list(self._db, owner_id, uuid)

    async def add_volume_event(self, uuid: str, action: str, result: str, message: str) -> None:
        async with self._db.transaction() as db:
            await self._events.record(db, uuid, action, result, actor=WORKER, message=message)

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

    async def set_job_state(
        self, uuid: str, lease: Lease, expected: Sequence[str], state: str
    ) -> bool:
        """Compare-and-set the state of a volume whose job ``lease`` holds."""
        async with self._db.transaction() as db:
            before = await db.fetchone(
                "SELECT state, job, job_attempts FROM volumes WHERE uuid = ?", (uuid,)
            )
            cur = await db.execute(
                f"UPDATE volumes SET state = ? WHERE uuid = ? AND {_HELD} "
                f"AND job IS NOT NULL AND state IN ({','.join('?' * len(expected))})",
                (state, uuid, lease.owner, lease.epoch, *expected),
            )
            if cur == 1 and before[0] != state:
                await self._events.record(
                    db,
                    uuid,
                    before[1],
                    EventResult.OK,
                    actor=WORKER,
                    state_from=before[0],
                    state_to=state,
                    message=f"Started (attempt {before[2]})",
                )
        return cur == 1

    async def finish_job(
        self,
        uuid: str,
        lease: Lease,
        expected: Sequence[str],
        state: str,
        *,
        free_mb: int | None = None,
        size_mb: int | None = None,
        message: str | None = None,
    ) -> bool:
        """Compare-and-set: end the job held by ``lease`` and move to ``state``."""
        # "available" means attached to nothing. A volume created with its instance is
        # attached before it is formatted, so it finishes "idle" instead.
        async with self._db.transaction() as db:
            before = await db.fetchone("SELECT state, job FROM volumes WHERE uuid = ?", (uuid,))
            won = await db.fetchall(
                "UPDATE volumes SET state = CASE WHEN ? = 'available' AND EXISTS "
                "(SELECT 1 FROM attachments WHERE volume_uuid = volumes.uuid) THEN 'idle' "
                "ELSE ? END, free_mb = COALESCE(?, free_mb), "
                f"size_mb = COALESCE(?, size_mb), message = ?, {_NO_JOB} "
                f"WHERE uuid = ? AND {_HELD} AND job IS NOT NULL "
                f"AND state IN ({','.join('?' * len(expected))}) RETURNING state",
                (
                    state,
                    state,
                    free_mb,
                    size_mb,
                    message,
                    uuid,
                    lease.owner,
                    lease.epoch,
                    *expected,
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

    # ------------------------------------------------------------------ instances (reads)

    async def get_instance(self, owner_id: str, ref: Ref) -> Instance | None:
        db: Queries = self._db
        key, value = ("uuid", ref.uuid) if ref.uuid is not None else ("name", ref.name)
        row = await db.fetchone(
            f"SELECT * FROM instances WHERE owner_id = ? AND {key} = ?", (owner_id, value)
        )
        if row is None:
            return None
        instance = _instance_from_row(row)
        for vrow in await db.fetchall(
            "SELECT v.uuid, v.name, a.at, a.readonly FROM attachments a "
            "JOIN volumes v ON v.uuid = a.volume_uuid WHERE a.instance_uuid = ? "
            "ORDER BY a.attached_at_us",
            (instance.uuid,),
        ):
            instance.volumes.append(InstanceVolume(vrow[0], vrow[1], vrow[2], bool(vrow[3])))
        return instance

    # ---- instances and attachments
    #
    # Each transition is one BEGIN IMMEDIATE transaction over the instance row and its
    # volumes' rows: the instance is taken first by a compare-and-set on its state (an
    # UPDATE, so PostgreSQL would lock the row in the same order), then the volumes.
    # A lost compare-and-set rolls everything back and says what it found (_Abort).

    async def list_instances(self, owner_id: str, query: ListQuery) -> list[Instance]:
        db: Queries = self._db
        where = ["owner_id = ?"]
        params: list[Any] = [owner_id]
        if query.states:
            where.append(f"state IN ({_marks(query.states)})")
            params.extend(query.states)
        for tag in query.tags:
            where.append(f"{self._strpos}(tags, ?) > 0")
            params.append(json.dumps(tag))
        op = "<=" if query.descending else ">="
        if query.from_uuid is not None:
            anchor = await db.fetchone(
                "SELECT created_at_us FROM instances WHERE uuid = ? AND owner_id = ?",
                (query.from_uuid, owner_id),
            )
            if anchor is None:
                return []
            where.append(f"(created_at_us, uuid) {op} (?, ?)")
            params.extend([anchor[0], query.from_uuid])
        elif query.from_time_us is not None:
            where.append(f"created_at_us {op} ?")
            params.append(query.from_time_us)
        order = "DESC" if query.descending else "ASC"
        sql = (
            f"SELECT * FROM instances WHERE {' AND '.join(where)} "
            f"ORDER BY created_at_us {order}, uuid {order}"
        )
        if query.count:
            sql += " LIMIT ?"
            params.append(query.count)
        instances = [_instance_from_row(r) for r in await db.fetchall(sql, params)]
        await self._fill_instance_volumes(db, instances)
        return instances

    async def _fill_instance_volumes(self, db: Queries, instances: Sequence[Instance]) -> None:
        by_uuid = {i.uuid: i for i in instances}
        for chunk in _chunks(list(by_uuid), 500):
            rows = await db.fetchall(
                "SELECT a.instance_uuid, v.uuid, v.name, a.at, a.readonly FROM attachments a "
                "JOIN volumes v ON v.uuid = a.volume_uuid "
                f"WHERE a.instance_uuid IN ({_marks(chunk)}) ORDER BY a.attached_at_us",
                chunk,
            )
            for inst_uuid, vol_uuid, vol_name, at, readonly in rows:
                by_uuid[inst_uuid].volumes.append(
                    InstanceVolume(vol_uuid, vol_name, at, bool(readonly))
                )

    async def transitional_instances(self) -> list[Instance]:
        db: Queries = self._db
        rows = await db.fetchall(
            "SELECT * FROM instances WHERE state IN ('starting', 'stopping') ORDER BY created_at_us"
        )
        instances = [_instance_from_row(r) for r in rows]
        await self._fill_instance_volumes(db, instances)
        return instances

    async def insert_instance(
        self,
        instance: Instance,
        new_volumes: Sequence[Volume],
        attachments: Sequence[NewAttachment],
        limits: QuotaLimits | None = None,
    ) -> InsertOutcome:
        """All or nothing: the instance, its new volumes (owing ``format``), and every
        attachment, existing volumes taken by compare-and-set."""
        position = {a.volume_uuid: i for i, a in enumerate(attachments)}
        now = now_us()
        try:
            async with self._db.transaction() as db:
                if limits is not None and new_volumes:
                    # Counted in this transaction, like any other create.
                    size_mb = sum(v.size_mb for v in new_volumes)
                    await self._check_room(db, instance.owner_id, limits, len(new_volumes), size_mb)
                try:
                    await db.execute(
                        "INSERT INTO instances (uuid, owner_id, name, state, created_at_us, "
                        "image, memory_mb, vcpus, args, env, tags) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        _instance_values(instance),
                    )
                except UniqueViolation:
                    raise _Abort(InsertOutcome(AttachOutcome.NAME_TAKEN)) from None
                for volume in new_volumes:
                    try:
                        await db.execute(
                            f"INSERT INTO volumes ({_VOLUME_COLUMNS}, job, job_args) "
                            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                            (*_volume_values(volume), "format", "{}"),
                        )
                    except UniqueViolation:
                        index = position.get(volume.uuid)
                        raise _Abort(InsertOutcome(AttachOutcome.NAME_TAKEN, index)) from None
                    await self._created_event(db, volume)
                for i, link in enumerate(attachments):
                    state_before = await self._volume_state(db, link.volume_uuid)
                    if link.expected_states and not await self._take_volume(
                        db, instance.owner_id, link.volume_uuid, link.expected_states
                    ):
                        raise _Abort(InsertOutcome(AttachOutcome.VOLUME_CHANGED, i))
                    await db.execute(
                        "INSERT INTO attachments (volume_uuid, instance_uuid, at, readonly, "
                        "attached_at_us) VALUES (?,?,?,?,?)",
                        (link.volume_uuid, instance.uuid, link.at, int(link.readonly), now + i),
                    )
                    await self._link_event(
                        db, EventAction.ATTACH, link.volume_uuid, [instance.uuid], state_before
                    )
        except _Abort as abort:
            assert isinstance(abort.outcome, InsertOutcome)
            return abort.outcome
        return InsertOutcome(AttachOutcome.DONE)

    async def _take_volume(
        self, db: Queries, owner_id: str, uuid: str, expected: Sequence[str]
    ) -> bool:
        """Compare-and-set of the volume side of an attach: ``available`` → ``idle``;
        a shared volume already attached elsewhere keeps its state."""
        cur = await db.execute(
            "UPDATE volumes SET state = CASE WHEN state = 'available' THEN 'idle' "
            "ELSE state END WHERE uuid = ? AND owner_id = ? AND deleted = 0 "
            f"AND state IN ({_marks(expected)})",
            (uuid, owner_id, *expected),
        )
        return cur == 1

    async def _take_instance(
        self, db: Queries, owner_id: str, uuid: str, expected: Sequence[str]
    ) -> None:
        """Compare-and-set on the instance's state (a no-op UPDATE that takes the row),
        or abort with GONE / CHANGED."""
        cur = await db.execute(
            "UPDATE instances SET state = state WHERE uuid = ? AND owner_id = ? "
            f"AND state IN ({_marks(expected)})",
            (uuid, owner_id, *expected),
        )
        if cur == 1:
            return
        exists = await db.fetchone(
            "SELECT 1 FROM instances WHERE uuid = ? AND owner_id = ?", (uuid, owner_id)
        )
        raise _Abort(AttachOutcome.INSTANCE_CHANGED if exists else AttachOutcome.INSTANCE_GONE)

    async def attach(
        self,
        owner_id: str,
        volume_uuid: str,
        instance_uuid: str,
        at: str,
        readonly: bool,
        expected_volume_states: Sequence[str],
        expected_instance_states: Sequence[str],
        max_volumes: int,
    ) -> AttachOutcome:
        try:
            async with self._db.transaction() as db:
                await self._take_instance(db, owner_id, instance_uuid, expected_instance_states)
                paths = [
                    r[1]
                    for r in await db.fetchall(
                        "SELECT volume_uuid, at FROM attachments WHERE instance_uuid = ?",
                        (instance_uuid,),
                    )
                ]
                held = await db.fetchone(
                    "SELECT 1 FROM attachments WHERE volume_uuid = ? AND instance_uuid = ?",
                    (volume_uuid, instance_uuid),
                )
                if held:
                    raise _Abort(AttachOutcome.ALREADY_ATTACHED)
                if len(paths) >= max_volumes:
                    raise _Abort(AttachOutcome.TOO_MANY)
                if at in paths:
                    raise _Abort(AttachOutcome.PATH_TAKEN)
                state_before = await self._volume_state(db, volume_uuid)
                if not await self._take_volume(db, owner_id, volume_uuid, expected_volume_states):
                    raise _Abort(AttachOutcome.VOLUME_CHANGED)
                await db.execute(
                    "INSERT INTO attachments (volume_uuid, instance_uuid, at, readonly, "
                    "attached_at_us) VALUES (?,?,?,?,?)",
                    (volume_uuid, instance_uuid, at, int(readonly), now_us()),
                )
                await self._link_event(
                    db, EventAction.ATTACH, volume_uuid, [instance_uuid], state_before
                )
        except _Abort as abort:
            assert isinstance(abort.outcome, AttachOutcome)
            return abort.outcome
        return AttachOutcome.DONE

    async def detach(
        self,
        owner_id: str,
        volume_uuid: str,
        from_instance_uuid: str | None,
        expected_volume_states: Sequence[str],
        expected_instance_states: Sequence[str],
    ) -> AttachOutcome:
        try:
            async with self._db.transaction() as db:
                sql = "SELECT instance_uuid FROM attachments WHERE volume_uuid = ?"
                params: tuple[str, ...] = (volume_uuid,)
                if from_instance_uuid is not None:
                    sql += " AND instance_uuid = ?"
                    params += (from_instance_uuid,)
                holders = sorted(r[0] for r in await db.fetchall(sql, params))
                # Instances first (sorted), then the volume: the order attach uses.
                for holder in holders:
                    await self._take_instance(db, owner_id, holder, expected_instance_states)
                cur = await db.execute(
                    "UPDATE volumes SET persistent = 1 WHERE uuid = ? AND owner_id = ? "
                    f"AND deleted = 0 AND state IN ({_marks(expected_volume_states)})",
                    (volume_uuid, owner_id, *expected_volume_states),
                )
                if cur == 0:
                    raise _Abort(AttachOutcome.VOLUME_CHANGED)
                if not holders:
                    raise _Abort(AttachOutcome.NOT_ATTACHED)
                state_before = await self._volume_state(db, volume_uuid)
                await db.execute(
                    "DELETE FROM attachments WHERE volume_uuid = ? "
                    f"AND instance_uuid IN ({_marks(holders)})",
                    (volume_uuid, *holders),
                )
                # Detached instances are stopped, so they mounted nothing: the state
                # only changes when no instance holds the volume any more.
                await db.execute(
                    "UPDATE volumes SET state = 'available' WHERE uuid = ? AND NOT EXISTS "
                    "(SELECT 1 FROM attachments WHERE volume_uuid = volumes.uuid)",
                    (volume_uuid,),
                )
                await self._link_event(db, EventAction.DETACH, volume_uuid, holders, state_before)
        except _Abort as abort:
            assert isinstance(abort.outcome, AttachOutcome)
            return abort.outcome
        return AttachOutcome.DONE

    async def begin_start(
        self,
        owner_id: str,
        instance_uuid: str,
        expected: Sequence[str],
        mountable: Sequence[str],
    ) -> InstanceOutcome:
        try:
            async with self._db.transaction() as db:
                await self._move_instance(db, owner_id, instance_uuid, expected, "starting")
                unready = await db.fetchone(
                    "SELECT 1 FROM attachments a JOIN volumes v ON v.uuid = a.volume_uuid "
                    f"WHERE a.instance_uuid = ? AND v.state NOT IN ({_marks(mountable)}) "
                    "LIMIT 1",
                    (instance_uuid, *mountable),
                )
                if unready:
                    raise _Abort(InstanceOutcome.VOLUMES_NOT_READY)
                held = "SELECT volume_uuid FROM attachments WHERE instance_uuid = ?"
                before = await self._states_of(db, held, (instance_uuid,))
                await db.execute(
                    "UPDATE volumes SET state = 'mounted' WHERE uuid IN (SELECT volume_uuid "
                    "FROM attachments WHERE instance_uuid = ?) "
                    f"AND state IN ({_marks(mountable)})",
                    (instance_uuid, *mountable),
                )
                await self._state_events(
                    db, before, "Mounted: an instance it is attached to starts"
                )
        except _Abort as abort:
            assert isinstance(abort.outcome, InstanceOutcome)
            return abort.outcome
        return InstanceOutcome.DONE

    async def _move_instance(
        self, db: Queries, owner_id: str, uuid: str, expected: Sequence[str], state: str
    ) -> None:
        cur = await db.execute(
            "UPDATE instances SET state = ? WHERE uuid = ? AND owner_id = ? "
            f"AND state IN ({_marks(expected)})",
            (state, uuid, owner_id, *expected),
        )
        if cur == 1:
            return
        exists = await db.fetchone(
            "SELECT 1 FROM instances WHERE uuid = ? AND owner_id = ?", (uuid, owner_id)
        )
        raise _Abort(InstanceOutcome.CHANGED if exists else InstanceOutcome.GONE)

    async def finish_start(
        self, instance_uuid: str, *, node: str | None = None, boot_time_us: int | None = None
    ) -> bool:
        db: Queries = self._db
        cur = await db.execute(
            "UPDATE instances SET state = 'running', node = ?, boot_time_us = ?, "
            "started_at_us = ?, stopped_at_us = NULL, stop_reason = NULL, exit_code = NULL, "
            "stop_request = NULL, "
            "stop_code = NULL WHERE uuid = ? AND state = 'starting'",
            (node, boot_time_us, now_us(), instance_uuid),
        )
        return cur == 1

    async def record_exit(
        self, instance_uuid: str, expected: Sequence[str], outcome: GuestExit
    ) -> bool:
        return await self._to_stopped(instance_uuid, expected, outcome)

    async def heartbeat_node(self, node: str, alive_until_us: int) -> None:
        async with self._db.transaction() as db:
            cur = await db.execute(
                "UPDATE nodes SET alive_until_us = ? WHERE name = ?", (alive_until_us, node)
            )
            if cur == 0:
                await db.execute(
                    "INSERT INTO nodes (name, alive_until_us) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET alive_until_us = excluded.alive_until_us",
                    (node, alive_until_us),
                )

    async def dead_nodes(self, now_us: int) -> list[str]:
        db: Queries = self._db
        rows = await db.fetchall("SELECT name FROM nodes WHERE alive_until_us < ?", (now_us,))
        return [r[0] for r in rows]

    async def request_stop(self, instance_uuid: str, node: str, request: str) -> bool:
        db: Queries = self._db
        cur = await db.execute(
            "UPDATE instances SET stop_request = ? WHERE uuid = ? AND node = ? "
            "AND state = 'running'",
            (request, instance_uuid, node),
        )
        return cur == 1

    async def stop_requests(self, node: str) -> list[tuple[Instance, str]]:
        db: Queries = self._db
        rows = await db.fetchall(
            "SELECT * FROM instances WHERE node = ? AND state = 'running' "
            "AND stop_request IS NOT NULL",
            (node,),
        )
        found = [(_instance_from_row(r), str(r["stop_request"])) for r in rows]
        await self._fill_instance_volumes(db, [i for i, _ in found])
        return found

    async def instance_by_uuid(self, instance_uuid: str) -> Instance | None:
        db: Queries = self._db
        row = await db.fetchone("SELECT owner_id FROM instances WHERE uuid = ?", (instance_uuid,))
        return None if row is None else await self.get_instance(row[0], Ref(uuid=instance_uuid))

    async def running_instances(self, node: str) -> list[Instance]:
        db: Queries = self._db
        rows = await db.fetchall(
            "SELECT * FROM instances WHERE node = ? AND state = 'running' ORDER BY created_at_us",
            (node,),
        )
        instances = [_instance_from_row(r) for r in rows]
        await self._fill_instance_volumes(db, instances)
        return instances

    async def abort_start(self, instance_uuid: str) -> bool:
        return await self._to_stopped(instance_uuid, ("starting",), None)

    async def begin_stop(
        self, owner_id: str, instance_uuid: str, expected: Sequence[str]
    ) -> InstanceOutcome:
        try:
            async with self._db.transaction() as db:
                await self._move_instance(db, owner_id, instance_uuid, expected, "stopping")
        except _Abort as abort:
            assert isinstance(abort.outcome, InstanceOutcome)
            return abort.outcome
        return InstanceOutcome.DONE

    async def set_free_mb(self, volume_uuid: str, free_mb: int) -> None:
        db: Queries = self._db
        await db.execute("UPDATE volumes SET free_mb = ? WHERE uuid = ?", (free_mb, volume_uuid))

    async def finish_stop(self, instance_uuid: str, outcome: GuestExit | None = None) -> bool:
        return await self._to_stopped(instance_uuid, ("stopping",), outcome)

    async def _to_stopped(
        self, instance_uuid: str, from_states: Sequence[str], outcome: GuestExit | None
    ) -> bool:
        ended = (
            (None, None, None)
            if outcome is None
            else (int(outcome.reason), outcome.exit_code, outcome.stop_code)
        )
        async with self._db.transaction() as db:
            cur = await db.execute(
                "UPDATE instances SET state = 'stopped', stop_request = NULL, stopped_at_us = ?, "
                "stop_reason = ?, "
                f"exit_code = ?, stop_code = ? WHERE uuid = ? AND state IN ({_marks(from_states)})",
                (now_us(), *ended, instance_uuid, *from_states),
            )
            if cur == 0:
                return False
            await self._unmount_released(
                db, "SELECT volume_uuid FROM attachments WHERE instance_uuid = ?", (instance_uuid,)
            )
        return True

    async def _unmount_released(
        self, db: Queries, volumes_sql: str, params: tuple[str, ...]
    ) -> None:
        """Op.UNMOUNT for the chosen volumes: ``mounted`` → ``idle`` unless another
        instance that still runs holds them (a shared read-only volume)."""
        before = await self._states_of(db, volumes_sql, params)
        await db.execute(
            f"UPDATE volumes SET state = 'idle' WHERE uuid IN ({volumes_sql}) "
            "AND state = 'mounted' AND NOT EXISTS (SELECT 1 FROM attachments a "
            "JOIN instances i ON i.uuid = a.instance_uuid WHERE a.volume_uuid = volumes.uuid "
            f"AND i.state IN ({_marks(_RUNNING_STATES)}))",
            (*params, *_RUNNING_STATES),
        )
        await self._state_events(db, before, "Unmounted: no running instance holds it any more")

    async def delete_instance(
        self,
        owner_id: str,
        instance_uuid: str,
        expected: Sequence[str],
        releasable: Sequence[str],
    ) -> InstanceOutcome:
        try:
            async with self._db.transaction() as db:
                # The state stays while the row lives; the row goes at the end.
                await self._move_instance(db, owner_id, instance_uuid, expected, "stopped")
                held = [
                    (r[0], r[1], r[2])
                    for r in await db.fetchall(
                        "SELECT v.uuid, v.state, v.job FROM attachments a "
                        "JOIN volumes v ON v.uuid = a.volume_uuid WHERE a.instance_uuid = ?",
                        (instance_uuid,),
                    )
                ]
                # A job (format, grow, clone, ...) owns a volume row until it ends.
                if any(state not in releasable or job is not None for _, state, job in held):
                    raise _Abort(InstanceOutcome.VOLUMES_NOT_READY)
                await db.execute(
                    "DELETE FROM attachments WHERE instance_uuid = ?", (instance_uuid,)
                )
                uuids = [uuid for uuid, _, _ in held]
                if uuids:
                    marks = _marks(uuids)
                    orphan = (
                        "NOT EXISTS (SELECT 1 FROM attachments WHERE volume_uuid = volumes.uuid)"
                    )
                    # Not persistent and held by nothing else: goes with its instance.
                    gone = await db.fetchall(
                        "UPDATE volumes SET deleted = 1, job = 'delete', job_args = '{}', "
                        f"{_NEW_JOB} "
                        f"WHERE uuid IN ({marks}) AND persistent = 0 AND {orphan} "
                        "RETURNING uuid",
                        uuids,
                    )
                    await db.execute(
                        "UPDATE volumes SET state = 'available' "
                        f"WHERE uuid IN ({marks}) AND deleted = 0 "
                        f"AND state IN ('idle', 'mounted') AND {orphan}",
                        uuids,
                    )
                    await self._unmount_released(db, marks, tuple(uuids))
                    await self._instance_deleted_events(
                        db, instance_uuid, held, {r[0] for r in gone}
                    )
                await db.execute("DELETE FROM instances WHERE uuid = ?", (instance_uuid,))
        except _Abort as abort:
            assert isinstance(abort.outcome, InstanceOutcome)
            return abort.outcome
        return InstanceOutcome.DONE

    # ---- updates, clones, templates, quotas

    async def quota_overrides(self, user_id: str) -> QuotaOverrides | None:
        db: Queries = self._db
        row = await db.fetchone(
            "SELECT max_volumes, max_total_volume_mb, min_volume_mb, max_volume_mb "
            "FROM user_quotas WHERE user_id = ?",
            (user_id,),
        )
        return None if row is None else QuotaOverrides(row[0], row[1], row[2], row[3])

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
            "COALESCE(SUM(CASE WHEN state <> 'stopped' THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN state <> 'stopped' THEN vcpus ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN state <> 'stopped' THEN memory_mb ELSE 0 END), 0) "
            "FROM instances WHERE owner_id = ?",
            (owner_id,),
        )
        return QuotaUsage(volumes, total_mb, int(row[0]), int(row[1]), int(row[2]), int(row[3]))

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
        job: str,
        job_args: dict[str, Any],
        clone_source: str | None = None,
    ) -> None:
        try:
            await db.execute(
                f"INSERT INTO volumes ({_VOLUME_COLUMNS}, job, job_args, clone_source) "
                f"VALUES ({_marks(range(17))})",
                (*_volume_values(volume), job, json.dumps(job_args), clone_source),
            )
        except UniqueViolation:
            raise NameTaken(volume.name) from None
        await self._created_event(db, volume, clone_source)

    async def insert_volume_within_quota(
        self, volume: Volume, job: str, job_args: dict[str, Any], limits: QuotaLimits
    ) -> None:
        """Count and insert in one write transaction, so concurrent creates of a tenant
        are serialised and cannot overshoot its limits together."""
        async with self._db.transaction() as db:
            await self._check_room(db, volume.owner_id, limits, 1, volume.size_mb)
            await self._insert_row(db, volume, job, job_args)

    async def set_tags(
        self, owner_id: str, uuid: str, expected: Sequence[str], tags: Sequence[str]
    ) -> bool:
        db: Queries = self._db
        cur = await db.execute(
            "UPDATE volumes SET tags = ? WHERE uuid = ? AND owner_id = ? AND deleted = 0 "
            "AND tags = ?",
            (json.dumps(list(tags)), uuid, owner_id, json.dumps(list(expected))),
        )
        return cur == 1

    async def set_delete_lock(self, owner_id: str, uuid: str, locked: bool) -> bool:
        db: Queries = self._db
        cur = await db.execute(
            "UPDATE volumes SET delete_lock = ? WHERE uuid = ? AND owner_id = ? AND deleted = 0",
            (int(locked), uuid, owner_id),
        )
        return cur == 1

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

    async def has_active_clones(self, uuid: str) -> bool:
        db: Queries = self._db
        row = await db.fetchone(
            "SELECT 1 FROM volumes WHERE clone_source = ? AND job = 'clone' LIMIT 1", (uuid,)
        )
        return row is not None

    async def job_holding(self, uuid: str) -> str | None:
        db: Queries = self._db
        row = await db.fetchone(
            "SELECT job FROM volumes WHERE uuid = ? AND job IS NOT NULL UNION ALL "
            "SELECT job FROM volumes WHERE clone_source = ? AND job = 'clone' LIMIT 1",
            (uuid, uuid),
        )
        return None if row is None else str(row[0])

    async def cursor_name(self, owner_id: str, uuid: str) -> str | None:
        db: Queries = self._db
        row = await db.fetchone(
            "SELECT name FROM volumes WHERE uuid = ? AND owner_id = ? UNION ALL "
            "SELECT name FROM volume_tombstones WHERE uuid = ? AND owner_id = ?",
            (uuid, owner_id, uuid, owner_id),
        )
        return None if row is None else str(row[0])

    # ---- transfers and admin (volume import, volumed fsck)

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

    async def fsck_rows(self) -> list[dict[str, Any]]:
        """Every volume row, deleted-pending ones included: uuid, name, owner (user name),
        state, deleted, job, lease_epoch."""
        db: Queries = self._db
        rows = await db.fetchall(
            "SELECT v.uuid, v.name, COALESCE(u.name, v.owner_id) AS owner, v.state, "
            "v.deleted, v.job, v.lease_epoch FROM volumes v "
            "LEFT JOIN users u ON u.id = v.owner_id "
            "ORDER BY v.created_at_us"
        )
        return [dict(r) for r in rows]

    async def mark_image_missing(self, uuid: str, message: str) -> bool:
        """Put a visible volume that no job holds into ``error`` with ``message``."""
        async with self._db.transaction() as db:
            before = await db.fetchone(
                "SELECT state FROM volumes WHERE uuid = ? AND deleted = 0 AND job IS NULL",
                (uuid,),
            )
            if before is None:
                return False
            await db.execute(
                "UPDATE volumes SET state = 'error', message = ? WHERE uuid = ?", (message, uuid)
            )
            await self._events.record(
                db,
                uuid,
                EventAction.STATE,
                EventResult.ERROR,
                actor="fsck",
                state_from=before[0],
                state_to="error",
                message=message,
            )
        return True


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


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def _instance_values(i: Instance) -> tuple[Any, ...]:
    return (
        i.uuid,
        i.owner_id,
        i.name,
        i.state.value,
        i.created_at_us,
        i.image,
        i.memory_mb,
        i.vcpus,
        json.dumps(i.args),
        json.dumps(i.env),
        json.dumps(i.tags),
    )


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _volume_values(v: Volume) -> tuple[Any, ...]:
    return (
        v.uuid,
        v.owner_id,
        v.name,
        v.state.value,
        v.size_mb,
        int(v.persistent),
        v.created_at_us,
        v.quota_policy.value,
        v.access_mode.value,
        int(v.delete_lock),
        v.free_mb,
        v.filesystem,
        json.dumps(v.tags),
        v.message,
    )


def _volume_from_row(row: Any) -> Volume:
    return Volume(
        uuid=row[0],
        owner_id=row[1],
        name=row[2],
        state=_VOLUME_STATES[row[3]],
        size_mb=row[4],
        persistent=bool(row[5]),
        created_at_us=row[6],
        quota_policy=_QUOTA_POLICIES[row[7]],
        access_mode=_ACCESS_MODES[row[8]],
        delete_lock=bool(row[9]),
        free_mb=row[10],
        filesystem=row[11],
        tags=json.loads(row[12]) if row[12] != "[]" else [],
        message=row[13],
    )


def _instance_from_row(row: Any) -> Instance:
    return Instance(
        uuid=row["uuid"],
        owner_id=row["owner_id"],
        name=row["name"],
        state=InstanceState(row["state"]),
        created_at_us=row["created_at_us"],
        image=row["image"],
        memory_mb=row["memory_mb"],
        vcpus=row["vcpus"],
        args=json.loads(row["args"]),
        env=json.loads(row["env"]),
        tags=json.loads(row["tags"]),
        node=row["node"],
        boot_time_us=row["boot_time_us"],
        started_at_us=row["started_at_us"],
        stopped_at_us=row["stopped_at_us"],
        stop_reason=row["stop_reason"],
        exit_code=row["exit_code"],
        stop_code=row["stop_code"],
    )
