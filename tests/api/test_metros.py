"""GET /v1/metros: this server as the single metro, at the URL clients reach it by."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from unikraft_cloud.api.controlplane import models

from tests.conftest import LiveServer
from tests.inprocess import InProcessServer, inprocess_server  # noqa: F401 - in process


def metros(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    parsed = models.ListMetroResponse.model_validate(response.json())
    assert parsed.status == "success"
    found: list[dict[str, str]] = response.json()["data"]["metros"]
    return found


def test_the_server_is_the_one_metro(api: httpx.Client, server: LiveServer) -> None:
    (metro,) = metros(api.get("/v1/metros"))
    assert metro["endpoint"] == server.url + "/v1"
    assert metro["iata_code"] == "LOC" and metro["name"] == "volumed"
    assert metro == metros(api.get("/v1/metros"))[0]  # a stable uuid
    proxied = api.get("/v1/metros", headers={"host": "vol.example", "x-forwarded-proto": "https"})
    assert metros(proxied)[0]["endpoint"] == "https://vol.example/v1"
    with server.anonymous() as anonymous:
        assert anonymous.get("/v1/metros").status_code == 401


def test_public_url_setting_wins(fresh_inprocess: Callable[..., InProcessServer]) -> None:
    live = fresh_inprocess(VOLUMED_PUBLIC_URL="https://volumes.example.org/")
    with live.client() as api:
        assert metros(api.get("/v1/metros"))[0]["endpoint"] == "https://volumes.example.org/v1"
