"""The SQL store's instances: reads, start and stop (with their volumes mounted and
unmounted in the same transaction), delete, and the nodes that run them.

Each transition is one BEGIN IMMEDIATE transaction over the instance row and its
volumes' rows: the instance is taken first by a compare-and-set on its state (an
UPDATE, so PostgreSQL would lock the row in the same order), then the volumes. A lost
compare-and-set rolls everything back and says what it found (``_Abort``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from volumed.domain.audit import EventAction, EventResult
from volumed.domain.model import Instance, InstanceVolume, Ref
from volumed.domain.runtime import GuestExit
from volumed.domain.states import InstanceState, VolumeState
from volumed.domain.transitions import Step
from volumed.domain.values import InstanceOutcome, ListQuery
from volumed.store import _states
from volumed.store._base import _NEW_JOB, SqlBase, _Abort, now_us
from volumed.store._rows import _chunks, _instance_from_row, _marks
from volumed.store.db import Queries

__all__ = ["SqlInstances"]


class SqlInstances(SqlBase):
    """Instances and nodes (:class:`~volumed.domain.store.InstanceStore`)."""

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
        states, params = _states.expect(_states.INSTANCE_TRANSITIONAL)
        rows = await db.fetchall(
            f"SELECT * FROM instances WHERE {states} ORDER BY created_at_us", params
        )
        instances = [_instance_from_row(r) for r in rows]
        await self._fill_instance_volumes(db, instances)
        return instances

    async def instance_by_uuid(self, instance_uuid: str) -> Instance | None:
        db: Queries = self._db
        row = await db.fetchone("SELECT owner_id FROM instances WHERE uuid = ?", (instance_uuid,))
        return None if row is None else await self.get_instance(row[0], Ref(uuid=instance_uuid))

    async def running_instances(self, node: str) -> list[Instance]:
        db: Queries = self._db
        rows = await db.fetchall(
            "SELECT * FROM instances WHERE node = ? AND state = ? ORDER BY created_at_us",
            (node, _states.RUNNING),
        )
        instances = [_instance_from_row(r) for r in rows]
        await self._fill_instance_volumes(db, instances)
        return instances

    async def begin_start(
        self,
        owner_id: str,
        instance_uuid: str,
        step: Step[InstanceState],
        mount: Step[VolumeState],
    ) -> InstanceOutcome:
        mountable, mountable_params = _states.expect(mount)
        mounted, mounted_params = _states.assign(mount)
        try:
            async with self._db.transaction() as db:
                await self._move_instance(db, owner_id, instance_uuid, step)
                unready = await db.fetchone(
                    "SELECT 1 FROM attachments a JOIN volumes v ON v.uuid = a.volume_uuid "
                    f"WHERE a.instance_uuid = ? AND NOT {_states.expect(mount, 'v.state')[0]} "
                    "LIMIT 1",
                    (instance_uuid, *mountable_params),
                )
                if unready:
                    raise _Abort(InstanceOutcome.VOLUMES_NOT_READY)
                held = "SELECT volume_uuid FROM attachments WHERE instance_uuid = ?"
                before = await self._states_of(db, held, (instance_uuid,))
                await db.execute(
                    f"UPDATE volumes SET state = {mounted} WHERE uuid IN (SELECT volume_uuid "
                    f"FROM attachments WHERE instance_uuid = ?) AND {mountable}",
                    (*mounted_params, instance_uuid, *mountable_params),
                )
                await self._state_events(
                    db, before, "Mounted: an instance it is attached to starts"
                )
        except _Abort as abort:
            assert isinstance(abort.outcome, InstanceOutcome)
            return abort.outcome
        return InstanceOutcome.DONE

    async def _move_instance(
        self,
        db: Queries,
        owner_id: str,
        uuid: str,
        step: Step[InstanceState] | Sequence[InstanceState],
    ) -> None:
        """Compare-and-set the instance as ``step`` says (given only the expected states,
        take the row as it is), or abort with GONE or CHANGED."""
        expected, expected_params = _states.expect(step)
        target, target_params = _states.assign(step) if isinstance(step, Step) else ("state", ())
        cur = await db.execute(
            f"UPDATE instances SET state = {target} WHERE uuid = ? AND owner_id = ? AND {expected}",
            (*target_params, uuid, owner_id, *expected_params),
        )
        if cur == 1:
            return
        exists = await db.fetchone(
            "SELECT 1 FROM instances WHERE uuid = ? AND owner_id = ?", (uuid, owner_id)
        )
        raise _Abort(InstanceOutcome.CHANGED if exists else InstanceOutcome.GONE)

    async def finish_start(
        self,
        instance_uuid: str,
        step: Step[InstanceState],
        *,
        node: str | None = None,
        boot_time_us: int | None = None,
    ) -> bool:
        db: Queries = self._db
        target, target_params = _states.assign(step)
        expected, expected_params = _states.expect(step)
        cur = await db.execute(
            f"UPDATE instances SET state = {target}, node = ?, boot_time_us = ?, "
            "started_at_us = ?, stopped_at_us = NULL, stop_reason = NULL, exit_code = NULL, "
            "stop_request = NULL, "
            f"stop_code = NULL WHERE uuid = ? AND {expected}",
            (*target_params, node, boot_time_us, now_us(), instance_uuid, *expected_params),
        )
        return cur == 1

    async def record_exit(
        self, instance_uuid: str, step: Step[InstanceState], outcome: GuestExit
    ) -> bool:
        return await self._to_stopped(instance_uuid, step, outcome)

    async def abort_start(self, instance_uuid: str, step: Step[InstanceState]) -> bool:
        return await self._to_stopped(instance_uuid, step, None)

    async def begin_stop(
        self, owner_id: str, instance_uuid: str, step: Step[InstanceState]
    ) -> InstanceOutcome:
        try:
            async with self._db.transaction() as db:
                await self._move_instance(db, owner_id, instance_uuid, step)
        except _Abort as abort:
            assert isinstance(abort.outcome, InstanceOutcome)
            return abort.outcome
        return InstanceOutcome.DONE

    async def finish_stop(
        self, instance_uuid: str, step: Step[InstanceState], outcome: GuestExit | None = None
    ) -> bool:
        return await self._to_stopped(instance_uuid, step, outcome)

    async def _to_stopped(
        self, instance_uuid: str, step: Step[InstanceState], outcome: GuestExit | None
    ) -> bool:
        """End a start or a stop (or record an exit) as ``step`` says; the volumes no
        running instance holds any more are unmounted in the same transaction."""
        target, target_params = _states.assign(step)
        expected, expected_params = _states.expect(step)
        ended = (
            (None, None, None)
            if outcome is None
            else (int(outcome.reason), outcome.exit_code, outcome.stop_code)
        )
        async with self._db.transaction() as db:
            cur = await db.execute(
                f"UPDATE instances SET state = {target}, stop_request = NULL, "
                "stopped_at_us = ?, stop_reason = ?, "
                f"exit_code = ?, stop_code = ? WHERE uuid = ? AND {expected}",
                (*target_params, now_us(), *ended, instance_uuid, *expected_params),
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
        target, target_params = _states.assign(_states.UNMOUNT)
        expected, expected_params = _states.expect(_states.UNMOUNT)
        running, running_params = _states.expect(_states.HOLDING_MOUNTS, "i.state")
        await db.execute(
            f"UPDATE volumes SET state = {target} WHERE uuid IN ({volumes_sql}) "
            f"AND {expected} AND NOT EXISTS (SELECT 1 FROM attachments a "
            "JOIN instances i ON i.uuid = a.instance_uuid WHERE a.volume_uuid = volumes.uuid "
            f"AND {running})",
            (*target_params, *params, *expected_params, *running_params),
        )
        await self._state_events(db, before, "Unmounted: no running instance holds it any more")

    async def delete_instance(
        self,
        owner_id: str,
        instance_uuid: str,
        expected: Sequence[InstanceState],
        releasable: Sequence[VolumeState],
    ) -> InstanceOutcome:
        released = _states.values(releasable)
        try:
            async with self._db.transaction() as db:
                # The state stays while the row lives; the row goes at the end.
                await self._move_instance(db, owner_id, instance_uuid, expected)
                held = [
                    (r[0], r[1], r[2])
                    for r in await db.fetchall(
                        "SELECT v.uuid, v.state, v.job FROM attachments a "
                        "JOIN volumes v ON v.uuid = a.volume_uuid WHERE a.instance_uuid = ?",
                        (instance_uuid,),
                    )
                ]
                # A job (format, grow, clone, ...) owns a volume row until it ends.
                if any(state not in released or job is not None for _, state, job in held):
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
                    available, available_params = _states.assign(_states.ORPHANED)
                    attached, attached_params = _states.expect(_states.ORPHANED)
                    await db.execute(
                        f"UPDATE volumes SET state = {available} "
                        f"WHERE uuid IN ({marks}) AND deleted = 0 AND {attached} AND {orphan}",
                        (*available_params, *uuids, *attached_params),
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

    async def request_stop(
        self, instance_uuid: str, node: str, request: str, expected: Sequence[InstanceState]
    ) -> bool:
        db: Queries = self._db
        states, params = _states.expect(expected)
        cur = await db.execute(
            f"UPDATE instances SET stop_request = ? WHERE uuid = ? AND node = ? AND {states}",
            (request, instance_uuid, node, *params),
        )
        return cur == 1

    async def stop_requests(self, node: str) -> list[tuple[Instance, str]]:
        db: Queries = self._db
        rows = await db.fetchall(
            "SELECT * FROM instances WHERE node = ? AND state = ? AND stop_request IS NOT NULL",
            (node, _states.RUNNING),
        )
        found = [(_instance_from_row(r), str(r["stop_request"])) for r in rows]
        await self._fill_instance_volumes(db, [i for i, _ in found])
        return found

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
