"""Response items as msgspec structs: what the API answers, typed, and encoded in C.

Each struct is the shape of one kind of item in a response envelope's ``data``; the
OpenAPI document's response schemas are generated from them (``api/_openapi_schemas.py``),
so the document cannot say one thing while the server sends another. ``api/views.py``
fills them from the domain's records.

The field order is the order of the keys on the wire. A field with a default is left out
when it holds that default (``omit_defaults``): that is how a key the hosted service only
sends when it has a value (``free_mb``, ``message``, ``started_at``, ...) stays absent,
while a field without a default is always sent, ``null`` included.

A listing of 100 volumes spent most of its time building one dict per volume (and one
per attachment) only for the encoder to walk it again; a struct goes from the record to
bytes directly. The reads that only show volumes (a listing, GET one) skip the record
too: :func:`volume_items` makes the structs from the rows as stored.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Annotated, Any, Literal

import msgspec

from volumed.domain.model import InstanceRef, Mount, Volume
from volumed.domain.states import AccessMode, InstanceState, QuotaPolicy, VolumeState
from volumed.domain.values import VolumeRow

Success = Literal["success"]
"""``status`` of an item that succeeded; a failed one is an :class:`ErrorItem`."""
DateTime = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]
Count = Annotated[int, msgspec.Meta(ge=0)]
VolumeMessage = Annotated[str | None, msgspec.Meta(description="Why the volume is in error.")]


class ItemRef(msgspec.Struct):
    """An object by its identifiers: a ``details=false`` item, or the result of an attach,
    a detach or a delete."""

    status: Success
    uuid: str
    name: str


class ErrorItem(msgspec.Struct):
    """A failed item: the request went through, this item did not (HTTP 200 all the same;
    the envelope says ``partial_success`` or ``error``). ``uuid``/``name`` (and an update's
    ``id``) echo what the request item named."""

    # Documentation only: the server builds failed items with ``envelope.failed_item``.
    status: Literal["error"]
    error: Annotated[int, msgspec.Meta(ge=0, description="Per-item error code.")]
    message: str
    uuid: str | msgspec.UnsetType = msgspec.UNSET
    name: str | msgspec.UnsetType = msgspec.UNSET
    id: str | msgspec.UnsetType = msgspec.UNSET
    state: Annotated[
        str | msgspec.UnsetType, msgspec.Meta(description="A timed-out wait: the state reached.")
    ] = msgspec.UNSET


class ResponseError(msgspec.Struct):
    """A request-level error."""

    status: Annotated[int, msgspec.Meta(description="HTTP status code.")]
    message: str


class ErrorEnvelope(msgspec.Struct):
    """The envelope of a request-level failure (HTTP 4xx/5xx): nothing was processed."""

    status: Literal["error"]
    message: str
    errors: Annotated[list[ResponseError], msgspec.Meta(min_length=1)]
    op_time_us: Count


# ---- volumes


class AttachedInstance(msgspec.Struct):
    """An instance the volume is attached to."""

    uuid: str
    name: str


class MountingInstance(msgspec.Struct):
    """An instance that has the volume mounted right now."""

    uuid: str
    name: str
    readonly: bool


class VolumeItem(msgspec.Struct, omit_defaults=True):
    """A volume; ``free_mb`` and ``message`` only when known."""

    status: Success
    uuid: str
    name: str
    created_at: DateTime
    state: VolumeState
    size_mb: Count
    persistent: bool
    attached_to: list[AttachedInstance]
    mounted_by: list[MountingInstance]
    tags: list[str]
    quota_policy: QuotaPolicy
    access_mode: AccessMode
    delete_lock: bool
    filesystem: str
    free_mb: Annotated[
        int | None, msgspec.Meta(description="Free space of the file system, in MB.")
    ] = None
    message: VolumeMessage = None


class VolumeEntry(msgspec.Struct):
    """A volume as ``GET /v1/volumes/list`` (the seed API) lists it: no ``status``."""

    uuid: str
    name: str


class VolumeCreated(msgspec.Struct, omit_defaults=True):
    """A new volume (create, clone, template): answered once formatted or copied, or past
    the server's ``job_wait_s`` in the state it has then."""

    status: Success
    uuid: str
    name: str
    state: VolumeState
    message: VolumeMessage = None


class VolumeUpdated(msgspec.Struct, omit_defaults=True):
    """The result of one update item."""

    status: Success
    uuid: str
    name: str
    id: Annotated[str | None, msgspec.Meta(description="The id the request item carried.")] = None


# ---- instances


class InstanceVolume(msgspec.Struct):
    """A volume as an instance lists it."""

    uuid: str
    name: str
    at: str
    readonly: bool


class InstanceItem(msgspec.Struct, omit_defaults=True):
    """An instance; the boot and stop facts once there are any."""

    status: Success
    uuid: str
    name: str
    created_at: DateTime
    state: InstanceState
    image: str
    memory_mb: int
    vcpus: int
    args: list[str]
    env: dict[str, str]
    restart_policy: str
    private_fqdn: str
    volumes: list[InstanceVolume]
    tags: list[str]
    delete_lock: bool
    features: list[str]
    started_at: DateTime | None = None
    stopped_at: DateTime | None = None
    boot_time_us: int | None = None
    stop_reason: Annotated[
        int | None, msgspec.Meta(description="How it last stopped: a bitmask.")
    ] = None
    exit_code: int | None = None
    stop_code: int | None = None
    message: Annotated[str | None, msgspec.Meta(description="A note on a new instance.")] = None


class InstanceStateChange(msgspec.Struct):
    """The result of a start or a stop."""

    status: Success
    uuid: str
    name: str
    state: InstanceState
    previous_state: InstanceState


