"""Waiting, within a bound, for the background jobs that hold volumes.

A request that starts data-plane work (a create, a clone, a grow) records the job first,
so the acknowledgement survives a crash, then waits here until the job has ended and
answers with the volume's real state. A request that finds a volume held by a short job
(formatting, a clone source, a grow, a quota-policy switch, the end of an import) waits
here too, then does what was asked. Past the bound (``job_wait_s``) it answers as if it
had not waited: with the state at that moment, or error 24 naming the job.

Wake-ups are in process: whoever ends a job (the reconciler, an import) calls
:meth:`JobSignals.ended` with the volumes it touched, and the waiters on them re-read
their rows at once. A job run by another replica sends no signal here; waiters re-read
the store every ``recheck_s`` for that case.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

from volumed.domain import errors
from volumed.domain.model import Ref, User, Volume
from volumed.domain.store import VolumeStore
from volumed.domain.transitions import TRANSITIONAL, Op, is_allowed

__all__ = ["JobSignals", "JobWaits"]


@dataclass(slots=True, eq=False)
class _Watch:
    """One waiter: the volumes whose jobs ended since it last looked."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    ended: set[str] = field(default_factory=set)


class JobSignals:
    """In-process wake-ups, keyed by volume uuid."""

    def __init__(self) -> None:
        self._watches: dict[str, set[_Watch]] = {}

    @property
    def waiting(self) -> bool:
        """Whether any request waits for a job to end."""
        return bool(self._watches)

    def ended(self, *uuids: str) -> None:
        """A job on (or reading) these volumes ended, whatever its outcome."""
        for uuid in uuids:
            for watch in self._watches.get(uuid, ()):
                watch.ended.add(uuid)
                watch.event.set()

    @contextlib.contextmanager
    def watching(self, uuids: Sequence[str]) -> Iterator[_Watch]:
        watch = _Watch()
        for uuid in uuids:
            self._watches.setdefault(uuid, set()).add(watch)
        try:
            yield watch
        finally:
            for uuid in uuids:
                watchers = self._watches.get(uuid)
                if watchers is not None:
                    watchers.discard(watch)
                    if not watchers:
                        del self._watches[uuid]


class JobWaits:
    def __init__(
        self,
        store: VolumeStore,
        signals: JobSignals,
        *,
        bound_s: float = 10.0,
        recheck_s: float = 0.25,
    ) -> None:
        self._store = store
        self.signals = signals
        """Where the ends of jobs are announced (the reconciler, an import)."""
        self.bound_s = bound_s
        self._recheck_s = recheck_s

    async def settle(self, user: User, uuids: Sequence[str]) -> dict[str, Volume | None]:
        """Wait until none of these volumes is held by a job, or the bound runs out;
        return each as it is then (None: gone)."""
        fresh: dict[str, Volume | None] = {}

        async def held(uuid: str) -> bool:
            volume = fresh[uuid] = await self._store.get_volume(user.id, Ref(uuid=uuid))
            return volume is not None and volume.state in TRANSITIONAL

        await self._until_free(uuids, held)
        return fresh

    async def copies_done(self, volume: Volume) -> None:
        """Wait until no copy is being made of ``volume`` (a template, or a volume
        mounted read-only, stays in its state meanwhile); CannotBeUsed past the bound."""
        if await self._until_free([volume.uuid], self._store.has_active_clones):
            raise errors.CannotBeUsed(
                f"Volume '{volume.name}' is being copied into a new volume: its clone job "
                f"did not end within {self.bound_s:g} s; try again once it is done"
            )

    async def _until_free(
        self, uuids: Sequence[str], held: Callable[[str], Awaitable[bool]]
    ) -> bool:
        """Look at each volume with ``held`` again whenever a job on it ends (and every
        ``recheck_s``: a job on another replica sends no signal here) until none is held
        or the bound runs out. Returns whether any is still held."""
        deadline = time.monotonic() + self.bound_s
        pending = set(uuids)
        with self.signals.watching(list(uuids)) as watch:
            look = set(pending)
            while True:
                # Signals arriving while the rows are read are kept for the next round.
                watch.event.clear()
                watch.ended.difference_update(look)
                for uuid in look:
                    if not await held(uuid):
                        pending.discard(uuid)
                remaining = deadline - time.monotonic()
                if not pending or remaining <= 0:
                    return bool(pending)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        watch.event.wait(), timeout=min(remaining, self._recheck_s)
                    )
                look = (watch.ended & pending) if watch.event.is_set() else set(pending)

    async def settled(self, user: User, volumes: Sequence[Volume]) -> list[Volume]:
        """``volumes`` (new ones, owing their first job) as they are once their jobs
        ended, or at the bound. A volume deleted meanwhile is returned as it was.
        With no wait at all (a bound of 0) they are answered as inserted: the state at
        that moment, without reading the rows again (issue 15)."""
        if not volumes:
            return []
        if self.bound_s <= 0:
            return list(volumes)
        fresh = await self.settle(user, [v.uuid for v in volumes])
        return [fresh.get(v.uuid) or v for v in volumes]

    async def ready(self, user: User, volume: Volume, op: Op) -> Volume:
        """The volume, re-read after its job ended if ``op`` must wait for that job.
        Raises CannotBeUsed naming the job if it outlasts the bound, NotFound if the
        volume went away meanwhile."""
        if volume.state not in TRANSITIONAL or is_allowed(op, volume.state):
            return volume
        return await self.after_job(user, volume)

    async def after_job(self, user: User, volume: Volume) -> Volume:
        """The volume once the job holding it ended (see :meth:`ready`)."""
        fresh = (await self.settle(user, [volume.uuid])).get(volume.uuid)
        if fresh is None:
            raise errors.NotFound(f"No volume with uuid '{volume.uuid}'")
        if fresh.state in TRANSITIONAL:
            job = await self._store.job_holding(fresh.uuid) or "background"
            raise errors.CannotBeUsed(
                f"Volume '{fresh.name}' is still {fresh.state}: its {job} job did not end "
                f"within {self.bound_s:g} s; try again once it is done"
            )
        return fresh
