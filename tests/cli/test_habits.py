"""The habits of ``kraft cloud volume`` users: aliases, short flags, ``import --volume``,
a confirmation before an import replaces files, an archive on stdin, ``events --follow``
and the caller's own quota."""

from __future__ import annotations

import io
import json
import os
import queue
import secrets
import subprocess
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path

from tests.cli.conftest import VOLUMED, Result, run_cli
from tests.cli.test_transfer import assert_same_tree, small_tree
from tests.conftest import LiveServer

Cli = Callable[..., Result]


def test_kraft_spellings_work(cli: Cli) -> None:
    name = f"habit-{secrets.token_hex(3)}"
    made = cli("vol", "create", "-n", name, "-s", "10", "--wait", "-o", "json")
    assert made.code == 0, made.err
    assert made.json()[0]["size_mb"] == 10
    listed = cli("vol", "list", "-o", "json")
    assert listed.code == 0 and name in {v["name"] for v in listed.json()}
    web = f"web-{secrets.token_hex(3)}"
    assert cli("instance", "create", "--name", web, "--image", "nginx").code == 0
    attached = cli("vol", "attach", name, "--to", web, "--at", "/data", "-r")
    assert attached.code == 0, attached.err
    assert f"attached to {web} at /data (read-only)" in attached.out
    # `get` is a detail view, not the `ls` table.
    detail = cli("volume", "get", name).out
    assert "Name:" in detail and f"Attached to:  {web}" in detail and "Quota policy:" in detail
    shown = cli("instance", "get", web, "-o", "json").json()[0]
    assert shown["volumes"][0]["readonly"] is True
    detached = cli("vol", "detach", name)
    assert detached.code == 0, detached.err
    assert cli("instance", "remove", web).code == 0
    removed = cli("vol", "remove", name)
    assert removed.code == 0, removed.err
    # One result table for the commands that change volumes: NAME, UUID, RESULT.
    for done, result in ((detached, "detached"), (removed, "deleted")):
        header, row = done.out.splitlines()
        assert header.split() == ["NAME", "UUID", "RESULT"]
        assert row.split()[0] == name and row.rstrip().endswith(result), row
    assert name not in {v["name"] for v in cli("volume", "ls", "-o", "json").json()}
    helped = cli("volume", "--help")
    assert "ls (list)" in helped.out and "rm (remove, delete)" in helped.out


def test_import_asks_before_replacing_files_and_reads_stdin(cli: Cli, tmp_path: Path) -> None:
    name = f"imp-{secrets.token_hex(3)}"
    assert cli("volume", "create", "-n", name, "-s", "16", "--wait").code == 0
    first = small_tree(tmp_path / "first", files=5, seed="one")
    # Empty: no question asked. The volume given the way kraft spells it.
    done = cli("volume", "import", "--volume", name, "-s", str(first))
    assert done.code == 0, done.err

    second = small_tree(tmp_path / "second", files=5, seed="two")
    refused = cli("volume", "import", name, "--source", str(second))
    assert refused.code == 2
    assert f"volume '{name}' holds files" in refused.err and "--yes" in refused.err
    out = tmp_path / "still-first"
    assert cli("volume", "export", name, "--output", str(out)).code == 0
    assert_same_tree(first, out)

    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(second, arcname=".")
    piped = cli("volume", "import", name, "--source", "-", input=archive.getvalue())
    assert piped.code == 2 and "--yes" in piped.err
    piped = cli("volume", "import", name, "--source", "-", "--yes", input=archive.getvalue())
    assert piped.code == 0, piped.err
    out = tmp_path / "now-second"
    assert cli("volume", "export", name, "--output", str(out)).code == 0
    assert_same_tree(second, out)


def test_events_follow_prints_what_happens_next(server: LiveServer, cli: Cli) -> None:
    name = f"ev-{secrets.token_hex(3)}"
    assert cli("volume", "create", "-n", name, "-s", "8", "--wait").code == 0
    env = {"VOLUMED_URL": server.url, "VOLUMED_TOKEN": server.token, "NO_COLOR": "1"}
    follow = subprocess.Popen(
        [*VOLUMED, "volume", "events", name, "--follow", "--interval", "0.1", "-o", "json"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert follow.stdout is not None
    lines: queue.Queue[str] = queue.Queue()

    def read_lines() -> None:
        for line in follow.stdout or []:
            lines.put(line)

    reader = threading.Thread(target=read_lines)
    reader.start()
    try:
        actions = [json.loads(lines.get(timeout=20))["action"]]
        assert actions[0] == "create"
        assert cli("volume", "update", name, "--size", "12", "--wait").code == 0
        while "grow" not in actions:
            actions.append(json.loads(lines.get(timeout=20))["action"])
    finally:
        follow.terminate()
        follow.wait(timeout=10)
        reader.join(timeout=10)
        follow.stdout.close()


def test_quota_shows_the_callers_usage_and_limits(fresh_server: Callable[..., LiveServer]) -> None:
    live = fresh_server(VOLUMED_QUOTA_MAX_VOLUMES=7)
    for n in range(2):
        made = run_cli("volume", "create", "-n", f"q{n}", "-s", "4", server=live)
        assert made.code == 0, made.err
    shown = run_cli("quota", server=live)
    assert shown.code == 0, shown.err
    assert "VOLUMES" in shown.out and "2 / 7" in shown.out and "8 MiB" in shown.out
    as_json = run_cli("quota", "-o", "json", server=live).json()[0]
    assert as_json["used"]["volumes"] == 2 and as_json["hard"]["volumes"] == 7


def test_errors_speak_in_flags_not_api_fields(cli: Cli) -> None:
    too_big = cli("volume", "create", "-n", f"big-{secrets.token_hex(3)}", "-s", "99999999")
    assert too_big.code == 1
    assert "--size 99999999 exceeds the maximum volume size" in too_big.err
    assert "size_mb" not in too_big.err
    name = f"locked-{secrets.token_hex(3)}"
    assert cli("volume", "create", "-n", name, "-s", "8", "--wait").code == 0
    assert cli("volume", "update", name, "--delete-lock").code == 0
    locked = cli("volume", "rm", name)
    assert locked.code == 1 and "PATCH" not in locked.err
    assert f"volumed volume update {name} --no-delete-lock" in locked.err
    shrink = cli("volume", "update", name, "--size", "4")
    assert shrink.code == 1 and "--size must be at least 8" in shrink.err
    assert cli("volume", "update", name, "--no-delete-lock").code == 0
    assert cli("volume", "rm", name).code == 0
