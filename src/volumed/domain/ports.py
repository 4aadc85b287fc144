"""The two ports the domain uses: metadata (``Store``) and data plane (``StorageDriver``).

Adapters live in :mod:`volumed.store` and :mod:`volumed.storage`; they import from
here, never the other way round.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from volumed.domain.audit import VolumeEvent
from volumed.domain.model import Instance, Ref, User, Volume
from volumed.domain.runtime import GuestExit
from volumed.domain.states import InstanceState, QuotaPolicy, VolumeState
from volumed.domain.transitions import Step

__all__ = [
    "AttachOutcome",
    "ImageUsage",
    "ImportRefused",
    "InstanceOutcome",
    "Job",
    "Lease",
    "ListQuery",
    "NameTaken",
    "NewAttachment",
    "QuotaLimits",
    "QuotaOverrides",
    "QuotaRefused",
    "QuotaUsage",
    "StorageDriver",
    "StorageError",
    "Store",
    "StoreStats",
    "StoreFull",
    "StoreUnavailable",
]


class StorageError(Exception):
    """A data-plane operation failed. ``message`` is a sentence fit for the API user."""

    def __init__(self, message: str, *, no_space: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.no_space = no_space


class ImportRefused(StorageError):
    """An import the volume cannot take, its old contents untouched: the archive is not
    a tar archive or has an unsafe member, or (``needed_mb`` set) its files do not fit
    in a file system of the volume's size (``capacity_mb`` free when empty)."""

    def __init__(
        self, message: str, *, needed_mb: int | None = None, capacity_mb: int | None = None
    ) -> None:
        super().__init__(message)
        self.needed_mb = needed_mb
        self.capacity_mb = capacity_mb


@dataclass(slots=True, frozen=True)
class ImageUsage:
    size_mb: int
    """Size of the file system in MiB."""
    free_mb: int
    """Free space inside the file system in MiB (no blocks are reserved for root)."""
    allocated_mb: int
    """Space the image occupies on the host (sparse images occupy less than their size)."""


class StorageDriver(Protocol):
    """Makes volumes real. Images are named by volume UUID, never by a user-chosen name.

    Every method is idempotent with respect to a crash: calling it again after a
    ``kill -9`` in the middle of a previous call finishes the job or redoes it.
    """

    def image_path(self, uuid: str) -> Path:
        """Where the image of ``uuid`` lives (whether or not it exists yet)."""
        ...

    async def create(
        self, uuid: str, size_mb: int, *, reserve: bool, stage: int | None = None
    ) -> ImageUsage:
        """Allocate and format a fresh ext4 image, and nothing else.

        The image appears under its final name only once it is fully formatted (it is
        built under a temporary name and renamed), so a crash leaves either no image or
        a complete one. ``reserve`` allocates every block on the host (static quota
        policy); otherwise the image stays sparse. An existing image is replaced.

        With ``stage`` (the job's fencing epoch) every builder below leaves its result
        as the *staged image* of that epoch instead, and the volume's image is untouched
        until :meth:`publish` renames it into place; the usage returned is the staged
        image's.
        """
        ...

    async def delete(self, uuid: str) -> None:
        """Remove the image and any leftovers. Succeeds if they are already gone."""
        ...

    async def clone(
        self, source_uuid: str, target_uuid: str, *, reserve: bool, stage: int | None = None
    ) -> ImageUsage:
        """Copy the source image to the target (reflink if possible, else sparse copy)."""
        ...

    async def grow(
        self, uuid: str, size_mb: int, *, reserve: bool | None = None, stage: int | None = None
    ) -> ImageUsage:
        """Grow the image and its file system to ``size_mb`` (offline). ``reserve`` says
        whether the added space is allocated on the host (None: as the image was). With
        ``stage``, a copy is grown and the image itself is only read."""
        ...

    async def set_reservation(
        self, uuid: str, *, reserve: bool, stage: int | None = None
    ) -> ImageUsage:
        """Reserve every block on the host (``True``) or release unused ones (``False``).
        With ``stage``, on a copy."""
        ...

    async def publish(self, uuid: str, stage: int) -> bool:
        """Rename the staged image of epoch ``stage`` over the volume's image, durably.
        False if it is not there (already published, or discarded): a staged image can
        be published once at most, whoever tries."""
        ...

    async def discard_staged(self, uuid: str, stage: int | None = None) -> None:
        """Remove the staged image of epoch ``stage`` (every staged image of the volume
        when None). Succeeds if they are already gone."""
        ...

    async def usage(self, uuid: str) -> ImageUsage:
        """Read size and free space from the image's superblock."""
        ...

    async def check(self, uuid: str) -> tuple[bool, str]:
        """Run a read-only file system check; returns (clean, output)."""
        ...

    async def replay_journal(self, uuid: str) -> None:
        """Bring the file system of an image its guest did not unmount (a crash, a
        forced stop) to a consistent state by replaying its journal; nothing else is
        checked or repaired. Only while no guest has the image open."""
        ...

    def list_images(self) -> list[str]:
        """UUIDs of every image (and leftover temporary file) in the data directory."""
        ...

    def free_bytes(self) -> int:
        """Free space on the host file system that holds the images."""
        ...

    # ---- files in and out (volumed extension)

    async def import_tar(
        self, uuid: str, chunks: AsyncIterator[bytes], *, reserve: bool, stage: int | None = None
    ) -> ImageUsage:
        """Replace the file system's contents with the tar archive arriving as ``chunks``,
        atomically: the old image stays untouched until a complete new one is renamed
        over it. Raises ``ImportRefused`` (old contents kept) for an unsafe archive or
        one that does not fit. Never holds the archive in memory."""
        ...

    async def export_tar(self, uuid: str) -> AsyncIterator[bytes]:
        """Snapshot the file tree now (errors raise here) and return it as a tar stream."""
        ...

    async def discard_transfers(self, uuid: str | None = None) -> None:
        """Remove what an interrupted import of ``uuid`` left (every transfer leftover
        when None: only while no transfer can be running)."""
        ...


