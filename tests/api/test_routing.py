"""The router: literal paths before parameterised ones, 404 and 405, and what a path
matched is remembered without changing any of it."""

from __future__ import annotations

import asyncio

import pytest

from volumed.api.http import Request, RequestError
from volumed.api.routing import Response, Router


async def _answer(request: Request) -> Response:
    return Response(request.path.encode())


async def _other(request: Request) -> Response:
    return Response(b"other")


def test_a_path_matched_again_gets_the_same_route_and_parameters_of_its_own() -> None:
    router = Router()
    router.add("GET", "/v1/volumes/{uuid}", _answer)
    router.add("GET", "/v1/volumes/list", _other)
    first, params = router.match("GET", "/v1/volumes/abc")
    params["uuid"] = "changed by a handler"
    again, params = router.match("GET", "/v1/volumes/abc")
    assert again is first and params == {"uuid": "abc"}
    assert router.match("GET", "/v1/volumes/list")[0].template == "/v1/volumes/list"

    async def call() -> Response:
        return await again.handler(Request("GET", "/x", b"", {}, b"", "r"))

    assert asyncio.run(call()).body == b"/x"


def test_404_and_405_are_the_same_the_second_time() -> None:
    router = Router()
    router.add("GET", "/v1/volumes/{uuid}", _answer)
    for _ in range(2):
        with pytest.raises(RequestError) as missing:
            router.match("GET", "/v1/nothing")
        assert missing.value.status == 404
        with pytest.raises(RequestError) as refused:
            router.match("PUT", "/v1/volumes/abc")
        assert refused.value.status == 405
        assert refused.value.headers == [(b"allow", b"GET")]


def test_a_route_added_later_is_found_for_a_path_matched_before() -> None:
    router = Router()
    router.add("GET", "/v1/volumes/{uuid}", _answer)
    assert router.match("GET", "/v1/volumes/list")[0].template == "/v1/volumes/{uuid}"
    router.add("GET", "/v1/volumes/list", _other)
    assert router.match("GET", "/v1/volumes/list")[0].template == "/v1/volumes/list"


def test_long_and_many_paths_are_still_matched() -> None:
    router = Router()
    router.add("GET", "/v1/volumes/{uuid}", _answer)
    long = "/v1/volumes/" + "x" * 5000
    assert router.match("GET", long)[1] == {"uuid": "x" * 5000}
    for n in range(3000):
        assert router.match("GET", f"/v1/volumes/{n}")[1] == {"uuid": str(n)}
    assert len(router._matched) <= 1024
