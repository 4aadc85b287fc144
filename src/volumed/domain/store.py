"""The metadata port, by role: each service depends on the roles it uses, and
:class:`Store` is all of them (the one object the composition root builds).

Every method is one transaction; every method that changes a volume's state is a
compare-and-set that returns whether it won. The adapter lives in :mod:`volumed.store`;
it imports from here, never the other way round.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from volumed.domain.audit import VolumeEvent
from volumed.domain.model import Instance, Ref, User, Volume
from volumed.domain.runtime import GuestExit
from volumed.domain.states import InstanceState, QuotaPolicy, VolumeState
from volumed.domain.transitions import Step
from volumed.domain.values import (
    AttachOutcome,
    Claim,
    InsertOutcome,
    InstanceOutcome,
    Job,
    JobStarts,
    Lease,
    ListQuery,
    NewAttachment,
    QuotaLimits,
    QuotaOverrides,
    QuotaUsage,
    StoreStats,
    VolumeRows,
)

__all__ = [
    "EventStore",
    "InstanceStore",
    "JobStore",
    "MaintenanceStore",
    "NameTaken",
    "QuotaRefused",
    "QuotaStore",
    "Store",
    "StoreFull",
    "StoreUnavailable",
    "UserStore",
    "VolumeStore",
]


class NameTaken(Exception):
    """The store refused a row because the tenant already uses that name."""


class StoreUnavailable(Exception):
    """The metadata store cannot be reached right now (the request may be retried)."""


class StoreFull(StoreUnavailable):
    """The metadata store has no space left to write: reads still work, writes are refused
    until an operator frees space (the request may be retried then)."""


class QuotaRefused(Exception):
    """The store refused a change because the tenant's count or total size would exceed
    its limits; ``usage`` is what the tenant had at that moment."""

    def __init__(self, usage: QuotaUsage) -> None:
        super().__init__(f"{usage.volumes} volumes, {usage.total_volume_mb} MB")
        self.usage = usage


class UserStore(Protocol):
    """Users and their API tokens."""

    async def user_for_token(self, token_hash: str) -> User | None: ...
    async def create_user(self, user: User) -> None: ...
    async def find_user(self, name: str) -> User | None: ...
    async def list_users(self) -> list[User]: ...
    async def count_users(self) -> int: ...
    async def add_token(self, token_id: str, user_id: str, token_hash: str, label: str) -> None: ...


class VolumeStore(Protocol):
    """Volume rows: reads, listing, delete and purge, tags, lock; and which job holds a
    volume (its own, or a clone being copied from it)."""

    async def get_volume(self, owner_id: str, ref: Ref) -> Volume | None: ...
    async def list_volumes(self, owner_id: str, query: ListQuery) -> list[Volume]: ...
    async def get_volume_row(self, owner_id: str, ref: Ref) -> VolumeRows:
        """:meth:`get_volume` as stored (no rows if there is none), for showing it."""
        ...

    def committed_stamp(self) -> bytes | None:
        """A value that stays the same exactly while nothing is committed to the store, by
        anyone: what was made of stored data alone may be reused while it is unchanged.
        None when that cannot be told (then nothing is reused)."""
        ...

    async def list_volume_rows(self, owner_id: str, query: ListQuery) -> VolumeRows:
        """:meth:`list_volumes` as stored, for showing them."""
        ...

    async def cursor_name(self, owner_id: str, uuid: str) -> str | None:
        """The name of a volume that is, or was in the last day, the tenant's: the
        place of a listing cursor. None if the tenant never had it."""
        ...

    async def begin_delete(self, owner_id: str, uuid: str, expected: Sequence[VolumeState]) -> bool:
        """Hide the volume and owe its deletion, if unlocked, unattached, in ``expected``
        and held by no job, except a ``format`` no worker has claimed (it is cancelled)."""
        ...

    async def purge_volume(self, uuid: str) -> bool:
        """Drop the row of a deleted volume (its image is already gone)."""
        ...

    async def set_tags(
        self, owner_id: str, uuid: str, expected: Sequence[str], tags: Sequence[str]
    ) -> bool:
        """Compare-and-set of the tags: wins only if they still are ``expected``."""
        ...

    async def set_delete_lock(self, owner_id: str, uuid: str, locked: bool) -> bool: ...
    async def set_free_mb(self, volume_uuid: str, free_mb: int) -> None:
        """Record the free space a volume's file system has after a guest used it."""
        ...

    async def has_active_clones(self, uuid: str) -> bool:
        """Whether a clone of this volume is still being copied."""
        ...

    async def job_holding(self, uuid: str) -> str | None:
        """The kind of job that holds the volume: its own (``format``, ``grow``, ...) or
        ``clone`` while a copy is made of it; None if none."""
        ...


