"""The OpenAPI document: valid OpenAPI 3.1, one operation per route of the server's router
(no more, no fewer), JSON-serialisable, and its schemas accept what clients send, reject what
the server answers with 400, and describe what the server answers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import OpenAPIV31SpecValidator

from tests.conftest import LiveServer
from volumed.api.envelope import error_envelope, failed_item
from volumed.api.openapi import DESCRIPTION, openapi_document
from volumed.bootstrap import bootstrap
from volumed.settings import Settings

PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/openapi.json")}
REQUEST_ERRORS = {"400", "401", "404", "405", "408", "413", "415", "429", "500", "503"}
TAGS = {"volumes", "templates", "instances", "users", "metros", "volumed"}
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}

DOC = openapi_document("http://127.0.0.1:8080")


def _operations() -> dict[tuple[str, str], dict[str, Any]]:
    paths: dict[str, dict[str, Any]] = DOC["paths"]  # type: ignore[assignment]
    return {
        (method.upper(), path): op
        for path, item in paths.items()
        for method, op in item.items()
        if method in METHODS
    }


def _validator(schema: dict[str, Any]) -> OAS31Validator:
    """A validator for a schema inside the document: ``#/components/...`` resolves."""
    return OAS31Validator({**schema, "components": DOC["components"]})


def _request_schema(method: str, path: str) -> dict[str, Any]:
    body = _operations()[(method, path)]["requestBody"]
    schema: dict[str, Any] = body["content"]["application/json"]["schema"]
    return schema


def _response_schema(method: str, path: str, status: str = "200") -> dict[str, Any]:
    response = _operations()[(method, path)]["responses"][status]
    if "$ref" in response:
        response = DOC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]  # type: ignore[index]
    schema: dict[str, Any] = response["content"]["application/json"]["schema"]
    return schema


# -- the document as a whole -----------------------------------------------------------------


def test_is_valid_openapi_3_1() -> None:
    OpenAPIV31SpecValidator(DOC).validate()


def test_is_json_serialisable_and_round_trips() -> None:
    assert json.loads(json.dumps(DOC)) == DOC


def test_server_url_is_optional() -> None:
    assert "servers" not in openapi_document()
    assert DOC["servers"] == [{"url": "http://127.0.0.1:8080"}]


def test_every_call_builds_a_fresh_document() -> None:
    first = openapi_document()
    first["components"]["schemas"]["VolumeItem"]["properties"].clear()  # type: ignore[index]
    assert openapi_document()["components"]["schemas"]["VolumeItem"]["properties"]  # type: ignore[index]


UNDOCUMENTED = {
    ("GET", "/console"),
    ("GET", "/console/"),
    ("GET", "/console/{name}"),
    ("GET", "/docs"),
    ("GET", "/docs/{name}"),
}
"""The web console and the documentation pages: HTML for people, not the API."""


def _routes(data_dir: Path) -> set[tuple[str, str]]:
    """Every route of the router the server builds, as ``(method, path template)``."""

    async def routes() -> set[tuple[str, str]]:
        services = await bootstrap(Settings(data_dir=data_dir, runtime="record"))
        try:
            return set(services.app.routes())
        finally:
            await services.close()

    return asyncio.run(routes())


@pytest.mark.store_independent
def test_the_document_has_one_operation_per_route_and_no_other(tmp_path: Path) -> None:
    routes = _routes(tmp_path)
    assert UNDOCUMENTED <= routes
    assert set(_operations()) == routes - UNDOCUMENTED


def test_operations_have_ids_summaries_and_tags() -> None:
    ids = [op["operationId"] for op in _operations().values()]
    assert len(ids) == len(set(ids))
    for op in _operations().values():
        assert op["summary"]
        assert op["tags"] and set(op["tags"]) <= TAGS


@pytest.mark.parametrize("key", sorted(_operations()))
def test_responses_and_security(key: tuple[str, str]) -> None:
    op = _operations()[key]
    assert "200" in op["responses"]
    if key in PUBLIC:
        assert op["security"] == []
        assert {"404", "405", "500"} <= set(op["responses"])
    else:
        assert "security" not in op  # the document-wide bearer requirement applies
        assert REQUEST_ERRORS <= set(op["responses"])


