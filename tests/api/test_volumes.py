"""Create, get, list and delete volumes: requests and answers, against a server in
process (tests/inprocess.py); the token file's first start runs a real server."""

from __future__ import annotations

import subprocess
import uuid as uuid_lib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, run_sql, wait_for_state
from tests.inprocess import InProcessServer, inprocess_server  # noqa: F401 - in process


def items(response: httpx.Response) -> list[dict[str, object]]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["op_time_us"], int)
    return body["data"]["volumes"]  # type: ignore[no-any-return]


def create(api: httpx.Client, **fields: object) -> dict[str, object]:
    item = items(api.post("/v1/volumes", json={"size_mb": 8, **fields}))[0]
    assert item["status"] == "success", item
    return item


def unique(prefix: str = "v") -> str:
    return f"{prefix}-{uuid_lib.uuid4().hex[:10]}"


# ---------------------------------------------------------------------- create


def test_create_returns_at_once_and_the_worker_formats_a_real_image(
    api: httpx.Client, server: LiveServer
) -> None:
    item = create(api, size_mb=100)
    assert item["state"] in ("uninitialized", "initializing", "available")
    assert str(item["name"]).startswith("vol-") and len(str(item["name"])) == 9
    volume = wait_for_state(api, str(item["uuid"]))
    assert volume["state"] == "available"
    assert volume["size_mb"] == 100
    assert 80 <= int(volume["free_mb"]) < 100
    image = server.data_dir / "images" / f"{item['uuid']}.img"
    assert image.stat().st_size == 100 * 1024 * 1024
    fsck = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_volume_object_has_every_field(api: httpx.Client) -> None:
    item = create(api, name=unique("full"))
    volume = wait_for_state(api, str(item["uuid"]))
    assert set(volume) >= {
        "status",
        "uuid",
        "name",
        "state",
        "size_mb",
        "persistent",
        "attached_to",
        "mounted_by",
        "created_at",
        "free_mb",
        "filesystem",
        "quota_policy",
        "access_mode",
        "delete_lock",
        "tags",
    }
    assert volume["persistent"] is True
    assert volume["attached_to"] == [] and volume["mounted_by"] == []
    assert str(volume["created_at"]).endswith("Z")
    assert volume["filesystem"] == "ext4"
    assert volume["quota_policy"] == "static" and volume["access_mode"] == "rwo"
    assert volume["delete_lock"] is False and volume["tags"] == []


def test_static_volume_reserves_its_size_and_dynamic_stays_sparse(
    api: httpx.Client, server: LiveServer
) -> None:
    static = create(api, size_mb=64)
    dynamic = create(api, size_mb=64, quota_policy="dynamic")
    for item in (static, dynamic):
        wait_for_state(api, str(item["uuid"]))
    images = server.data_dir / "images"
    static_blocks = (images / f"{static['uuid']}.img").stat().st_blocks * 512
    dynamic_blocks = (images / f"{dynamic['uuid']}.img").stat().st_blocks * 512
    assert static_blocks >= 64 * 1024 * 1024
    assert dynamic_blocks < 16 * 1024 * 1024


def test_create_an_array_of_items_with_partial_failure(api: httpx.Client) -> None:
    taken = unique("taken")
    create(api, name=taken)
    response = api.post(
        "/v1/volumes", json=[{"size_mb": 4}, {"size_mb": 4, "name": taken}, {"size_mb": 0}]
    )
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "partial_success"
    assert body["message"] == "Failed to perform all operations"
    ok, clash, bad = body["data"]["volumes"]
    assert ok["status"] == "success"
    assert clash == {
        "status": "error",
        "name": taken,
        "error": 23,
        "message": f"Volume with name '{taken}' already exists",
    }
    assert bad["status"] == "error" and bad["error"] == 7


def test_all_items_failing_gives_status_error_in_http_200(api: httpx.Client) -> None:
    response = api.post("/v1/volumes", json={"size_mb": 4, "name": "bad name"})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "error"
    assert body["data"]["volumes"][0]["error"] == 7


