"""Building blocks of the OpenAPI paths: envelopes, bodies, parameters, one operation."""

from __future__ import annotations

from typing import Final

from volumed.api._openapi_schemas import MAX_ITEMS, Schema, array, one_or_many, ref

Operation = dict[str, object]
Paths = dict[str, dict[str, Operation]]

REQUEST_ERRORS: Final = ("400", "401", "404", "405", "408", "413", "415", "429", "500", "503")
"""Request-level failures an authenticated route can answer with."""
PUBLIC_ERRORS: Final = ("404", "405", "500")
"""Request-level failures of the unauthenticated probe and document routes."""


def envelope(data_key: str, item: Schema, *, data_required: bool = True) -> Schema:
    """The response envelope whose ``data`` holds one key, ``data_key``: an array of ``item``."""
    data: Schema = {
        "type": "object",
        "properties": {data_key: array(item)},
        "required": [data_key],
        "additionalProperties": False,
    }
    required = ["status", "op_time_us", "data"] if data_required else ["status", "op_time_us"]
    return {
        "type": "object",
        "required": required,
        "properties": {
            "status": ref("ResponseStatus"),
            "message": {"type": "string"},
            "errors": array(ref("ResponseError")),
            "data": data,
            "op_time_us": {"type": "integer", "minimum": 0},
        },
    }


def items(item: str, key: str = "volumes") -> Schema:
    """An envelope of ``key`` items, each the component schema ``item``."""
    return envelope(key, ref(item))


def param(name: str) -> Schema:
    """A reference to ``#/components/parameters/<name>``."""
    return {"$ref": f"#/components/parameters/{name}"}


def json_body(schema: Schema, *, required: bool, description: str = "") -> Schema:
    body: Schema = {"required": required, "content": {"application/json": {"schema": schema}}}
    if description:
        body["description"] = description
    return body


def items_body(item: str, *, min_items: int = 0) -> Schema:
    """A required global-scope body: one ``item`` object or an array of up to 253 (and at
    least ``min_items``)."""
    schema = one_or_many(ref(item))
    if min_items:
        many = array(ref(item), max_items=MAX_ITEMS) | {"minItems": min_items}
        schema = {"oneOf": [ref(item), many]}
    return json_body(schema, required=True)


def ok(description: str, schema: Schema) -> Schema:
    """An HTTP 200 response with a JSON body."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def results(item: str, what: str, key: str = "volumes") -> Schema:
    """HTTP 200 with one result per request item."""
    return ok(
        f"{what}, one per request item; a failed item carries error and message.", items(item, key)
    )


def operation(
    operation_id: str,
    summary: str,
    tag: str,
    response: Schema,
    *,
    parameters: tuple[Schema, ...] = (),
    body: Schema | None = None,
    public: bool = False,
    extra_responses: dict[str, Schema] | None = None,
) -> Operation:
    """One operation: 200 plus the request-level error responses (all ``ErrorEnvelope``)."""
    responses: dict[str, Schema] = {"200": response}
    for code in PUBLIC_ERRORS if public else REQUEST_ERRORS:
        responses[code] = {"$ref": "#/components/responses/ErrorEnvelope"}
    responses.update(extra_responses or {})
    op: Operation = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if public:
        op["security"] = []
    if parameters:
        op["parameters"] = list(parameters)
    if body is not None:
        op["requestBody"] = body
    op["responses"] = responses
    return op


LIST_QUERY: Final = tuple(
    param(p) for p in ("uuid", "name", "details", "count", "from", "order", "sortby", "tags")
)
"""The query of ``GET /v1/volumes``, ``/v1/volumes/templates`` and ``/v1/instances``."""
BY_UUID: Final = (param("path_uuid"),)
BY_UUID_DETAILS: Final = (param("path_uuid"), param("details"))
NAME_OR_UUID_ITEMS: Final = one_or_many(ref("NameOrUUID"))


def lookup_body(what: str) -> Schema:
    """The optional legacy body of a GET: identifiers, merged with the query's."""
    return json_body(
        NAME_OR_UUID_ITEMS,
        required=False,
        description=f"Legacy form: the {what} to get, merged with the uuid/name query filters.",
    )


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
    uuids = array({"type": "string"}, max_items=MAX_ITEMS // 2)
    names = array({"type": "string"}, max_items=MAX_ITEMS - MAX_ITEMS // 2)
    start: Schema = {
        "anyOf": [
            {"type": "string", "format": "uuid"},
            {"type": "string", "format": "date-time"},
        ]
    }
    return {
        "path_uuid": {
            "name": "uuid",
            "in": "path",
            "required": True,
            "description": "UUID of the object; a malformed one gives an error item (7).",
            "schema": {"type": "string", "minLength": 1},
        },
        "uuid": _query("uuid", uuids, "Get these UUIDs (repeatable; 253 with name at most)."),
        "name": _query("name", names, "Get these names (repeatable; 253 with uuid at most)."),
        "details": _query("details", {"type": "boolean"}, "false: only uuid and name."),
        "count": _query(
            "count", {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}, "Page size; 0: all."
        ),
        "from": _query("from", start, "Start at this UUID or creation time (RFC 3339), inclusive."),
        "order": _query("order", ref("PaginationOrder"), "Creation-time order (default asc)."),
        "sortby": _query("sortby", ref("PaginationSortBy"), "Sort key."),
        "tags": _query("tags", {"type": "string"}, "Comma-separated; all must be present."),
        "persistent": _query("persistent", {"type": "boolean"}, "Filter by persistence."),
        "state": _query("state", ref("VolumeState"), "Filter by state."),
    }