def test_bearer_security_is_the_default() -> None:
    assert DOC["security"] == [{"bearerAuth": []}]
    schemes = DOC["components"]["securitySchemes"]  # type: ignore[index]
    assert schemes["bearerAuth"] == {"type": "http", "scheme": "bearer"}


def test_get_volumes_documents_every_query_parameter() -> None:
    names = {
        p["$ref"].rsplit("/", 1)[1] for p in _operations()[("GET", "/v1/volumes")]["parameters"]
    }
    assert names == {"uuid", "name", "details", "count", "from", "order", "sortby", "tags"}


# -- request bodies --------------------------------------------------------------------------

VALID_BODIES = [
    ("POST", "/v1/volumes", {"size_mb": 100}),
    ("POST", "/v1/volumes", {"name": None, "size_mb": 5}),
    ("POST", "/v1/volumes", [{"name": "a", "size_mb": 1}, {"template": {"name": "t"}}]),
    ("GET", "/v1/volumes", [{"uuid": "847fe9ef-ccb1-409c-be9c-abdc02498131"}, {"name": "x"}]),
    ("GET", "/v1/volumes", {"name": "data"}),
    ("GET", "/v1/volumes/list", {"persistent": True, "state": "available"}),
    ("DELETE", "/v1/volumes", [{"name": "data"}, {"uuid": "v2"}]),
    (
        "PUT",
        "/v1/volumes/attach",
        [{"name": "data", "attach_to": {"name": "web"}, "at": "/data", "readonly": True}],
    ),
    ("PUT", "/v1/volumes/attach", {"uuid": "u", "attach_to": "77d0316a", "at": "/mnt/"}),
    ("PUT", "/v1/volumes/{uuid}/attach", {"attach_to": {"uuid": "i"}, "at": "/mnt/"}),
    ("PUT", "/v1/volumes/detach", [{"name": "data", "from": {"name": "web"}}]),
    ("PUT", "/v1/volumes/{uuid}/detach", {}),
    (
        "PATCH",
        "/v1/volumes",
        [
            {"name": "data", "prop": "size_mb", "op": "set", "value": 2048},
            {"name": "data", "prop": "tags", "op": "set", "value": ["prod"]},
            {"name": "data", "prop": "tags", "op": "set"},
        ],
    ),
    ("PATCH", "/v1/volumes/{uuid}", {"id": "1", "prop": "delete_lock", "op": "set", "value": True}),
    ("POST", "/v1/volumes/clone", [{"name": "data", "vol_name": "copy", "tags": ["a"]}]),
    ("POST", "/v1/volumes/{uuid}/clone", {"quota_policy": "dynamic"}),
    ("POST", "/v1/volumes/templates", [{"name": "data"}]),
    ("POST", "/v1/volumes/templates", {"ids": [{"uuid": "u"}]}),
    ("POST", "/v1/volumes/templates", {"name": "data"}),
    ("PATCH", "/v1/volumes/templates", [{"name": "t", "prop": "tags", "op": "add", "value": []}]),
    (
        "POST",
        "/v1/instances",
        {"image": "x", "volumes": [{"name": "data", "at": "/data"}, {"size_mb": 5, "at": "/b"}]},
    ),
    ("POST", "/v1/instances", {"image": {"url": "nginx:latest", "pull_policy": "never"}}),
    ("PUT", "/v1/instances/stop", [{"name": "web"}]),
    ("PUT", "/v1/instances/start", [{"name": "web", "timeout_s": 5}]),
    ("GET", "/v1/instances/wait", [{"name": "web", "state": "stopped", "timeout_s": 30}]),
    ("DELETE", "/v1/instances", [{"name": "web", "timeout_s": 5}]),
]

