"""Hostile input: each gets a clear envelope error (or a per-item error where the value is
well-typed), never a 500 or a hang; the server stays healthy throughout."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.hardening.conftest import BODY_TIMEOUT_S, HEADER_TIMEOUT_S, raw_request

MAX_BODY = 1_048_576


@pytest.fixture(scope="module")
def api(strict_server: LiveServer) -> Iterator[httpx.Client]:
    with strict_server.client() as client:
        yield client
    # Whatever came before, the server is still up and never answered 500.
    assert httpx.get(strict_server.url + "/healthz").status_code == 200
    assert '"status":500' not in strict_server.log()


def refused(response: httpx.Response, status: int, fragment: str) -> None:
    """A request-level error envelope: nothing was processed."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "error"
    assert fragment in body["message"], body["message"]
    assert body["errors"] == [{"status": status, "message": body["message"]}]
    assert "data" not in body


def item_error(response: httpx.Response, code: int) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    item: dict[str, Any] = response.json()["data"]["volumes"][0]
    assert item["status"] == "error" and item["error"] == code, item
    return item


def post(api: httpx.Client, content: bytes, **headers: str) -> httpx.Response:
    return api.post("/v1/volumes", content=content, headers=headers)


# -- size -------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413(api: httpx.Client) -> None:
    refused(post(api, b" " * (MAX_BODY + 1)), 413, f"larger than {MAX_BODY} bytes")


def test_a_chunked_body_over_the_limit_is_413(api: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b" " * 65536

    response = api.post("/v1/volumes", content=chunks())
    refused(response, 413, f"larger than {MAX_BODY} bytes")


def test_a_huge_json_array_is_400(api: httpx.Client) -> None:
    body = b"[" + b",".join([b"0"] * 400_000) + b"]"
    assert len(body) < MAX_BODY
    refused(post(api, body), 400, "Invalid request body: Expected `object`, got `int`")


def test_254_items_are_400_and_nothing_is_made(api: httpx.Client) -> None:
    before = len(api.get("/v1/volumes").json()["data"]["volumes"])
    refused(post(api, b"[" + b",".join([b'{"size_mb": 1}'] * 254) + b"]"), 400, "Too many items")
    assert len(api.get("/v1/volumes").json()["data"]["volumes"]) == before


def test_254_identifiers_in_a_query_are_400(api: httpx.Client) -> None:
    query = tuple(("uuid", f"{n:08d}-0000-4000-8000-000000000000") for n in range(254))
    refused(api.get("/v1/volumes", params=query), 400, "Too many query identifiers")


def test_deeply_nested_json_is_400(api: httpx.Client) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    # Into a field typed "anything": only the depth stops it.
    response = api.post("/v1/instances", content=b'{"service_group": ' + deep + b"}")
    refused(response, 400, "nested too deeply")
    refused(post(api, b'{"tags": ' + deep + b"}"), 400, "Invalid request body")


# -- encoding ---------------------------------------------------------------------------------


def test_a_body_that_is_not_utf8_is_400(api: httpx.Client) -> None:
    refused(post(api, b'{"name": "\xff\xfe", "size_mb": 1}'), 400, "not valid UTF-8")


def test_a_query_that_is_not_utf8_is_400(strict_server: LiveServer) -> None:
    request = (
        b"GET /v1/volumes?name=%ff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer " + strict_server.token.encode() + b"\r\n\r\n"
    )
    answer = raw_request(strict_server, request)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b"not valid UTF-8" in answer


def test_a_raw_control_character_in_a_string_is_400(api: httpx.Client) -> None:
    refused(post(api, b'{"name": "a\x01b", "size_mb": 1}'), 400, "Malformed JSON")


@pytest.mark.parametrize("name", ["a\u0001b", "tab\there", "new\nline", "nul\u0000"])
def test_an_escaped_control_character_in_a_name_is_error_7(api: httpx.Client, name: str) -> None:
    item = item_error(api.post("/v1/volumes", json={"name": name, "size_mb": 1}), 7)
    assert "name" in item["message"].lower()


@pytest.mark.parametrize("name", ["a/b", "../../etc/passwd", "..", ".", "a\\b", "/abs"])
def test_a_path_separator_in_a_name_is_error_7(
    api: httpx.Client, strict_server: LiveServer, name: str
) -> None:
    item_error(api.post("/v1/volumes", json={"name": name, "size_mb": 1}), 7)
    # Nothing appeared anywhere under the data directory but images named by UUID.
    for path in (strict_server.data_dir / "images").iterdir():
        assert path.name.count("-") == 4 and path.suffix in (".img", ".tmp"), path


# -- numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [b"18446744073709551616", b"9223372036854775808", b"-9223372036854775809", b"1" + b"0" * 400],
)
def test_an_integer_beyond_64_bits_is_400(api: httpx.Client, number: bytes) -> None:
    refused(post(api, b'{"size_mb": ' + number + b"}"), 400, "Invalid request body")


