"""The OpenAPI document: valid OpenAPI 3.1, complete, JSON-serialisable, and its schemas accept
what clients send and reject what the server answers with 400."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import OpenAPIV31SpecValidator

from volumed.api.openapi import openapi_document

EXPECTED_OPERATIONS = {
    ("GET", "/"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/openapi.json"),
    ("GET", "/v1/users/quotas"),
    ("GET", "/v1/metros"),
    ("POST", "/v1/volumes"),
    ("GET", "/v1/volumes"),
    ("DELETE", "/v1/volumes"),
    ("PATCH", "/v1/volumes"),
    ("GET", "/v1/volumes/list"),
    ("PUT", "/v1/volumes/attach"),
    ("PUT", "/v1/volumes/detach"),
    ("POST", "/v1/volumes/clone"),
    ("GET", "/v1/volumes/{uuid}"),
    ("DELETE", "/v1/volumes/{uuid}"),
    ("PATCH", "/v1/volumes/{uuid}"),
    ("PUT", "/v1/volumes/{uuid}/attach"),
    ("PUT", "/v1/volumes/{uuid}/detach"),
    ("POST", "/v1/volumes/{uuid}/clone"),
    ("POST", "/v1/volumes/templates"),
    ("GET", "/v1/volumes/templates"),
    ("DELETE", "/v1/volumes/templates"),
    ("PATCH", "/v1/volumes/templates"),
    ("GET", "/v1/volumes/templates/{uuid}"),
    ("DELETE", "/v1/volumes/templates/{uuid}"),
    ("PATCH", "/v1/volumes/templates/{uuid}"),
    ("POST", "/v1/instances"),
    ("GET", "/v1/instances"),
    ("DELETE", "/v1/instances"),
    ("GET", "/v1/instances/{uuid}"),
    ("DELETE", "/v1/instances/{uuid}"),
    ("PUT", "/v1/instances/start"),
    ("PUT", "/v1/instances/{uuid}/start"),
    ("PUT", "/v1/instances/stop"),
    ("PUT", "/v1/instances/{uuid}/stop"),
    ("GET", "/v1/instances/wait"),
    ("GET", "/v1/instances/log"),
    ("GET", "/v1/instances/{uuid}/log"),
    ("GET", "/v1/images"),
    ("PUT", "/v1/instances/wait"),
    ("GET", "/volumed/v1/volumes/{uuid}/events"),
    ("PUT", "/volumed/v1/volumes/{uuid}/import"),
    ("GET", "/volumed/v1/volumes/{uuid}/export"),
}
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
    first["components"]["schemas"]["Volume"]["properties"].clear()  # type: ignore[index]
    assert openapi_document()["components"]["schemas"]["Volume"]["properties"]  # type: ignore[index]


def test_every_expected_operation_is_documented_and_no_other() -> None:
    assert set(_operations()) == EXPECTED_OPERATIONS


def test_operations_have_ids_summaries_and_tags() -> None:
    ids = [op["operationId"] for op in _operations().values()]
    assert len(ids) == len(set(ids))
    for op in _operations().values():
        assert op["summary"]
        assert op["tags"] and set(op["tags"]) <= TAGS


@pytest.mark.parametrize("key", sorted(EXPECTED_OPERATIONS))
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
    ("PUT", "/v1/volumes/attach", [{"name": "data", "at": "/data"}]),  # attach_to missing
    ("PATCH", "/v1/volumes/{uuid}", {"name": "x", "prop": "tags", "op": "set"}),
    ("PATCH", "/v1/volumes/templates", [{"name": "t", "prop": "size_mb", "op": "set"}]),
    ("DELETE", "/v1/volumes", [{"name": "data", "force": True}]),
    ("POST", "/v1/instances", {"image": "x", "volumes": [{"name": "data"}]}),  # no "at"
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
    body = {
        "status": "error",
        "message": "Invalid token",
        "errors": [{"status": 401, "message": "Invalid token"}],
        "op_time_us": 3,
    }
    for status in REQUEST_ERRORS:
        _validator(_response_schema("POST", "/v1/volumes", status)).validate(body)