INVALID_BODIES = [
    ("POST", "/v1/volumes", {"size_mb": 1, "colour": "red"}),  # unknown field
    ("POST", "/v1/volumes", {"size_mb": "abc"}),  # wrong JSON type
    ("POST", "/v1/volumes", {"tags": "x"}),
    ("POST", "/v1/volumes", [{"size_mb": 1}] * 254),  # more than 253 items
    ("POST", "/v1/volumes", "text"),  # top level neither object nor array
    ("POST", "/v1/volumes", [1]),  # an item not an object
    ("PUT", "/v1/volumes/{uuid}/attach", {"uuid": "u", "attach_to": {"uuid": "i"}, "at": "/"}),
    ("PATCH", "/v1/volumes/{uuid}", {"name": "x", "prop": "tags", "op": "set"}),
    ("PATCH", "/v1/volumes/templates", [{"name": "t", "prop": "size_mb", "op": "set"}]),
    ("DELETE", "/v1/volumes", [{"name": "data", "force": True}]),
    ("POST", "/v1/instances", {"image": "x", "volumes": [{"name": "data", "colour": 1}]}),
    ("PUT", "/v1/volumes/attach", {"name": "data", "attach_to": 5}),
    ("GET", "/v1/volumes/list", {"state": 1}),
]


@pytest.mark.parametrize(("method", "path", "body"), VALID_BODIES)
def test_documented_bodies_accept_what_clients_send(method: str, path: str, body: Any) -> None:
    _validator(_request_schema(method, path)).validate(body)


@pytest.mark.parametrize(("method", "path", "body"), INVALID_BODIES)
def test_documented_bodies_reject_what_the_server_answers_400(
    method: str, path: str, body: Any
) -> None:
    assert not _validator(_request_schema(method, path)).is_valid(body)


def test_bodies_are_optional_only_where_the_server_allows_none() -> None:
    optional = {
        key
        for key, op in _operations().items()
        if "requestBody" in op and not op["requestBody"]["required"]
    }
    assert optional == {
        ("GET", "/v1/volumes"),
        ("GET", "/v1/volumes/list"),
        ("GET", "/v1/volumes/templates"),
        ("GET", "/v1/instances"),
        ("PUT", "/v1/volumes/{uuid}/detach"),
        ("POST", "/v1/volumes/{uuid}/clone"),
        ("PUT", "/v1/instances/{uuid}/start"),
        ("PUT", "/v1/instances/{uuid}/stop"),
        ("GET", "/v1/instances/{uuid}/wait"),
        ("PUT", "/v1/instances/{uuid}/wait"),
        ("DELETE", "/v1/instances/{uuid}"),
        ("GET", "/v1/instances/log"),
        ("GET", "/v1/instances/{uuid}/log"),
        ("GET", "/v1/images"),
    }


# -- responses -------------------------------------------------------------------------------

VOLUME = {
    "status": "success",
    "uuid": "847fe9ef-ccb1-409c-be9c-abdc02498131",
    "name": "vol-drq6l",
    "created_at": "2023-08-21T16:38:15Z",
    "state": "idle",
    "size_mb": 100,
    "persistent": True,
    "attached_to": [{"uuid": "77d0316a-fbbe-488d-8618-5bf7a612477a", "name": "web"}],
    "mounted_by": [],
    "tags": [],
    "quota_policy": "static",
    "delete_lock": False,
    "free_mb": 100,
    "filesystem": "ext4",
    "access_mode": "rwo",
}
NOT_FOUND = {
    "status": "error",
    "name": "ghost",
    "message": "No volume with name 'ghost'",
    "error": 8,
}


def test_volume_responses_validate() -> None:
    validator = _validator(_response_schema("GET", "/v1/volumes"))
    validator.validate({"status": "success", "data": {"volumes": [VOLUME]}, "op_time_us": 46})
    validator.validate(
        {
            "status": "partial_success",
            "message": "Failed to perform all operations",
            "data": {"volumes": [VOLUME, NOT_FOUND]},
            "op_time_us": 80,
        }
    )
    assert not validator.is_valid({"status": "failure", "data": {"volumes": []}, "op_time_us": 1})
    assert not validator.is_valid(
        {"status": "success", "data": {"volumes": [], "x": []}, "op_time_us": 1}
    )
    assert not validator.is_valid(
        {"status": "success", "data": {"volumes": [{"attached_to": ["uuid"]}]}, "op_time_us": 1}
    )