def test_the_largest_64_bit_integer_is_a_quota_error(api: httpx.Client) -> None:
    item_error(api.post("/v1/volumes", json={"size_mb": 2**63 - 1}), 19)


@pytest.mark.parametrize("number", [b"4.5", b"4.0", b"1e3", b"-0.0"])
def test_a_float_where_an_integer_belongs_is_400(api: httpx.Client, number: bytes) -> None:
    refused(post(api, b'{"size_mb": ' + number + b"}"), 400, "got `float`")


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_400(api: httpx.Client, literal: bytes) -> None:
    refused(post(api, b'{"size_mb": ' + literal + b"}"), 400, "Malformed JSON")


# -- structure --------------------------------------------------------------------------------


def test_a_duplicate_key_is_400_and_nothing_is_made(api: httpx.Client) -> None:
    response = post(api, b'{"name": "dup-a", "size_mb": 1, "name": "dup-b"}')
    refused(response, 400, "duplicate key 'name'")
    item_error(api.get("/v1/volumes", params={"name": "dup-b"}), 8)


def test_a_duplicate_key_in_a_nested_object_is_400(api: httpx.Client) -> None:
    body = b'{"size_mb": 1, "template": {"name": "x", "name": "y"}}'
    refused(post(api, body), 400, "duplicate key 'name'")


# -- content types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["text/plain", "multipart/form-data; boundary=x", "application/xml"]
)
def test_a_body_that_is_not_json_by_its_content_type_is_415(
    api: httpx.Client, content_type: str
) -> None:
    response = post(api, b'{"size_mb": 1}', **{"Content-Type": content_type})
    refused(response, 415, "Content-Type: application/json")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "application/x-www-form-urlencoded",
        "application/merge-patch+json",
    ],
)
def test_json_content_types_and_curl_d_are_accepted(api: httpx.Client, content_type: str) -> None:
    response = post(
        api, b'{"size_mb": 1, "quota_policy": "dynamic"}', **{"Content-Type": content_type}
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "success"


def test_a_content_type_without_a_body_is_ignored(api: httpx.Client) -> None:
    response = api.get("/v1/volumes", headers={"Content-Type": "text/plain"})
    assert response.status_code == 200


# -- slow clients -----------------------------------------------------------------------------


def test_headers_that_never_end_are_cut_off(strict_server: LiveServer) -> None:
    started = time.monotonic()
    answer = raw_request(strict_server, b"GET /v1/volumes HTTP/1.1\r\nHost: x\r\n")
    elapsed = time.monotonic() - started
    assert answer == b""  # no request to answer: the connection is closed
    assert HEADER_TIMEOUT_S * 0.9 <= elapsed < HEADER_TIMEOUT_S + 3, elapsed


def test_a_body_that_never_arrives_is_408(strict_server: LiveServer) -> None:
    request = (
        b"POST /v1/volumes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + strict_server.token.encode() + b"\r\n"
        b'Content-Length: 40\r\n\r\n{"size_mb"'
    )
    started = time.monotonic()
    answer = raw_request(strict_server, request)
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b'"errors":[{"status":408' in answer
    assert f"within {BODY_TIMEOUT_S} s".encode() in answer
    assert BODY_TIMEOUT_S * 0.9 <= elapsed < BODY_TIMEOUT_S + 3, elapsed
