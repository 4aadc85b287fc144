"""Instances and attachments: each transition is one transaction over the instance and
its volumes, so the two sides of an attachment never disagree, and a lost
compare-and-set leaves both as they were."""

from __future__ import annotations

from tests.store.harness import ROOMY, instance, tenant, to, volume
from volumed.domain.model import Instance, Ref, User, Volume
from volumed.domain.runtime import GuestExit, StopReason
from volumed.domain.states import InstanceState, VolumeState
from volumed.domain.transitions import Step
from volumed.domain.values import AttachOutcome, InstanceOutcome, ListQuery, NewAttachment
from volumed.store.sql import SqlStore

USABLE = (VolumeState.AVAILABLE, VolumeState.IDLE)
TAKE = Step(((VolumeState.AVAILABLE, VolumeState.IDLE), (VolumeState.IDLE, VolumeState.IDLE)))
"""Attach: an available volume becomes idle; an idle (shared) one stays idle."""
STOPPED = (InstanceState.STOPPED,)
MOUNTABLE = (VolumeState.IDLE, VolumeState.MOUNTED)
MOUNT = to(VolumeState.MOUNTED, *MOUNTABLE)
START = to(InstanceState.STARTING, InstanceState.STOPPED)
STOP = to(InstanceState.STOPPING, InstanceState.RUNNING)
STARTED = to(InstanceState.RUNNING, InstanceState.STARTING)
STOPPING_DONE = to(InstanceState.STOPPED, InstanceState.STOPPING)


async def _volume(store: SqlStore, owner: User, *, persistent: bool = True) -> Volume:
    item = volume(owner, persistent=persistent)
    await store.insert_volume_within_quota(item, None, {}, ROOMY)
    return item


async def _instance(store: SqlStore, owner: User) -> Instance:
    item = instance(owner)
    assert (await store.insert_instance(item, [], [])).result == AttachOutcome.DONE
    return item


async def _state(store: SqlStore, owner: User, uuid: str) -> VolumeState:
    got = await store.get_volume(owner.id, Ref(uuid=uuid))
    assert got is not None
    return got.state


async def _attach(
    store: SqlStore, owner: User, item: Volume, vm: Instance, at: str = "/data", ro: bool = False
) -> AttachOutcome:
    return await store.attach(owner.id, item.uuid, vm.uuid, at, ro, TAKE, STOPPED, 4)


async def test_an_instance_is_inserted_with_new_and_existing_volumes(store: SqlStore) -> None:
    owner = await tenant(store)
    existing = await _volume(store, owner)
    made = volume(owner, state=VolumeState.UNINITIALIZED)
    item = instance(owner, "web")
    links = [
        NewAttachment(existing.uuid, "/old", False, TAKE),
        NewAttachment(made.uuid, "/new", True),
    ]
    outcome = await store.insert_instance(item, [made], links, ROOMY)
    assert outcome.result == AttachOutcome.DONE
    got = await store.get_instance(owner.id, Ref(name="web"))
    assert got is not None
    assert [(v.uuid, v.at, v.readonly) for v in got.volumes] == [
        (existing.uuid, "/old", False),
        (made.uuid, "/new", True),
    ]
    assert await _state(store, owner, existing.uuid) == VolumeState.IDLE
    # The new volume owes its format.
    job = await store.claim_job("w", 60_000_000)
    assert job is not None and (job.uuid, job.kind) == (made.uuid, "format")


async def test_an_insert_that_loses_a_volume_inserts_nothing(store: SqlStore) -> None:
    owner = await tenant(store)
    taken = await _volume(store, owner)
    made = volume(owner, state=VolumeState.UNINITIALIZED)
    item = instance(owner)
    # The existing volume was read idle; it is available now.
    links = [
        NewAttachment(made.uuid, "/new", False),
        NewAttachment(taken.uuid, "/x", False, to(VolumeState.IDLE, VolumeState.IDLE)),
    ]
    outcome = await store.insert_instance(item, [made], links)
    assert (outcome.result, outcome.index) == (AttachOutcome.VOLUME_CHANGED, 1)
    assert await store.get_instance(owner.id, Ref(uuid=item.uuid)) is None
    assert await store.get_volume(owner.id, Ref(uuid=made.uuid)) is None
    assert await _state(store, owner, taken.uuid) == VolumeState.AVAILABLE
    clash = await store.insert_instance(instance(owner, item.name), [], [])
    assert clash.result == AttachOutcome.DONE
    again = await store.insert_instance(instance(owner, item.name), [], [])
    assert again.result == AttachOutcome.NAME_TAKEN


