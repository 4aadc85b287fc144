"""The SQL of the volume audit trail (table ``volume_events``, migration 0004).

:class:`EventLog` never opens a transaction of its own: the store's transition methods
call :meth:`EventLog.record` inside theirs, so an event exists exactly when the change
it describes was committed.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING

from volumed.domain.audit import VolumeEvent

if TYPE_CHECKING:
    from volumed.store.db import Queries

__all__ = ["EventLog"]

_COLUMNS = "id, volume_uuid, at_us, actor, action, result, state_from, state_to, message"


class EventLog:
    def __init__(self, *, per_volume: int, retention_us: int) -> None:
        self._per_volume = per_volume
        self._retention_us = retention_us
        self._last_us = 0
        self._last_prune_us = 0

    async def record(
        self,
        db: Queries,
        uuid: str,
        action: str,
        result: str,
        *,
        actor: str | None = None,
        state_from: str | None = None,
        state_to: str | None = None,
        message: str | None = None,
        fresh: int = 0,
    ) -> None:
        """Append an event to the volume's trail; ``actor`` None means its owner (by
        name). Keeps the newest ``per_volume`` events of the volume. ``fresh`` > 0: the
        volume was inserted in this transaction and this is its ``fresh``-th event, so
        there is nothing to trim while that is within ``per_volume`` (a create's events
        skip the trim's statement)."""
        # Strictly increasing within this process, so the trail sorts as it happened.
        at = max(time.time_ns() // 1000, self._last_us + 1)
        self._last_us = at
        # Typed parameters: PostgreSQL cannot infer a type from a SELECT list.
        await db.execute(
            f"INSERT INTO volume_events (owner_id, {_COLUMNS}) "
            "SELECT v.owner_id, CAST(? AS TEXT), v.uuid, CAST(? AS BIGINT), "
            "COALESCE(CAST(? AS TEXT), "
            "(SELECT u.name FROM users u WHERE u.id = v.owner_id), v.owner_id), "
            "CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), "
            "CAST(? AS TEXT) FROM volumes v WHERE v.uuid = ?",
            (
                f"{at:014x}{secrets.token_hex(4)}",
                at,
                actor,
                action,
                result,
                state_from,
                state_to,
                message,
                uuid,
            ),
        )
        if 0 < fresh <= self._per_volume:
            return
        await db.execute(
            "DELETE FROM volume_events WHERE volume_uuid = ? AND at_us <= "
            "(SELECT at_us FROM volume_events WHERE volume_uuid = ? "
            "ORDER BY at_us DESC LIMIT 1 OFFSET ?)",
            (uuid, uuid, self._per_volume),
        )

    async def prune_gone(self, db: Queries, every_us: int = 3_600_000_000) -> None:
        """Forget the events, older than the retention period, of volumes whose row is
        gone. Runs at most once per ``every_us`` (it scans every old event)."""
        now = time.time_ns() // 1000
        if now - self._last_prune_us < every_us:
            return
        self._last_prune_us = now
        await db.execute(
            "DELETE FROM volume_events WHERE at_us < ? AND NOT EXISTS "
            "(SELECT 1 FROM volumes v WHERE v.uuid = volume_events.volume_uuid)",
            (now - self._retention_us,),
        )

    async def list(self, db: Queries, owner_id: str, uuid: str) -> list[VolumeEvent]:
        rows = await db.fetchall(
            f"SELECT {_COLUMNS} FROM volume_events WHERE volume_uuid = ? AND owner_id = ? "
            "ORDER BY at_us, id",
            (uuid, owner_id),
        )
        return [VolumeEvent(*row) for row in rows]