class JobStore(Protocol):
    """Background jobs, recorded on volume rows and claimed under a lease whose epoch
    fences every transition of its holder."""

    async def claim_job(
        self, worker_id: str, lease_us: int, starts: JobStarts | None = None
    ) -> Job | None:
        """Take the oldest job whose lease ran out, under a new lease (and epoch). For a
        job whose kind ``starts`` names, a volume in one of the expected states moves to
        the state given, in the claim's transaction, with the event :meth:`set_job_state`
        records: one commit where a claim and then a start took two. The job carries the
        state it is in after the claim."""
        ...

    async def renew_lease(self, uuid: str, lease: Lease, lease_us: int) -> bool: ...
    async def release_leases(self, worker_id: str | None = None) -> int: ...
    async def set_job_state(self, uuid: str, lease: Lease, step: Step[VolumeState]) -> bool:
        """Fenced compare-and-set of the state of a volume whose job ``lease`` holds."""
        ...

    async def commit_stage(self, uuid: str, lease: Lease) -> bool:
        """Fenced: record that the staged image of ``lease.epoch`` is the job's result
        (to be renamed into place), if ``lease`` still holds the job."""
        ...

    async def volumes_known(self, uuids: Sequence[str]) -> set[str]:
        """Those of ``uuids`` that have a row, deleted or not."""
        ...

    async def image_wanted(self, uuid: str) -> bool:
        """Whether the image a format placed can be the volume's: the volume exists, is
        not being deleted, and still owes its format or ended it with an image (its
        ``free_mb`` was read from one). Asked by a format's holder that placed its image
        and then lost the job (see docs/design.md, "Lease fencing")."""
        ...

    async def retry_job_later(self, uuid: str, lease: Lease, delay_us: int) -> bool:
        """Hand the job back, claimable again in ``delay_us`` (the back-off)."""
        ...

    async def park_job(self, uuid: str, lease: Lease, message: str) -> bool:
        """Stop retrying the job: no worker claims it until :meth:`unpark_job`. Records
        an error event with ``message``."""
        ...

    async def unpark_job(self, uuid: str) -> bool:
        """An operator's retry of a parked job: claimable now, attempts from zero."""
        ...

    async def finish_job(
        self,
        uuid: str,
        lease: Lease,
        step: Step[VolumeState],
        *,
        free_mb: int | None = None,
        size_mb: int | None = None,
        message: str | None = None,
    ) -> bool:
        """End the job ``lease`` holds as ``step`` says (a volume that ends ``available``
        while attached ends as Op.ATTACH makes it: ``idle``)."""
        ...

    async def stats(self) -> StoreStats: ...