@pytest.mark.parametrize("name", [None, ""])
def test_absent_null_or_empty_name_gets_a_random_one(api: httpx.Client, name: object) -> None:
    fields = {} if name is None else {"name": name}
    a = create(api, **fields)
    b = create(api, name=None)
    assert str(a["name"]).startswith("vol-") and a["name"] != b["name"]


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("has space", 7),
        ("-leading-dash", 7),
        ("semi;colon", 7),
        ("../escape", 7),
        ("a/b", 7),
        ("x" * 64, 22),
        (str(uuid_lib.uuid4()), 7),
        ("tab\there", 7),
    ],
)
def test_invalid_names_are_refused(api: httpx.Client, name: str, code: int) -> None:
    item = items(api.post("/v1/volumes", json={"size_mb": 4, "name": name}))[0]
    assert item["status"] == "error" and item["error"] == code, item


@pytest.mark.parametrize("name", ["data", "my-volume", "vol.drq6l", "A_1", "x" * 63])
def test_valid_names_are_accepted(api: httpx.Client, name: str) -> None:
    # Names are per tenant: a tenant of its own keeps these from clashing across runs.
    item = items(api.post("/v1/volumes", json={"size_mb": 4, "name": name}))[0]
    assert item["status"] == "success" or item["error"] == 23


@pytest.mark.parametrize(("size", "code"), [(0, 7), (-5, 7), (2_000_000, 19)])
def test_size_rules(api: httpx.Client, size: int, code: int) -> None:
    item = items(api.post("/v1/volumes", json={"size_mb": size}))[0]
    assert item["error"] == code, item


def test_size_above_free_disk_space_is_refused_up_front(
    fresh_inprocess: Callable[..., InProcessServer],
) -> None:
    live = fresh_inprocess(VOLUMED_MAX_VOLUME_MB=100_000_000)
    with live.client() as api:
        item = items(api.post("/v1/volumes", json={"size_mb": 50_000_000}))[0]
        assert item["error"] == 19
        assert "free disk space" in str(item["message"])
        assert list((live.data_dir / "images").iterdir()) == []


def test_missing_size_is_a_per_item_error(api: httpx.Client) -> None:
    item = items(api.post("/v1/volumes", json={"name": unique()}))[0]
    assert item["error"] == 7 and "size_mb" in str(item["message"])


def test_rwx_is_not_supported_for_ext4(api: httpx.Client) -> None:
    item = items(api.post("/v1/volumes", json={"size_mb": 4, "access_mode": "rwx"}))[0]
    assert item["error"] == 1 and "rwx" in str(item["message"])


def test_host_path_is_known_but_not_supported(api: httpx.Client) -> None:
    item = items(api.post("/v1/volumes", json={"host_path": "/srv"}))[0]
    assert item["error"] == 1


# ---------------------------------------------------------------------- request-level errors


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "Malformed JSON"),
        (b'"a string"', "Invalid request body"),
        (b"[1, 2]", "Invalid request body"),
        (b'{"size_mb": 4, "colour": "red"}', "unknown field"),
        (b'{"size_mb": "abc"}', "Expected `int"),
        (b'{"size_mb": 4.5}', "Expected `int"),
        (b'{"size_mb": true}', "Expected `int"),
        (b'{"tags": "x", "size_mb": 4}', "Expected `array"),
        (b"", "body is required"),
    ],
)
def test_malformed_bodies_are_400_in_the_envelope(
    api: httpx.Client, body: bytes, fragment: str
) -> None:
    response = api.post("/v1/volumes", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    envelope = response.json()
    assert envelope["status"] == "error"
    assert fragment in envelope["message"]
    assert envelope["errors"][0]["status"] == 400
    assert isinstance(envelope["op_time_us"], int)


def test_more_than_253_items_is_400(api: httpx.Client) -> None:
    response = api.post("/v1/volumes", json=[{"size_mb": 1}] * 254)
    assert response.status_code == 400 and "253" in response.json()["message"]


def test_oversized_body_is_413(api: httpx.Client) -> None:
    response = api.post("/v1/volumes", content=b"[" + b" " * 2_000_000 + b"]")
    assert response.status_code == 413
    assert response.json()["status"] == "error"


def test_unknown_route_is_404_and_wrong_method_405(api: httpx.Client) -> None:
    missing = api.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["status"] == "error"
    wrong = api.patch("/v1/volumes/list")
    assert wrong.status_code == 405 and "GET" in wrong.headers["allow"]
    assert wrong.json()["errors"][0]["status"] == 405


def test_unknown_query_parameter_is_400(api: httpx.Client) -> None:
    response = api.get("/v1/volumes", params={"colour": "red"})
    assert response.status_code == 400


def test_identifiers_in_a_local_scope_body_are_400(api: httpx.Client) -> None:
    item = create(api)
    response = api.request("DELETE", f"/v1/volumes/{item['uuid']}", json={"name": "other"})
    assert response.status_code == 400


# ---------------------------------------------------------------------- authentication


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic abc"}],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/"), ("GET", "/v1/volumes"), ("POST", "/v1/volumes"), ("GET", "/v1/unknown")],
)
def test_every_route_needs_a_valid_token(
    server: LiveServer, headers: dict[str, str], method: str, path: str
) -> None:
    with server.anonymous(headers) as client:
        response = client.request(method, path, json={"size_mb": 1})
    assert response.status_code == 401
    body = response.json()
    assert body["status"] == "error" and body["errors"][0]["status"] == 401


