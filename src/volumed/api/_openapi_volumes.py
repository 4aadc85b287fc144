"""OpenAPI paths of ``/v1/volumes`` and ``/v1/volumes/templates``."""

from __future__ import annotations

from volumed.api._openapi_operations import (
    BY_UUID,
    BY_UUID_DETAILS,
    LIST_QUERY,
    NAME_OR_UUID_ITEMS,
    Paths,
    items,
    items_body,
    json_body,
    lookup_body,
    ok,
    operation,
    param,
    results,
)
from volumed.api._openapi_schemas import MAX_ITEMS, Schema, array, ref


def _local_body(name: str, *, required: bool) -> Schema:
    return json_body(ref(name), required=required)


def volume_paths() -> Paths:
    by_uuid = "/v1/volumes/{uuid}"
    return {
        "/v1/volumes": {
            "post": operation(
                "create_volume",
                "Create one or more volumes",
                "volumes",
                results(
                    "VolumeStateResult",
                    "The created volumes, answered once formatted (or copied from the "
                    "template): available, or error with a message; past the server's "
                    "job_wait_s, in the state they have then",
                ),
                body=items_body("CreateVolumeRequest"),
            ),
            "get": operation(
                "get_volumes",
                "Get volumes by uuid or name, or list them all (paginated)",
                "volumes",
                ok("The volumes; an unknown identifier gives an error item (8).", items("Volume")),
                parameters=LIST_QUERY,
                body=lookup_body("volumes"),
            ),
            "delete": operation(
                "delete_volumes",
                "Delete volumes",
                "volumes",
                results("VolumeResult", "The deleted volumes"),
                body=json_body(NAME_OR_UUID_ITEMS, required=True),
            ),
            "patch": operation(
                "update_volumes",
                "Update volume properties",
                "volumes",
                results("VolumeUpdateResult", "The update results"),
                body=items_body("UpdateVolumesRequestItem"),
            ),
        },
        "/v1/volumes/list": {
            "get": operation(
                "list_volumes",
                "List volumes (seed API), filtered by persistence and state",
                "volumes",
                ok("uuid and name of every matching volume.", items("VolumeListEntry")),
                parameters=(param("persistent"), param("state")),
                body=_local_body("ListVolumesFilter", required=False),
            )
        },
        "/v1/volumes/attach": {
            "put": operation(
                "attach_volumes",
                "Attach volumes to stopped instances",
                "volumes",
                results("VolumeResult", "The attached volumes"),
                body=items_body("AttachVolumesRequestItem"),
            )
        },
        "/v1/volumes/detach": {
            "put": operation(
                "detach_volumes",
                "Detach volumes from stopped instances",
                "volumes",
                results("VolumeResult", "The detached volumes"),
                body=items_body("DetachVolumesRequestItem"),
            )
        },
        "/v1/volumes/clone": {
            "post": operation(
                "clone_volumes",
                "Clone volumes",
                "volumes",
                results(
                    "VolumeStateResult",
                    "The new volumes, answered once copied (or, past the server's "
                    "job_wait_s, in the state they have then)",
                ),
                body=items_body("CloneVolumesRequestItem"),
            )
        },
        by_uuid: {
            "get": operation(
                "get_volume_by_uuid",
                "Get one volume",
                "volumes",
                ok("The volume, or an error item (8 if unknown).", items("Volume")),
                parameters=BY_UUID_DETAILS,
            ),
            "delete": operation(
                "delete_volume_by_uuid",
                "Delete one volume",
                "volumes",
                results("VolumeResult", "The deleted volume"),
                parameters=BY_UUID,
            ),
            "patch": operation(
                "update_volume_by_uuid",
                "Update one volume property",
                "volumes",
                results("VolumeUpdateResult", "The update result"),
                parameters=BY_UUID,
                body=_local_body("UpdateVolumeByUUIDRequestBody", required=True),
            ),
        },
        by_uuid + "/attach": {
            "put": operation(
                "attach_volume_by_uuid",
                "Attach one volume to a stopped instance",
                "volumes",
                results("VolumeResult", "The attached volume"),
                parameters=BY_UUID,
                body=_local_body("AttachVolumeByUUIDRequestBody", required=True),
            )
        },
        by_uuid + "/detach": {
            "put": operation(
                "detach_volume_by_uuid",
                "Detach one volume (from one instance, or from all)",
                "volumes",
                results("VolumeResult", "The detached volume"),
                parameters=BY_UUID,
                body=_local_body("DetachVolumeByUUIDRequestBody", required=False),
            )
        },
        by_uuid + "/clone": {
            "post": operation(
                "clone_volume_by_uuid",
                "Clone one volume",
                "volumes",
                results("VolumeStateResult", "The new volume"),
                parameters=BY_UUID,
                body=_local_body("CloneVolumeByUUIDRequestBody", required=False),
            )
        },
    }


def template_paths() -> Paths:
    create_body: Schema = {
        "description": "An array of identifiers, {ids: [...]}, or a single identifier.",
        "oneOf": [
            ref("NameOrUUID"),
            array(ref("NameOrUUID"), max_items=MAX_ITEMS),
            ref("CreateTemplateVolumesIds"),
        ],
    }
    by_uuid = "/v1/volumes/templates/{uuid}"
    return {
        "/v1/volumes/templates": {
            "post": operation(
                "create_template_volume",
                "Convert available, unattached volumes into templates (irreversible)",
                "templates",
                results("VolumeStateResult", "The templates"),
                body=json_body(create_body, required=True),
            ),
            "get": operation(
                "get_template_volumes",
                "Get template volumes by uuid or name, or list them all (paginated)",
                "templates",
                ok("The templates; an unknown identifier gives an error item.", items("Volume")),
                parameters=LIST_QUERY,
                body=lookup_body("templates"),
            ),
            "delete": operation(
                "delete_template_volumes",
                "Delete template volumes",
                "templates",
                results("VolumeResult", "The deleted templates"),
                body=json_body(NAME_OR_UUID_ITEMS, required=True),
            ),
            "patch": operation(
                "update_template_volumes",
                "Update template tags or delete lock",
                "templates",
                results("VolumeUpdateResult", "The update results"),
                body=items_body("UpdateTemplateVolumesRequestItem"),
            ),
        },
        by_uuid: {
            "get": operation(
                "get_template_volume_by_uuid",
                "Get one template volume",
                "templates",
                ok("The template, or an error item.", items("Volume")),
                parameters=BY_UUID_DETAILS,
            ),
            "delete": operation(
                "delete_template_volume_by_uuid",
                "Delete one template volume",
                "templates",
                results("VolumeResult", "The deleted template"),
                parameters=BY_UUID,
            ),
            "patch": operation(
                "update_template_volume_by_uuid",
                "Update one template volume property",
                "templates",
                results("VolumeUpdateResult", "The update result"),
                parameters=BY_UUID,
                body=_local_body("UpdateTemplateVolumeByUUIDRequestBody", required=True),
            ),
        },
    }
