"""OpenAPI paths outside ``/v1/volumes``: instances, quotas, metros, the root, and the
volumed extensions (probes, this document, events, import and export)."""

from __future__ import annotations

from volumed.api._openapi_operations import (
    BY_UUID,
    BY_UUID_DETAILS,
    LIST_QUERY,
    Operation,
    Paths,
    envelope,
    items,
    items_body,
    json_body,
    lookup_body,
    ok,
    operation,
    results,
)
from volumed.api._openapi_schemas import Schema, one_or_many, ref

_INSTANCES = "instances"


def _start_stop(verb: str) -> Paths:
    title = verb.capitalize()
    return {
        f"/v1/instances/{verb}": {
            "put": operation(
                f"{verb}_instances",
                f"{title} instances",
                "instances",
                results("InstanceStateResult", f"The {verb} results", _INSTANCES),
                body=items_body(f"{title}InstancesRequestItem"),
            )
        },
        f"/v1/instances/{{uuid}}/{verb}": {
            "put": operation(
                f"{verb}_instance_by_uuid",
                f"{title} one instance",
                "instances",
                results("InstanceStateResult", f"The {verb} result", _INSTANCES),
                parameters=BY_UUID,
                body=json_body(ref(f"{title}InstanceByUUIDRequestBody"), required=False),
            )
        },
    }


def _wait(operation_id: str) -> Operation:
    return operation(
        operation_id,
        "Wait until instances reach a state",
        "instances",
        results("InstanceWaitResult", "The wait results (error 12 on timeout)", _INSTANCES),
        body=items_body("WaitInstancesRequestItem", min_items=1),
    )


def instance_paths() -> Paths:
    paths: Paths = {
        "/v1/instances": {
            "post": operation(
                "create_instance",
                "Create instances, optionally with new or existing volumes",
                "instances",
                results("Instance", "The created instances", _INSTANCES),
                body=items_body("CreateInstanceRequest"),
            ),
            "get": operation(
                "get_instances",
                "Get instances by uuid or name, or list them all (paginated)",
                "instances",
                ok(
                    "The instances; an unknown identifier gives an error item (8).",
                    items("Instance", _INSTANCES),
                ),
                parameters=LIST_QUERY,
                body=lookup_body("instances"),
            ),
            "delete": operation(
                "delete_instances",
                "Delete instances (their non-persistent volumes too)",
                "instances",
                results("InstanceDeleteResult", "The deleted instances", _INSTANCES),
                body=items_body("DeleteInstancesRequestItem"),
            ),
        },
        "/v1/instances/wait": {"get": _wait("wait_instances"), "put": _wait("wait_instances_put")},
        "/v1/instances/{uuid}": {
            "get": operation(
                "get_instance_by_uuid",
                "Get one instance",
                "instances",
                ok("The instance, or an error item (8 if unknown).", items("Instance", _INSTANCES)),
                parameters=BY_UUID_DETAILS,
            ),
            "delete": operation(
                "delete_instance_by_uuid",
                "Delete one instance",
                "instances",
                results("InstanceDeleteResult", "The deleted instance", _INSTANCES),
                parameters=BY_UUID,
                body=json_body(ref("DeleteInstanceByUUIDRequestBody"), required=False),
            ),
        },
    }
    return paths | _start_stop("start") | _start_stop("stop") | _log_paths()


def _log_paths() -> Paths:
    return {
        "/v1/images": {
            "get": operation(
                "get_images",
                "List the images instances may name (busybox and imported ones)",
                "instances",
                ok(
                    "The images; an unknown tag or digest gives an error item (8).",
                    items("Image", "images"),
                ),
                body=json_body(one_or_many(ref("GetImagesRequestTagOrDigest")), required=False),
            )
        },
        "/v1/instances/log": {
            "get": operation(
                "get_instance_logs",
                "Get instances' console output (also by uuid/name/offset/limit in the query)",
                "instances",
                results("InstanceLogResult", "The console output", _INSTANCES),
                # Named in the query or the body; an empty array names none (400).
                body=json_body(
                    one_or_many(ref("GetInstancesLogsRequestItem"), min_items=1), required=False
                ),
            )
        },
        "/v1/instances/{uuid}/log": {
            "get": operation(
                "get_instance_logs_by_uuid",
                "Get one instance's console output",
                "instances",
                results("InstanceLogResult", "The console output", _INSTANCES),
                parameters=BY_UUID,
                body=json_body(ref("GetInstanceLogsByUUIDRequestBody"), required=False),
            )
        },
    }


def account_paths() -> Paths:
    root: Schema = {
        "type": "object",
        "required": ["status", "data", "op_time_us"],
        "properties": {
            "status": ref("ResponseStatus"),
            "data": {"type": "object"},
            "op_time_us": {"type": "integer", "minimum": 0},
        },
    }
    return {
        "/": {
            "get": operation(
                "get_root",
                "Check the token (legacy clients expect 401 without one)",
                "volumed",
                ok("The token is valid.", root),
            )
        },
        "/v1/users/quotas": {
            "get": operation(
                "get_user",
                "Get the quotas and usage of the calling user",
                "users",
                ok("The quotas.", items("Quotas", "quotas")),
            )
        },
        "/v1/metros": {
            "get": operation(
                "list_metros",
                "List metros (this server is the only one)",
                "metros",
                ok("The metros.", items("Metro", "metros")),
            )
        },
    }


def _probe(operation_id: str, summary: str, *, ready: bool) -> Operation:
    checks = envelope("checks", ref("HealthCheck"), data_required=False)
    not_ready = "Not ready: a check failed (its status is not ok; its message says why)."
    extra = {"503": ok(not_ready, checks)} if ready else None
    return operation(
        operation_id, summary, "volumed", ok("Healthy.", checks), public=True, extra_responses=extra
    )


def volumed_paths() -> Paths:
    tar: Schema = {"type": "string", "format": "binary", "contentMediaType": "application/x-tar"}
    volume_items = envelope("volumes", ref("Volume"), data_required=False)
    export_ok: Schema = {
        "description": "The file tree as a tar stream; or a JSON envelope with an error item.",
        "content": {
            "application/x-tar": {"schema": tar},
            "application/json": {"schema": volume_items},
        },
    }
    by_uuid = "/volumed/v1/volumes/{uuid}"
    return {
        "/healthz": {"get": _probe("get_healthz", "Liveness probe", ready=False)},
        "/readyz": {
            "get": _probe(
                "get_readyz",
                "Readiness probe (store, migrations, data directory writable, free space)",
                ready=True,
            )
        },
        "/openapi.json": {
            "get": operation(
                "get_openapi",
                "This OpenAPI document",
                "volumed",
                ok("The OpenAPI 3.1 document.", {"type": "object"}),
                public=True,
            )
        },
        by_uuid + "/events": {
            "get": operation(
                "get_volume_events",
                "Audit trail of one volume, oldest first",
                "volumed",
                ok("The events.", envelope("events", ref("VolumeEvent"), data_required=False)),
                parameters=BY_UUID,
            )
        },
        by_uuid + "/import": {
            "put": operation(
                "import_volume",
                "Replace a volume's contents with a streamed tar archive",
                "volumed",
                ok("The volume after the import, or an error item.", volume_items),
                parameters=BY_UUID,
                body={"required": True, "content": {"application/x-tar": {"schema": tar}}},
            )
        },
        by_uuid + "/export": {
            "get": operation(
                "export_volume",
                "Stream a volume's contents as a tar archive",
                "volumed",
                export_ok,
                parameters=BY_UUID,
            )
        },
    }
