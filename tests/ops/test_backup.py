"""``volumed backup`` of a running server, ``volumed restore`` into a fresh data
directory (and, in the PostgreSQL pass, a fresh database): every volume comes back with
the files it held when the backup was taken, nothing made later comes back, and
``volumed fsck`` agrees."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path

from tests.cli.conftest import Result, run_cli
from tests.cli.test_transfer import assert_same_tree, small_tree
from tests.conftest import LiveServer, new_database_url


def ok(result: Result) -> Result:
    assert result.code == 0, result.out + result.err
    return result


def names_of(live: LiveServer) -> dict[str, str]:
    listed = ok(run_cli("volume", "ls", "-o", "json", server=live)).json()
    return {v["name"]: v["state"] for v in listed}


def test_restore_brings_back_every_volume_as_it_was_at_the_backup(
    fresh_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    live = fresh_server()
    trees: dict[str, Path | None] = {}
    for n, policy in enumerate(["static", "dynamic", "static", "dynamic"]):
        name = f"b{n}-{secrets.token_hex(2)}"
        ok(
            run_cli(
                "volume",
                "create",
                "--name",
                name,
                "--size",
                "16",
                "--policy",
                policy,
                "--wait",
                server=live,
            )
        )
        trees[name] = None
        if n < 3:  # the last one stays empty
            trees[name] = small_tree(tmp_path / "src" / name, files=12, seed=name)
            ok(run_cli("volume", "import", name, "--source", str(trees[name]), server=live))
    before = names_of(live)
    # An image instances boot from (as `volumed image import` leaves it), and an import
    # of one still in progress, which is not copied.
    guest = live.data_dir / "guest-images" / "0123456789abcdef0123456789abcdef"
    guest.mkdir(parents=True)
    with open(guest / "rootfs.img", "wb") as rootfs:
        rootfs.truncate(4 * 2**20)
        rootfs.seek(2**20)
        rootfs.write(b"root file system bytes")
    (guest / "image.json").write_text('{"name": "alpine:3.20"}')
    (live.data_dir / "guest-images" / ".import-unfinished").mkdir()

    backup = tmp_path / "backup"
    taken = ok(run_cli("backup", str(backup), server=live))
    assert f"{len(trees)} volume image(s) and 1 imported guest image(s)" in taken.out
    manifest = json.loads((backup / "backup.json").read_text())
    assert len(manifest["static"]) == 2
    # Changes after the backup are not in it.
    first = next(iter(trees))
    ok(run_cli("volume", "rm", first, server=live))
    ok(run_cli("volume", "create", "--name", "later", "--size", "8", "--wait", server=live))
    # A backup never lands on top of another one.
    again = run_cli("backup", str(backup), server=live)
    assert again.code == 1 and "not empty" in again.err

    restored = LiveServer(
        data_dir=tmp_path / "restored" / "data",
        token=live.token,
        env=dict(live.env),
        database_url=new_database_url(),
    )
    restore_env = {**restored.admin_env, "VOLUMED_DATABASE_URL": restored.database_url}
    ok(run_cli("restore", str(backup), env=restore_env))
    refused = run_cli("restore", str(backup), env=restore_env)
    assert refused.code == 1 and "restore into a new one" in refused.err

    back = restored.data_dir / "guest-images"
    assert [p.name for p in back.iterdir()] == [guest.name]
    for name in ("rootfs.img", "image.json"):
        assert (back / guest.name / name).read_bytes() == (guest / name).read_bytes()
    restored.start()
    try:
        assert names_of(restored) == before
        for name, tree in trees.items():
            out = tmp_path / "out" / name
            ok(run_cli("volume", "export", name, "--output", str(out), server=restored))
            if tree is None:
                assert not any(out.iterdir())
            else:
                assert_same_tree(tree, out)
        checked = run_cli("fsck", server=restored)
        assert checked.code == 0, checked.out + checked.err
        assert ": 0 problem(s)" in checked.err
    finally:
        restored.stop()
