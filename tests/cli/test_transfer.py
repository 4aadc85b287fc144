"""``volumed volume import|export`` and the streaming endpoints behind them."""

from __future__ import annotations

import filecmp
import io
import os
import secrets
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import Result, run_cli
from tests.conftest import LiveServer, wait_for_state

Cli = Callable[..., Result]
MIB = 2**20


def small_tree(root: Path, files: int = 20, *, seed: str = "a") -> Path:
    """Files, nested directories, modes, a symlink, a hard link, an empty directory."""
    root.mkdir(parents=True)
    for n in range(files):
        sub = root / f"d{n % 7}" / f"e{n % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{n}.txt").write_bytes(f"{seed}-{n}-".encode() * (n % 50 + 1))
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "run.sh", 0o750)
    os.chmod(root / "d0", 0o2775)
    (root / "link").symlink_to("run.sh")
    (root / "abs-link").symlink_to("/etc/hostname")
    os.link(root / "run.sh", root / "hard")
    (root / "empty").mkdir()
    os.chmod(root / "empty", 0o700)
    return root


def assert_same_tree(a: Path, b: Path) -> None:
    """Byte for byte, with modes, symlink targets and hard links."""
    walked_a = sorted(str(p.relative_to(a)) for p in a.rglob("*"))
    walked_b = sorted(str(p.relative_to(b)) for p in b.rglob("*"))
    assert walked_a == walked_b
    for rel in walked_a:
        pa, pb = a / rel, b / rel
        sa, sb = pa.lstat(), pb.lstat()
        assert sa.st_mode == sb.st_mode, rel
        if pa.is_symlink():
            assert os.readlink(pa) == os.readlink(pb), rel
        elif pa.is_file():
            assert sa.st_nlink == sb.st_nlink, rel
            assert filecmp.cmp(pa, pb, shallow=False), rel
            assert int(sa.st_mtime) == int(sb.st_mtime), rel


def make_volume(cli: Cli, size: str, **kwargs: object) -> str:
    name = f"io-{secrets.token_hex(3)}"
    done = cli("volume", "create", "--name", name, "--size", size, "--wait", **kwargs)
    assert done.code == 0, done.err
    return name


def test_thousand_files_and_a_200_mb_file_round_trip(
    cli: Cli, server: LiveServer, tmp_path: Path
) -> None:
    source = small_tree(tmp_path / "src", files=1000)
    with open(source / "big.bin", "wb") as handle:
        for _ in range(200):
            handle.write(os.urandom(MIB))
    name = make_volume(cli, "300")
    imported = cli("volume", "import", name, "--source", str(source), "-o", "json")
    assert imported.code == 0, imported.err
    item = imported.json()[0]
    assert item["state"] == "available" and item["free_mb"] < 300 - 200

    out = tmp_path / "out"
    exported = cli("volume", "export", name, "--output", str(out))
    assert exported.code == 0, exported.err
    assert "exported" in exported.err
    assert_same_tree(source, out)

    image = server.data_dir / "images" / f"{item['uuid']}.img"
    check = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert cli("volume", "rm", name).code == 0


def test_import_larger_than_the_volume_leaves_it_unchanged(
    cli: Cli, server: LiveServer, tmp_path: Path
) -> None:
    first = small_tree(tmp_path / "first")
    name = make_volume(cli, "16")
    assert cli("volume", "import", name, "--source", str(first)).code == 0
    before = cli("volume", "get", name, "-o", "json").json()[0]

    big = tmp_path / "big"
    big.mkdir()
    (big / "blob").write_bytes(os.urandom(24 * MIB))
    refused = cli("volume", "import", name, "--source", str(big), "--yes")
    assert refused.code == 1
    assert f"volume '{name}'" in refused.err and "does not fit" in refused.err
    assert "need about 25 MB" in refused.err or "need at least" in refused.err
    assert "error 19" in refused.err

    after = cli("volume", "get", name, "-o", "json").json()[0]
    assert after["state"] == "available" and after["free_mb"] == before["free_mb"]
    out = tmp_path / "out"
    assert cli("volume", "export", name, "--output", str(out)).code == 0
    assert_same_tree(first, out)
    assert not list((server.data_dir / "images" / ".transfer").glob("*"))


def test_tar_files_in_and_out_and_stdout(cli: Cli, tmp_path: Path) -> None:
    tree = small_tree(tmp_path / "tree")
    archive = tmp_path / "in.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname=".")
    name = make_volume(cli, "16")
    assert cli("volume", "import", name, "--source", str(archive)).code == 0
    as_file = tmp_path / "out.tar"
    assert cli("volume", "export", name, "--output", str(as_file)).code == 0
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xpf", str(as_file), "-C", str(unpacked)], check=True)
    assert_same_tree(tree, unpacked)

    stdout = cli("volume", "export", name, "--output", "-", binary=True)
    assert stdout.code == 0
    names = tarfile.open(fileobj=io.BytesIO(stdout.out.encode("latin-1")), mode="r:").getnames()
    assert "./run.sh" in names


