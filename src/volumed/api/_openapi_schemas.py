"""Component schemas of the OpenAPI document (``components.schemas``), as plain dicts.

Names follow the official SDK's models (``unikraft_cloud.api.platform.models_gen``) where one
exists. Two kinds of schema live here, and they are written differently on purpose:

* **Request schemas are closed** (``additionalProperties: false``): the server answers an unknown
  field, or a known field of the wrong JSON type, with HTTP 400 and processes nothing. An
  optional field may be ``null``, which means "not given".
* **Response schemas are open** and every field is optional: one item shape serves a full
  record, a ``details=false`` summary and a failed item (``{status: error, error, message}``),
  and clients keep fields they do not know.

Rules on well-typed values (ranges, enums, name and path syntax, "exactly one of uuid/name") are
reported by the server per item, inside an HTTP 200 envelope, not as a 400. The schemas state
the contract (enums, ``minimum``) so that generated requests are meaningful; where a combined
item carries ``uuid``/``name`` beside other fields, both are optional, as the server accepts the
request and answers error 13 (neither) or 17 (both) for that item.
"""

from __future__ import annotations

from typing import Final

Schema = dict[str, object]
"""A JSON Schema (OpenAPI 3.1 dialect) as a JSON-serialisable dict."""

MAX_ITEMS: Final = 253
"""Most items one global-scope request may carry; more is a request-level 400."""

_STRING: Final[Schema] = {"type": "string"}
_BOOL: Final[Schema] = {"type": "boolean"}
INT64_MAX: Final = 2**63 - 1
"""Integers are 64-bit: a larger one is ill-typed (HTTP 400), like a string for a number."""
_INT: Final[Schema] = {"type": "integer", "minimum": -(2**63), "maximum": INT64_MAX}
_COUNT: Final[Schema] = {"type": "integer", "minimum": 0, "maximum": INT64_MAX}
_POSITIVE: Final[Schema] = {"type": "integer", "minimum": 1, "maximum": INT64_MAX}
_DATE_TIME: Final[Schema] = {"type": "string", "format": "date-time"}


# -- helpers ---------------------------------------------------------------------------------


def ref(name: str) -> Schema:
    """A reference to ``#/components/schemas/<name>``."""
    return {"$ref": f"#/components/schemas/{name}"}


def string_enum(*values: str, description: str | None = None) -> Schema:
    schema: Schema = {"type": "string", "enum": list(values)}
    if description:
        schema["description"] = description
    return schema


def array(items: Schema, *, max_items: int | None = None, min_items: int | None = None) -> Schema:
    schema: Schema = {"type": "array", "items": items}
    if min_items is not None:
        schema["minItems"] = min_items
    if max_items is not None:
        schema["maxItems"] = max_items
    return schema


def nullable(schema: Schema) -> Schema:
    """``schema`` or ``null``; a description moves to the outside, where readers look."""
    inner = {key: value for key, value in schema.items() if key != "description"}
    outer: Schema = {"anyOf": [inner, {"type": "null"}]}
    if "description" in schema:
        outer["description"] = schema["description"]
    return outer


def closed(
    properties: dict[str, Schema], *, required: tuple[str, ...] = (), description: str = ""
) -> Schema:
    """A request object: the listed properties only (the server rejects others with 400).

    An optional property also accepts ``null``, which the server reads as "not given".
    """
    props = {
        key: value if key in required else nullable(value) for key, value in properties.items()
    }
    schema: Schema = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    if description:
        schema["description"] = description
    return schema


def open_object(properties: dict[str, Schema], *, description: str = "") -> Schema:
    """A response object: every property optional, unknown properties allowed."""
    schema: Schema = {"type": "object", "properties": properties}
    if description:
        schema["description"] = description
    return schema


def one_or_many(item: Schema, *, min_items: int | None = None) -> Schema:
    """A global-scope body: a single item object, or an array of up to 253 of them."""
    return {"oneOf": [item, array(item, max_items=MAX_ITEMS, min_items=min_items)]}


def _string_map() -> Schema:
    return {"type": "object", "additionalProperties": {"type": "string"}}


def _tags() -> Schema:
    return array(_STRING)


# -- shared fields ---------------------------------------------------------------------------

_LOOSE_ID: Final[dict[str, Schema]] = {
    "uuid": {"type": "string", "description": "UUID of the object (give uuid or name)."},
    "name": {"type": "string", "description": "Name of the object (give uuid or name)."},
}
"""``uuid``/``name`` inside a combined item: both optional; neither → error 13, both → 17."""