async def test_attach_reports_why_it_did_not(store: SqlStore) -> None:
    owner = await tenant(store)
    first, second, third = [await _volume(store, owner) for _ in range(3)]
    vm = await _instance(store, owner)
    assert await _attach(store, owner, first, vm, "/a") == AttachOutcome.DONE
    assert await _state(store, owner, first.uuid) == VolumeState.IDLE
    assert await _attach(store, owner, first, vm, "/b") == AttachOutcome.ALREADY_ATTACHED
    assert await _attach(store, owner, second, vm, "/a") == AttachOutcome.PATH_TAKEN
    one_only = await store.attach(owner.id, second.uuid, vm.uuid, "/b", False, TAKE, STOPPED, 1)
    assert one_only == AttachOutcome.TOO_MANY
    busy = await store.attach(
        owner.id,
        second.uuid,
        vm.uuid,
        "/b",
        False,
        to(VolumeState.BUSY, VolumeState.BUSY),
        STOPPED,
        4,
    )
    assert busy == AttachOutcome.VOLUME_CHANGED
    running = await store.attach(
        owner.id, second.uuid, vm.uuid, "/b", False, TAKE, (InstanceState.RUNNING,), 4
    )
    assert running == AttachOutcome.INSTANCE_CHANGED
    gone = await store.attach(owner.id, third.uuid, "no-such", "/c", False, TAKE, STOPPED, 4)
    assert gone == AttachOutcome.INSTANCE_GONE
    # None of the refusals changed anything.
    assert await _state(store, owner, second.uuid) == VolumeState.AVAILABLE
    got = await store.get_instance(owner.id, Ref(uuid=vm.uuid))
    assert got is not None and [v.uuid for v in got.volumes] == [first.uuid]


async def test_detach_makes_a_volume_persistent_and_available(store: SqlStore) -> None:
    owner = await tenant(store)
    item = await _volume(store, owner, persistent=False)
    vm = await _instance(store, owner)
    assert await _attach(store, owner, item, vm) == AttachOutcome.DONE
    detached = await store.detach(owner.id, item.uuid, vm.uuid, USABLE, STOPPED)
    assert detached == AttachOutcome.DONE
    got = await store.get_volume(owner.id, Ref(uuid=item.uuid))
    assert got is not None and (got.state, got.persistent, got.attached_to) == (
        VolumeState.AVAILABLE,
        True,
        [],
    )
    again = await store.detach(owner.id, item.uuid, None, USABLE, STOPPED)
    assert again == AttachOutcome.NOT_ATTACHED


async def test_start_and_stop_mount_and_unmount_the_volumes(store: SqlStore) -> None:
    owner = await tenant(store)
    item = await _volume(store, owner)
    vm = await _instance(store, owner)
    assert await _attach(store, owner, item, vm) == AttachOutcome.DONE
    assert await store.begin_start(owner.id, vm.uuid, START, MOUNT) == InstanceOutcome.DONE
    assert await _state(store, owner, item.uuid) == VolumeState.MOUNTED
    assert [i.uuid for i in await store.transitional_instances()] == [vm.uuid]
    assert await store.finish_start(vm.uuid, STARTED, node="n1", boot_time_us=5)
    assert not await store.finish_start(vm.uuid, STARTED, node="n1")
    mounted = await store.get_volume(owner.id, Ref(uuid=item.uuid))
    assert mounted is not None and [m.uuid for m in mounted.mounted_by] == [vm.uuid]
    assert [i.uuid for i in await store.running_instances("n1")] == [vm.uuid]
    assert await store.running_instances("n2") == []
    again = await store.begin_start(owner.id, vm.uuid, START, MOUNT)
    assert again == InstanceOutcome.CHANGED
    assert await store.begin_stop(owner.id, vm.uuid, STOP) == InstanceOutcome.DONE
    assert await _state(store, owner, item.uuid) == VolumeState.MOUNTED
    assert await store.finish_stop(vm.uuid, STOPPING_DONE, GuestExit(StopReason.USER, exit_code=0))
    assert await _state(store, owner, item.uuid) == VolumeState.IDLE
    stopped = await store.get_instance(owner.id, Ref(uuid=vm.uuid))
    assert stopped is not None and stopped.state == InstanceState.STOPPED
    assert stopped.exit_code == 0 and stopped.stopped_at_us is not None
    assert await store.begin_stop(owner.id, "no-such", STOP) == InstanceOutcome.GONE


async def test_a_start_waits_for_every_volume(store: SqlStore) -> None:
    owner = await tenant(store)
    item = await _volume(store, owner)
    vm = await _instance(store, owner)
    assert await _attach(store, owner, item, vm) == AttachOutcome.DONE
    refused = await store.begin_start(
        owner.id, vm.uuid, START, to(VolumeState.MOUNTED, VolumeState.MOUNTED)
    )
    assert refused == InstanceOutcome.VOLUMES_NOT_READY
    got = await store.get_instance(owner.id, Ref(uuid=vm.uuid))
    assert got is not None and got.state == InstanceState.STOPPED
    assert await _state(store, owner, item.uuid) == VolumeState.IDLE