def test_root_answers_with_a_token(api: httpx.Client) -> None:
    assert api.get("/").json()["status"] == "success"


def test_openapi_document_is_public(server: LiveServer) -> None:
    with server.anonymous() as client:
        document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert "/v1/volumes" in document["paths"]


def test_first_start_writes_the_token_file_with_mode_0600(fresh_server: object) -> None:
    live = fresh_server()  # type: ignore[operator]
    token_file: Path = live.data_dir / "token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert token_file.read_text().strip() == live.token
    assert live.token not in live.log()


# ---------------------------------------------------------------------- get and list


def test_get_by_uuid_name_query_and_body(api: httpx.Client) -> None:
    name = unique("get")
    item = create(api, name=name)
    uid = item["uuid"]
    assert isinstance(uid, str)
    assert items(api.get(f"/v1/volumes/{uid}"))[0]["name"] == name
    assert items(api.get("/v1/volumes", params={"uuid": uid}))[0]["name"] == name
    assert items(api.get("/v1/volumes", params={"name": name}))[0]["uuid"] == uid
    by_body = items(api.request("GET", "/v1/volumes", json=[{"name": name}, {"uuid": uid}]))
    assert [v["uuid"] for v in by_body] == [uid, uid]
    seed_object = items(api.request("GET", "/v1/volumes", json={"name": name}))
    assert seed_object[0]["uuid"] == uid


def test_get_unknown_volume_is_error_8_inside_http_200(api: httpx.Client) -> None:
    ghost = str(uuid_lib.uuid4())
    response = api.get(f"/v1/volumes/{ghost}")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "error"
    assert body["data"]["volumes"][0] == {
        "status": "error",
        "uuid": ghost,
        "error": 8,
        "message": f"No volume with uuid '{ghost}'",
    }
    by_name = items(api.get("/v1/volumes", params={"name": "ghost"}))[0]
    assert by_name == {
        "status": "error",
        "name": "ghost",
        "error": 8,
        "message": "No volume with name 'ghost'",
    }


def test_mixed_lookup_is_partial_success_in_request_order(api: httpx.Client) -> None:
    uid = create(api)["uuid"]
    assert isinstance(uid, str)
    response = api.get("/v1/volumes", params=[("uuid", uid), ("name", "nope-x")])
    body = response.json()
    assert body["status"] == "partial_success"
    assert [v["status"] for v in body["data"]["volumes"]] == ["success", "error"]


def test_invalid_uuid_is_error_7(api: httpx.Client) -> None:
    item = items(api.get("/v1/volumes", params={"uuid": "not-a-uuid"}))[0]
    assert item["error"] == 7 and item["message"] == "Invalid uuid 'not-a-uuid'"
    path_item = items(api.get("/v1/volumes/not-a-uuid"))[0]
    assert path_item["error"] == 7


def test_both_or_neither_identifier_in_a_body_item(api: httpx.Client) -> None:
    item = create(api)
    both, neither = items(
        api.request("DELETE", "/v1/volumes", json=[{"uuid": item["uuid"], "name": "x"}, {}])
    )
    assert both["error"] == 17 and neither["error"] == 13


def test_list_all_without_identifiers_and_details_false(
    fresh_inprocess: Callable[..., InProcessServer],
) -> None:
    live = fresh_inprocess()
    with live.client() as api:
        assert items(api.get("/v1/volumes")) == []
        made = [create(api) for _ in range(3)]
        listed = items(api.get("/v1/volumes"))
        assert [v["uuid"] for v in listed] == [m["uuid"] for m in made]
        brief = items(api.get("/v1/volumes", params={"details": "false"}))
        assert all(set(v) == {"status", "uuid", "name"} for v in brief)


