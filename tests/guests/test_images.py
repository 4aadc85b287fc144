"""Imported images: docker save and OCI layouts become read-only roots; entrypoint, cmd,
args, env and the working directory behave as Docker users expect."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.conftest import run_cli
from tests.conftest import LiveServer
from tests.guests.guest_helpers import console, guest, new_volume, wait_state

# Runs in the SQLite pass only: the QEMU runtime is what these test; instance and volume
# transitions run on both stores in tests/api, and guests on PostgreSQL replicas in
# test_guest_replicas.py.
pytestmark = pytest.mark.store_independent

BUSYBOX = Path("/bin/busybox")


def _tar(entries: list[tuple[str, bytes | str | None]]) -> bytes:
    """A tar of ``(path, bytes)`` files, ``(path, "->target")`` symlinks and
    ``(path, None)`` directories."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content.removeprefix("->")
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o755
                tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def _layers() -> list[bytes]:
    base = _tar(
        [
            ("bin", None),
            ("bin/busybox", BUSYBOX.read_bytes()),
            ("bin/sh", "->/bin/busybox"),
            ("bin/cat", "->busybox"),
            ("bin/echo", "->busybox"),
            ("bin/pwd", "->busybox"),
            ("bin/ls", "->busybox"),
            ("etc", None),
            ("etc/greeting", b"hello from the image\n"),
            ("etc/doomed", b"removed by the next layer\n"),
        ]
    )
    top = _tar([("etc/.wh.doomed", b""), ("etc/added", b"second layer\n")])
    return [base, top]


CONFIG = {
    "architecture": "amd64",
    "os": "linux",
    "config": {
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["cat /etc/greeting; ls /etc; echo GREETING=$GREETING; pwd"],
        "Env": ["PATH=/bin", "GREETING=from-image"],
        "WorkingDir": "/etc",
    },
}


def docker_save(path: Path) -> None:
    layers = _layers()
    files: list[tuple[str, bytes | str | None]] = [
        (f"layer{n}/layer.tar", layer) for n, layer in enumerate(layers)
    ]
    files.append(("config.json", json.dumps(CONFIG).encode()))
    manifest = [
        {
            "Config": "config.json",
            "RepoTags": ["demo:1"],
            "Layers": [f"layer{n}/layer.tar" for n in range(len(layers))],
        }
    ]
    files.append(("manifest.json", json.dumps(manifest).encode()))
    path.write_bytes(_tar(files))


def oci_layout(path: Path) -> None:
    blobs: list[tuple[str, bytes | str | None]] = [("blobs", None), ("blobs/sha256", None)]

    def blob(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        blobs.append((f"blobs/sha256/{digest}", data))
        return {"digest": f"sha256:{digest}", "size": len(data)}

    layers = [blob(gzip.compress(layer)) for layer in _layers()]
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": blob(json.dumps(CONFIG).encode()),
        "layers": layers,
    }
    index = {
        "schemaVersion": 2,
        "manifests": [
            blob(json.dumps(manifest).encode())
            | {"platform": {"architecture": "amd64", "os": "linux"}}
        ],
    }
    blobs += [
        ("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
        ("index.json", json.dumps(index).encode()),
    ]
    path.write_bytes(_tar(blobs))


async def _sdk_images(server: LiveServer) -> list[Any]:
    from unikraft_cloud import UnikraftCloud

    async with UnikraftCloud(token=server.token, base_url=server.url) as ukc:
        return list(await ukc.images.list())


def test_imported_images_run_as_docker_would(
    gapi: httpx.Client, guest_server: LiveServer, tmp_path: Path
) -> None:
    docker_save(tmp_path / "demo.tar")
    oci_layout(tmp_path / "oci.tar")
    for name, archive in (("demo:1", "demo.tar"), ("demo-oci", "oci.tar")):
        done = run_cli("image", "import", name, str(tmp_path / archive), server=guest_server)
        assert done.code == 0, done.err
    listed = asyncio.run(_sdk_images(guest_server))
    assert {i.url for i in listed} >= {"busybox", "demo:1", "demo-oci"}, listed
    one = gapi.get("/v1/images", params={"tag": "demo:1"}).json()["data"]["images"]
    assert one[0]["args"] == ["/bin/sh", "-c", CONFIG["config"]["Cmd"][0]], one  # type: ignore[index]

    volume = new_volume(gapi)
    default = guest(gapi, None, [{"uuid": volume["uuid"], "at": "/data"}], image="demo:1")
    # args replace cmd, after the entrypoint; env is laid over the image's.
    script = "echo GREETING=$GREETING; echo x > /etc/new && echo root-writable; ls /data"
    custom = guest(
        gapi,
        None,
        [{"uuid": new_volume(gapi)["uuid"], "at": "/data"}],
        image="demo-oci",
        env={"GREETING": "mine"},
        args=[script],
    )
    for made in (default, custom):
        assert made["state"] in ("running", "stopped"), made  # short workloads
        wait_state(gapi, made["uuid"], "stopped")
    out = console(gapi, default["uuid"])
    assert "hello from the image" in out and "GREETING=from-image" in out, out
    assert "added" in out and "doomed" not in out, out
    assert "/etc\r\n" in out, out  # the working directory
    out = console(gapi, custom["uuid"])
    assert "GREETING=mine" in out and "root-writable" in out and "lost+found" in out, out
    assert "hello from the image" not in out, out


def test_an_unknown_image_name_is_refused(guest_server: LiveServer, tmp_path: Path) -> None:
    (tmp_path / "x.tar").write_bytes(_tar([("nothing", b"")]))
    done = run_cli("image", "import", "Bad Name", str(tmp_path / "x.tar"), server=guest_server)
    assert done.code == 2 and "not a valid image name" in done.err, done
    done = run_cli("image", "import", "junk", str(tmp_path / "x.tar"), server=guest_server)
    assert done.code == 1 and "neither a docker save" in done.err, done