def test_refusals(cli: Cli, server: LiveServer, tmp_path: Path) -> None:
    name = make_volume(cli, "8")
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    refused = cli("volume", "import", name, "--source", str(bad))
    assert refused.code == 1 and "'..'" in refused.err and "error 7" in refused.err

    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"not a tar archive" * 100)
    assert cli("volume", "import", name, "--source", str(garbage)).code == 1

    exported = tmp_path / "empty-out"
    assert cli("volume", "export", name, "--output", str(exported)).code == 0
    assert list(exported.iterdir()) == []  # still empty: the refused imports changed nothing
    not_empty = cli("volume", "export", name, "--output", str(tmp_path))
    assert not_empty.code == 1 and "not an empty directory" in not_empty.err

    missing = cli("volume", "import", "no-such-volume", "--source", str(bad))
    assert missing.code == 1 and "'no-such-volume'" in missing.err

    other = server.add_user(f"other-{secrets.token_hex(3)}")
    uuid = cli("volume", "get", name, "-o", "json").json()[0]["uuid"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {other}"}) as api:
        up = api.put(f"/volumed/v1/volumes/{uuid}/import", content=bad.read_bytes())
        assert up.status_code == 200 and up.json()["data"]["volumes"][0]["error"] == 8
        down = api.get(f"/volumed/v1/volumes/{uuid}/export")
        assert down.status_code == 200 and down.json()["data"]["volumes"][0]["error"] == 8


def test_kill_9_during_an_import_rolls_back_after_restart(
    fresh_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    live = fresh_server()
    tree = small_tree(tmp_path / "tree")
    assert (
        run_cli("volume", "create", "--name", "v", "--size", "64", "--wait", server=live).code == 0
    )
    assert run_cli("volume", "import", "v", "--source", str(tree), server=live).code == 0
    uuid = run_cli("volume", "get", "v", "-o", "json", server=live).json()[0]["uuid"]

    stop = threading.Event()

    def slow_archive() -> Iterator[bytes]:
        header = tarfile.TarInfo("big.bin")
        header.size = 50 * MIB
        yield header.tobuf(format=tarfile.GNU_FORMAT)
        while not stop.is_set():
            yield b"\0" * 65536
            time.sleep(0.01)

    def upload() -> None:
        with httpx.Client(base_url=live.url, timeout=30) as api:
            try:
                api.put(
                    f"/volumed/v1/volumes/{uuid}/import",
                    content=slow_archive(),
                    headers={"Authorization": f"Bearer {live.token}"},
                )
            except httpx.HTTPError:
                pass

    thread = threading.Thread(target=upload, daemon=True)
    thread.start()
    with live.client() as api:
        assert wait_for_state(api, uuid, ("busy",), timeout=10)["state"] == "busy"
    time.sleep(0.3)
    transfer = live.data_dir / "images" / ".transfer"
    assert list(transfer.glob("import-*"))  # caught in the middle
    live.kill()
    stop.set()
    thread.join(timeout=10)
    live.restart()
    with live.client() as api:
        item = wait_for_state(api, uuid, ("available",), timeout=20)
    assert item["state"] == "available"
    out = tmp_path / "out"
    assert run_cli("volume", "export", "v", "--output", str(out), server=live).code == 0
    assert_same_tree(tree, out)
    assert not list(transfer.glob("*"))
    fsck = run_cli("fsck", server=live)
    assert fsck.code == 0, fsck.out + fsck.err


@pytest.mark.parametrize("state_change", ["attached"])
def test_import_needs_an_unattached_volume(cli: Cli, tmp_path: Path, state_change: str) -> None:
    name = make_volume(cli, "8")
    instance = f"i-{secrets.token_hex(3)}"
    made = cli(
        "instance", "create", "--name", instance, "--image", "app", "--volume", f"{name}:/data"
    )
    assert made.code == 0, made.err
    tree = small_tree(tmp_path / "t", files=2)
    refused = cli("volume", "import", name, "--source", str(tree))
    assert refused.code == 1 and "error 15" in refused.err and f"'{name}'" in refused.err
    assert cli("instance", "rm", instance).code == 0


def test_a_client_that_goes_away_mid_import_changes_nothing(
    cli: Cli, server: LiveServer, tmp_path: Path
) -> None:
    tree = small_tree(tmp_path / "tree", files=5)
    name = make_volume(cli, "32")
    assert cli("volume", "import", name, "--source", str(tree)).code == 0
    uuid = cli("volume", "get", name, "-o", "json").json()[0]["uuid"]

    def broken_archive() -> Iterator[bytes]:
        header = tarfile.TarInfo("big.bin")
        header.size = 8 * MIB
        yield header.tobuf(format=tarfile.GNU_FORMAT)
        for _ in range(32):
            yield b"\1" * 65536
        raise RuntimeError("the client gives up")

    with httpx.Client(base_url=server.url, timeout=30) as api:
        with pytest.raises(RuntimeError):
            api.put(
                f"/volumed/v1/volumes/{uuid}/import",
                content=broken_archive(),
                headers={"Authorization": f"Bearer {server.token}"},
            )
    with server.client() as api:
        item = wait_for_state(api, uuid, ("available",), timeout=10)
    assert item["state"] == "available"
    out = tmp_path / "out"
    assert cli("volume", "export", name, "--output", str(out)).code == 0
    assert_same_tree(tree, out)