def test_seed_list_endpoint_with_filters(fresh_inprocess: Callable[..., InProcessServer]) -> None:
    live = fresh_inprocess()
    with live.client() as api:
        made = [create(api) for _ in range(2)]
        for m in made:
            wait_for_state(api, str(m["uuid"]))
        listed = items(api.get("/v1/volumes/list"))
        assert listed == [{"uuid": m["uuid"], "name": m["name"]} for m in made]
        assert len(items(api.get("/v1/volumes/list", params={"state": "available"}))) == 2
        assert items(api.get("/v1/volumes/list", params={"persistent": "false"})) == []
        by_body = items(api.request("GET", "/v1/volumes/list", json={"state": "idle"}))
        assert by_body == []
        assert api.get("/v1/volumes/list", params={"state": "bogus"}).status_code == 400


# ---------------------------------------------------------------------- delete


def test_delete_removes_row_and_image(api: httpx.Client, server: LiveServer) -> None:
    item = create(api)
    wait_for_state(api, str(item["uuid"]))
    image = server.data_dir / "images" / f"{item['uuid']}.img"
    assert image.exists()
    deleted = items(api.delete(f"/v1/volumes/{item['uuid']}"))[0]
    assert deleted == {"status": "success", "uuid": item["uuid"], "name": item["name"]}
    assert not image.exists()
    assert items(api.get(f"/v1/volumes/{item['uuid']}"))[0]["error"] == 8


def test_delete_by_body_object_and_array(api: httpx.Client) -> None:
    a, b, c = (create(api) for _ in range(3))
    for volume in (a, b, c):
        wait_for_state(api, str(volume["uuid"]))
    assert items(api.request("DELETE", "/v1/volumes", json={"uuid": a["uuid"]}))[0]["status"] == (
        "success"
    )
    both = items(
        api.request("DELETE", "/v1/volumes", json=[{"name": b["name"]}, {"uuid": c["uuid"]}])
    )
    assert [v["status"] for v in both] == ["success", "success"]


def test_deleted_name_can_be_reused(api: httpx.Client) -> None:
    name = unique("reuse")
    first = create(api, name=name)
    wait_for_state(api, str(first["uuid"]))
    items(api.delete(f"/v1/volumes/{first['uuid']}"))
    second = create(api, name=name)
    assert second["uuid"] != first["uuid"]


def test_delete_of_a_volume_still_formatting_is_refused_with_24_or_succeeds_later(
    api: httpx.Client,
) -> None:
    item = create(api, size_mb=4)
    result = items(api.delete(f"/v1/volumes/{item['uuid']}"))[0]
    # Either the worker was faster (success) or the volume was still being made (24).
    assert result["status"] == "success" or result["error"] == 24


def test_fifty_parallel_deletes_of_one_volume_exactly_one_wins(
    api: httpx.Client, server: LiveServer
) -> None:
    item = create(api)
    wait_for_state(api, str(item["uuid"]))

    def delete(_: int) -> dict[str, object]:
        with server.client() as client:
            return items(client.delete(f"/v1/volumes/{item['uuid']}"))[0]

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(delete, range(50)))
    assert sum(r["status"] == "success" for r in results) == 1
    assert {r.get("error") for r in results if r["status"] == "error"} == {8}


def test_fifty_parallel_creates_of_one_name_exactly_one_wins(server: LiveServer) -> None:
    name = unique("race")

    def create_named(_: int) -> dict[str, object]:
        with server.client() as client:
            return items(client.post("/v1/volumes", json={"size_mb": 1, "name": name}))[0]

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(create_named, range(50)))
    assert sum(r["status"] == "success" for r in results) == 1
    assert {r.get("error") for r in results if r["status"] == "error"} == {23}


# ---------------------------------------------------------------------- tenants