# --------------------------------------------------------------------------- metadata


class NameTaken(Exception):
    """The store refused a row because the tenant already uses that name."""


class StoreUnavailable(Exception):
    """The metadata store cannot be reached right now (the request may be retried)."""


class StoreFull(StoreUnavailable):
    """The metadata store has no space left to write: reads still work, writes are refused
    until an operator frees space (the request may be retried then)."""


@dataclass(slots=True, frozen=True)
class ListQuery:
    """What ``GET /v1/volumes`` and ``/v1/volumes/list`` may filter and page by."""

    templates: bool = False
    """List template volumes (``/v1/volumes/templates``) instead of ordinary ones."""
    states: tuple[VolumeState, ...] = ()
    persistent: bool | None = None
    tags: tuple[str, ...] = ()
    from_uuid: str | None = None
    from_time_us: int | None = None
    count: int = 0
    """0 means no limit."""
    descending: bool = False


@dataclass(slots=True, frozen=True)
class Job:
    """Background work recorded on a volume row, claimed by one worker under a lease."""

    uuid: str
    kind: str
    args: dict[str, object]
    state: VolumeState
    size_mb: int
    quota_policy: QuotaPolicy
    attempts: int
    lease_owner: str
    epoch: int = 0
    """The fencing token of this claim (see :class:`Lease`)."""
    published: int | None = None
    """The epoch of a staged image a previous holder committed but may not have renamed
    into place yet; the new holder finishes that rename before anything else."""

    @property
    def lease(self) -> Lease:
        return Lease(self.lease_owner, self.epoch)


@dataclass(slots=True, frozen=True)
class Lease:
    """A claim on a volume's job: the holder and its fencing token.

    ``epoch`` grows with every claim of the row, so a holder whose lease ran out (a
    frozen or partitioned process) while another claimed the job can never again win a
    compare-and-set on the row: every job transition names the epoch it was claimed at.
    """

    owner: str
    epoch: int


