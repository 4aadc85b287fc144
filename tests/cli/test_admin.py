"""Admin commands on the data directory while a server runs: users, tokens, quotas,
the schema, and fsck (report, repair, exit codes)."""

from __future__ import annotations

import os
import secrets
import uuid as uuid_lib
from collections.abc import Callable

from tests.cli.conftest import run_cli
from tests.conftest import LiveServer


def test_users_and_tokens(server: LiveServer) -> None:
    data = server.admin_env
    alice_name = f"alice-{secrets.token_hex(3)}"
    made = run_cli("user", "create", alice_name, env=data)
    assert made.code == 0, made.err
    token = made.out.strip()
    assert token.startswith("vd_") and "shown once" in made.err
    stored = server.sql("SELECT token_hash, label FROM tokens")
    assert token not in repr(stored)  # only the digest is kept

    as_alice = {"VOLUMED_URL": server.url, "VOLUMED_TOKEN": token}
    assert run_cli("volume", "create", "--name", "a1", "--size", "8", env=as_alice).code == 0
    users = run_cli("user", "ls", "-o", "json", env=data).json()
    alice = next(u for u in users if u["name"] == alice_name)
    assert alice["tokens"] == 1 and alice["volumes"] == 1
    assert run_cli("user", "create", alice_name, env=data).code == 1
    assert run_cli("user", "create", "bad name!", env=data).code == 2

    second = run_cli("token", "create", "--user", alice_name, "--label", "laptop", env=data)
    assert second.code == 0
    tokens = run_cli("token", "ls", "--user", alice_name, "-o", "json", env=data).json()
    assert {t["label"] for t in tokens} == {"initial", "laptop"}
    assert "LABEL" in run_cli("token", "ls", env=data).out
    laptop = next(t["id"] for t in tokens if t["label"] == "laptop")
    assert run_cli("token", "revoke", laptop, env=data).code == 0
    assert run_cli("token", "revoke", laptop, env=data).code == 1
    revoked = {"VOLUMED_URL": server.url, "VOLUMED_TOKEN": second.out.strip()}
    assert run_cli("volume", "ls", env=revoked).code == 3  # never used, so never cached
    assert run_cli("volume", "ls", "-q", env=as_alice).out.split() == ["a1"]

    refused = run_cli("user", "rm", alice_name, env=data)
    assert refused.code == 1 and "owns volumes" in refused.err
    assert run_cli("volume", "rm", "a1", env=as_alice).code == 0
    assert run_cli("user", "rm", alice_name, env=data).code == 0
    assert run_cli("user", "rm", alice_name, env=data).code == 1


def test_quota_set_and_db(server: LiveServer) -> None:
    data = server.admin_env
    name = f"bob-{secrets.token_hex(3)}"
    bob = run_cli("user", "create", name, env=data).out.strip()
    set_ = run_cli(
        "quota", "set", name, "--max-volumes", "1", "--max-volume-size", "16Mi", env=data
    )
    assert set_.code == 0, set_.err
    shown = run_cli("quota", "show", name, "-o", "json", env=data).json()[0]
    assert shown["max_volumes"] == 1 and shown["max_volume_mb"] == 16
    as_bob = {"VOLUMED_URL": server.url, "VOLUMED_TOKEN": bob}
    too_big = run_cli("volume", "create", "--size", "32", env=as_bob)
    assert too_big.code == 1 and "error 19" in too_big.err
    assert run_cli("volume", "create", "--size", "8", env=as_bob).code == 0
    second = run_cli("volume", "create", "--size", "8", env=as_bob)
    assert second.code == 1 and "error 19" in second.err
    assert run_cli("quota", "set", name, "--reset", env=data).code == 0
    assert run_cli("quota", "show", name, "-o", "json", env=data).json() == [{"user": name}]
    assert run_cli("quota", "set", "nobody-at-all", "--max-volumes", "1", env=data).code == 1
    assert run_cli("quota", "set", name, env=data).code == 2

    status = run_cli("db", "status", env=data)
    assert status.code == 0 and "applied" in status.out and "pending" not in status.out
    assert "up to date" in run_cli("db", "migrate", env=data).out
    gone = run_cli("db", "status", env={"VOLUMED_DATA_DIR": str(server.data_dir / "nope")})
    assert gone.code == 1


