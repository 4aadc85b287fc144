"""deploy/volumed.service runs volumed as a dedicated user with four capabilities. A
server started the same way (an unprivileged uid, exactly the unit's ambient and bounding
sets, through ``setpriv``) imports an archive as root would: owners, setuid bits, mode-000
files and read-only directories come back out of the volume unchanged."""

from __future__ import annotations

import configparser
import io
import os
import secrets
import tarfile
from pathlib import Path

import pytest

from tests.conftest import REPO, LiveServer, wait_for_state

SERVICE_UID = 64_123


def unit_capabilities() -> str:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.read(REPO / "deploy" / "volumed.service")
    service = parser["Service"]
    names = service["ambientcapabilities"].split()
    assert names == service["capabilityboundingset"].split()
    return ",".join("+" + n.removeprefix("CAP_").lower() for n in names)


def archive() -> bytes:
    entries = [
        ("ro", tarfile.DIRTYPE, 0o555, 0, b""),
        ("ro/f", tarfile.REGTYPE, 0o644, 0, b"inside a read-only directory\n"),
        ("suid", tarfile.REGTYPE, 0o4755, 0, b"#!/bin/sh\n"),
        ("zero", tarfile.REGTYPE, 0o000, 0, b"unreadable\n"),
        ("owned", tarfile.REGTYPE, 0o640, 1234, b"someone else's\n"),
    ]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, kind, mode, owner, data in entries:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = kind, mode, owner, owner
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buffer.getvalue()


def listing(body: bytes) -> dict[str, tuple[int, int, int, bytes]]:
    found = {}
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if name in (".", "", "lost+found"):
                continue
            data = tar.extractfile(member).read() if member.isfile() else b""  # type: ignore[union-attr]
            found[name] = (member.mode, member.uid, member.gid, data)
    return found


@pytest.mark.sqlite_only
def test_the_units_capabilities_let_imports_keep_owners_and_modes(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    os.chown(data_dir, SERVICE_UID, SERVICE_UID)
    caps = unit_capabilities()
    live = LiveServer(
        data_dir=data_dir,
        token="cap-" + secrets.token_hex(16),
        env={"VOLUMED_METRICS_PORT": "0"},
        wrapper=[
            "setpriv",
            f"--reuid={SERVICE_UID}",
            f"--regid={SERVICE_UID}",
            "--clear-groups",
            f"--inh-caps={caps}",
            f"--ambient-caps={caps}",
            f"--bounding-set=-all,{caps}",
        ],
    )
    live.start()
    try:
        with live.client() as api:
            uuid = api.post("/v1/volumes", json={"size_mb": 16}).json()["data"]["volumes"][0]
            assert wait_for_state(api, uuid["uuid"])["state"] == "available"
            body = archive()
            done = api.put(f"/volumed/v1/volumes/{uuid['uuid']}/import", content=body)
            assert done.json()["status"] == "success", done.text + live.log()
            exported = api.get(f"/volumed/v1/volumes/{uuid['uuid']}/export")
        assert listing(exported.content) == listing(body)
        image = data_dir / "images" / f"{uuid['uuid']}.img"
        assert image.stat().st_uid == SERVICE_UID, "the service user owns what it makes"
    finally:
        live.stop()
