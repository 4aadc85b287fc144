"""Instance use cases: create (built by :mod:`instance_create`), get, list, start, stop,
delete, wait, and the recovery of starts and stops a crash cut short.

An instance is the record volumes attach to; an :class:`InstanceRuntime` boots it. Every
state change is a compare-and-set in the store over the instance and its volumes
together, with expected states from :mod:`transitions`; the runtime is called between
the ``begin_*`` and ``finish_*`` steps, shielded from request cancellation so that a
client hanging up cannot strand an instance half way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from volumed.domain import errors
from volumed.domain.attachments import find_instance, label
from volumed.domain.instance_create import (
    CreateInstance,
    InstanceFactory,
    InstanceLimits,
    InstanceVolumeSpec,
)
from volumed.domain.job_waits import JobWaits
from volumed.domain.model import Instance, Ref, User
from volumed.domain.runtime import (
    BootVolume,
    ConsoleSlice,
    GuestExit,
    InstanceRuntime,
    RuntimeFailure,
    StopReason,
)
from volumed.domain.states import InstanceState
from volumed.domain.storage import StorageDriver, StorageError
from volumed.domain.store import InstanceStore, VolumeStore
from volumed.domain.transitions import (
    GONE,
    HOLDING_MOUNTS,
    INITIAL_INSTANCE,
    KEEP,
    NEVER,
    TRANSITIONAL,
    InstanceEnd,
    InstanceOp,
    Op,
    check,
    check_instance,
    instance_end_outcome,
    instance_end_states,
    instance_op_step,
    instance_outcome,
    instance_states_leading,
    instance_step,
    op_step,
    states_allowing,
)
from volumed.domain.values import InstanceOutcome, ListQuery
from volumed.domain.volumes import VolumeService

log = logging.getLogger("volumed.instances")

__all__ = [
    "CreateInstance",
    "InstanceLimits",
    "InstanceService",
    "InstanceVolumeSpec",
    "Transition",
]

_ATTEMPTS = 5
_UNREACHABLE = frozenset({"draining", "standby", "template", "checkpoint"})
"""Instance states of the hosted service that volumed instances never enter."""
_NODE_GONE = GuestExit(StopReason.PLATFORM)
"""How an instance ends when the node running its guest is gone past its lease."""
DELETED = "deleted"
"""A state one may wait for: the instance is gone."""


@dataclass(slots=True, frozen=True)
class Transition:
    """The result of start, stop or delete: the instance and the state it left."""

    instance: Instance
    previous: InstanceState
    message: str | None = None


class InstanceServiceStore(InstanceStore, VolumeStore, Protocol):
    """What the instance service reads and writes: instances, and their volumes' rows."""