class MaintenanceStore(Protocol):
    """The jobs a user starts on a volume (grow, quota policy, clone, template, import):
    each begins by a compare-and-set that makes the volume ``busy`` and ends by a fenced
    one of the job's holder."""

    async def begin_grow(
        self,
        owner_id: str,
        uuid: str,
        step: Step[VolumeState],
        expected_size_mb: int,
        size_mb: int,
        limits: QuotaLimits,
    ) -> bool:
        """As ``step`` (one move) says (→ ``busy``), owing a ``grow`` job to ``size_mb``,
        if the volume is still at ``expected_size_mb`` without a job; QuotaRefused if the
        tenant's total size would exceed its limit."""
        ...

    async def finish_grow(
        self,
        uuid: str,
        lease: Lease,
        step: Step[VolumeState],
        *,
        size_mb: int | None,
        free_mb: int | None,
        message: str | None = None,
    ) -> bool:
        """End the grow job ``lease`` holds as ``step`` says, with the new size (None:
        the size stays, the grow did not happen)."""
        ...

    async def begin_reservation(
        self, owner_id: str, uuid: str, step: Step[VolumeState], reserve: bool
    ) -> bool:
        """As ``step`` (one move) says (→ ``busy``), owing a ``reserve`` (static) or
        ``release`` (dynamic) job."""
        ...

    async def finish_reservation(
        self,
        uuid: str,
        lease: Lease,
        step: Step[VolumeState],
        *,
        quota_policy: QuotaPolicy | None,
        free_mb: int | None,
        message: str | None = None,
    ) -> bool:
        """End the reservation job as ``step`` says, with the new policy (None: the
        policy stays)."""
        ...

    async def begin_clone(
        self,
        source_uuid: str,
        step: Step[VolumeState],
        clone: Volume,
        limits: QuotaLimits,
        *,
        all_readonly: bool = False,
    ) -> bool:
        """Insert ``clone`` owing a ``clone`` job and, in the same transaction, take the
        source by compare-and-set as ``step`` (one move) says (no job; made ``busy``, or
        left as it is; every attachment read-only if ``all_readonly``). False if the
        source changed; QuotaRefused or NameTaken if the clone cannot be inserted."""
        ...

    async def finish_clone(
        self,
        uuid: str,
        lease: Lease,
        step: Step[VolumeState],
        *,
        source_uuid: str,
        source_back: Step[VolumeState] | None,
        free_mb: int | None,
        message: str | None = None,
    ) -> bool:
        """End the clone job as ``step`` says and, in the same transaction, give the
        source back as ``source_back`` says (None: it was not made busy)."""
        ...

    async def make_template(self, owner_id: str, uuid: str, step: Step[VolumeState]) -> bool:
        """As ``step`` (one move) says (→ ``template``), if unattached and without a job."""
        ...

    async def begin_import(
        self, owner_id: str, uuid: str, step: Step[VolumeState], worker_id: str, lease_us: int
    ) -> Lease | None:
        """An unattached volume in a state ``step`` expects → its target, with an
        ``import`` job leased to ``worker_id``; the lease (None if the volume changed)."""
        ...


class InstanceStore(Protocol):
    """Instances, their attachments and the nodes that run them. Every transition is
    one transaction over the instance row and the rows of its volumes, so the two sides
    of an attachment can never disagree."""

    async def get_instance(self, owner_id: str, ref: Ref) -> Instance | None: ...
    async def list_instances(self, owner_id: str, query: ListQuery) -> list[Instance]: ...
    async def transitional_instances(self) -> list[Instance]:
        """Instances of every tenant left ``starting`` or ``stopping`` (by a crash)."""
        ...

    async def insert_instance(
        self,
        instance: Instance,
        new_volumes: Sequence[Volume],
        attachments: Sequence[NewAttachment],
        limits: QuotaLimits | None = None,
    ) -> InsertOutcome:
        """Insert the instance, its new volumes (each owing a ``format`` job) and its
        attachments, taking each existing volume by compare-and-set: all or nothing.
        With ``limits``, the new volumes are counted against the tenant's quota in the
        same transaction (QuotaRefused, nothing inserted)."""
        ...

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
        """Attach if the volume and the instance are in expected states, the instance has
        room and nothing else at ``at``; the volume moves as ``volume_step`` says."""
        ...

    async def detach(
        self,
        owner_id: str,
        volume_uuid: str,
        from_instance_uuid: str | None,
        expected_volume_states: Sequence[VolumeState],
        expected_instance_states: Sequence[InstanceState],
    ) -> AttachOutcome:
        """Detach from one instance (or from all when None), each in an expected state.
        The volume becomes persistent, and ``available`` once nothing holds it."""
        ...

    async def begin_start(
        self,
        owner_id: str,
        instance_uuid: str,
        step: Step[InstanceState],
        mount: Step[VolumeState],
    ) -> InstanceOutcome:
        """The instance as ``step`` says (``starting``), and every attached volume as
        ``mount`` says (``mounted``), if each is in a state ``mount`` expects."""
        ...

    async def finish_start(
        self,
        instance_uuid: str,
        step: Step[InstanceState],
        *,
        node: str | None = None,
        boot_time_us: int | None = None,
    ) -> bool:
        """``starting`` → ``running`` on ``node``; clears how it last stopped."""
        ...

    async def record_exit(
        self, instance_uuid: str, step: Step[InstanceState], outcome: GuestExit
    ) -> bool:
        """As ``step`` says (→ ``stopped``) because its guest ended by itself, with
        ``outcome``; volumes no running instance holds go back to idle."""
        ...

    async def heartbeat_node(self, node: str, alive_until_us: int) -> None:
        """Record that ``node`` is alive until ``alive_until_us`` (its lease)."""
        ...

    async def dead_nodes(self, now_us: int) -> list[str]:
        """Nodes whose lease ended before ``now_us``."""
        ...

    async def request_stop(
        self, instance_uuid: str, node: str, request: str, expected: Sequence[InstanceState]
    ) -> bool:
        """Leave a stop ``request`` (JSON) for ``node``, which runs the instance's guest;
        False if the instance is not there in an ``expected`` state any more."""
        ...

    async def stop_requests(self, node: str) -> list[tuple[Instance, str]]:
        """The running instances of ``node`` with a stop request, and the request."""
        ...

    async def instance_by_uuid(self, instance_uuid: str) -> Instance | None:
        """Any tenant's instance (for the runtime's reports, which know only the UUID)."""
        ...

    async def running_instances(self, node: str) -> list[Instance]:
        """Instances of every tenant that ``node`` runs (``running``)."""
        ...

    async def abort_start(self, instance_uuid: str, step: Step[InstanceState]) -> bool:
        """``starting`` → ``stopped``; volumes no running instance holds go back to idle."""
        ...

    async def begin_stop(
        self, owner_id: str, instance_uuid: str, step: Step[InstanceState]
    ) -> InstanceOutcome:
        """→ ``stopping``; the volumes stay mounted until the runtime is done."""
        ...

    async def finish_stop(
        self, instance_uuid: str, step: Step[InstanceState], outcome: GuestExit | None = None
    ) -> bool:
        """``stopping`` → ``stopped`` (recording ``outcome``); volumes no running instance
        holds go back to idle."""
        ...

    async def delete_instance(
        self,
        owner_id: str,
        instance_uuid: str,
        expected: Sequence[InstanceState],
        releasable: Sequence[VolumeState],
    ) -> InstanceOutcome:
        """Remove the instance and its attachments if every attached volume is
        ``releasable``. A volume left without attachments becomes ``available``, or, if
        not persistent, is hidden and owes a ``delete`` job."""
        ...


