"""The reconciler: carries out the background work recorded on volume rows.

A job (format, delete, ...) is written in the same transaction as the request that owes
it, so it can never be lost. A worker claims one under a lease, renews the lease while it
works, and ends it with a compare-and-set that only the lease holder can win. A worker
killed mid-job leaves its lease to expire; the next claim redoes the job, which every
storage operation allows (see :class:`~volumed.domain.storage.StorageDriver`).

Each claim carries a fencing epoch: a job builds the new image as a staged copy and
publishes it only through :func:`volumed.domain.fencing.publish`, so a worker that was
frozen past its lease cannot change a volume another worker has taken over.

A job that raises is handed back with an exponential back-off; after ``max_attempts``
it is parked (an error event, the ``volumed_jobs_parked`` gauge) until an operator runs
``volumed job retry``.

Jobs share the event loop (and the host's CPUs) with the API. While it is busy
(:data:`BUSY_REQUESTS` requests in flight, or the loop slow to come back,
:data:`BUSY_LAG_S`) and no request waits for a job, the worker runs one job at a time:
a burst of creates answered without waiting (``job_wait_s`` 0) is acknowledged first and
formatted as the API leaves room, with every slot once it is not busy.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from volumed.domain.audit import EventResult
from volumed.domain.fencing import LeaseLost, committed_usage, roll_forward
from volumed.domain.job_waits import JobSignals
from volumed.domain.states import QuotaPolicy
from volumed.domain.storage import ImageUsage, Placed, StorageDriver, StorageError
from volumed.domain.store import EventStore, JobStore, StoreUnavailable, VolumeStore
from volumed.domain.transitions import End, step
from volumed.domain.values import FIRST_EPOCH, Claim, Job, JobStarts

log = logging.getLogger("volumed.worker")

BUSY_LAG_S = 0.0005
"""How long, on average over a window, a task that yields waits to run again when the
event loop counts as busy; then background jobs yield to the requests (one at a time).
Four formats at once took ~40 % of the server's CPU under a load of creates that waited
for none of them (bench/README.md, issue 15). An idle loop answers in ~20 µs; the wait
also grows when the host's CPUs are contended, which is as much a reason to yield."""
LOAD_WINDOW_S = 0.1
BUSY_REQUESTS = 8
"""Requests in flight from which the API counts as busy. The loop's lag alone missed a
saturated loop on a quiet host: 16 clients each waiting for its answer keep few tasks
ready at once (bench/README.md, issue 15)."""
_PROBE_EVERY_S = 0.01

JobHandler = Callable[[Job], Awaitable[None]]
JobObserver = Callable[[str, float, str], None]
"""Called with (kind, seconds, outcome) after each attempt; outcome is ``ok``, ``retry``
(the attempt raised; the job runs again), ``failed`` (the volume was put in error),
``parked`` (it raised ``max_attempts`` times; it waits for an operator) or ``lost``
(another worker took the job over: this one's lease had run out)."""


@dataclass(slots=True, frozen=True)
class WorkerSettings:
    lease_s: float = 30.0
    poll_s: float = 1.0
    concurrency: int = 4
    max_attempts: int = 5
    retry_backoff_s: float = 1.0
    """Wait before the second attempt; doubled after each failure, at most 300 s."""
    format_ahead: bool = False
    """Whether :meth:`Reconciler.format_ahead` begins images (else it does nothing)."""

    def backoff_us(self, attempts: int) -> int:
        return int(min(self.retry_backoff_s * 2 ** max(0, attempts - 1), 300.0) * 1_000_000)


class ReconcilerStore(JobStore, VolumeStore, EventStore, Protocol):
    """What the reconciler reads and writes: the job queue, purges, failed attempts."""


