"""The values the metadata port (:mod:`volumed.domain.store`) takes and returns: a
listing's query, a job and its lease, the outcomes of the two-row compare-and-sets,
quota limits and usage, the aggregates metrics read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

from volumed.domain.model import InstanceRef, Mount
from volumed.domain.states import QuotaPolicy, VolumeState
from volumed.domain.transitions import Step

__all__ = [
    "FIRST_EPOCH",
    "AttachOutcome",
    "Claim",
    "InsertOutcome",
    "InstanceOutcome",
    "Job",
    "JobStarts",
    "Lease",
    "ListQuery",
    "NewAttachment",
    "QuotaLimits",
    "QuotaOverrides",
    "QuotaUsage",
    "StoreStats",
    "VOLUME_ROW",
    "VolumeRow",
    "VolumeRows",
]


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


VOLUME_ROW = (
    "uuid",
    "owner_id",
    "name",
    "state",
    "size_mb",
    "persistent",
    "created_at_us",
    "quota_policy",
    "access_mode",
    "delete_lock",
    "free_mb",
    "filesystem",
    "tags",
    "message",
)
"""The fields of a :data:`VolumeRow`, in their order (the store selects these columns)."""

VolumeRow = Sequence[Any]
"""A volume as the database holds it, for the reads that only show it (a listing, GET
one): the fields of :data:`VOLUME_ROW` by position, as stored: ``state``,
``quota_policy`` and ``access_mode`` their string values, ``persistent`` and
``delete_lock`` 0 or 1, ``tags`` the JSON text of a list of strings, ``message`` None or
empty when there is none. The store's row object as it comes (it may carry more fields
after these): a listing of 100 spent more time making :class:`~volumed.domain.model.Volume`
records, only to render them, than the database took to read the rows."""


_NONE: Mapping[str, Any] = MappingProxyType({})


class VolumeRows(NamedTuple):
    """Volumes as stored (:data:`VolumeRow`), each at most once, in the order read; and
    the instances of those that have any, by volume uuid, in attachment order. (A named
    tuple: GET one makes one per request.)"""

    rows: Sequence[VolumeRow]
    attached_to: Mapping[str, list[InstanceRef]] = _NONE
    mounted_by: Mapping[str, list[Mount]] = _NONE


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


FIRST_EPOCH = 1
"""The epoch of a row's first claim (a new row is at 0): a claimed insert's job holds it."""


@dataclass(slots=True, frozen=True)
class Claim:
    """A job its creator takes in the transaction that records it: the new row is
    inserted already leased to ``worker_id`` for ``lease_us`` (its first claim: epoch 1,
    attempt 1) and in the state ``start`` gives it, so no worker has to be woken to claim
    it (see :meth:`volumed.domain.store.QuotaStore.insert_volume_within_quota`)."""

    worker_id: str
    lease_us: int
    start: Step[VolumeState] | None = None


JobStarts = Mapping[str, Step[VolumeState]]
"""Job kind -> how its job starts (the table's step: the states it starts from, the
state each starts in): see :meth:`volumed.domain.store.JobStore.claim_job`."""


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


# ---- quotas


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