def test_tenants_never_see_each_other(server: LiveServer, api: httpx.Client) -> None:
    other_token = server.add_user(unique("tenant"))
    name = unique("private")
    mine = create(api, name=name)
    wait_for_state(api, str(mine["uuid"]))
    with server.client(other_token) as other:
        # Another tenant's uuid answers exactly like a missing one.
        ghost = str(uuid_lib.uuid4())
        theirs = items(other.get(f"/v1/volumes/{mine['uuid']}"))[0]
        missing = items(other.get(f"/v1/volumes/{ghost}"))[0]
        assert theirs["error"] == missing["error"] == 8
        assert theirs["message"] == f"No volume with uuid '{mine['uuid']}'"
        assert items(other.get("/v1/volumes", params={"name": name}))[0]["error"] == 8
        assert all(v["uuid"] != mine["uuid"] for v in items(other.get("/v1/volumes")))
        assert items(other.get("/v1/volumes/list")) == []
        assert items(other.delete(f"/v1/volumes/{mine['uuid']}"))[0]["error"] == 8
        assert items(other.request("DELETE", "/v1/volumes", json={"name": name}))[0]["error"] == 8
        # Names are per tenant: the other tenant may use the same one.
        assert create(other, name=name)["name"] == name
    assert items(api.get(f"/v1/volumes/{mine['uuid']}"))[0]["state"] == "available"


def test_a_reused_get_one_answer_is_the_tenants_own(server: LiveServer, api: httpx.Client) -> None:
    """GET one's answer is reused while nothing is committed (api/volumes.py): only for
    the tenant it was made for, and for the same ``details``."""
    mine = create(api, name=unique("kept"))
    uid = str(mine["uuid"])
    wait_for_state(api, uid)
    whole = api.get(f"/v1/volumes/{uid}").json()
    again = api.get(f"/v1/volumes/{uid}").json()
    assert isinstance(again["op_time_us"], int)
    del whole["op_time_us"], again["op_time_us"]
    assert again == whole
    brief = items(api.get(f"/v1/volumes/{uid}", params={"details": "false"}))[0]
    assert brief == {"status": "success", "uuid": uid, "name": mine["name"]}
    assert items(api.get(f"/v1/volumes/{uid}"))[0] == whole["data"]["volumes"][0]
    with server.client(server.add_user(unique("tenant"))) as other:
        for _ in range(2):
            theirs = items(other.get(f"/v1/volumes/{uid}"))[0]
            assert theirs["status"] == "error" and theirs["error"] == 8


def test_get_one_sees_a_write_made_outside_the_server(
    server: LiveServer, api: httpx.Client
) -> None:
    """A reused GET one answer goes as soon as anyone commits, here a statement of
    another connection (as a ``volumed`` admin command would make)."""
    uid = str(create(api)["uuid"])
    wait_for_state(api, uid)
    for _ in range(2):
        assert items(api.get(f"/v1/volumes/{uid}"))[0]["tags"] == []
    run_sql(
        server.database_url,
        server.data_dir,
        "UPDATE volumes SET tags = ? WHERE uuid = ?",
        ('["outside"]', uid),
    )
    assert items(api.get(f"/v1/volumes/{uid}"))[0]["tags"] == ["outside"]
    assert items(api.get(f"/v1/volumes/{uid}"))[0]["tags"] == ["outside"]


# ---------------------------------------------------------------------- the seed, as written


def test_seed_examples_replayed(api: httpx.Client) -> None:
    created = api.post(
        "/v1/volumes",
        content=b'{\n"size_mb": 100\n}',
        headers={"Content-Type": "application/json"},
    ).json()
    assert created["status"] == "success"
    volume = created["data"]["volumes"][0]
    assert set(volume) >= {"status", "uuid", "name"}
    uid = volume["uuid"]
    wait_for_state(api, uid)
    got = api.get(f"/v1/volumes/{uid}").json()
    assert got["status"] == "success"
    assert {"status", "state", "uuid", "name", "created_at", "size_mb"} <= set(
        got["data"]["volumes"][0]
    )
    listed = api.get("/v1/volumes/list").json()
    assert {"uuid": uid, "name": volume["name"]} in listed["data"]["volumes"]
    deleted = api.delete(f"/v1/volumes/{uid}").json()
    assert deleted["data"]["volumes"][0] == {
        "status": "success",
        "uuid": uid,
        "name": volume["name"],
    }


def test_seed_single_quoted_attach_example_is_invalid_json_and_400(
    api: httpx.Client,
) -> None:
    body = "{\n'attach_to': {\n'uuid': '77d0316a-fbbe-488d-8618-5bf7a612477a'\n},\n'at': '/mnt/'\n}"
    item = create(api)
    response = api.put(
        f"/v1/volumes/{item['uuid']}/attach",
        content=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["status"] == "error"
