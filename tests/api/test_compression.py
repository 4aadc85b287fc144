"""Large JSON answers are gzip-compressed for clients that accept it; small ones, streams
and clients that don't ask get them as they are."""

from __future__ import annotations

import gzip
import json

import httpx

from tests.conftest import LiveServer


def _raw(server: LiveServer, path: str, accept: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.token}"}
    if accept is not None:
        headers["Accept-Encoding"] = accept
    with httpx.Client(base_url=server.url, headers=headers) as client:
        request = client.build_request("GET", path)  # httpx decodes gzip in .content
        if accept is None:
            del request.headers["Accept-Encoding"]
        response = client.send(request)
        return response


def test_a_large_answer_is_gzipped_when_accepted(server: LiveServer) -> None:
    plain = _raw(server, "/openapi.json", None)
    assert "content-encoding" not in plain.headers
    packed = _raw(server, "/openapi.json", "gzip, deflate")
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.headers["vary"] == "accept-encoding"
    assert json.loads(packed.content) == json.loads(plain.content)
    assert int(packed.headers["content-length"]) < len(plain.content) / 4


def test_refused_gzip_and_small_answers_go_as_they_are(server: LiveServer) -> None:
    refused = _raw(server, "/openapi.json", "gzip;q=0, identity")
    assert "content-encoding" not in refused.headers
    small = _raw(server, "/v1/users/quotas", "gzip")
    assert "content-encoding" not in small.headers
    assert small.json()["status"] == "success"


def test_gzip_body_is_a_valid_gzip_stream(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        request = client.build_request("GET", "/openapi.json", headers={"Accept-Encoding": "gzip"})
        response = client.send(request, stream=True)
        raw = b"".join(response.iter_raw())
        response.close()
    assert json.loads(gzip.decompress(raw))["openapi"].startswith("3.1")
