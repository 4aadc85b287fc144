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

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from volumed.domain.model import InstanceRef, Mount
from volumed.domain.store import VolumeStore
from volumed.domain.values import ListQuery, VolumeRow

__all__ = ["Page", "page", "pages"]


@dataclass(slots=True, frozen=True)
class Page:
    """A page's volumes as stored (see :data:`~volumed.domain.values.VolumeRow`), for the
    API to show; and the instances of those that have any, by volume uuid."""

    rows: Sequence[VolumeRow]
    attached_to: Mapping[str, list[InstanceRef]] = field(default_factory=dict)
    mounted_by: Mapping[str, list[Mount]] = field(default_factory=dict)
    cursor: tuple[str, str] | None = None
    """(uuid, name) of a ``from`` volume that is not among ``rows`` any more: the
    page's first item."""


async def page(store: VolumeStore, owner_id: str, query: ListQuery) -> Page:
    found = await store.list_volume_rows(owner_id, query)
    rows = found.rows
    cursor = query.from_uuid
    if cursor is None or (rows and rows[0][0] == cursor):
        return Page(rows, found.attached_to, found.mounted_by)
    name = await store.cursor_name(owner_id, cursor)
    if name is None:
        return Page(rows, found.attached_to, found.mounted_by)
    if query.count:
        rows = rows[: query.count - 1]
    return Page(rows, found.attached_to, found.mounted_by, (cursor, name))


async def pages(
    store: VolumeStore, owner_id: str, query: ListQuery, size: int
) -> AsyncIterator[Page]:
    """The whole listing (``query.count`` unset) as pages of at most ``size``, so that a
    tenant with 100,000 volumes is never held in memory at once. Each page starts after
    the last volume of the one before (its tombstone keeps the place if it was deleted
    meanwhile); like paging by hand, it is not a snapshot."""
    first = await page(store, owner_id, replace(query, count=size))
    yield first
    rows = first.rows
    full = len(rows) + (first.cursor is not None) >= size
    while full and rows:
        after = rows[-1][0]
        nxt = replace(query, from_uuid=after, from_time_us=None, count=size + 1)
        found = await store.list_volume_rows(owner_id, nxt)
        full = len(found.rows) == size + 1
        rows = found.rows[1:] if found.rows and found.rows[0][0] == after else found.rows[:size]
        if rows:
            yield Page(rows, found.attached_to, found.mounted_by)