class InstanceService:
    def __init__(
        self,
        store: InstanceServiceStore,
        storage: StorageDriver,
        volumes: VolumeService,
        runtime: InstanceRuntime,
        limits: InstanceLimits,
        *,
        waits: JobWaits,
        wake_worker: Callable[[], None] = lambda: None,
        node: str = "local",
    ) -> None:
        self._node = node
        self._store = store
        self._storage = storage
        self._waits = waits
        self._factory = InstanceFactory(store, volumes, waits, limits)
        self._runtime = runtime
        self._limits = limits
        self._wake_worker = wake_worker
        # Replaced on every change: a waiter holds the one current when it looked.
        self._changed = asyncio.Event()
        runtime.watch(self._guest_exited)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ reads

    async def get(self, user: User, ref: Ref) -> Instance:
        return await find_instance(self._store, user, ref)

    async def list_instances(self, user: User, query: ListQuery) -> list[Instance]:
        return await self._store.list_instances(user.id, query)

    # ------------------------------------------------------------------ create

    async def create(self, user: User, item: CreateInstance) -> Transition:
        instance = await self._factory.insert(user, item)
        self._wake_worker()
        self._notify()
        # Answer once the new volumes are formatted (within the bound), as for
        # POST /v1/volumes: a start right after finds them ready.
        await self._settle_volumes(user, await self.get(user, Ref(uuid=instance.uuid)))
        if not item.autostart:
            return Transition(await self.get(user, Ref(uuid=instance.uuid)), INITIAL_INSTANCE)
        try:
            started = await self.start(user, Ref(uuid=instance.uuid))
        except errors.VolumedError as exc:
            # The instance exists either way; say why it did not start.
            fresh = await self.get(user, Ref(uuid=instance.uuid))
            return Transition(fresh, INITIAL_INSTANCE, f"Not started: {exc.message}")
        return Transition(started.instance, INITIAL_INSTANCE)

    # ------------------------------------------------------------------ start

    async def start(self, user: User, ref: Ref) -> Transition:
        instance = await self.get(user, ref)
        for _ in range(_ATTEMPTS):
            target = check_instance(InstanceOp.START, instance.state, label(instance))
            if target is KEEP:
                return Transition(instance, instance.state)
            await self._settle_volumes(user, instance)
            outcome = await self._store.begin_start(
                user.id,
                instance.uuid,
                instance_op_step(InstanceOp.START, InstanceState.STARTING),
                op_step(Op.MOUNT),
            )
            if outcome is InstanceOutcome.DONE:
                previous = instance.state
                await asyncio.shield(self._boot(instance))
                return Transition(await self.get(user, Ref(uuid=instance.uuid)), previous)
            if outcome is InstanceOutcome.GONE:
                raise errors.NotFound(f"No instance with {ref.describe()}")
            if outcome is InstanceOutcome.VOLUMES_NOT_READY:
                await self._refuse_unready(user, instance, Op.MOUNT)
            instance = await self.get(user, Ref(uuid=instance.uuid))
        raise errors.FailedOperation(f"Instance {label(instance)} kept changing; try again")

    async def _boot(self, instance: Instance) -> None:
        """Run the runtime for an instance the store has ``starting``, then record the
        end state. Also how :meth:`recover` finishes a start cut short by a crash."""
        fresh = await self._store.get_instance(instance.owner_id, Ref(uuid=instance.uuid))
        if fresh is None:
            return
        boot = [
            BootVolume(v.uuid, self._storage.image_path(v.uuid), v.at, v.readonly)
            for v in fresh.volumes
        ]
        try:
            info = await self._runtime.start(fresh, boot)
        except RuntimeFailure as exc:
            await self._store.abort_start(instance.uuid, instance_step(InstanceEnd.START_FAILED))
            self._notify()
            raise errors.FailedOperation(
                f"Instance {label(instance)} did not start: {exc.message}"
            ) from None
        await self._store.finish_start(
            instance.uuid,
            instance_step(InstanceEnd.STARTED),
            node=self._node,
            boot_time_us=info.boot_time_us,
        )
        self._notify()

    async def _settle_volumes(self, user: User, instance: Instance) -> None:
        """Wait, within the bound, until no attached volume is held by a job (a volume
        made with the instance is formatted just after it)."""
        await self._waits.settle(user, [v.uuid for v in instance.volumes])

    async def _refuse_unready(self, user: User, instance: Instance, op: Op) -> None:
        """Raise the refusal of the first attached volume ``op`` cannot carry along."""
        fresh = await self.get(user, Ref(uuid=instance.uuid))
        for attached in fresh.volumes:
            volume = await self._store.get_volume(user.id, Ref(uuid=attached.uuid))
            if volume is None:
                continue
            if volume.state in TRANSITIONAL:
                # EBUSY: the hosted service's word, which its SDK retries on.
                job = await self._store.job_holding(volume.uuid) or "background"
                raise errors.CannotBeUsed(
                    f"Volume {label(volume)} of instance {label(instance)} is still "
                    f"{volume.state}: its {job} job did not end within "
                    f"{self._waits.bound_s:g} s (EBUSY); try again shortly"
                )
            check(op, volume.state, label(volume))

    # ------------------------------------------------------------------ stop

    async def stop(
        self,
        user: User,
        ref: Ref,
        *,
        force: bool = False,
        drain_timeout_ms: int | None = None,
    ) -> Transition:
        instance = await self.get(user, ref)
        if self._elsewhere(instance):
            return await self._stop_through_owner(user, instance, force, drain_timeout_ms)
        for _ in range(_ATTEMPTS):
            target = check_instance(InstanceOp.STOP, instance.state, label(instance))
            if target is KEEP:
                return Transition(instance, instance.state)
            outcome = await self._store.begin_stop(
                user.id,
                instance.uuid,
                instance_op_step(InstanceOp.STOP, InstanceState.STOPPING),
            )
            if outcome is InstanceOutcome.DONE:
                previous = instance.state
                await asyncio.shield(
                    self._halt(instance, force=force, drain_timeout_ms=drain_timeout_ms)
                )
                return Transition(await self.get(user, Ref(uuid=instance.uuid)), previous)
            if outcome is InstanceOutcome.GONE:
                raise errors.NotFound(f"No instance with {ref.describe()}")
            instance = await self.get(user, Ref(uuid=instance.uuid))
        raise errors.FailedOperation(f"Instance {label(instance)} kept changing; try again")

    async def _halt(
        self, instance: Instance, *, force: bool, drain_timeout_ms: int | None = None
    ) -> None:
        """Run the runtime for an instance the store has ``stopping``, then record
        ``stopped``. A runtime failure leaves it ``stopping`` (its volumes may still be
        in use) for :meth:`recover` to finish."""
        try:
            outcome = await self._runtime.stop(
                instance, force=force, drain_timeout_ms=drain_timeout_ms
            )
        except RuntimeFailure as exc:
            raise errors.FailedOperation(
                f"Instance {label(instance)} did not stop: {exc.message}"
            ) from None
        await self._settle_images(instance, outcome)
        await self._store.finish_stop(instance.uuid, instance_step(InstanceEnd.STOPPED), outcome)
        self._notify()

    async def _power_off(self, instance: Instance) -> None:
        """Stop the guest of an instance being deleted; it stays ``stopping`` until the
        delete removes it (so no attach or start can slip in between)."""
        try:
            await self._runtime.stop(instance)
        except RuntimeFailure as exc:
            raise errors.FailedOperation(
                f"Instance {label(instance)} did not stop: {exc.message}"
            ) from None

    # ------------------------------------------------------------------ delete

    async def delete(self, user: User, ref: Ref) -> Transition:
        instance = await self.get(user, ref)
        previous = instance.state
        stops_first = instance_outcome(InstanceOp.DELETE, instance.state) is InstanceState.STOPPING
        if self._elsewhere(instance) and stops_first:
            await self._stop_through_owner(user, instance, False, None)
            instance = await self.get(user, ref)
        for _ in range(_ATTEMPTS):
            target = check_instance(InstanceOp.DELETE, instance.state, label(instance))
            await self._settle_volumes(user, instance)
            expected = instance_states_leading(InstanceOp.DELETE, GONE)
            stopped_here = False
            if target is InstanceState.STOPPING:
                outcome = await self._store.begin_stop(
                    user.id,
                    instance.uuid,
                    instance_op_step(InstanceOp.DELETE, InstanceState.STOPPING),
                )
                if outcome is InstanceOutcome.DONE:
                    await asyncio.shield(self._power_off(instance))
                    expected = instance_end_states(InstanceEnd.DELETED)
                    stopped_here = True
            else:
                outcome = InstanceOutcome.DONE
            if outcome is InstanceOutcome.DONE:
                outcome = await self._store.delete_instance(
                    user.id, instance.uuid, expected, states_allowing(Op.RELEASE)
                )
            if outcome is InstanceOutcome.DONE:
                await self._runtime.forget(instance.uuid)
                self._wake_worker()
                self._notify()
                return Transition(instance, previous)
            if stopped_here:
                # Keep what was done consistent: the guest is down, record it.
                await self._store.finish_stop(instance.uuid, instance_step(InstanceEnd.STOPPED))
                self._notify()
            if outcome is InstanceOutcome.GONE:
                raise errors.NotFound(f"No instance with {ref.describe()}")
            if outcome is InstanceOutcome.VOLUMES_NOT_READY:
                await self._refuse_unready(user, instance, Op.RELEASE)
            instance = await self.get(user, Ref(uuid=instance.uuid))
        raise errors.FailedOperation(f"Instance {label(instance)} kept changing; try again")

    # ------------------------------------------------------------------ wait

    async def wait(
        self, user: User, ref: Ref, state: str, timeout_s: float | None
    ) -> Instance | None:
        """Until the instance is in ``state``, or gone (None) when waiting for
        ``deleted``. Raises TimedOut with the last state seen once ``timeout_s`` (default
        and cap from the limits; negative means the cap) has passed; 0 looks once."""
        wanted = _check_wait_state(state)
        limit = self._limits.wait_default_s if timeout_s is None else timeout_s
        if limit < 0 or limit > self._limits.wait_max_s:
            limit = self._limits.wait_max_s
        deadline = time.monotonic() + limit
        while True:
            # Take the event before looking, so a change right after the look wakes us.
            changed = self._changed
            instance = await self._store.get_instance(user.id, ref)
            if instance is None:
                if wanted == DELETED:
                    return None
                raise errors.NotFound(f"No instance with {ref.describe()}")
            if instance.state == wanted:
                return instance
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise errors.TimedOut("Operation timed out", state=instance.state.value)
            # Look again now and then anyway: another process may change the row.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=min(remaining, 0.25))

    # ------------------------------------------------------------------ recovery

    def _elsewhere(self, instance: Instance) -> bool:
        """Its guest runs (or may run) on another node, which alone can stop it."""
        return (
            self._runtime.node_bound
            and instance.state in HOLDING_MOUNTS
            and instance.node is not None
            and instance.node != self._node
        )

    async def _stop_through_owner(
        self, user: User, instance: Instance, force: bool, drain_timeout_ms: int | None
    ) -> Transition:
        """The guest runs on another node, which alone can stop it: leave the request in
        the store for that node and wait until the instance is stopped (by the owner, or
        by the sweep once the owner's lease has ended)."""
        target = check_instance(InstanceOp.STOP, instance.state, label(instance))
        if target is KEEP or instance.node is None:
            return Transition(instance, instance.state)
        request = json.dumps({"force": force, "drain_timeout_ms": drain_timeout_ms})
        await self._store.request_stop(
            instance.uuid,
            instance.node,
            request,
            instance_states_leading(InstanceOp.STOP, InstanceState.STOPPING),
        )
        try:
            done = await self.wait(
                user, Ref(uuid=instance.uuid), InstanceState.STOPPED.value, self._limits.wait_max_s
            )
        except errors.TimedOut:
            raise errors.FailedOperation(
                f"Instance {label(instance)} runs on node {instance.node}, which has not "
                "stopped it yet; its stop is requested"
            ) from None
        return Transition(done or instance, instance.state)

    async def run_node(self, lease_s: float, poll_s: float) -> None:
        """While serving (runtimes whose guests live on one node): keep this node's
        lease, carry out the stops other replicas left for it, and record the running
        instances of nodes whose lease has ended as stopped by the platform."""
        if not self._runtime.node_bound:
            return
        halting: set[asyncio.Task[None]] = set()
        while True:
            try:
                await self._node_round(lease_s, halting)
            except Exception:  # noqa: BLE001 - a failed round must not end the loop
                log.exception("node round failed; trying again")
            await asyncio.sleep(poll_s)

    async def _node_round(self, lease_s: float, halting: set[asyncio.Task[None]]) -> None:
        now = time.time_ns() // 1000
        await self._store.heartbeat_node(self._node, now + int(lease_s * 1_000_000))
        for instance, raw in await self._store.stop_requests(self._node):
            request = json.loads(raw)
            outcome = await self._store.begin_stop(
                instance.owner_id,
                instance.uuid,
                instance_op_step(InstanceOp.STOP, InstanceState.STOPPING),
            )
            if outcome is InstanceOutcome.DONE:
                task = asyncio.create_task(
                    self._halt(
                        instance,
                        force=bool(request.get("force")),
                        drain_timeout_ms=request.get("drain_timeout_ms"),
                    )
                )
                halting.add(task)
                task.add_done_callback(halting.discard)
        exited = instance_step(InstanceEnd.EXITED)
        for node in await self._store.dead_nodes(now):
            if node == self._node:
                continue
            for instance in await self._store.running_instances(node):
                # Fencing caveat (docs/guests.md): a partitioned node's guest may still
                # be writing; its volumes are released all the same.
                log.warning("node %s is gone: instance %s stopped", node, instance.uuid)
                if await self._store.record_exit(instance.uuid, exited, _NODE_GONE):
                    self._notify()

    async def _guest_exited(self, instance_uuid: str, outcome: GuestExit) -> None:
        """A guest ended by itself: the instance is stopped, its volumes idle."""
        instance = await self._store.instance_by_uuid(instance_uuid)
        if instance is not None:
            await self._settle_images(instance, outcome)
        if await self._store.record_exit(instance_uuid, instance_step(InstanceEnd.EXITED), outcome):
            self._notify()

    async def _settle_images(self, instance: Instance, outcome: GuestExit) -> None:
        """Before the volumes are released: replay the journal of each writable one its
        guest did not unmount, and record the free space the guest left."""
        for volume in instance.volumes:
            if volume.readonly:
                continue
            try:
                if outcome.unclean:
                    await self._storage.replay_journal(volume.uuid)
                usage = await self._storage.usage(volume.uuid)
                await self._store.set_free_mb(volume.uuid, usage.free_mb)
            except StorageError as exc:
                log.warning("after the guest of %s: %s", instance.uuid, exc)

    def console(self, instance: Instance, offset: int, limit: int) -> ConsoleSlice | None:
        """Part of the instance's console log (None if none is kept)."""
        return self._runtime.console(instance.uuid, instance.node, offset, limit)

    async def recover(self) -> int:
        """Take back this node's running guests, record those gone as stopped, and
        finish the starts and stops a crash interrupted (at server start)."""
        running = await self._store.running_instances(self._node)
        for uuid, outcome in (await self._runtime.adopt(running)).items():
            log.info("instance %s stopped while volumed was down", uuid)
            await self._guest_exited(uuid, outcome)
        count = 0
        for instance in await self._store.transitional_instances():
            if self._elsewhere(instance):
                continue
            try:
                if instance_end_outcome(InstanceEnd.STARTED, instance.state) is not NEVER:
                    await self._boot(instance)
                else:
                    await self._halt(instance, force=True)
                count += 1
            except errors.VolumedError as exc:
                log.warning("could not finish %s of %s: %s", instance.state, instance.uuid, exc)
        return count


def _check_wait_state(state: str) -> str:
    if state == DELETED:
        return state
    try:
        return InstanceState(state).value
    except ValueError:
        if state in _UNREACHABLE:
            raise errors.NotSupported(
                f"volumed instances are never {state}; wait for stopped, starting, running, "
                "stopping or deleted"
            ) from None
        raise errors.Invalid(f"Unknown instance state '{state[:64]}'") from None
