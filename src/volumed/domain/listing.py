"""Pages of a listing (``GET /v1/volumes``, ``/v1/volumes/templates``).

Order is creation time, then uuid, so it is total and stable. ``from`` is inclusive: a
page starts with the volume it names, and clients that page with it (the SDK does) drop
that first item, as the previous page already had it.

A cursor that was deleted since it was read (or no longer matches the filters) would
break that: the page would not start with it, and an empty page would tell the SDK
"the item is gone" rather than "the end", sending it back to cursors it read earlier,
which a caller deleting as it goes has deleted too. So the page still starts with the
cursor, as a stub of its uuid and name, for as long as the store remembers where it
stood (a day); the next items are those after its place. A uuid the tenant never had
gives an empty page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from volumed.domain.model import Volume
from volumed.domain.store import VolumeStore
from volumed.domain.values import ListQuery

__all__ = ["Page", "page", "pages"]


@dataclass(slots=True, frozen=True)
class Page:
    volumes: list[Volume]
    cursor: tuple[str, str] | None = None
    """(uuid, name) of a ``from`` volume that is not among ``volumes`` any more: the
    page's first item."""


async def page(store: VolumeStore, owner_id: str, query: ListQuery) -> Page:
    volumes = await store.list_volumes(owner_id, query)
    cursor = query.from_uuid
    if cursor is None or (volumes and volumes[0].uuid == cursor):
        return Page(volumes)
    name = await store.cursor_name(owner_id, cursor)
    if name is None:
        return Page(volumes)
    if query.count:
        volumes = volumes[: query.count - 1]
    return Page(volumes, (cursor, name))


async def pages(
    store: VolumeStore, owner_id: str, query: ListQuery, size: int
) -> AsyncIterator[Page]:
    """The whole listing (``query.count`` unset) as pages of at most ``size``, so that a
    tenant with 100,000 volumes is never held in memory at once. Each page starts after
    the last volume of the one before (its tombstone keeps the place if it was deleted
    meanwhile); like paging by hand, it is not a snapshot."""
    first = await page(store, owner_id, replace(query, count=size))
    yield first
    volumes = first.volumes
    full = len(volumes) + (first.cursor is not None) >= size
    while full and volumes:
        after = volumes[-1].uuid
        nxt = replace(query, from_uuid=after, from_time_us=None, count=size + 1)
        found = await store.list_volumes(owner_id, nxt)
        full = len(found) == size + 1
        volumes = found[1:] if found and found[0].uuid == after else found[:size]
        if volumes:
            yield Page(volumes)