@dataclass(slots=True, frozen=True)
class StoreStats:
    """Aggregates over every tenant, read when metrics are scraped."""

    volumes_by_state: dict[VolumeState, int]
    """Live volumes (deleted ones excluded) per state."""
    provisioned_mb: int
    """Sum of the sizes of live volumes."""
    used_mb: int
    """Sum of ``size - free`` over live volumes whose free space is known."""
    tenants: int
    jobs: int
    """Volumes that owe background work (the worker's queue, running jobs included)."""
    parked_jobs: int = 0
    """Jobs that failed too often and wait for an operator (``volumed job retry``)."""


# ---- instances and attachments: what the two-row compare-and-sets report


class AttachOutcome(StrEnum):
    """How an attach, a detach or an instance insert ended. Anything but ``DONE`` changed
    nothing: the transaction was rolled back."""

    DONE = "done"
    VOLUME_CHANGED = "volume_changed"
    """The volume is gone or not in an expected state any more: re-read it."""
    INSTANCE_GONE = "instance_gone"
    INSTANCE_CHANGED = "instance_changed"
    """The instance is not in an expected state (not stopped): re-read it."""
    TOO_MANY = "too_many"
    """The instance already has as many volumes as it may."""
    PATH_TAKEN = "path_taken"
    """Another volume of the instance is mounted at the same path."""
    ALREADY_ATTACHED = "already_attached"
    """The volume is already attached to this very instance."""
    NOT_ATTACHED = "not_attached"
    """Detach: the volume is not attached (to the instance named)."""
    NAME_TAKEN = "name_taken"
    """Insert: the instance's or a new volume's name is taken."""


class InstanceOutcome(StrEnum):
    """How a start, stop or delete compare-and-set ended."""

    DONE = "done"
    GONE = "gone"
    CHANGED = "changed"
    """The instance is not in an expected state: re-read it."""
    VOLUMES_NOT_READY = "volumes_not_ready"
    """An attached volume is in a state its instance cannot carry it through (a job
    holds it, or it is broken): nothing changed."""


@dataclass(slots=True, frozen=True)
class NewAttachment:
    """A volume to attach to an instance as the instance is created."""

    volume_uuid: str
    at: str
    readonly: bool
    step: Step[VolumeState] | None = None
    """For an existing volume: its compare-and-set (the table's attach step). None for
    a volume inserted in the same transaction."""


@dataclass(slots=True, frozen=True)
class InsertOutcome:
    result: AttachOutcome
    index: int | None = None
    """Which volume item failed; None when the instance itself did (its name)."""


# ---- updates, clones, templates, quotas: what their store methods take and report


@dataclass(slots=True, frozen=True)
class QuotaLimits:
    """A tenant's effective limits: the configured defaults with its overrides applied."""

    max_volumes: int
    max_total_volume_mb: int
    min_volume_mb: int
    max_volume_mb: int


@dataclass(slots=True, frozen=True)
class QuotaOverrides:
    """A tenant's own limits; ``None`` means the configured default applies."""

    max_volumes: int | None = None
    max_total_volume_mb: int | None = None
    min_volume_mb: int | None = None
    max_volume_mb: int | None = None


@dataclass(slots=True, frozen=True)
class QuotaUsage:
    volumes: int
    """Volumes and templates, in every state."""
    total_volume_mb: int
    """Their sizes; a volume being grown counts at its new size."""
    instances: int = 0
    live_instances: int = 0
    live_vcpus: int = 0
    live_memory_mb: int = 0


class QuotaRefused(Exception):
    """The store refused a change because the tenant's count or total size would exceed
    its limits; ``usage`` is what the tenant had at that moment."""

    def __init__(self, usage: QuotaUsage) -> None:
        super().__init__(f"{usage.volumes} volumes, {usage.total_volume_mb} MB")
        self.usage = usage


