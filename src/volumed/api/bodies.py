"""Request bodies as msgspec types: unknown fields and wrong JSON types are a 400.

Global-scope endpoints take one object or an array of objects; a local-scope call
(``/{uuid}/…``) takes an object without identifiers.

The OpenAPI document's request schemas are generated from these structs: docstrings and
``msgspec.Meta(description=…)`` become its descriptions. A value the service checks itself
(a name out of an enum, a size out of range) is a per-item error, not a 400, so its type
stays ``str``/``int`` and the values it takes are documented by ``extra_json_schema``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from volumed.api.http import RequestError
from volumed.domain.states import AccessMode, InstanceState, QuotaPolicy, VolumeState

MAX_ITEMS = 253

Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
"""A JSON integer: one beyond 64 bits is ill-typed (a 400), not a value to range-check."""


def _one_of(values: type[StrEnum] | tuple[str, ...]) -> msgspec.Meta:
    """Documents the values a string takes; another one is a per-item error (7)."""
    return msgspec.Meta(extra_json_schema={"enum": [str(value) for value in values]})


QuotaPolicyName = Annotated[str, _one_of(QuotaPolicy)]
AccessModeName = Annotated[str, _one_of(AccessMode)]
VolumeStateName = Annotated[str, _one_of(VolumeState)]
InstanceStateName = Annotated[str, _one_of(InstanceState)]
ObjectUuid = Annotated[
    str | None, msgspec.Meta(description="UUID of the object (give uuid or name).")
]
ObjectName = Annotated[
    str | None, msgspec.Meta(description="Name of the object (give uuid or name).")
]
MountPath = Annotated[
    str | None, msgspec.Meta(description="Absolute mount path, no '.', '..' or ':'.")
]


class Body(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Base of every request item."""


class RefBody(Body):
    """An object by its UUID or by its name (give one of them)."""

    uuid: ObjectUuid = None
    name: ObjectName = None


class CreateVolumeBody(Body):
    """A new volume: ``size_mb`` is needed unless ``template`` or ``host_path`` is given."""

    name: str | None = None
    size_mb: Int64 | None = None
    template: RefBody | None = None
    quota_policy: QuotaPolicyName | None = None
    filesystem: str | None = None
    tags: list[str] | None = None
    access_mode: AccessModeName | None = None
    host_path: str | None = None
    uid: Int64 | None = None
    gid: Int64 | None = None
    args: dict[str, str] | None = None


class ListFilterBody(Body):
    """Filters of ``GET /v1/volumes/list``."""

    persistent: bool | None = None
    state: VolumeStateName | None = None


# ---- instances and attachments
# A local-scope body (``/{uuid}/…``) is the base class; the global item adds uuid/name.
# ``attach_to``/``from`` may also be a bare string, as clients before 2023-11 sent them.


class AttachByUuidBody(Body):
    attach_to: Annotated[
        RefBody | str | None,
        msgspec.Meta(
            description="The instance: {uuid} or {name}; a bare string is read as either."
        ),
    ] = None
    at: MountPath = None
    readonly: bool | None = None


class AttachBody(AttachByUuidBody):
    uuid: ObjectUuid = None
    name: ObjectName = None


class DetachByUuidBody(Body):
    from_: RefBody | str | None = msgspec.field(default=None, name="from")


class DetachBody(DetachByUuidBody):
    uuid: ObjectUuid = None
    name: ObjectName = None


class ImageBody(Body):
    """An image by its name (``url``)."""

    url: str
    credentials: str | None = None
    headers: dict[str, str] | None = None
    pull_policy: Annotated[str, _one_of(("always", "if_not_present", "never"))] | None = None


class InstanceVolumeBody(Body):
    """A volume of a new instance: ``uuid`` or ``name`` alone attaches an existing one;
    ``size_mb`` (or ``host_path``) creates one."""

    uuid: ObjectUuid = None
    name: ObjectName = None
    size_mb: Int64 | None = None
    host_path: str | None = None
    at: MountPath = None
    readonly: bool | None = None
    quota_policy: QuotaPolicyName | None = None
    filesystem: str | None = None
    tags: list[str] | None = None
    uid: Int64 | None = None
    gid: Int64 | None = None
    access_mode: AccessModeName | None = None
    args: dict[str, str] | None = None


