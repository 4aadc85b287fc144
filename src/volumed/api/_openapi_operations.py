"""The operations of the OpenAPI document: one row per route, saying which struct the
request body decodes into and which structs the answer's items are.

The schemas themselves are generated from those structs (``_openapi_schemas.py``); a row
only names them. ``tests/api_doc`` checks that the rows and the router's routes are the
same set, both ways.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from volumed.api import bodies, wire
from volumed.api._openapi_schemas import (
    Schema,
    array,
    envelope,
    items_envelope,
    one_or_many,
    type_ref,
)
from volumed.api.bodies import MAX_ITEMS
from volumed.domain.states import InstanceState, VolumeState

REQUEST_ERRORS: Final = ("400", "401", "404", "405", "408", "413", "415", "429", "500", "503")
"""Request-level failures an authenticated route can answer with."""
PUBLIC_ERRORS: Final = ("404", "405", "500")
"""Request-level failures of the unauthenticated probe and document routes."""

_TAR: Final[Schema] = {
    "type": "string",
    "format": "binary",
    "contentMediaType": "application/x-tar",
}


# ---- request bodies


@dataclass(frozen=True, slots=True)
class Many:
    """A global-scope body: one ``kind`` object or an array of up to 253 (``min_items``
    at least)."""

    kind: type[Any]
    required: bool = True
    min_items: int | None = None

    def kinds(self) -> tuple[type[Any], ...]:
        return (self.kind,)

    def schema(self) -> Schema:
        return _json_body(one_or_many(type_ref(self.kind), min_items=self.min_items), self)


@dataclass(frozen=True, slots=True)
class One:
    """A local-scope body (``/{uuid}/…``): one ``kind`` object."""

    kind: type[Any]
    required: bool = False

    def kinds(self) -> tuple[type[Any], ...]:
        return (self.kind,)

    def schema(self) -> Schema:
        return _json_body(type_ref(self.kind), self)


@dataclass(frozen=True, slots=True)
class TemplateIds:
    """``POST /v1/volumes/templates``: identifiers in any of the three shapes clients send."""

    required: bool = True

    def kinds(self) -> tuple[type[Any], ...]:
        return (bodies.RefBody, bodies.TemplateIdsBody)

    def schema(self) -> Schema:
        one = type_ref(bodies.RefBody)
        forms = [one, array(one, max_items=MAX_ITEMS), type_ref(bodies.TemplateIdsBody)]
        described = {"description": "An identifier, an array of them, or {ids: [...]}."}
        return _json_body(described | {"oneOf": forms}, self)


@dataclass(frozen=True, slots=True)
class Tar:
    """A streamed tar archive."""

    required: bool = True

    def kinds(self) -> tuple[type[Any], ...]:
        return ()

    def schema(self) -> Schema:
        return {"required": True, "content": {"application/x-tar": {"schema": _TAR}}}


Body = Many | One | TemplateIds | Tar


def _json_body(schema: Schema, body: Many | One | TemplateIds) -> Schema:
    return {"required": body.required, "content": {"application/json": {"schema": schema}}}


# ---- answers


@dataclass(frozen=True, slots=True)
class Items:
    """HTTP 200 with an envelope of ``key`` items, each one of ``item_kinds`` or a failed
    item."""

    says: str
    key: str
    item_kinds: tuple[type[Any], ...]

    def kinds(self) -> tuple[type[Any], ...]:
        return self.item_kinds

    def schema(self) -> Schema:
        return _ok(self.says, items_envelope(self.key, self.item_kinds))


def volumes(says: str, *kinds: type[Any]) -> Items:
    return Items(says, "volumes", kinds)


def instances(says: str, *kinds: type[Any]) -> Items:
    return Items(says, "instances", kinds)


RESULTS: Final = "one per request item; a failed item says why"


@dataclass(frozen=True, slots=True)
class Data:
    """HTTP 200 with an envelope whose ``data.<key>`` is a ``kind`` (or an array of them):
    no per-item failures."""

    says: str
    key: str
    kind: type[Any]
    many: bool = True

    def kinds(self) -> tuple[type[Any], ...]:
        return (self.kind,)

    def schema(self) -> Schema:
        data = array(type_ref(self.kind)) if self.many else type_ref(self.kind)
        return _ok(self.says, envelope(self.key, data))


@dataclass(frozen=True, slots=True)
class Raw:
    """Any other answer, as it is."""

    response: Schema
    raw_kinds: tuple[type[Any], ...] = ()

    def kinds(self) -> tuple[type[Any], ...]:
        return self.raw_kinds

    def schema(self) -> Schema:
        return self.response


Answer = Items | Data | Raw


def _ok(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# ---- operations


@dataclass(frozen=True, slots=True)
class Op:
    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    answer: Answer
    body: Body | None = None
    params: tuple[str, ...] = ()
    public: bool = False
    other: dict[str, Answer] = field(default_factory=dict)
    """Answers besides 200 and the request-level errors."""

    def kinds(self) -> tuple[type[Any], ...]:
        found = [*self.answer.kinds(), *(self.body.kinds() if self.body else ())]
        return (*found, *(kind for answer in self.other.values() for kind in answer.kinds()))

    def operation(self) -> Schema:
        op: Schema = {"operationId": self.operation_id, "summary": self.summary, "tags": [self.tag]}
        if self.public:
            op["security"] = []
        if self.params:
            op["parameters"] = [{"$ref": f"#/components/parameters/{p}"} for p in self.params]
        if self.body is not None:
            op["requestBody"] = self.body.schema()
        responses = {"200": self.answer.schema()}
        for code in PUBLIC_ERRORS if self.public else REQUEST_ERRORS:
            responses[code] = {"$ref": "#/components/responses/ErrorEnvelope"}
        responses.update({code: answer.schema() for code, answer in self.other.items()})
        op["responses"] = responses
        return op


LIST: Final = ("uuid", "name", "details", "count", "from", "order", "sortby", "tags")
"""The query of ``GET /v1/volumes``, ``/v1/volumes/templates`` and ``/v1/instances``."""
BY_UUID: Final = ("path_uuid",)
BY_UUID_DETAILS: Final = ("path_uuid", "details")
# The instances' uuid/name may be given in the query of /v1/instances/log and /wait too;
# not documented there, as the query's and the body's items together are at most 253,
# which a schema cannot say.
LOG_RANGE: Final = ("offset", "limit")
WAIT_FOR: Final = ("wait_state", "timeout_s", "timeout_ms")

_VOLUME = (wire.VolumeItem, wire.ItemRef)
_INSTANCE = (wire.InstanceItem, wire.ItemRef)
_CREATED = "The new volumes, answered once formatted or copied (past the server's job_wait_s, "
_CHECKS = Data("Healthy.", "checks", wire.HealthCheck)
_NOT_READY = Data("Not ready: a check failed; its message says why.", "checks", wire.HealthCheck)
_EXPORT = Raw(
    {
        "description": "The file tree as a tar stream; or an envelope with a failed item.",
        "content": {
            "application/x-tar": {"schema": _TAR},
            "application/json": {"schema": items_envelope("volumes", ())},
        },
    }
)


_WAIT_ITEMS = Many(bodies.WaitInstanceBody, min_items=1)


def _wait(method: str, path: str, operation_id: str, body: Body) -> Op:
    says = f"The wait results, {RESULTS} (12: timed out)."
    local = "{uuid}" in path
    summary = (
        "Wait until an instance reaches a state"
        if local
        else "Wait until instances reach a state (also named by uuid/name in the query)"
    )
    return Op(
        method, path, operation_id, summary, "instances",
        instances(says, wire.InstanceWaited), body, BY_UUID + WAIT_FOR if local else WAIT_FOR,
    )  # fmt: skip


def _start_stop(verb: str, many: type[Any], one: type[Any]) -> tuple[Op, Op]:
    title, change = verb.capitalize(), wire.InstanceStateChange
    return (
        Op("PUT", f"/v1/instances/{verb}", f"{verb}_instances", f"{title} instances",
           "instances", instances(f"The {verb} results, {RESULTS}.", change), Many(many)),
        Op("PUT", f"/v1/instances/{{uuid}}/{verb}", f"{verb}_instance_by_uuid",
           f"{title} one instance", "instances", instances(f"The {verb} result.", change),
           One(one), BY_UUID),
    )  # fmt: skip


OPERATIONS: Final = (
    # ---- the service, quotas, metros
    Op("GET", "/", "get_root", "Check the token", "volumed",
       Data("The token is valid: who it belongs to.", "service", wire.Service, many=False)),
    Op("GET", "/v1/users/quotas", "get_user", "Get the quotas and usage of the calling user",
       "users", Items("The quotas.", "quotas", (wire.Quotas,))),
    Op("GET", "/v1/metros", "list_metros", "List metros (this server is the only one)",
       "metros", Data("The metros.", "metros", wire.Metro)),
    # ---- volumes
    Op("POST", "/v1/volumes", "create_volume", "Create one or more volumes", "volumes",
       volumes(_CREATED + f"in the state they have then), {RESULTS}.", wire.VolumeCreated),
       Many(bodies.CreateVolumeBody)),
    Op("GET", "/v1/volumes", "get_volumes",
       "Get volumes by uuid or name, or list them all (paginated)", "volumes",
       volumes("The volumes; an unknown identifier gives a failed item (8).", *_VOLUME),
       Many(bodies.RefBody, required=False), LIST),
    Op("DELETE", "/v1/volumes", "delete_volumes", "Delete volumes", "volumes",
       volumes(f"The deleted volumes, {RESULTS}.", wire.ItemRef), Many(bodies.RefBody)),
    Op("PATCH", "/v1/volumes", "update_volumes", "Update volume properties", "volumes",
       volumes(f"The update results, {RESULTS}.", wire.VolumeUpdated), Many(bodies.UpdateBody)),
    Op("GET", "/v1/volumes/list", "list_volumes",
       "List volumes (seed API), filtered by persistence and state", "volumes",
       volumes("uuid and name of every matching volume.", wire.VolumeEntry),
       One(bodies.ListFilterBody), ("persistent", "state")),
    Op("PUT", "/v1/volumes/attach", "attach_volumes", "Attach volumes to stopped instances",
       "volumes", volumes(f"The attached volumes, {RESULTS}.", wire.ItemRef),
       Many(bodies.AttachBody)),
    Op("PUT", "/v1/volumes/detach", "detach_volumes", "Detach volumes from stopped instances",
       "volumes", volumes(f"The detached volumes, {RESULTS}.", wire.ItemRef),
       Many(bodies.DetachBody)),
    Op("POST", "/v1/volumes/clone", "clone_volumes", "Clone volumes", "volumes",
       volumes(_CREATED + f"in the state they have then), {RESULTS}.", wire.VolumeCreated),
       Many(bodies.CloneBody)),
    Op("GET", "/v1/volumes/{uuid}", "get_volume_by_uuid", "Get one volume", "volumes",
       volumes("The volume, or a failed item (8 if unknown).", *_VOLUME),
       params=BY_UUID_DETAILS),
    Op("DELETE", "/v1/volumes/{uuid}", "delete_volume_by_uuid", "Delete one volume", "volumes",
       volumes("The deleted volume, or a failed item.", wire.ItemRef), params=BY_UUID),
    Op("PATCH", "/v1/volumes/{uuid}", "update_volume_by_uuid", "Update one volume property",
       "volumes", volumes(f"The update results, {RESULTS}.", wire.VolumeUpdated),
       Many(bodies.UpdateByUuidBody), BY_UUID),
    Op("PUT", "/v1/volumes/{uuid}/attach", "attach_volume_by_uuid",
       "Attach one volume to a stopped instance", "volumes",
       volumes("The attached volume, or a failed item.", wire.ItemRef),
       One(bodies.AttachByUuidBody, required=True), BY_UUID),
    Op("PUT", "/v1/volumes/{uuid}/detach", "detach_volume_by_uuid",
       "Detach one volume (from one instance, or from all)", "volumes",
       volumes("The detached volume, or a failed item.", wire.ItemRef),
       One(bodies.DetachByUuidBody), BY_UUID),
    Op("POST", "/v1/volumes/{uuid}/clone", "clone_volume_by_uuid", "Clone one volume",
       "volumes", volumes(f"The new volumes, {RESULTS}.", wire.VolumeCreated),
       Many(bodies.CloneByUuidBody, required=False), BY_UUID),
    # ---- templates
    Op("POST", "/v1/volumes/templates", "create_template_volume",
       "Convert available, unattached volumes into templates (irreversible)", "templates",
       volumes(f"The templates, {RESULTS}.", wire.VolumeCreated), TemplateIds()),
    Op("GET", "/v1/volumes/templates", "get_template_volumes",
       "Get template volumes by uuid or name, or list them all (paginated)", "templates",
       volumes("The templates; an unknown identifier gives a failed item (8).", *_VOLUME),
       Many(bodies.RefBody, required=False), LIST),
    Op("DELETE", "/v1/volumes/templates", "delete_template_volumes", "Delete template volumes",
       "templates", volumes(f"The deleted templates, {RESULTS}.", wire.ItemRef),
       Many(bodies.RefBody)),
    Op("PATCH", "/v1/volumes/templates", "update_template_volumes",
       "Update template tags or delete lock", "templates",
       volumes(f"The update results, {RESULTS}.", wire.VolumeUpdated),
       Many(bodies.UpdateTemplateBody)),
    Op("GET", "/v1/volumes/templates/{uuid}", "get_template_volume_by_uuid",
       "Get one template volume", "templates",
       volumes("The template, or a failed item (8 if unknown).", *_VOLUME),
       params=BY_UUID_DETAILS),
    Op("DELETE", "/v1/volumes/templates/{uuid}", "delete_template_volume_by_uuid",
       "Delete one template volume", "templates",
       volumes("The deleted template, or a failed item.", wire.ItemRef), params=BY_UUID),
    Op("PATCH", "/v1/volumes/templates/{uuid}", "update_template_volume_by_uuid",
       "Update one template volume property", "templates",
       volumes(f"The update results, {RESULTS}.", wire.VolumeUpdated),
       Many(bodies.UpdateTemplateByUuidBody), BY_UUID),
    # ---- instances
    Op("POST", "/v1/instances", "create_instance",
       "Create instances, optionally with new or existing volumes", "instances",
       instances(f"The created instances, {RESULTS}.", wire.InstanceItem),
       Many(bodies.CreateInstanceBody)),
    Op("GET", "/v1/instances", "get_instances",
       "Get instances by uuid or name, or list them all (paginated)", "instances",
       instances("The instances; an unknown identifier gives a failed item (8).", *_INSTANCE),
       Many(bodies.RefBody, required=False), LIST),
    Op("DELETE", "/v1/instances", "delete_instances",
       "Delete instances (their non-persistent volumes too)", "instances",
       instances(f"The deleted instances, {RESULTS}.", wire.InstanceDeleted),
       Many(bodies.DeleteInstanceBody)),
    Op("GET", "/v1/instances/{uuid}", "get_instance_by_uuid", "Get one instance", "instances",
       instances("The instance, or a failed item (8 if unknown).", *_INSTANCE),
       params=BY_UUID_DETAILS),
    Op("DELETE", "/v1/instances/{uuid}", "delete_instance_by_uuid", "Delete one instance",
       "instances", instances("The deleted instance, or a failed item.", wire.InstanceDeleted),
       One(bodies.DeleteInstanceByUuidBody), BY_UUID),
    *_start_stop("start", bodies.StartInstanceBody, bodies.StartByUuidBody),
    *_start_stop("stop", bodies.StopInstanceBody, bodies.StopByUuidBody),
    _wait("GET", "/v1/instances/wait", "wait_instances", _WAIT_ITEMS),
    _wait("PUT", "/v1/instances/wait", "wait_instances_put", _WAIT_ITEMS),
    _wait("GET", "/v1/instances/{uuid}/wait", "wait_instance_by_uuid",
          One(bodies.WaitByUuidBody)),
    _wait("PUT", "/v1/instances/{uuid}/wait", "wait_instance_by_uuid_put",
          One(bodies.WaitByUuidBody)),
    Op("GET", "/v1/instances/log", "get_instance_logs",
       "Get instances' console output (also by uuid/name/offset/limit in the query)",
       "instances", instances(f"The console output, {RESULTS}.", wire.InstanceLog),
       # Named in the query or the body; an empty array names none (400).
       Many(bodies.LogsInstanceBody, required=False, min_items=1), LOG_RANGE),
    Op("GET", "/v1/instances/{uuid}/log", "get_instance_logs_by_uuid",
       "Get one instance's console output", "instances",
       instances("The console output, or a failed item.", wire.InstanceLog),
       One(bodies.LogsByUuidBody), BY_UUID + LOG_RANGE),
    Op("GET", "/v1/images", "get_images",
       "List the images instances may name (busybox and imported ones)", "instances",
       Items("The images; an unknown tag or digest gives a failed item (8).", "images",
             (wire.Image,)),
       Many(bodies.ImageRefBody, required=False), ("tag", "digest")),
    # ---- volumed extensions
    Op("GET", "/healthz", "get_healthz", "Liveness probe", "volumed", _CHECKS, public=True),
    Op("GET", "/readyz", "get_readyz",
       "Readiness probe (store, migrations, data directory writable, free space)", "volumed",
       _CHECKS, public=True, other={"503": _NOT_READY}),
    Op("GET", "/openapi.json", "get_openapi", "This OpenAPI document", "volumed",
       Raw(_ok("The OpenAPI 3.1 document.", {"type": "object"})), public=True),
    Op("GET", "/volumed/v1/volumes/{uuid}/events", "get_volume_events",
       "Audit trail of one volume, oldest first", "volumed",
       Items("The events, or a failed item.", "events", (wire.VolumeEvent,)), params=BY_UUID),
    Op("PUT", "/volumed/v1/volumes/{uuid}/import", "import_volume",
       "Replace a volume's contents with a streamed tar archive", "volumed",
       volumes("The volume after the import, or a failed item.", wire.VolumeItem), Tar(),
       BY_UUID),
    Op("GET", "/volumed/v1/volumes/{uuid}/export", "export_volume",
       "Stream a volume's contents as a tar archive", "volumed", _EXPORT, params=BY_UUID),
)  # fmt: skip


def _query(name: str, schema: Schema, description: str) -> Schema:
    query: Schema = {"name": name, "in": "query", "required": False, "schema": schema}
    query["description"] = description
    if schema.get("type") == "array":
        query["style"] = "form"
        query["explode"] = True
    return query


def parameters() -> dict[str, Schema]:
    """``components.parameters``. An unknown query parameter is a 400."""
    # At most 253 identifiers in the query, uuid and name together (and 253 in a body).
    # offset, limit, state and timeouts pair with the identifiers by position, or one
    # value applies to all of them.
    strings = array({"type": "string"})
    int64s = array({"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1})
    uuids = array({"type": "string"}, max_items=MAX_ITEMS // 2)
    names = array({"type": "string"}, max_items=MAX_ITEMS - MAX_ITEMS // 2)
    start: Schema = {
        "anyOf": [{"type": "string", "format": "uuid"}, {"type": "string", "format": "date-time"}]
    }
    return {
        "path_uuid": {
            "name": "uuid",
            "in": "path",
            "required": True,
            "description": "UUID of the object; a malformed one gives a failed item (7).",
            "schema": {"type": "string", "minLength": 1},
        },
        "uuid": _query("uuid", uuids, "Get these UUIDs (repeatable; 253 with name at most)."),
        "name": _query("name", names, "Get these names (repeatable; 253 with uuid at most)."),
        "details": _query("details", {"type": "boolean"}, "false: only uuid and name."),
        "count": _query(
            "count", {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}, "Page size; 0: all."
        ),
        "from": _query("from", start, "Start at this UUID or creation time (RFC 3339), inclusive."),
        "order": _query("order", {"enum": ["asc", "desc"]}, "Creation-time order (default asc)."),
        "sortby": _query("sortby", {"enum": ["create_time"]}, "Sort key."),
        "tags": _query("tags", {"type": "string"}, "Comma-separated; all must be present."),
        "persistent": _query("persistent", {"type": "boolean"}, "Filter by persistence."),
        "state": _query("state", type_ref(VolumeState), "Filter by state."),
        "tag": _query("tag", strings, "Get the images with these tags (repeatable)."),
        "digest": _query("digest", strings, "Get the images with these digests (repeatable)."),
        "offset": _query("offset", int64s, "First byte (< 0: from the end), per instance."),
        "limit": _query("limit", int64s, "Most bytes (default 65536), per instance."),
        "wait_state": _query(
            "state", array(type_ref(InstanceState)), "The state to wait for (default running)."
        ),
        "timeout_s": _query("timeout_s", int64s, "Seconds to wait at most."),
        "timeout_ms": _query("timeout_ms", int64s, "Milliseconds (rounded up to seconds)."),
    }
