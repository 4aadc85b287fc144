"""``volumed fsck``: check every volume row against its image, and every image.

Findings (each a problem; the exit code is 1 if there is any):

* ``orphan-image``   an image (or a temporary one) with no volume row;
* ``missing-image``  a volume that should have an image (available, idle, mounted,
  busy, template; no job running on it) but has none;
* ``leftover``       a temporary file no job owns (``<uuid>.img.tmp``) or, while no
  server runs, anything in ``images/.transfer/`` (an interrupted import or export);
* ``fs-error``       ``e2fsck -fn`` (read-only) found errors in an image.

``--repair`` removes orphans and leftovers and puts volumes whose image is missing into
``error`` with a message. File-system errors are only reported: repair them offline with
``e2fsck -fy`` on the image. Runs beside a live server: rows a job holds are skipped,
and so are ``.transfer/`` entries and mounted images.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from volumed.cli.application import App, admin_options, output_option, pass_app
from volumed.domain.states import VolumeState

if TYPE_CHECKING:
    from volumed.storage import Ext4ImageDriver
    from volumed.store.sql import SqlStore

# Not yet made (its job makes it), or broken (its message says why).
_HAS_IMAGE = frozenset(VolumeState) - {
    VolumeState.UNINITIALIZED,
    VolumeState.INITIALIZING,
    VolumeState.ERROR,
}


@click.command(
    epilog="""\b
Examples:
  volumed fsck                      # report; exit 1 if anything is wrong
  volumed fsck --repair             # also fix what can be fixed
  volumed fsck --no-e2fsck -o json  # rows against files only, as JSON
""",
)
@click.option("--repair", is_flag=True, help="Remove orphans and leftovers; flag missing images.")
@click.option("--e2fsck/--no-e2fsck", "run_e2fsck", default=True, help="Run e2fsck -fn on images.")
@admin_options
@output_option
@pass_app
def fsck(app: App, repair: bool, run_e2fsck: bool) -> None:
    """Check the data directory: rows against images, and the images themselves."""
    from volumed.bootstrap import open_storage
    from volumed.cli.admin._store import open_store, run
    from volumed.cli.output import print_items

    settings = app.settings()
    if not settings.images_dir.is_dir():
        app.abort(f"no image directory at {settings.images_dir} (check --data-dir)", 2)
    store = open_store(app)
    storage = open_storage(settings)
    # Replicas on PostgreSQL hold no lock on the data directory: assume one runs.
    server = not settings.is_sqlite or _server_running(settings.data_dir)
    try:
        findings, checked = run(_check(store, storage, server, repair, run_e2fsck))
    finally:
        run(store.close())
    columns = [
        ("PROBLEM", lambda f: app.style(str(f["problem"]), fg="red")),
        ("VOLUME", lambda f: str(f["volume"])),
        ("DETAIL", lambda f: str(f["detail"])),
        ("REPAIRED", lambda f: "yes" if f["repaired"] else "no"),
    ]
    print_items(app, findings, columns)
    note = " (a server is running: in-flight transfers were skipped)" if server else ""
    click.echo(
        f"checked {checked['rows']} volume rows and {checked['images']} images"
        f"{', ran e2fsck on ' + str(checked['fsck']) if run_e2fsck else ''}: "
        f"{len(findings)} problem(s){note}",
        err=True,
    )
    if findings:
        app.abort("", 1)


async def _check(  # noqa: C901 - one pass over rows, then files; reads top to bottom
    store: SqlStore, storage: Ext4ImageDriver, server: bool, repair: bool, run_e2fsck: bool
) -> tuple[list[dict[str, object]], dict[str, int]]:
    from volumed.domain.storage import StorageError

    findings: list[dict[str, object]] = []

    def found(problem: str, volume: str, detail: str, repaired: bool = False) -> None:
        findings.append(
            {"problem": problem, "volume": volume, "detail": detail, "repaired": repaired}
        )

    rows = {str(r["uuid"]): r for r in await store.fsck_rows()}
    on_disk = storage.list_images()
    images = [u for u in on_disk if storage.image_path(u).exists()]
    checked = {"rows": len(rows), "images": len(images), "fsck": 0}

    for uuid, row in rows.items():
        label = f"{row['name']} ({uuid}, {row['owner']})"
        if row["deleted"] or row["job"] is not None or row["state"] not in _HAS_IMAGE:
            continue
        if not storage.image_path(uuid).exists():
            repaired = repair and await store.mark_image_missing(
                uuid, "fsck: the image of this volume is missing"
            )
            found("missing-image", label, f"state {row['state']}, no {uuid}.img", repaired)

    for uuid in on_disk:
        path = storage.image_path(uuid)
        tmp = path.with_name(path.name + ".tmp")
        owner = rows.get(uuid)
        if owner is None:
            repaired = False
            if repair:
                try:
                    await storage.delete(uuid)
                    repaired = True
                except StorageError:
                    repaired = False
            names = [p.name for p in (path, tmp) if p.exists() or repaired]
            found("orphan-image", uuid, f"{' and '.join(names)} without a volume row", repaired)
            continue
        # A staged image of an epoch the row has moved past can never be committed
        # (its holder is fenced off); a newer one belongs to a job begun since the read.
        dead = [
            p
            for p in sorted(storage.images_dir.glob(f"{uuid}.img.e*"))
            if p.name.rpartition(".e")[2].isdigit()
            and int(p.name.rpartition(".e")[2]) <= int(owner["lease_epoch"])
        ]
        if dead and owner["job"] is None:
            repaired = False
            if repair:
                for stale in dead:
                    stale.unlink(missing_ok=True)
                repaired = True
            detail = f"{', '.join(p.name for p in dead)}: staged by a job that lost its lease"
            found("leftover", f"{owner['name']} ({uuid})", detail, repaired)
        if tmp.exists() and owner["job"] is None:
            repaired = False
            if repair:
                tmp.unlink(missing_ok=True)
                repaired = True
            detail = f"{tmp.name} that no job owns"
            found("leftover", f"{owner['name']} ({uuid})", detail, repaired)

    if not server:
        leftovers = storage.transfer_leftovers()
        if leftovers and repair:
            await storage.discard_transfers()
        for name in leftovers:
            found("leftover", "-", f"{name} (an interrupted import or export)", repair)

    if run_e2fsck:
        for uuid in images:
            held = rows.get(uuid)
            if held is None or held["job"] is not None or held["state"] == VolumeState.MOUNTED:
                continue
            clean, output = await storage.check(uuid)
            checked["fsck"] += 1
            if not clean:
                last = [line for line in output.splitlines() if line.strip()][-3:]
                found("fs-error", f"{held['name']} ({uuid})", " / ".join(last))
    return findings, checked


def _server_running(data_dir: object) -> bool:
    """A server holds an exclusive lock on ``volumed.lock`` for as long as it runs."""
    import fcntl
    from pathlib import Path

    lock = Path(str(data_dir)) / "volumed.lock"
    if not lock.exists():
        return False
    with open(lock, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False