def test_seed_list_response_validates() -> None:
    body = {"status": "success", "data": {"volumes": [{"uuid": "u", "name": "n"}]}, "op_time_us": 1}
    _validator(_response_schema("GET", "/v1/volumes/list")).validate(body)


def test_error_envelope_validates() -> None:
    for status in REQUEST_ERRORS:
        body = json.loads(error_envelope(int(status), "Invalid token", 0))
        _validator(_response_schema("POST", "/v1/volumes", status)).validate(body)


def test_failed_items_validate() -> None:
    validator = _validator(_response_schema("PATCH", "/v1/volumes"))
    for ids in ({}, {"uuid": "u"}, {"name": "n", "id": "1"}):
        item = failed_item(7, "Invalid", **ids)
        validator.validate({"status": "error", "data": {"volumes": [item]}, "op_time_us": 1})


def test_the_schemas_are_the_structs() -> None:
    """The drift issue 14 found: the instance's volume lacked what the server accepts."""
    volume = DOC["components"]["schemas"]["InstanceVolumeBody"]  # type: ignore[index]
    assert {"host_path", "uid", "gid", "args"} <= set(volume["properties"])
    size = volume["properties"]["size_mb"]["anyOf"][0]
    assert size["minimum"] == -(2**63)  # the server range-checks it per item (7)
    schemas: dict[str, dict[str, Any]] = DOC["components"]["schemas"]  # type: ignore[index]
    for name, schema in schemas.items():
        assert "title" not in schema, name
        assert "``" not in schema.get("description", ""), name


def test_the_description_speaks_to_users() -> None:
    for developer_word in (".py", "``", "Schemathesis", "struct"):
        assert developer_word not in DESCRIPTION
    for topic in ("Bearer", "envelope", "HTTP 200", "partial_success", "253"):
        assert topic in DESCRIPTION


def test_answers_are_typed_structs_that_validate() -> None:
    """A struct the server sends is an item its operation documents."""
    from volumed.api import wire

    ref = msgspec.to_builtins(wire.ItemRef("success", "u", "n"))
    body = {"status": "success", "data": {"volumes": [ref]}, "op_time_us": 1}
    for key in (("DELETE", "/v1/volumes"), ("GET", "/v1/volumes"), ("PUT", "/v1/volumes/attach")):
        _validator(_response_schema(*key)).validate(body)


# -- the document the server serves ----------------------------------------------------------

SAMPLE = {"integer": "1", "boolean": "true", "string": "x"}


def _sample(schema: dict[str, Any]) -> str:
    """A value of ``schema`` as a query string spells it."""
    if "$ref" in schema:
        schema = DOC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]  # type: ignore[index]
    if "items" in schema:
        return _sample(schema["items"])
    if "enum" in schema:
        return str(schema["enum"][0])
    if "anyOf" in schema:
        return _sample(schema["anyOf"][0])
    return SAMPLE[schema["type"]]


def _query_parameters(op: dict[str, Any]) -> list[dict[str, Any]]:
    parameters: dict[str, dict[str, Any]] = DOC["components"]["parameters"]  # type: ignore[index]
    found = [parameters[p["$ref"].rsplit("/", 1)[1]] for p in op.get("parameters", [])]
    return [p for p in found if p["in"] == "query"]


def test_the_served_document_is_valid_and_the_same(server: LiveServer) -> None:
    served = httpx.get(server.url + "/openapi.json").json()
    OpenAPIV31SpecValidator(served).validate()
    assert served == openapi_document()


def test_the_server_takes_every_documented_query_parameter(server: LiveServer) -> None:
    """The other way round, an undocumented parameter, is a 400 the handler answers."""
    unknown = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    with server.client() as api:
        for (method, path), op in _operations().items():
            for parameter in _query_parameters(op):
                url = path.replace("{uuid}", unknown)
                answer = api.request(
                    method, url, params={parameter["name"]: _sample(parameter["schema"])}
                )
                assert "Unknown query parameter" not in answer.text, (method, path, parameter)
