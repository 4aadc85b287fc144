"""GET /v1/volumes as a listing: count, from (uuid or time, inclusive), order, sortby,
tags, details; a stable order; and cursors that were deleted meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.api.lifecycle_helpers import Item, items, ok, unique
from tests.conftest import LiveServer

if TYPE_CHECKING:
    from volumed.domain.model import Volume
    from volumed.store.sql import SqlStore


@pytest.fixture(scope="module")
def listing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, list[Item]]]:
    """A server of its own with 25 volumes, made in one request (creation order known)."""
    from tests.conftest import make_server

    live = make_server(tmp_path_factory.mktemp("listing"))
    body = [
        {"name": f"l{n:02d}", "size_mb": 1, "quota_policy": "dynamic", "tags": _tags(n)}
        for n in range(25)
    ]
    with live.client() as api:
        made = items(api.post("/v1/volumes", json=body))
    assert all(m["status"] == "success" for m in made)
    yield live, made
    live.stop()


def _tags(n: int) -> list[str]:
    return [t for t, on in (("even", n % 2 == 0), ("three", n % 3 == 0), ("all", True)) if on]


def uuids(response: httpx.Response) -> list[str]:
    return [v["uuid"] for v in items(response)]


def test_order_count_and_inclusive_from(listing: tuple[LiveServer, list[Item]]) -> None:
    live, made = listing
    order = [m["uuid"] for m in made]
    with live.client() as api:
        assert uuids(api.get("/v1/volumes")) == order
        assert uuids(api.get("/v1/volumes", params={"count": 10})) == order[:10]
        page = uuids(api.get("/v1/volumes", params={"count": 11, "from": order[9]}))
        assert page == order[9:20]
        assert uuids(api.get("/v1/volumes", params={"from": order[20]})) == order[20:]
        assert uuids(api.get("/v1/volumes", params={"order": "desc"})) == order[::-1]
        desc = uuids(api.get("/v1/volumes", params={"order": "desc", "from": order[5], "count": 3}))
        assert desc == [order[5], order[4], order[3]]
        explicit: dict[str, str | int] = {"sortby": "create_time", "order": "asc", "count": 0}
        assert uuids(api.get("/v1/volumes", params=explicit)) == order
        assert uuids(api.get("/v1/volumes", params={"from": order[3].upper()}))[0] == order[3]


def test_from_a_time(listing: tuple[LiveServer, list[Item]]) -> None:
    live, made = listing
    order = [m["uuid"] for m in made]
    with live.client() as api:
        assert uuids(api.get("/v1/volumes", params={"from": "2000-01-01T00:00:00Z"})) == order
        assert uuids(api.get("/v1/volumes", params={"from": "2999-01-01T00:00:00Z"})) == []
        latest = max(v["created_at"] for v in items(api.get("/v1/volumes")))
        # Inclusive, at the second the API shows: the volumes of that second are in.
        since = uuids(api.get("/v1/volumes", params={"from": latest}))
        assert since and since == order[len(order) - len(since) :]
        before = uuids(api.get("/v1/volumes", params={"from": latest, "order": "desc"}))
        assert before == [u for u in order[::-1] if u in before]
        assert set(before) | set(since) == set(order)
        offset = datetime.now(UTC).astimezone().isoformat()  # a non-UTC offset parses too
        assert uuids(api.get("/v1/volumes", params={"from": offset})) == []


def test_tags_comma_separated_and_repeated_must_all_match(
    listing: tuple[LiveServer, list[Item]],
) -> None:
    live, made = listing
    with live.client() as api:
        want = [m["uuid"] for n, m in enumerate(made) if n % 6 == 0]
        assert uuids(api.get("/v1/volumes", params={"tags": "even,three"})) == want
        assert uuids(api.get("/v1/volumes", params=[("tags", "even"), ("tags", "three")])) == want
        assert len(uuids(api.get("/v1/volumes", params={"tags": "all"}))) == 25
        assert uuids(api.get("/v1/volumes", params={"tags": "all,nothing"})) == []
        assert uuids(api.get("/v1/volumes", params={"tags": "eve"})) == []  # whole tags only
        paged = uuids(api.get("/v1/volumes", params={"tags": "three", "count": 2}))
        assert paged == want[:1] + [made[3]["uuid"]]


def test_details_false_gives_uuid_and_name_only(listing: tuple[LiveServer, list[Item]]) -> None:
    live, made = listing
    with live.client() as api:
        brief = items(api.get("/v1/volumes", params={"details": "false", "count": 3}))
        assert brief == [
            {"status": "success", "uuid": m["uuid"], "name": m["name"]} for m in made[:3]
        ]
        full = items(api.get("/v1/volumes", params={"details": "true", "count": 1}))[0]
        assert {"state", "size_mb", "created_at", "tags"} <= set(full)


@pytest.mark.parametrize(
    "params",
    [
        {"order": "up"},
        {"sortby": "name"},
        {"count": "-1"},
        {"count": "ten"},
        {"from": "yesterday"},
        {"details": "maybe"},
    ],
)
def test_bad_listing_parameters_are_400(api: httpx.Client, params: dict[str, str]) -> None:
    assert api.get("/v1/volumes", params=params).status_code == 400


def test_cursor_deleted_meanwhile_continues_after_its_place(
    listing: tuple[LiveServer, list[Item]],
) -> None:
    live, _ = listing
    with live.client(live.add_user(unique("tenant"))) as api:
        body = [{"size_mb": 1, "quota_policy": "dynamic", "tags": ["t"]} for _ in range(8)]
        made = items(api.post("/v1/volumes", json=body))
        order = [m["uuid"] for m in made]
        _wait_settled(api)
        ok(api.delete(f"/v1/volumes/{order[3]}"))
        ok(api.delete(f"/v1/volumes/{order[4]}"))
        # The page still starts with the (deleted) cursor, as a stub an inclusive pager
        # drops, then goes on right after its place.
        page = items(api.get("/v1/volumes", params={"from": order[3], "count": 3}))
        assert page[0] == {"status": "success", "uuid": order[3], "name": made[3]["name"]}
        assert [v["uuid"] for v in page[1:]] == order[5:7]
        last = items(api.get("/v1/volumes", params={"from": order[7]}))
        assert [v["uuid"] for v in last] == [order[7]] and "state" in last[0]
        ok(api.delete(f"/v1/volumes/{order[7]}"))
        assert items(api.get("/v1/volumes", params={"from": order[7]})) == [
            {"status": "success", "uuid": order[7], "name": made[7]["name"]}
        ]
        desc = uuids(api.get("/v1/volumes", params={"from": order[4], "order": "desc"}))
        assert desc == [order[4], order[2], order[1], order[0]]
        # Likewise a cursor that no longer matches the filters.
        untag = {"uuid": order[5], "prop": "tags", "op": "set", "value": []}
        ok(api.patch("/v1/volumes", json=untag))
        tagged = uuids(api.get("/v1/volumes", params={"from": order[5], "tags": "t"}))
        assert tagged == [order[5], order[6]]
        # An unknown cursor, or another tenant's, gives an empty page, not everything.
        ghost = "00000000-0000-4000-8000-000000000000"
        assert uuids(api.get("/v1/volumes", params={"from": ghost})) == []
        other = live.add_user(unique("tenant"))
        with live.client(other) as client:
            assert uuids(client.get("/v1/volumes", params={"from": order[3]})) == []
            assert uuids(client.get("/v1/volumes", params={"from": order[0]})) == []


def test_same_creation_time_is_ordered_by_uuid(listing: tuple[LiveServer, list[Item]]) -> None:
    """Rows written through the admin path with one timestamp: uuid breaks the tie, and
    paging through them with an inclusive cursor sees each exactly once."""
    live, _ = listing
    name = unique("tenant")
    token = live.add_user(name)
    with live.client(token) as api:
        ok(api.post("/v1/volumes", json={"size_mb": 1, "quota_policy": "dynamic"}))
        owner = items(api.get("/v1/volumes"))[0]["uuid"]
    stamp = 1_700_000_000_123_456
    tied = sorted(f"{n:08x}-0000-4000-8000-{n:012x}" for n in (7, 3, 9, 1, 5))

    async def insert(store: SqlStore) -> None:
        user = await store.find_user(name)
        assert user is not None
        for uuid in tied[::-1]:
            await insert_row(store, row_volume(uuid, user.id, stamp))

    live.with_store(insert)
    with live.client(token) as api:
        listed = uuids(api.get("/v1/volumes"))
        assert listed[:5] == tied and listed[5] == owner
        assert page_all(api, 2) == tied + [owner]


async def insert_row(store: SqlStore, volume: Volume) -> None:
    """Write ``volume`` as it is, owing no job, under limits no test reaches."""
    from volumed.domain.values import QuotaLimits

    roomy = QuotaLimits(
        max_volumes=10**6, max_total_volume_mb=10**9, min_volume_mb=1, max_volume_mb=10**9
    )
    await store.insert_volume_within_quota(volume, None, {}, roomy)


def row_volume(
    uuid: str, owner_id: str, created_at_us: int, tags: list[str] | None = None
) -> Volume:
    """An available 1 MB volume row, written through the store (no image: listings
    read rows only)."""
    from volumed.domain.model import Volume
    from volumed.domain.states import QuotaPolicy, VolumeState

    return Volume(
        uuid=uuid,
        owner_id=owner_id,
        name=f"r-{uuid[:8]}-{uuid[-4:]}",
        state=VolumeState.AVAILABLE,
        size_mb=1,
        persistent=True,
        created_at_us=created_at_us,
        quota_policy=QuotaPolicy.DYNAMIC,
        free_mb=1,
        tags=tags or [],
    )


def page_all(api: httpx.Client, count: int) -> list[str]:
    """Page as the SDK does: ``count``, then ``count + 1`` from the last uuid seen,
    dropping the repeated first item; a short page ends it."""
    seen: list[str] = []
    start: str | None = None
    while True:
        params: dict[str, str | int] = {"count": count if start is None else count + 1}
        if start is not None:
            params["from"] = start
        page = uuids(api.get("/v1/volumes", params=params))
        if start is not None and page and page[0] == start:
            page = page[1:]
        seen += page
        if len(page) < count:
            return seen
        start = page[-1]


def _wait_settled(api: httpx.Client) -> None:
    import time

    deadline = time.monotonic() + 20
    while any(v["state"] != "available" for v in items(api.get("/v1/volumes"))):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_listing_without_count_is_streamed_whole(
    listing: tuple[LiveServer, list[Item]],
) -> None:
    """More volumes than one streamed page (1,000), many created in the same microsecond
    across the page boundaries: the whole listing, in order, each volume once, sent
    chunked; the same volumes as paging by hand, and in reverse with order=desc."""
    live, _ = listing
    name = unique("many")
    token = live.add_user(name)
    stamp = 1_700_000_000_000_000
    made = [
        (f"{n:08x}-5eed-4000-8000-{n:012x}", stamp + (n // 7) * 1000, n % 5 == 0)
        for n in range(2345)
    ]

    async def insert(store: SqlStore) -> None:
        user = await store.find_user(name)
        assert user is not None
        for uuid, created, tagged in made:
            volume = row_volume(uuid, user.id, created, tags=["fifth"] if tagged else [])
            await insert_row(store, volume)

    live.with_store(insert)
    order = [uuid for uuid, _, _ in sorted(made, key=lambda m: (m[1], m[0]))]
    with live.client(token) as api:
        whole = api.get("/v1/volumes")
        assert whole.headers.get("transfer-encoding") == "chunked"
        assert whole.json()["status"] == "success"
        assert uuids(whole) == order
        assert all(v["state"] == "available" and v["free_mb"] == 1 for v in items(whole))
        assert page_all(api, 400) == order
        assert uuids(api.get("/v1/volumes", params={"order": "desc"})) == order[::-1]
        fifth = {uuid for uuid, _, tagged in made if tagged}
        tagged = uuids(api.get("/v1/volumes", params={"tags": "fifth"}))
        assert tagged == [u for u in order if u in fifth]
        assert uuids(api.get("/v1/volumes", params={"from": order[1500]})) == order[1500:]