class CreateInstanceBody(Body):
    """A new instance, optionally with new or existing volumes. The fields after
    ``hostname`` are known to the API but not offered here: any value but null is
    error 1."""

    name: str | None = None
    image: str | ImageBody | None = None
    args: list[str] | None = None
    env: dict[str, str] | None = None
    memory_mb: Int64 | None = None
    vcpus: Int64 | None = None
    volumes: list[InstanceVolumeBody] | None = None
    autostart: bool | None = None
    restart_policy: Annotated[str, _one_of(("never", "always", "on-failure"))] | None = None
    features: list[Annotated[str, _one_of(("delete-on-stop", "nested-virt"))]] | None = None
    tags: list[str] | None = None
    timeout_s: Int64 | None = None
    wait_timeout_ms: Int64 | None = None
    replicas: Int64 | None = None
    hostname: str | None = None
    # Known to the API but not offered by volumed: any value but null is error 1.
    service_group: Any = None
    scale_to_zero: Any = None
    template: Any = None
    roms: Any = None
    plugins: Any = None
    annotations: Any = None
    sched_priority: Any = None
    schedules: Any = None
    autokill: Any = None
    dependencies: Any = None
    branch_from: Any = None
    checkpoint: Any = None
    gateway: Any = None
    nameserver: Any = None
    network_interfaces: Any = None
    type: Any = None
    gpus: Any = None

    def unsupported(self) -> list[str]:
        return [name for name in _UNSUPPORTED_CREATE if getattr(self, name) is not None]


_UNSUPPORTED_CREATE = (
    "service_group scale_to_zero template roms plugins annotations sched_priority schedules "
    "autokill dependencies branch_from checkpoint gateway nameserver network_interfaces "
    "type gpus"
).split()


class StartByUuidBody(Body):
    timeout_s: Int64 | None = None
    wait_timeout_ms: Int64 | None = None


class StartInstanceBody(StartByUuidBody):
    uuid: ObjectUuid = None
    name: ObjectName = None


class StopByUuidBody(Body):
    force: bool | None = None
    drain_timeout_ms: Int64 | None = None
    quick: bool | None = None
    ifstate: str | None = None
    dump: bool | None = None


class StopInstanceBody(StopByUuidBody):
    uuid: ObjectUuid = None
    name: ObjectName = None


class DeleteInstanceByUuidBody(Body):
    timeout_s: Int64 | None = None
    dont_retain: bool | None = None


class DeleteInstanceBody(DeleteInstanceByUuidBody):
    uuid: ObjectUuid = None
    name: ObjectName = None


class WaitByUuidBody(Body):
    """What to wait for: ``state`` (default running), for at most the timeout."""

    state: InstanceStateName | None = None
    timeout_s: Int64 | None = None
    timeout_ms: Int64 | None = None


class ImageRefBody(Body):
    tag: str | None = None
    digest: str | None = None


class LogsByUuidBody(Body):
    """Which console bytes: ``offset`` < 0 counts from the end; ``limit`` defaults to
    65536 bytes."""

    offset: Int64 | None = None
    limit: Int64 | None = None


class LogsInstanceBody(LogsByUuidBody):
    uuid: ObjectUuid = None
    name: ObjectName = None


class WaitInstanceBody(WaitByUuidBody):
    uuid: ObjectUuid = None
    name: ObjectName = None


# ---- updates, clones, templates
# ``prop`` and ``op`` are closed sets of names, like field names: anything else is a 400.
# ``value`` is typed per property by the service (a mismatch is a per-item error 7).

VolumeProp = Literal["size_mb", "tags", "quota_policy", "delete_lock"]
TemplateProp = Literal["tags", "delete_lock"]
PatchOp = Literal["set", "add", "del"]
PatchValue = Annotated[
    bool | Int64 | str | list[str] | None,
    msgspec.Meta(
        description="size_mb: integer; tags: array of strings; quota_policy: string; "
        "delete_lock: boolean. 'set' without a value clears the property."
    ),
]


class UpdateByUuidBody(Body):
    prop: VolumeProp
    op: PatchOp
    id: str | None = None
    value: PatchValue = None


class UpdateBody(UpdateByUuidBody):
    uuid: ObjectUuid = None
    name: ObjectName = None


class UpdateTemplateByUuidBody(Body):
    prop: TemplateProp
    op: PatchOp
    id: str | None = None
    value: PatchValue = None


class UpdateTemplateBody(UpdateTemplateByUuidBody):
    uuid: ObjectUuid = None
    name: ObjectName = None


class CloneByUuidBody(Body):
    """The copy's name and settings; the source's where not given."""

    vol_name: str | None = None
    quota_policy: QuotaPolicyName | None = None
    tags: list[str] | None = None
    access_mode: AccessModeName | None = None


class CloneBody(CloneByUuidBody):
    uuid: ObjectUuid = None
    name: ObjectName = None


class TemplateIdsBody(Body):
    """``POST /v1/volumes/templates`` as the 2025 OpenAPI spec writes it."""

    ids: list[RefBody]


T = TypeVar("T", bound=Body)
V = TypeVar("V")

