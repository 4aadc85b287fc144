"""What the volume commands share: reporting items, waiting, picking output columns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from volumed.cli.application import App
from volumed.cli.client import TRANSITIONAL, Item, describe
from volumed.cli.output import Column, Spinner, print_items
from volumed.domain.states import VolumeState

EXAMPLES_NOTE = "NAME|UUID: an argument that parses as a UUID is sent as one, else as a name."


def report(
    app: App,
    items: Sequence[Item],
    columns: Sequence[Column],
    *,
    refs: Sequence[Item] | None = None,
    what: str = "volume",
    empty: str = "",
) -> None:
    """Print the items; each failed one on stderr, naming what it was about."""
    for index, item in enumerate(items):
        if item.get("status") == "error":
            fallback = refs[index] if refs is not None and index < len(refs) else None
            app.item_error(f"{what} {describe(item, fallback)}", item)
    print_items(app, items, columns, empty=empty)


def report_errors(app: App, items: Sequence[Item], refs: Sequence[Item]) -> None:
    """Only the failed items, on stderr (the successful ones are printed later)."""
    for index, item in enumerate(items):
        if item.get("status") == "error":
            fallback = refs[index] if index < len(refs) else None
            app.item_error(f"volume {describe(item, fallback)}", item)


def wait_for(app: App, items: list[Item], timeout: float) -> list[Item]:
    """Wait until the volumes of the successful ``items`` leave their transitional state;
    returns the full volume items (a volume that ends in ``error`` counts as failed)."""
    uuids = [str(i["uuid"]) for i in items if i.get("status") != "error" and i.get("uuid")]
    if not uuids:
        return items
    spinner = Spinner(app, f"waiting for {len(uuids)} volume(s)")

    def tick(current: list[Item]) -> None:
        pending = [i for i in current if i.get("state") in TRANSITIONAL]
        names = ", ".join(f"{i.get('name')} ({i.get('state')})" for i in pending[:3])
        spinner.tick(f"waiting for {names}" if names else "done")

    try:
        final = app.client().wait_volumes(uuids, timeout=timeout, on_tick=tick)
    finally:
        spinner.done()
    by_uuid = {i.get("uuid"): i for i in final}
    out: list[Item] = []
    for item in items:
        volume: dict[str, Any] = by_uuid.get(item.get("uuid"), item)
        if volume.get("state") in TRANSITIONAL:
            message = f"still {volume.get('state')} after {timeout:g} s"
            app.item_error(f"volume {describe(volume)}", {"message": message})
        elif volume.get("state") == VolumeState.ERROR:
            message = volume.get("message") or "the volume is in error"
            app.item_error(f"volume {describe(volume)}", {"message": message})
        out.append(volume)
    return out