def test_fsck_reports_and_repairs(fresh_server: Callable[..., LiveServer]) -> None:
    live = fresh_server()
    data = live.admin_env
    for name in ("keep", "lose"):
        assert (
            run_cli("volume", "create", "--name", name, "--size", "8", "--wait", server=live).code
            == 0
        )
    clean = run_cli("fsck", env=data)
    assert clean.code == 0, clean.out + clean.err
    assert "0 problem(s)" in clean.err and "ran e2fsck on 2" in clean.err

    images = live.data_dir / "images"
    lose = run_cli("volume", "get", "lose", "-o", "json", server=live).json()[0]["uuid"]
    os.unlink(images / f"{lose}.img")
    orphan = str(uuid_lib.uuid4())
    (images / f"{orphan}.img").write_bytes(b"\0" * 4096)
    keep = run_cli("volume", "get", "keep", "-o", "json", server=live).json()[0]["uuid"]
    (images / f"{keep}.img.tmp").write_bytes(b"x")

    found = run_cli("fsck", "--no-e2fsck", "-o", "json", env=data)
    assert found.code == 1
    problems = {(f["problem"], f["repaired"]) for f in found.json()}
    assert problems == {("missing-image", False), ("orphan-image", False), ("leftover", False)}
    table = run_cli("fsck", "--no-e2fsck", env=data)
    assert table.code == 1 and "PROBLEM" in table.out and orphan in table.out

    repaired = run_cli("fsck", "--repair", env=data)
    assert repaired.code == 1 and "3 problem(s)" in repaired.err
    assert not (images / f"{orphan}.img").exists()
    assert not (images / f"{keep}.img.tmp").exists()
    lost = run_cli("volume", "get", "lose", "-o", "json", server=live).json()[0]
    assert lost["state"] == "error" and "missing" in lost["message"]
    assert run_cli("fsck", env=data).code == 0

    # A broken file system is found by e2fsck -fn.
    with open(images / f"{keep}.img", "r+b") as image:
        image.seek(1024 + 0x38)
        image.write(b"\0\0")  # the superblock's magic
    broken = run_cli("fsck", "-o", "json", env=data)
    assert broken.code == 1
    assert [f["problem"] for f in broken.json()] == ["fs-error"]


def test_fsck_removes_a_staged_image_no_job_owns(fresh_server: Callable[..., LiveServer]) -> None:
    live = fresh_server()
    created = run_cli("volume", "create", "--name", "s", "--size", "8", "--wait", server=live)
    assert created.code == 0, created.err
    uuid = run_cli("volume", "get", "s", "-o", "json", server=live).json()[0]["uuid"]
    # What a format worker frozen past its lease (epoch 1), then killed, leaves; a staged
    # image of a later epoch would be a job begun after fsck read the rows: left alone.
    staged = live.data_dir / "images" / f"{uuid}.img.e1"
    staged.write_bytes(b"x")
    newer = live.data_dir / "images" / f"{uuid}.img.e9"
    newer.write_bytes(b"x")
    found = run_cli("fsck", "--no-e2fsck", "-o", "json", env=live.admin_env)
    assert found.code == 1
    assert [(f["problem"], f["repaired"]) for f in found.json()] == [("leftover", False)]
    assert f"{uuid}.img.e1" in found.json()[0]["detail"]
    assert run_cli("fsck", "--no-e2fsck", "--repair", env=live.admin_env).code == 1
    assert not staged.exists() and newer.exists()
    newer.unlink()
    assert run_cli("fsck", env=live.admin_env).code == 0
