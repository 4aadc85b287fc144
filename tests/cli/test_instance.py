"""``volumed instance …`` and ``volume attach|detach`` as subprocesses."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from tests.cli.conftest import Result

Cli = Callable[..., Result]


def test_instance_lifecycle_with_volumes(cli: Cli) -> None:
    tag = secrets.token_hex(3)
    data, web = f"data-{tag}", f"web-{tag}"
    assert cli("volume", "create", "--name", data, "--size", "8", "--wait").code == 0
    made = cli(
        "instance",
        "create",
        "--name",
        web,
        "--image",
        "nginx:latest",
        "--memory",
        "256Mi",
        "--volume",
        f"{data}:/data",
        "-o",
        "json",
    )
    assert made.code == 0, made.err
    assert made.json()[0]["name"] == web

    shown = cli("instance", "get", web, "-o", "json").json()[0]
    assert shown["state"] == "stopped" and shown["memory_mb"] == 256
    assert any(v["name"] == data and v["at"] == "/data" for v in shown["volumes"])
    table = cli("instance", "ls")
    assert table.out.splitlines()[0].split()[:3] == ["NAME", "STATE", "IMAGE"]
    assert f"{data}:/data" in table.out

    busy = cli("volume", "rm", data)
    assert busy.code == 1 and f"'{data}'" in busy.err and "error 15" in busy.err

    assert cli("instance", "start", web).code == 0
    waited = cli("instance", "wait", web, "--state", "running", "--timeout", "10", "-o", "json")
    assert waited.code == 0, waited.err
    assert cli("volume", "get", data, "-o", "json").json()[0]["state"] == "mounted"
    refused = cli("volume", "detach", data)
    assert refused.code == 1 and f"'{data}'" in refused.err

    assert cli("instance", "stop", web).code == 0
    assert cli("instance", "wait", web, "--state", "stopped", "--timeout", "10").code == 0
    assert cli("volume", "detach", data, "--from", web).code == 0
    assert cli("volume", "get", data, "-o", "json").json()[0]["state"] == "available"
    attached = cli("volume", "attach", data, "--to", web, "--at", "/again", "--read-only")
    assert attached.code == 0, attached.err
    item = cli("volume", "get", data, "-o", "json").json()[0]
    assert item["state"] == "idle" and item["attached_to"][0]["name"] == web

    assert cli("instance", "rm", web).code == 0
    assert cli("volume", "get", data, "-o", "json").json()[0]["state"] == "available"
    gone = cli("instance", "get", web)
    assert gone.code == 1 and f"instance '{web}'" in gone.err
    assert cli("volume", "rm", data).code == 0


def test_a_new_volume_made_with_its_instance(cli: Cli) -> None:
    job = f"job-{secrets.token_hex(3)}"
    made = cli(
        "instance",
        "create",
        "--name",
        job,
        "--image",
        "alpine",
        "--volume",
        "16Mi:/scratch",
        "--start",
    )
    assert made.code == 0, made.err
    shown = cli("instance", "get", job, "-o", "json").json()[0]
    scratch = shown["volumes"][0]
    assert scratch["at"] == "/scratch"
    volume = cli("volume", "get", scratch["uuid"], "-o", "json").json()[0]
    assert volume["size_mb"] == 16 and volume["persistent"] is False
    assert cli("instance", "stop", job).code == 0
    assert cli("instance", "wait", job, "--state", "stopped", "--timeout", "10").code == 0
    assert cli("instance", "rm", job).code == 0
    import time

    deadline = time.monotonic() + 10
    while cli("volume", "get", scratch["uuid"]).code == 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_volume_spec_errors(cli: Cli) -> None:
    bad = cli("instance", "create", "--image", "x", "--volume", "data")
    assert bad.code == 2 and "NAME:/path" in bad.err
    ro_new = cli("instance", "create", "--image", "x", "--volume", "64Mi:/d:ro")
    assert ro_new.code == 2
    missing = cli("instance", "create", "--image", "x", "--volume", "no-such-vol:/d")
    assert missing.code == 1
