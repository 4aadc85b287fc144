"""The SQL store's volume rows: reads (the hottest is one statement), listing with
cursors and tombstones, delete and purge, tags, lock, and the admin's fsck reads.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from volumed.domain.audit import EventAction, EventResult
from volumed.domain.model import InstanceRef, Mount, Ref, Volume
from volumed.domain.states import VolumeState
from volumed.domain.values import ListQuery, VolumeRows
from volumed.store import _states
from volumed.store._base import _NEW_JOB, SqlBase, now_us
from volumed.store._rows import (
    _VOLUME_COLUMNS,
    _VOLUME_STATES,
    _chunks,
    _volume_from_row,
)
from volumed.store.db import Queries

__all__ = ["SqlVolumes"]


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
_WIDTH = len(_VOLUME_FIELDS)
"""Where the attachment columns of ``_GET_VOLUME`` start."""
_NO_ROWS = VolumeRows(())
_REUSED_PAGE = 1000
"""The largest first page reused until the next commit (a whole listing's first)."""
_TOMBSTONE_US = 24 * 3600 * 1_000_000
"""How long a deleted volume's place in the list order is remembered."""


class SqlVolumes(SqlBase):
    """Volume rows (:class:`~volumed.domain.store.VolumeStore`)."""

    async def get_volume(self, owner_id: str, ref: Ref) -> Volume | None:
        rows = await self._read_volume(owner_id, ref)
        if not rows:
            return None
        volume = _volume_from_row(rows[0])
        if rows[0][_WIDTH] is not None:
            volume.attached_to, volume.mounted_by = _instances(rows)
        return volume

    def committed_stamp(self) -> bytes | None:
        return self._db.stamp()

    async def get_volume_row(self, owner_id: str, ref: Ref) -> VolumeRows:
        rows = await self._read_volume(owner_id, ref)
        if not rows:
            return _NO_ROWS
        head = rows[0]
        # The row carries its first attachment's columns after the volume's.
        if head[_WIDTH] is None:
            return VolumeRows((head,))
        attached, mounted = _instances(rows)
        return VolumeRows((head,), {head[0]: attached}, {head[0]: mounted} if mounted else {})

    async def _read_volume(self, owner_id: str, ref: Ref) -> list[Any]:
        # One statement for the volume and its attachments: this is the hottest read.
        # Reused until the next commit (SQLite, store/db.py): a GET one asks no database.
        if ref.uuid is not None:
            return await self._db.fetchall_reused(_GET_VOLUME_BY_UUID, (ref.uuid, owner_id))
        return await self._db.fetchall_reused(_GET_VOLUME_BY_NAME, (owner_id, ref.name))

    async def list_volumes(self, owner_id: str, query: ListQuery) -> list[Volume]:
        found = await self.list_volume_rows(owner_id, query)
        volumes = [_volume_from_row(r) for r in found.rows]
        if found.attached_to:
            for volume in volumes:
                volume.attached_to = found.attached_to.get(volume.uuid, [])
                volume.mounted_by = found.mounted_by.get(volume.uuid, [])
        return volumes

    async def list_volume_rows(self, owner_id: str, query: ListQuery) -> VolumeRows:
        db: Queries = self._db
        where = ["owner_id = ?", "deleted = 0"]
        params: list[Any] = [owner_id]
        if query.templates:
            where.append("state = ?")
            params.append(_states.TEMPLATE)
        elif query.states:
            states, states_params = _states.expect(query.states)
            where.append(states)
            params.extend(states_params)
        else:
            where.append("state <> ?")
            params.append(_states.TEMPLATE)
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
                return _NO_ROWS
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
        # A first page (what a console or a script polls) is reused until the next
        # commit, like GET one: reading its rows cost more than all the rest of a
        # listing. Later pages, and the pages of a whole listing after its first, are
        # read every time: they are read once, and would only fill the cache.
        first = 0 < query.count <= _REUSED_PAGE and query.from_uuid is None
        fetch = db.fetchall_reused if first and query.from_time_us is None else db.fetchall
        rows = await fetch(sql, params)
        if not rows:
            return _NO_ROWS
        attached_to, mounted_by = await _page_instances(fetch, [r[0] for r in rows])
        return VolumeRows(rows, attached_to, mounted_by)

    async def begin_delete(self, owner_id: str, uuid: str, expected: Sequence[VolumeState]) -> bool:
        """Compare-and-set: hide the volume and owe its deletion, if it is in an expected
        state, unlocked and unattached."""
        states, states_params = _states.expect(expected)
        async with self._db.transaction() as db:
            won = await db.fetchall(
                "UPDATE volumes SET deleted = 1, job = 'delete', job_args = '{}', "
                f"{_NEW_JOB} "
                f"WHERE uuid = ? AND owner_id = ? AND deleted = 0 AND delete_lock = 0 "
                f"AND {states} "
                # No job, or a format no worker holds: it is cancelled (a running one
                # is waited for by the caller instead).
                "AND (job IS NULL OR (job = 'format' AND lease_until_us < ?)) "
                "AND NOT EXISTS (SELECT 1 FROM attachments WHERE volume_uuid = volumes.uuid) "
                # Not while a clone of it is being copied.
                "AND NOT EXISTS (SELECT 1 FROM volumes c "
                "WHERE c.clone_source = volumes.uuid AND c.job = 'clone') "
                "RETURNING state",
                (uuid, owner_id, *states_params, now_us()),
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

    async def set_free_mb(self, volume_uuid: str, free_mb: int) -> None:
        db: Queries = self._db
        await db.execute("UPDATE volumes SET free_mb = ? WHERE uuid = ?", (free_mb, volume_uuid))

    async def cursor_name(self, owner_id: str, uuid: str) -> str | None:
        db: Queries = self._db
        row = await db.fetchone(
            "SELECT name FROM volumes WHERE uuid = ? AND owner_id = ? UNION ALL "
            "SELECT name FROM volume_tombstones WHERE uuid = ? AND owner_id = ?",
            (uuid, owner_id, uuid, owner_id),
        )
        return None if row is None else str(row[0])

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
            state_to = _states.IMAGE_MISSING.target(_VOLUME_STATES[before[0]])
            await db.execute(
                "UPDATE volumes SET state = ?, message = ? WHERE uuid = ?",
                (state_to.value, message, uuid),
            )
            await self._events.record(
                db,
                uuid,
                EventAction.STATE,
                EventResult.ERROR,
                actor="fsck",
                state_from=before[0],
                state_to=state_to.value,
                message=message,
            )
        return True

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


def _instances(rows: Sequence[Any]) -> tuple[list[InstanceRef], list[Mount]]:
    """The instances in ``_GET_VOLUME``'s rows of one volume: its ``attached_to`` and
    ``mounted_by``."""
    attached: list[InstanceRef] = []
    mounted: list[Mount] = []
    for row in rows:
        inst_uuid, inst_name = row[_WIDTH], row[_WIDTH + 1]
        if inst_uuid is None:
            continue
        attached.append(InstanceRef(inst_uuid, inst_name))
        if row[_WIDTH + 2] in _states.HOLDING_MOUNTS:
            mounted.append(Mount(inst_uuid, inst_name, bool(row[_WIDTH + 3])))
    return attached, mounted


async def _page_instances(
    fetch: Callable[[str, Sequence[Any]], Awaitable[list[Any]]], uuids: list[str]
) -> tuple[dict[str, list[InstanceRef]], dict[str, list[Mount]]]:
    """The instances of a page's volumes that have any: one statement a page."""
    attached_to: dict[str, list[InstanceRef]] = {}
    mounted_by: dict[str, list[Mount]] = {}
    for chunk in _chunks(uuids, 500):
        rows = await fetch(
            "SELECT a.volume_uuid, i.uuid, i.name, i.state, a.readonly "
            "FROM attachments a JOIN instances i ON i.uuid = a.instance_uuid "
            f"WHERE a.volume_uuid IN ({','.join('?' * len(chunk))}) "
            "ORDER BY a.attached_at_us",
            chunk,
        )
        for volume_uuid, inst_uuid, inst_name, inst_state, readonly in rows:
            attached_to.setdefault(volume_uuid, []).append(InstanceRef(inst_uuid, inst_name))
            if inst_state in _states.HOLDING_MOUNTS:
                mount = Mount(inst_uuid, inst_name, bool(readonly))
                mounted_by.setdefault(volume_uuid, []).append(mount)
    return attached_to, mounted_by