def _result(extra: dict[str, Schema] | None = None, *, description: str = "") -> Schema:
    """A per-item result: ``status``, ``uuid``, ``name``, plus ``error``/``message`` on failure."""
    properties: dict[str, Schema] = {
        "status": ref("ItemStatus"),
        "message": _STRING,
        "error": {"type": "integer", "minimum": 0, "description": "Per-item error code."},
        "uuid": _STRING,
        "name": _STRING,
    }
    properties.update(extra or {})
    return open_object(properties, description=description)


def _enums() -> dict[str, Schema]:
    return {
        "ResponseStatus": string_enum("success", "partial_success", "error"),
        "ItemStatus": string_enum("success", "error"),
        "VolumeState": string_enum(
            "uninitialized",
            "initializing",
            "available",
            "idle",
            "mounted",
            "busy",
            "error",
            "template",
        ),
        "VolumeQuotaPolicy": string_enum("static", "dynamic"),
        "VolumeAccessMode": string_enum("rwo", "rox", "rwx"),
        "MutableVolumeProperty": string_enum("size_mb", "tags", "quota_policy", "delete_lock"),
        "MutableTemplateVolumeProperty": string_enum("tags", "delete_lock"),
        "MutableOperation": string_enum("set", "add", "del"),
        "InstanceState": string_enum("stopped", "starting", "running", "stopping"),
        "InstanceRestartPolicy": string_enum("never", "always", "on-failure"),
        "InstanceFeature": string_enum("delete-on-stop", "nested-virt"),
        "PullPolicy": string_enum("always", "if_not_present", "never"),
        "PaginationOrder": string_enum("asc", "desc"),
        "PaginationSortBy": string_enum("create_time"),
    }


def _envelope_parts() -> dict[str, Schema]:
    return {
        "ResponseError": open_object(
            {"status": {"type": "integer", "description": "HTTP status code."}, "message": _STRING},
            description="A request-level error.",
        ),
        "ErrorEnvelope": {
            "type": "object",
            "description": "The envelope of a request-level failure (HTTP 4xx/5xx).",
            "required": ["status", "message", "errors", "op_time_us"],
            "properties": {
                "status": {"const": "error"},
                "message": _STRING,
                "errors": {"type": "array", "items": ref("ResponseError"), "minItems": 1},
                "op_time_us": _COUNT,
            },
        },
        "UUIDRef": closed({"uuid": _STRING}, required=("uuid",)),
        "NameRef": closed({"name": _STRING}, required=("name",)),
        "NameOrUUID": {
            "description": "An identifier: either a UUID or a name, not both.",
            "oneOf": [ref("UUIDRef"), ref("NameRef")],
        },
    }


# -- volumes ---------------------------------------------------------------------------------


def _volume_requests() -> dict[str, Schema]:
    attach_fields: dict[str, Schema] = {
        "attach_to": {
            "description": "The instance: {uuid} or {name}; a bare string is read as either.",
            "anyOf": [ref("NameOrUUID"), _STRING],
        },
        "at": {"type": "string", "description": "Absolute mount path, no '.', '..' or ':'."},
        "readonly": _BOOL,
    }
    detach_fields: dict[str, Schema] = {"from": ref("NameOrUUID")}
    clone_fields: dict[str, Schema] = {
        "vol_name": _STRING,
        "quota_policy": ref("VolumeQuotaPolicy"),
        "tags": _tags(),
        "access_mode": ref("VolumeAccessMode"),
    }
    value: Schema = {
        "description": "size_mb: integer; tags: array of strings; quota_policy: string; "
        "delete_lock: boolean. 'set' without a value clears the property.",
        "anyOf": [_INT, _STRING, array(_STRING), _BOOL],
    }

    def update_fields(prop: str) -> dict[str, Schema]:
        return {"id": _STRING, "prop": ref(prop), "op": ref("MutableOperation"), "value": value}

    update_required = ("prop", "op")
    return {
        "CreateVolumeRequest": closed(
            {
                "name": _STRING,
                "size_mb": _POSITIVE,
                "template": ref("NameOrUUID"),
                "quota_policy": ref("VolumeQuotaPolicy"),
                "filesystem": _STRING,
                "tags": _tags(),
                "access_mode": ref("VolumeAccessMode"),
                "host_path": _STRING,
                "uid": _COUNT,
                "gid": _COUNT,
                "args": _string_map(),
            },
            description="size_mb is needed unless template or host_path is given.",
        ),
        "ListVolumesFilter": closed({"persistent": _BOOL, "state": ref("VolumeState")}),
        "AttachVolumesRequestItem": closed(_LOOSE_ID | attach_fields, required=("attach_to", "at")),
        "AttachVolumeByUUIDRequestBody": closed(attach_fields, required=("attach_to", "at")),
        "DetachVolumesRequestItem": closed(_LOOSE_ID | detach_fields),
        "DetachVolumeByUUIDRequestBody": closed(detach_fields),
        "UpdateVolumesRequestItem": closed(
            _LOOSE_ID | update_fields("MutableVolumeProperty"), required=update_required
        ),
        "UpdateVolumeByUUIDRequestBody": closed(
            update_fields("MutableVolumeProperty"), required=update_required
        ),
        "UpdateTemplateVolumesRequestItem": closed(
            _LOOSE_ID | update_fields("MutableTemplateVolumeProperty"), required=update_required
        ),
        "UpdateTemplateVolumeByUUIDRequestBody": closed(
            update_fields("MutableTemplateVolumeProperty"), required=update_required
        ),
        "CloneVolumesRequestItem": closed(_LOOSE_ID | clone_fields),
        "CloneVolumeByUUIDRequestBody": closed(clone_fields),
        "CreateTemplateVolumesIds": closed(
            {"ids": array(ref("NameOrUUID"), max_items=MAX_ITEMS)}, required=("ids",)
        ),
    }