class Store(Protocol):
    """Metadata persistence. Every method is one transaction; every method that changes
    a volume's state is a compare-and-set that returns whether it won."""

    async def ping(self) -> None: ...
    async def probe_write(self) -> None: ...

    # users and tokens
    async def user_for_token(self, token_hash: str) -> User | None: ...
    async def create_user(self, user: User) -> None: ...
    async def find_user(self, name: str) -> User | None: ...
    async def list_users(self) -> list[User]: ...
    async def count_users(self) -> int: ...
    async def add_token(self, token_id: str, user_id: str, token_hash: str, label: str) -> None: ...

    # volumes
    async def get_volume(self, owner_id: str, ref: Ref) -> Volume | None: ...
    async def list_volumes(self, owner_id: str, query: ListQuery) -> list[Volume]: ...
    async def pending_reserved_mb(self) -> int: ...
    async def begin_delete(self, owner_id: str, uuid: str, expected: Sequence[VolumeState]) -> bool:
        """Hide the volume and owe its deletion, if unlocked, unattached, in ``expected``
        and held by no job, except a ``format`` no worker has claimed (it is cancelled)."""
        ...

    async def purge_volume(self, uuid: str) -> bool:
        """Drop the row of a deleted volume (its image is already gone)."""
        ...

    # background jobs
    async def claim_job(self, worker_id: str, lease_us: int) -> Job | None: ...
    async def renew_lease(self, uuid: str, lease: Lease, lease_us: int) -> bool: ...
    async def release_leases(self, worker_id: str | None = None) -> int: ...
    async def stats(self) -> StoreStats: ...

    # the audit trail (written by the transitions themselves, in their transaction)
    async def volume_events(self, owner_id: str, uuid: str) -> list[VolumeEvent]:
        """The tenant's retained events of a volume, deleted or not, oldest first."""
        ...

    async def add_volume_event(self, uuid: str, action: str, result: str, message: str) -> None:
        """Record an operation that changed no state (a job attempt that failed)."""
        ...

    async def set_job_state(self, uuid: str, lease: Lease, step: Step[VolumeState]) -> bool:
        """Fenced compare-and-set of the state of a volume whose job ``lease`` holds."""
        ...

    async def commit_stage(self, uuid: str, lease: Lease) -> bool:
        """Fenced: record that the staged image of ``lease.epoch`` is the job's result
        (to be renamed into place), if ``lease`` still holds the job."""
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

    async def begin_import(
        self, owner_id: str, uuid: str, step: Step[VolumeState], worker_id: str, lease_us: int
    ) -> Lease | None:
        """An unattached volume in a state ``step`` expects → its target, with an
        ``import`` job leased to ``worker_id``; the lease (None if the volume changed)."""
        ...

    # ---- instances and attachments
    # Every transition below is one transaction over the instance row and the rows of
    # its volumes, so the two sides of an attachment can never disagree.

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

    async def set_free_mb(self, volume_uuid: str, free_mb: int) -> None:
        """Record the free space a volume's file system has after a guest used it."""
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

    # ---- updates, clones, templates, quotas

    async def quota_overrides(self, user_id: str) -> QuotaOverrides | None: ...
    async def set_quota_overrides(self, user_id: str, overrides: QuotaOverrides) -> None:
        """Replace the tenant's overrides (all ``None`` removes them)."""
        ...

    async def quota_usage(self, owner_id: str) -> QuotaUsage: ...
    async def insert_volume_within_quota(
        self, volume: Volume, job: str | None, job_args: dict[str, Any], limits: QuotaLimits
    ) -> None:
        """Insert a new volume owing ``job`` (None: no job), counting the tenant's
        volumes and sizes in the same transaction: raises QuotaRefused (nothing
        inserted) or NameTaken if the tenant already has a volume of that name."""
        ...

    async def set_tags(
        self, owner_id: str, uuid: str, expected: Sequence[str], tags: Sequence[str]
    ) -> bool:
        """Compare-and-set of the tags: wins only if they still are ``expected``."""
        ...

    async def set_delete_lock(self, owner_id: str, uuid: str, locked: bool) -> bool: ...
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

    async def has_active_clones(self, uuid: str) -> bool:
        """Whether a clone of this volume is still being copied."""
        ...

    async def job_holding(self, uuid: str) -> str | None:
        """The kind of job that holds the volume: its own (``format``, ``grow``, ...) or
        ``clone`` while a copy is made of it; None if none."""
        ...

    async def cursor_name(self, owner_id: str, uuid: str) -> str | None:
        """The name of a volume that is, or was in the last day, the tenant's: the
        place of a listing cursor. None if the tenant never had it."""
        ...
