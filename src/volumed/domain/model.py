"""The records the service works with. Plain data; rules live in ``transitions`` and ``rules``."""

from __future__ import annotations

from dataclasses import dataclass, field

from volumed.domain.states import AccessMode, InstanceState, QuotaPolicy, VolumeState


@dataclass(slots=True, frozen=True)
class InstanceRef:
    """An instance as a volume lists it in ``attached_to``."""

    uuid: str
    name: str


@dataclass(slots=True, frozen=True)
class Mount:
    """An instance that has the volume mounted right now (``mounted_by``)."""

    uuid: str
    name: str
    readonly: bool


@dataclass(slots=True)
class Volume:
    uuid: str
    owner_id: str
    name: str
    state: VolumeState
    size_mb: int
    persistent: bool
    created_at_us: int
    """Creation time in microseconds since the epoch (UTC); also the list order."""
    quota_policy: QuotaPolicy = QuotaPolicy.STATIC
    access_mode: AccessMode = AccessMode.RWO
    delete_lock: bool = False
    free_mb: int | None = None
    """Free space of the file system, refreshed after every data-plane operation."""
    filesystem: str = "ext4"
    tags: list[str] = field(default_factory=list)
    attached_to: list[InstanceRef] = field(default_factory=list)
    mounted_by: list[Mount] = field(default_factory=list)
    message: str | None = None
    """Why the volume is in ``error``; None otherwise."""


@dataclass(slots=True)
class InstanceVolume:
    """A volume as an instance lists it."""

    uuid: str
    name: str
    at: str
    readonly: bool


@dataclass(slots=True)
class Instance:
    uuid: str
    owner_id: str
    name: str
    state: InstanceState
    created_at_us: int
    image: str
    memory_mb: int = 128
    vcpus: int = 1
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    volumes: list[InstanceVolume] = field(default_factory=list)
    node: str | None = None
    """The server that runs (or last ran) its guest."""
    boot_time_us: int | None = None
    started_at_us: int | None = None
    stopped_at_us: int | None = None
    stop_reason: int | None = None
    """How it last stopped: the SDK's bitmask (see domain.runtime.StopReason)."""
    exit_code: int | None = None
    stop_code: int | None = None


@dataclass(slots=True, frozen=True)
class User:
    id: str
    name: str


@dataclass(slots=True, frozen=True)
class Ref:
    """How a request names a volume or instance: exactly one of ``uuid`` or ``name``."""

    uuid: str | None = None
    name: str | None = None

    def describe(self) -> str:
        return f"uuid '{self.uuid}'" if self.uuid is not None else f"name '{self.name}'"