def _volume_responses() -> dict[str, Schema]:
    state: dict[str, Schema] = {"state": ref("VolumeState")}
    return {
        "VolumeInstanceID": open_object(
            {"uuid": _STRING, "name": _STRING}, description="An instance a volume is attached to."
        ),
        "VolumeInstanceMount": open_object(
            {"uuid": _STRING, "name": _STRING, "readonly": _BOOL},
            description="An instance that has the volume mounted.",
        ),
        "Volume": _result(
            {
                "created_at": _DATE_TIME,
                "state": ref("VolumeState"),
                "size_mb": _COUNT,
                "persistent": _BOOL,
                "attached_to": array(ref("VolumeInstanceID")),
                "mounted_by": array(ref("VolumeInstanceMount")),
                "tags": _tags(),
                "quota_policy": ref("VolumeQuotaPolicy"),
                "delete_lock": _BOOL,
                "free_mb": _COUNT,
                "filesystem": _STRING,
                "access_mode": ref("VolumeAccessMode"),
            },
            description="A volume; with details=false only uuid and name.",
        ),
        "VolumeListEntry": _result(description="An entry of GET /v1/volumes/list."),
        "VolumeResult": _result(description="Result of attach, detach or delete."),
        "VolumeStateResult": _result(state, description="Result of create, clone or template."),
        "VolumeUpdateResult": _result(
            {"id": {"type": "string", "description": "The id given in the request item."}},
            description="Result of one update item.",
        ),
    }


# -- instances -------------------------------------------------------------------------------


def _instance_requests() -> dict[str, Schema]:
    start: dict[str, Schema] = {"timeout_s": _INT, "wait_timeout_ms": _INT}
    stop: dict[str, Schema] = {
        "force": _BOOL,
        "drain_timeout_ms": _INT,
        "quick": _BOOL,
        "ifstate": _STRING,
        "dump": _BOOL,
    }
    delete: dict[str, Schema] = {"timeout_s": _INT, "dont_retain": _BOOL}
    return {
        "ImageSpec": closed({"url": _STRING, "pull_policy": ref("PullPolicy")}, required=("url",)),
        "CreateInstanceRequestVolume": closed(
            _LOOSE_ID
            | {
                "size_mb": _POSITIVE,
                "at": _STRING,
                "readonly": _BOOL,
                "quota_policy": ref("VolumeQuotaPolicy"),
                "filesystem": _STRING,
                "tags": _tags(),
                "access_mode": ref("VolumeAccessMode"),
            },
            required=("at",),
            description="uuid or name alone attaches an existing volume; size_mb creates one.",
        ),
        "CreateInstanceRequest": closed(
            {
                "name": _STRING,
                "image": {"anyOf": [_STRING, ref("ImageSpec")]},
                "memory_mb": _POSITIVE,
                "vcpus": _POSITIVE,
                "args": array(_STRING),
                "env": _string_map(),
                "autostart": _BOOL,
                "restart_policy": ref("InstanceRestartPolicy"),
                "tags": _tags(),
                "features": array(ref("InstanceFeature")),
                "volumes": array(ref("CreateInstanceRequestVolume")),
                "timeout_s": _INT,
                "wait_timeout_ms": _INT,
                "replicas": _INT,
                "hostname": _STRING,
            }
        ),
        "StartInstancesRequestItem": closed(_LOOSE_ID | start),
        "StartInstanceByUUIDRequestBody": closed(start),
        "StopInstancesRequestItem": closed(_LOOSE_ID | stop),
        "StopInstanceByUUIDRequestBody": closed(stop),
        "DeleteInstancesRequestItem": closed(_LOOSE_ID | delete),
        "DeleteInstanceByUUIDRequestBody": closed(delete),
        "GetInstancesLogsRequestItem": closed(
            _LOOSE_ID | {"offset": _INT, "limit": _INT},
            description="offset < 0 counts from the end; limit defaults to 65536 bytes.",
        ),
        "GetInstanceLogsByUUIDRequestBody": closed({"offset": _INT, "limit": _INT}),
        "GetImagesRequestTagOrDigest": closed({"tag": _STRING, "digest": _STRING}),
        "WaitInstancesRequestItem": closed(
            _LOOSE_ID | {"state": ref("InstanceState"), "timeout_s": _INT, "timeout_ms": _INT},
            description="state defaults to running.",
        ),
    }


