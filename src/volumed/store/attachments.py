"""The SQL store's attachments: an instance inserted with its volumes, attach, detach.
Each is one transaction over the instance row and its volumes' rows (instance first),
so the two sides of an attachment can never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence

from volumed.domain.audit import EventAction
from volumed.domain.model import Instance, Volume
from volumed.domain.states import InstanceState, VolumeState
from volumed.domain.transitions import Step
from volumed.domain.values import AttachOutcome, InsertOutcome, NewAttachment, QuotaLimits
from volumed.store import _states
from volumed.store._base import SqlBase, _Abort, now_us
from volumed.store._rows import _VOLUME_COLUMNS, _instance_values, _marks, _volume_values
from volumed.store.db import Queries, UniqueViolation

__all__ = ["SqlAttachments"]


class SqlAttachments(SqlBase):
    """Attachments (:class:`~volumed.domain.store.InstanceStore`)."""

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
                    if link.step is not None and not await self._take_volume(
                        db, instance.owner_id, link.volume_uuid, link.step
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
        self, db: Queries, owner_id: str, uuid: str, step: Step[VolumeState]
    ) -> bool:
        """Compare-and-set of the volume side of an attach, as ``step`` says (Op.ATTACH:
        ``available`` → ``idle``; a shared volume attached elsewhere keeps its state)."""
        target, target_params = _states.assign(step)
        expected, expected_params = _states.expect(step)
        cur = await db.execute(
            f"UPDATE volumes SET state = {target} WHERE uuid = ? AND owner_id = ? AND deleted = 0 "
            f"AND {expected}",
            (*target_params, uuid, owner_id, *expected_params),
        )
        return cur == 1

    async def _take_instance(
        self, db: Queries, owner_id: str, uuid: str, expected: Sequence[InstanceState]
    ) -> None:
        """Compare-and-set on the instance's state (a no-op UPDATE that takes the row),
        or abort with GONE / CHANGED."""
        states, params = _states.expect(expected)
        cur = await db.execute(
            f"UPDATE instances SET state = state WHERE uuid = ? AND owner_id = ? AND {states}",
            (uuid, owner_id, *params),
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
        volume_step: Step[VolumeState],
        expected_instance_states: Sequence[InstanceState],
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
                if not await self._take_volume(db, owner_id, volume_uuid, volume_step):
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
        expected_volume_states: Sequence[VolumeState],
        expected_instance_states: Sequence[InstanceState],
    ) -> AttachOutcome:
        volume_states, volume_params = _states.expect(expected_volume_states)
        available, available_params = _states.assign(_states.ORPHANED)
        attached, attached_params = _states.expect(_states.ORPHANED)
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
                    f"AND deleted = 0 AND {volume_states}",
                    (volume_uuid, owner_id, *volume_params),
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
                    f"UPDATE volumes SET state = {available} WHERE uuid = ? AND {attached} "
                    "AND NOT EXISTS (SELECT 1 FROM attachments WHERE volume_uuid = volumes.uuid)",
                    (*available_params, volume_uuid, *attached_params),
                )
                await self._link_event(db, EventAction.DETACH, volume_uuid, holders, state_before)
        except _Abort as abort:
            assert isinstance(abort.outcome, AttachOutcome)
            return abort.outcome
        return AttachOutcome.DONE