class InstanceDeleted(msgspec.Struct):
    """The result of a delete."""

    status: Success
    uuid: str
    name: str
    previous_state: InstanceState


class InstanceWaited(msgspec.Struct, omit_defaults=True):
    """The result of a wait: the state reached."""

    status: Success
    uuid: str | None = None
    name: str | None = None
    state: str | None = None


class ByteRange(msgspec.Struct):
    """Console bytes ``[start, end)``, counted from the first byte ever written."""

    start: int
    end: int


class InstanceLog(msgspec.Struct):
    """Console bytes ``range`` of those kept (``available``); ``offset=range.end``
    continues where this answer stopped."""

    status: Success
    uuid: str
    name: str
    state: InstanceState
    output: Annotated[str, msgspec.Meta(extra_json_schema={"contentEncoding": "base64"})]
    available: ByteRange
    range: ByteRange


class Image(msgspec.Struct, omit_defaults=True):
    """An image instances may name: ``url`` is its name, ``args`` its entrypoint and cmd."""

    status: Success
    url: str
    tags: list[str]
    initrd_or_rom: bool
    size_in_bytes: int
    args: list[str]
    env: dict[str, str]
    digest: str | None = None
    created_at: DateTime | None = None


# ---- quotas, metros, the service, volumed extensions


class QuotasUsed(msgspec.Struct):
    """What the user has now."""

    instances: Count
    live_instances: Count
    live_vcpus: Count
    live_memory_mb: Count
    volumes: Count
    total_volume_mb: Count


class QuotasHard(msgspec.Struct):
    """The most the user may have."""

    volumes: Count
    total_volume_mb: Count


class QuotasLimits(msgspec.Struct):
    """Bounds on one volume's size."""

    min_volume_mb: Count
    max_volume_mb: Count


class Quotas(msgspec.Struct):
    """The quotas and usage of the calling user (``uuid`` is the user's id)."""

    status: Success
    uuid: str
    used: QuotasUsed
    hard: QuotasHard
    limits: QuotasLimits


class Metro(msgspec.Struct):
    """A metro: this server, the only one."""

    uuid: str
    endpoint: str
    name: str
    iata_code: str


class Service(msgspec.Struct):
    """The service answering, and who the token belongs to."""

    name: str
    version: str
    user: str


class HealthCheck(msgspec.Struct):
    """One liveness or readiness check; ``message`` says what it found."""

    name: str
    status: Literal["ok", "fail"]
    message: str | None


class VolumeEvent(msgspec.Struct):
    """One entry of a volume's audit trail."""

    id: Annotated[str, msgspec.Meta(description="Sorts in the order the events happened.")]
    at: DateTime
    actor: Annotated[str, msgspec.Meta(description="The user's name, or worker.")]
    action: str
    result: str
    state_from: str | None
    state_to: str | None
    message: str | None


@lru_cache(maxsize=4096)
def rfc3339(seconds: int) -> str:
    """UTC with a ``Z``, to the second, as the hosted service prints it. Cached: a
    listing's volumes were mostly created in the same few seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def volume_item(volume: Volume) -> VolumeItem:
    # The states are StrEnums, which msgspec encodes as their value: no ``.value`` here.
    attached, mounted = volume.attached_to, volume.mounted_by
    return VolumeItem(
        "success",
        volume.uuid,
        volume.name,
        rfc3339(volume.created_at_us // 1_000_000),
        volume.state,
        volume.size_mb,
        volume.persistent,
        [AttachedInstance(a.uuid, a.name) for a in attached] if attached else [],
        [MountingInstance(m.uuid, m.name, m.readonly) for m in mounted] if mounted else [],
        volume.tags,
        volume.quota_policy,
        volume.access_mode,
        volume.delete_lock,
        volume.filesystem,
        volume.free_mb,
        volume.message or None,
    )


_NONE: list[Any] = []
"""The ``attached_to``, ``mounted_by`` or ``tags`` of most volumes; only ever encoded."""
_decode_tags = msgspec.json.Decoder(list[str]).decode


def volume_items(
    rows: Sequence[VolumeRow],
    attached_to: Mapping[str, list[InstanceRef]],
    mounted_by: Mapping[str, list[Mount]],
) -> list[VolumeItem]:
    """Volumes as stored (:data:`~volumed.domain.values.VolumeRow`) straight to their
    structs, the same as :func:`volume_item` makes of their records: the hot loop of a
    listing, so it is one function, and the positions are the row's."""
    empty = _NONE
    when = rfc3339
    decode = _decode_tags
    item = VolumeItem
    items = []
    for row in rows:
        uuid = row[0]
        tags = row[12]
        attached: list[AttachedInstance] = empty
        mounted: list[MountingInstance] = empty
        if attached_to:
            found = attached_to.get(uuid)
            if found:
                attached = [AttachedInstance(a.uuid, a.name) for a in found]
                mounts = mounted_by.get(uuid)
                if mounts:
                    mounted = [MountingInstance(m.uuid, m.name, m.readonly) for m in mounts]
        items.append(
            item(
                "success",
                uuid,
                row[2],
                when(row[6] // 1_000_000),
                # The state and modes as their stored values: StrEnums encode the same.
                row[3],
                row[4],
                row[5] != 0,
                attached,
                mounted,
                empty if tags == "[]" else decode(tags),
                row[7],
                row[8],
                row[9] != 0,
                row[11],
                row[10],
                row[13] or None,
            )
        )
    return items


def volume_refs(rows: Sequence[VolumeRow]) -> list[ItemRef]:
    """``details=false`` items of volumes as stored."""
    return [ItemRef("success", row[0], row[2]) for row in rows]