def _instance_responses() -> dict[str, Schema]:
    state: Schema = ref("InstanceState")
    return {
        "InstanceVolume": open_object(
            {"uuid": _STRING, "name": _STRING, "at": _STRING, "readonly": _BOOL}
        ),
        "Instance": _result(
            {
                "created_at": _DATE_TIME,
                "state": state,
                "image": _STRING,
                "memory_mb": _COUNT,
                "vcpus": _COUNT,
                "args": array(_STRING),
                "env": _string_map(),
                "restart_policy": ref("InstanceRestartPolicy"),
                "private_fqdn": _STRING,
                "volumes": array(ref("InstanceVolume")),
                "tags": _tags(),
                "delete_lock": _BOOL,
                "started_at": _DATE_TIME,
                "stopped_at": _DATE_TIME,
                "boot_time_us": _INT,
                "stop_reason": _INT,
                "exit_code": _INT,
                "stop_code": _INT,
            },
            description="An instance; with details=false only uuid and name.",
        ),
        "Image": open_object(
            {
                "status": ref("ItemStatus"),
                "url": _STRING,
                "tags": array(_STRING),
                "digest": _STRING,
                "created_at": _DATE_TIME,
                "initrd_or_rom": _BOOL,
                "size_in_bytes": _INT,
                "args": array(_STRING),
                "env": _string_map(),
            },
            description="url is the image's name; args its entrypoint and cmd.",
        ),
        "InstanceLogResult": _result(
            {
                "state": state,
                "output": {"type": "string", "contentEncoding": "base64"},
                "available": open_object({"start": _INT, "end": _INT}),
                "range": open_object({"start": _INT, "end": _INT}),
            },
            description="Console bytes [range.start, range.end) of those kept "
            "[available.start, available.end).",
        ),
        "InstanceStateResult": _result(
            {"state": state, "previous_state": state}, description="Result of start or stop."
        ),
        "InstanceDeleteResult": _result({"previous_state": state}),
        "InstanceWaitResult": _result({"state": state}),
    }


# -- users, metros, volumed extensions -------------------------------------------------------


def _other_responses() -> dict[str, Schema]:
    stats = (
        "instances",
        "live_instances",
        "live_vcpus",
        "live_memory_mb",
        "service_groups",
        "services",
        "volumes",
        "total_volume_mb",
    )
    limits = (
        "min_memory_mb",
        "max_memory_mb",
        "min_volume_mb",
        "max_volume_mb",
        "min_autoscale_size",
        "max_autoscale_size",
        "min_vcpus",
        "max_vcpus",
    )
    return {
        "QuotasStats": open_object({key: _COUNT for key in stats}),
        "QuotasLimits": open_object({key: _COUNT for key in limits}),
        "Quotas": _result(
            {"used": ref("QuotasStats"), "hard": ref("QuotasStats"), "limits": ref("QuotasLimits")}
        ),
        "Metro": open_object(
            {key: _STRING for key in ("uuid", "endpoint", "name", "iata_code", "country")}
        ),
        "HealthCheck": open_object(
            {"name": _STRING, "status": _STRING, "message": nullable(_STRING)},
            description="One readiness or liveness check.",
        ),
        "VolumeEvent": open_object(
            {
                "at": _DATE_TIME,
                "actor": _STRING,
                "action": _STRING,
                "result": _STRING,
                "state_from": nullable(ref("VolumeState")),
                "state_to": nullable(ref("VolumeState")),
                "message": nullable(_STRING),
            },
            description="One entry of a volume's audit trail.",
        ),
    }


def component_schemas() -> dict[str, Schema]:
    """Every schema under ``components.schemas``, by name."""
    return (
        _enums()
        | _envelope_parts()
        | _volume_requests()
        | _volume_responses()
        | _instance_requests()
        | _instance_responses()
        | _other_responses()
    )