async def test_a_shared_volume_stays_mounted_while_one_holder_runs(store: SqlStore) -> None:
    owner = await tenant(store)
    shared = await _volume(store, owner)
    one, two = await _instance(store, owner), await _instance(store, owner)
    for vm in (one, two):
        assert await _attach(store, owner, shared, vm, ro=True) == AttachOutcome.DONE
    for vm in (one, two):
        assert await store.begin_start(owner.id, vm.uuid, START, MOUNT) == "done"
        assert await store.finish_start(vm.uuid, STARTED, node="n1")
    running = (InstanceState.RUNNING,)
    assert await store.request_stop(one.uuid, "n1", '{"force": false}', running)
    assert not await store.request_stop(one.uuid, "n2", "{}", running)
    assert [(i.uuid, r) for i, r in await store.stop_requests("n1")] == [
        (one.uuid, '{"force": false}')
    ]
    assert await store.record_exit(
        one.uuid, to(InstanceState.STOPPED, *running), GuestExit(StopReason.USER, exit_code=3)
    )
    assert await _state(store, owner, shared.uuid) == VolumeState.MOUNTED
    assert await store.stop_requests("n1") == []
    assert await store.begin_stop(owner.id, two.uuid, STOP) == "done"
    assert await store.finish_stop(two.uuid, STOPPING_DONE)
    assert await _state(store, owner, shared.uuid) == VolumeState.IDLE


async def test_an_aborted_start_puts_everything_back(store: SqlStore) -> None:
    owner = await tenant(store)
    item = await _volume(store, owner)
    vm = await _instance(store, owner)
    assert await _attach(store, owner, item, vm) == AttachOutcome.DONE
    assert await store.begin_start(owner.id, vm.uuid, START, MOUNT) == "done"
    aborted = to(InstanceState.STOPPED, InstanceState.STARTING)
    assert await store.abort_start(vm.uuid, aborted)
    assert not await store.abort_start(vm.uuid, aborted)
    assert await _state(store, owner, item.uuid) == VolumeState.IDLE
    assert await store.transitional_instances() == []


async def test_deleting_an_instance_releases_or_deletes_its_volumes(store: SqlStore) -> None:
    owner = await tenant(store)
    kept = await _volume(store, owner)
    scratch = await _volume(store, owner, persistent=False)
    vm = await _instance(store, owner)
    assert await _attach(store, owner, kept, vm, "/kept") == AttachOutcome.DONE
    assert await _attach(store, owner, scratch, vm, "/tmp") == AttachOutcome.DONE
    refused = await store.delete_instance(owner.id, vm.uuid, STOPPED, (VolumeState.AVAILABLE,))
    assert refused == InstanceOutcome.VOLUMES_NOT_READY
    done = await store.delete_instance(owner.id, vm.uuid, STOPPED, MOUNTABLE)
    assert done == InstanceOutcome.DONE
    assert await store.get_instance(owner.id, Ref(uuid=vm.uuid)) is None
    assert await store.list_instances(owner.id, ListQuery()) == []
    assert await _state(store, owner, kept.uuid) == VolumeState.AVAILABLE
    assert await store.get_volume(owner.id, Ref(uuid=scratch.uuid)) is None
    job = await store.claim_job("w", 60_000_000)
    assert job is not None and (job.uuid, job.kind) == (scratch.uuid, "delete")


async def test_instance_listings_page_and_stay_with_their_tenant(store: SqlStore) -> None:
    owner, other = await tenant(store), await tenant(store)
    made = [await _instance(store, owner) for _ in range(3)]
    await _instance(store, other)
    listed = await store.list_instances(owner.id, ListQuery())
    assert [i.uuid for i in listed] == [i.uuid for i in made]
    page = await store.list_instances(owner.id, ListQuery(from_uuid=made[1].uuid, count=5))
    assert [i.uuid for i in page] == [made[1].uuid, made[2].uuid]
    assert await store.get_instance(other.id, Ref(uuid=made[0].uuid)) is None
    assert (await store.instance_by_uuid(made[0].uuid)) == made[0]


async def test_nodes_are_dead_once_their_lease_ends(store: SqlStore) -> None:
    await store.heartbeat_node("n1", 100)
    await store.heartbeat_node("n2", 300)
    await store.heartbeat_node("n1", 500)
    assert await store.dead_nodes(400) == ["n2"]