class Reconciler:
    def __init__(
        self,
        store: ReconcilerStore,
        storage: StorageDriver,
        settings: WorkerSettings,
        *,
        on_job_done: JobObserver | None = None,
        signals: JobSignals | None = None,
    ) -> None:
        self._store = store
        self._signals = signals or JobSignals()
        self._storage = storage
        self._settings = settings
        self._on_job_done = on_job_done
        self._gave_up: set[str] = set()
        self.worker_id = "w-" + secrets.token_hex(6)
        self._wake = asyncio.Event()
        self._job_ended = asyncio.Event()
        self._loop_busy = False
        self._requests_in_flight: Callable[[], int] = lambda: 0
        self._reserved = 0
        """Slots taken by creates whose jobs have not started yet."""
        self._ahead: dict[str, asyncio.Task[ImageUsage]] = {}
        """Images begun by :meth:`format_ahead`, by volume, until their job takes them."""
        self._dropping: set[asyncio.Task[None]] = set()
        self._running: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._stopping = False
        self._handlers: dict[str, JobHandler] = {
            "format": self._format,
            "delete": self._delete,
        }
        # A format starts (initializing) in the transaction that claims it: one commit
        # fewer between a create and its answer (issue 15).
        self._starts: JobStarts = {"format": step(End.FORMAT_STARTED)}

    @property
    def lease_us(self) -> int:
        return int(self._settings.lease_s * 1_000_000)

    def register(self, kind: str, handler: JobHandler) -> None:
        """Add a job kind (clone, grow, ...) owned by another module."""
        self._handlers[kind] = handler

    def wake(self) -> None:
        """Look for work now instead of at the next poll."""
        self._wake.set()

    @property
    def running_jobs(self) -> int:
        return len(self._running)

    # ------------------------------------------------------------------ claimed by creators

    async def reserve(self, kind: str, *, waited: bool = False) -> Claim | None:
        """A free slot, taken for a job its creator claims as it inserts it (see
        :class:`volumed.domain.volumes.JobRunner`); None if none is free, we stop, or
        we yield to a busy loop and the creator will not wait for the job."""
        if self._stopping or self._slots.locked() or (not waited and self._yielding()):
            return None
        await self._slots.acquire()  # not locked: returns at once, without yielding
        self._reserved += 1
        return Claim(self.worker_id, self.lease_us, self._starts.get(kind))

    def format_ahead(self, uuid: str, size_mb: int, *, reserve: bool) -> None:
        """Begin the image of a volume whose claimed format is being inserted, while its
        insert commits: the format started by :meth:`start` takes it instead of making
        one (the commit's fsync overlaps ``mke2fs``). It is the staged image of the first
        claim's epoch, which nobody else can claim; :meth:`release` drops it.

        Only where a crash's images without rows are removed as the server starts (a
        lone server, ``WorkerSettings.format_ahead``): a ``kill -9`` before the insert
        commits leaves one."""
        if not self._settings.format_ahead:
            return
        self._ahead[uuid] = asyncio.create_task(
            self._storage.create(uuid, size_mb, reserve=reserve, stage=FIRST_EPOCH)
        )

    def release(self, uuid: str | None = None) -> None:
        """Give back a slot :meth:`reserve` took for a job that was not inserted, and
        drop the image :meth:`format_ahead` began for ``uuid``."""
        self._reserved -= 1
        self._slots.release()
        if uuid is not None:
            self._drop_ahead(uuid)

    def _drop_ahead(self, uuid: str) -> None:
        """Stop and remove an image begun ahead that no job took (in the background:
        the caller is often a request that failed, or a job's cleanup)."""
        task = self._ahead.pop(uuid, None)
        if task is None:
            return
        task.cancel()  # the driver kills its tool and removes what it made
        dropping = asyncio.create_task(self._discard_ahead(task, uuid))
        self._dropping.add(dropping)
        dropping.add_done_callback(self._dropping.discard)

    async def _discard_ahead(self, task: asyncio.Task[ImageUsage], uuid: str) -> None:
        # A build that finished before the cancel left its staged image behind.
        await asyncio.gather(task, return_exceptions=True)
        with contextlib.suppress(StorageError):
            await self._storage.discard_staged(uuid, FIRST_EPOCH)

    def start(self, job: Job) -> None:
        """Run a job inserted with :meth:`reserve`'s claim, in the slot it took."""
        self._reserved -= 1
        self._start(job)

    def _start(self, job: Job) -> None:
        task = asyncio.create_task(self._run_job(job))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        load = asyncio.create_task(self._watch_load())
        try:
            await self._claim_and_run()
        finally:
            load.cancel()

    async def _claim_and_run(self) -> None:
        while True:
            await self._slots.acquire()
            if self._stopping:  # checked after the wait for a slot: stop() claims nothing
                self._slots.release()
                return
            if self._yielding():
                self._slots.release()
                self._job_ended.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._job_ended.wait(), timeout=LOAD_WINDOW_S)
                continue
            job = None
            # Cleared before the look, not after it: a wake() arriving while the store
            # is asked (a job inserted just then) still ends the idle wait at once.
            self._wake.clear()
            try:
                job = await self._store.claim_job(self.worker_id, self.lease_us, self._starts)
            except StoreUnavailable as exc:  # the database restarts: try again later
                log.warning("claiming a job failed: %s", exc)
            except Exception:
                log.exception("claiming a job failed")
            if job is None:
                self._slots.release()
                await self._idle()
                continue
            self._start(job)

    @property
    def waited_for(self) -> bool:
        """Whether any request waits for a job to end."""
        return self._signals.waiting

    def count_requests(self, in_flight: Callable[[], int]) -> None:
        """How to learn the number of requests being served (the API's counter)."""
        self._requests_in_flight = in_flight

    def _yielding(self) -> bool:
        """Whether to start no other job now: one runs, the loop is busy with requests
        and none of them waits for a job (see :data:`BUSY_LAG_S`)."""
        # A slot reserved by a create counts as a job running: the creates of one group
        # commit all reserve before the first of their jobs starts.
        running = bool(self._running) or self._reserved > 0
        busy = self._loop_busy or self._requests_in_flight() >= BUSY_REQUESTS
        return busy and running and not self._signals.waiting

    @property
    def loop_busy(self) -> bool:
        """Whether the event loop was busy over the last window (see :data:`BUSY_LAG_S`)."""
        return self._loop_busy

    async def _watch_load(self) -> None:
        """Is the event loop busy? Probed by yielding to it now and then and timing how
        long it takes to come back (timers are too coarse for that), over a window."""
        waits: collections.deque[float] = collections.deque(
            maxlen=max(1, round(LOAD_WINDOW_S / _PROBE_EVERY_S))
        )
        while True:
            await asyncio.sleep(_PROBE_EVERY_S)
            yielded = time.perf_counter()
            await asyncio.sleep(0)
            waits.append(time.perf_counter() - yielded)
            self._loop_busy = sum(waits) >= BUSY_LAG_S * len(waits)

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self._settings.poll_s)

    async def drain(self) -> None:
        """Run until no job is left that can be claimed now (used by tests and the CLI)."""
        while True:
            job = await self._store.claim_job(self.worker_id, self.lease_us, self._starts)
            if job is None:
                if self._running:
                    await asyncio.gather(*self._running, return_exceptions=True)
                    continue
                return
            await self._run_job(job, hold_slot=False)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming, let running jobs finish for ``timeout`` seconds, hand back leases."""
        self._stopping = True
        self._wake.set()
        if self._running:
            _done, pending = await asyncio.wait(set(self._running), timeout=timeout)
            for task in pending:
                task.cancel()
        for uuid in list(self._ahead):
            self._drop_ahead(uuid)
        if self._dropping:
            await asyncio.wait(set(self._dropping), timeout=timeout)
        with contextlib.suppress(Exception):
            await self._store.release_leases(self.worker_id)

    # ------------------------------------------------------------------ one job

    async def _run_job(self, job: Job, *, hold_slot: bool = True) -> None:
        started = time.monotonic()
        heartbeat = asyncio.create_task(self._heartbeat(job))
        fields = {"job": job.kind, "volume": job.uuid, "attempt": job.attempts}
        outcome = "retry"
        handler = self._handlers.get(job.kind)
        try:
            if handler is None:
                log.error("volume %s owes unknown job %r", job.uuid, job.kind, extra=fields)
                return
            log.info("job %s on %s started", job.kind, job.uuid, extra=fields)
            await roll_forward(self._storage, job)
            await handler(job)
            outcome = "failed" if job.uuid in self._gave_up else "ok"
            fields["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
            log.info("job %s on %s ended: %s", job.kind, job.uuid, outcome, extra=fields)
        except asyncio.CancelledError:
            # Shutdown ran out of time: the lease is handed back and the job redone.
            outcome = "interrupted"
            log.warning("job %s on %s interrupted", job.kind, job.uuid, extra=fields)
            raise
        except LeaseLost as exc:
            outcome = "lost"
            log.warning("job %s on %s: %s", job.kind, job.uuid, exc, extra=fields)
        except Exception as exc:
            fields["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
            reason = exc.message if isinstance(exc, StorageError) else "an internal error"
            outcome = await self._retry_or_park(job, reason)
            if outcome == "lost":
                # Its failure is the takeover's doing (it removed our staged image).
                log.warning("job %s on %s: %s", job.kind, job.uuid, LeaseLost(job.uuid, job.lease))
            else:
                log.exception(
                    "job %s on %s failed; %s",
                    job.kind,
                    job.uuid,
                    "it is parked" if outcome == "parked" else "it will be retried",
                    extra=fields,
                )
        finally:
            heartbeat.cancel()
            self._drop_ahead(job.uuid)  # a job that ended without taking it
            self._gave_up.discard(job.uuid)
            if hold_slot:
                self._slots.release()
            self._job_ended.set()
            # Requests waiting on the volume (or on the source a clone reads) look now.
            source = job.args.get("source")
            self._signals.ended(job.uuid, *([str(source)] if source else []))
            if self._on_job_done is not None and handler is not None:
                self._on_job_done(job.kind, time.monotonic() - started, outcome)

    async def _retry_or_park(self, job: Job, reason: str) -> str:
        """After a failed attempt: back off, or park the job once it failed too often."""
        with contextlib.suppress(Exception):
            if job.attempts >= self._settings.max_attempts:
                message = (
                    f"Attempt {job.attempts} failed ({reason}); the job is parked until "
                    f"an operator runs: volumed job retry {job.uuid}"
                )
                if await self._store.park_job(job.uuid, job.lease, message):
                    return "parked"
                return "lost"
            delay_us = self._settings.backoff_us(job.attempts)
            if not await self._store.retry_job_later(job.uuid, job.lease, delay_us):
                return "lost"
            await self._store.add_volume_event(
                job.uuid,
                job.kind,
                EventResult.ERROR,
                f"Attempt {job.attempts} failed ({reason}); it will be retried in "
                f"{delay_us / 1_000_000:g} s",
            )
        return "retry"

    async def _heartbeat(self, job: Job) -> None:
        interval = self._settings.lease_s / 3
        while True:
            await asyncio.sleep(interval)
            if not await self._store.renew_lease(job.uuid, job.lease, self.lease_us):
                log.warning("lost the lease on %s", job.uuid)
                return

    # ------------------------------------------------------------------ handlers

    async def _format(self, job: Job) -> None:
        if job.attempts > self._settings.max_attempts:
            await self._fail(job, f"Formatting failed {job.attempts - 1} times")
            return
        started = step(End.FORMAT_STARTED)
        if job.state is not started.to and not await self._store.set_job_state(
            job.uuid, job.lease, started
        ):
            return  # not in a state a format starts from (the claim moved what it could)
        # A format makes a volume's first image, so it needs no commit before its
        # rename: the staged image is put in place only where there is no image yet
        # (StorageDriver.place), and a stale holder can never replace the image of the
        # holder that took over. An image in place is one a holder of this job made
        # complete before placing it; whoever holds the job keeps it.
        usage = await committed_usage(self._storage, job)
        if usage is None and job.epoch > 1:  # an earlier claim may have placed one
            usage = await _usage_or_none(self._storage, job.uuid)
        placed = Placed.TAKEN
        if usage is None:
            try:
                ahead = self._ahead.pop(job.uuid, None) if job.epoch == FIRST_EPOCH else None
                usage = await (
                    ahead
                    if ahead is not None
                    else self._storage.create(
                        job.uuid,
                        job.size_mb,
                        reserve=job.quota_policy == QuotaPolicy.STATIC,
                        stage=job.epoch,
                    )
                )
            except StorageError as exc:
                if exc.no_space or job.attempts >= self._settings.max_attempts:
                    await self._fail(job, f"Formatting failed: {exc.message}")
                    return
                raise
            placed = await self._storage.place(job.uuid, job.epoch)
            if placed is Placed.GONE:  # a later claim, or a delete, removed it
                raise LeaseLost(job.uuid, job.lease)
            if placed is Placed.TAKEN:
                usage = await self._storage.usage(job.uuid)
        if not await self._store.finish_job(
            job.uuid, job.lease, step(End.FORMATTED), free_mb=usage.free_mb
        ):
            if placed is Placed.OURS and not await self._store.image_wanted(job.uuid):
                # A stale holder placed an image nobody will keep: the volume was
                # deleted, or its format failed, after the holder's lease ran out.
                with contextlib.suppress(StorageError):
                    await self._storage.delete(job.uuid)
            raise LeaseLost(job.uuid, job.lease)

    async def _fail(self, job: Job, message: str) -> None:
        """Put the volume in ``error`` with a message (End.FORMAT_FAILED), leaving no
        partial image behind.

        The image is removed only once the compare-and-set is won: a holder that lost
        its lease must not remove the image another worker made."""
        with contextlib.suppress(StorageError):
            await self._storage.discard_staged(job.uuid, job.epoch)
        if not await self._store.finish_job(
            job.uuid, job.lease, step(End.FORMAT_FAILED), message=message
        ):
            raise LeaseLost(job.uuid, job.lease)
        with contextlib.suppress(StorageError):
            await self._storage.delete(job.uuid)
        self._gave_up.add(job.uuid)
        log.warning(
            "volume %s is in error: %s",
            job.uuid,
            message,
            extra={"job": job.kind, "volume": job.uuid, "attempt": job.attempts},
        )

    async def _delete(self, job: Job) -> None:
        await self._storage.delete(job.uuid)
        await self._store.purge_volume(job.uuid)


async def _usage_or_none(storage: StorageDriver, uuid: str) -> ImageUsage | None:
    try:
        return await storage.usage(uuid)
    except StorageError:
        return None