_raw = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}
_REFUSED = (msgspec.MsgspecError, ValueError, RecursionError)
"""What decoding a body that is not fine raises (ValueError: a repeated key, bytes that
are not UTF-8, ...)."""
_NESTED = 500
"""Fewer brackets than this: nested far less deeply than Python's recursion limit."""


def parse_items(body: bytes, kind: type[T], *, required: bool = True) -> list[T]:
    """An object or an array of at most 253 objects of ``kind``."""
    if not body.strip():
        if required:
            raise RequestError(400, "A JSON request body is required")
        return []
    try:
        value = _json(body)
    except _REFUSED:
        return _limited(_listed(_explained(body, _decoder(kind).decode)))
    return items_of(body, value, kind)


def items_of(body: bytes, value: Any, kind: type[T]) -> list[T]:
    """The items of ``kind`` in ``value``, what :func:`parse_json` made of ``body``."""
    try:
        if isinstance(value, list):
            items = msgspec.convert(value, list[kind])  # type: ignore[valid-type]
        else:
            items = [msgspec.convert(value, kind)]
    except _REFUSED:
        items = _listed(_explained(body, _decoder(kind).decode))
    return _limited(items)


def parse_object(body: bytes, kind: type[T]) -> T:
    """A single object of ``kind``; an empty body means all defaults."""
    if not body.strip():
        return kind()
    try:
        return msgspec.convert(_json(body), kind)
    except _REFUSED:
        return _explained(body, lambda raw: msgspec.json.decode(raw, type=kind))


def parse_json(body: bytes) -> Any:
    """Any JSON value, as plain dicts and lists (a key named twice refused all the same)."""
    try:
        return _json(body)
    except _REFUSED:
        return _explained(body, _raw.decode)


def _json(body: bytes) -> Any:
    """The body's JSON value in one parse; a key named twice raises ValueError.

    msgspec keeps the last of two equal keys silently, so a body whose decoded value may
    have lost a key is parsed again by ``json.loads``, which shows the pairs. Every ``:``
    outside a string stands between a key and its value, so ``value`` encoded has as many
    as the body unless a key was dropped, or a string held an escaped one (``\\u003a``).
    ``json.loads`` also looks at a body nested deep enough to exhaust its recursion, as
    it did when it looked at every body (such a body stays a 400).
    """
    value = _raw.decode(body)
    if body.count(b'"') > 3 and (  # fewer quotes: at most one key, none repeated
        body.count(b":") != _encoder.encode(value).count(b":")
        or b"\\u003a" in body
        or b"\\u003A" in body
        or body.count(b"[") + body.count(b"{") >= _NESTED
    ):
        json.loads(body, object_pairs_hook=_unique_keys)
    return value


def _explained(body: bytes, decoder: Callable[[bytes], V]) -> V:
    """Decode a body refused by the one-parse path again, the way that words each reason
    as it always was (msgspec's message for what it refuses, with its path into the
    body, before a key named twice); anything ``decoder`` cannot take is a 400.

    Besides what msgspec refuses (malformed JSON, NaN and Infinity, unknown fields, wrong
    types, integers beyond 64 bits), this refuses bytes that are not UTF-8, nesting too
    deep to decode, and an object that names a key twice (msgspec would keep the last one
    silently; two values for one field is ambiguous, so nothing is processed).
    """
    try:
        value = decoder(body)
        if body.count(b'"') > 3:  # fewer quotes: at most one key, none repeated
            json.loads(body, object_pairs_hook=_unique_keys)
    except msgspec.ValidationError as exc:
        raise RequestError(400, f"Invalid request body: {exc}") from None
    except (msgspec.DecodeError, ValueError) as exc:
        # ValueError: a duplicate key, or a UnicodeDecodeError (bytes that are not UTF-8).
        if isinstance(exc, UnicodeDecodeError):
            raise RequestError(400, "The request body is not valid UTF-8") from None
        raise RequestError(400, f"Malformed JSON in request body: {exc}") from None
    except RecursionError:
        raise RequestError(400, "Malformed JSON in request body: nested too deeply") from None
    return value


def _decoder(kind: type[T]) -> msgspec.json.Decoder[T | list[T]]:
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = msgspec.json.Decoder(kind | list[kind])  # type: ignore[valid-type]
        _decoders[kind] = decoder
    return decoder


def _listed(value: T | list[T]) -> list[T]:
    return value if isinstance(value, list) else [value]


def _limited(items: list[T]) -> list[T]:
    if len(items) > MAX_ITEMS:
        raise RequestError(
            400, f"Too many items: at most {MAX_ITEMS} per request, got {len(items)}"
        )
    return items


def _unique_keys(pairs: list[tuple[str, Any]]) -> None:
    seen: set[str] = set()
    for key, _value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key '{key[:64]}'")
        seen.add(key)