class QuotaStore(Protocol):
    """A tenant's quota overrides and usage, the create that counts and inserts in one
    transaction, and the host space promised to jobs."""

    async def quota_overrides(self, user_id: str) -> QuotaOverrides | None: ...
    async def set_quota_overrides(self, user_id: str, overrides: QuotaOverrides) -> None:
        """Replace the tenant's overrides (all ``None`` removes them)."""
        ...

    async def quota_usage(self, owner_id: str) -> QuotaUsage: ...
    async def insert_volume_within_quota(
        self,
        volume: Volume,
        job: str | None,
        job_args: dict[str, Any],
        limits: QuotaLimits,
        *,
        claim: Claim | None = None,
    ) -> Job | None:
        """Insert a new volume owing ``job`` (None: no job), counting the tenant's
        volumes and sizes in the same transaction: raises QuotaRefused (nothing
        inserted) or NameTaken if the tenant already has a volume of that name.

        With ``claim`` (and a job) the row is inserted claimed: leased to its worker,
        attempt 1 at epoch 1, started as ``claim.start`` says (with the event a claim's
        start records), exactly as :meth:`JobStore.claim_job` would leave it; returns
        that job. Without, returns None."""
        ...

    async def pending_reserved_mb(self) -> int: ...


class EventStore(Protocol):
    """The audit trail, written by the transitions themselves in their transaction."""

    async def volume_events(self, owner_id: str, uuid: str) -> list[VolumeEvent]:
        """The tenant's retained events of a volume, deleted or not, oldest first."""
        ...

    async def add_volume_event(self, uuid: str, action: str, result: str, message: str) -> None:
        """Record an operation that changed no state (a job attempt that failed)."""
        ...


class Store(
    UserStore,
    VolumeStore,
    JobStore,
    MaintenanceStore,
    InstanceStore,
    QuotaStore,
    EventStore,
    Protocol,
):
    """The whole metadata port, every role: what the composition root builds and
    hands to each service, which types it by the roles it uses."""

    async def ping(self) -> None: ...
    async def probe_write(self) -> None: ...
