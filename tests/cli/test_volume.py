"""``volumed volume …`` as a subprocess against a live server: every command, every
output mode, exit codes and per-item errors."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import click
import pytest

from tests.cli.conftest import Result, run_cli
from tests.conftest import LiveServer

Cli = Callable[..., Result]


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def test_create_wait_then_every_output_mode(cli: Cli) -> None:
    name = unique("modes")
    made = cli("volume", "create", "--name", name, "--size", "64", "--tag", "t1", "--wait")
    assert made.code == 0, made.err
    assert name in made.out and "available" in made.out and "64 MiB" in made.out

    table = cli("volume", "ls", "--tag", "t1")
    header = table.out.splitlines()[0].split()
    assert header[:4] == ["NAME", "STATE", "SIZE", "USED"]
    row = next(line for line in table.out.splitlines() if line.startswith(name))
    assert "%" in row and "\x1b[" not in table.out  # piped: no colours, usage as a percentage

    items = cli("volume", "get", name, "-o", "json").json()
    assert isinstance(items, list) and items[0]["name"] == name
    assert items[0]["status"] == "success" and items[0]["size_mb"] == 64
    assert set(items[0]) >= {"uuid", "state", "free_mb", "tags", "attached_to"}

    yaml = cli("volume", "get", name, "-o", "yaml").out
    assert yaml.startswith("- status: success\n") and f"  name: {name}\n" in yaml
    assert "  tags:\n    - t1\n" in yaml

    listing = cli("volume", "get", name, "-o", "list").out
    assert f"name: {name}" in listing.splitlines() and "size_mb: 64" in listing.splitlines()

    by_uuid = cli("volume", "get", items[0]["uuid"], "-o", "json").json()
    assert by_uuid == cli("volume", "get", name, "-o", "json").json()
    quiet = cli("volume", "ls", "-q").out.split()
    assert name in quiet
    assert cli("volume", "ls", "--state", "error", "-q").out.split().count(name) == 0


def test_sizes_with_units(cli: Cli) -> None:
    name = unique("units")
    made = cli(
        "volume", "create", "--name", name, "--size", "1Gi", "--policy", "dynamic", "-o", "json"
    )
    assert made.code == 0, made.err
    item = cli("volume", "get", name, "-o", "json").json()[0]
    assert item["size_mb"] == 1024 and item["quota_policy"] == "dynamic"
    bad = cli("volume", "create", "--size", "12 parsecs")
    assert bad.code == 2 and "not a size" in bad.err
    no_size = cli("volume", "create", "--name", unique("x"))
    assert no_size.code == 2 and "--size" in no_size.err


def test_create_json_is_exactly_the_api_items(cli: Cli) -> None:
    name = unique("json")
    items = cli("volume", "create", "--name", name, "--size", "8", "-o", "json").json()
    assert items == [
        {"status": "success", "uuid": items[0]["uuid"], "name": name, "state": "available"}
    ]


def test_per_item_errors_name_the_volume_and_exit_1(cli: Cli) -> None:
    name = unique("dup")
    assert cli("volume", "create", "--name", name, "--size", "8").code == 0
    again = cli("volume", "create", "--name", name, "--size", "8")
    assert again.code == 1
    assert f"volume '{name}'" in again.err and "already exists" in again.err
    assert "error 23" in again.err

    missing = cli("volume", "get", name, "ghost-volume", "-o", "json")
    assert missing.code == 1
    items = missing.json()
    assert [i["status"] for i in items] == ["success", "error"]
    assert items[1]["error"] == 8
    assert "volume 'ghost-volume'" in missing.err and name not in missing.err

    rm = cli("volume", "rm", name, "ghost-volume")
    assert rm.code == 1 and "'ghost-volume'" in rm.err
    assert cli("volume", "get", name).code == 1


def test_update_grow_tags_lock_and_clone(cli: Cli) -> None:
    name = unique("upd")
    assert cli("volume", "create", "--name", name, "--size", "16", "--wait").code == 0
    grown = cli("volume", "update", name, "--size", "32", "--tag", "a", "--tag", "b", "--wait")
    assert grown.code == 0, grown.err
    item = cli("volume", "get", name, "-o", "json").json()[0]
    assert item["size_mb"] == 32 and item["tags"] == ["a", "b"] and item["state"] == "available"

    cli("volume", "update", name, "--add-tag", "c", "--remove-tag", "a")
    assert cli("volume", "get", name, "-o", "json").json()[0]["tags"] == ["b", "c"]
    shrink = cli("volume", "update", name, "--size", "16")
    assert shrink.code == 1 and f"'{name}'" in shrink.err

    assert cli("volume", "update", name, "--delete-lock").code == 0
    locked = cli("volume", "rm", name)
    assert locked.code == 1 and "lock" in locked.err
    assert cli("volume", "update", name, "--no-delete-lock").code == 0
    assert cli("volume", "update", name).code == 2  # nothing to change

    copy = unique("copy")
    cloned = cli("volume", "clone", name, "--name", copy, "--wait", "-o", "json")
    assert cloned.code == 0, cloned.err
    assert cloned.json()[0]["name"] == copy and cloned.json()[0]["state"] == "available"
    assert cli("volume", "rm", name, copy).code == 0


def test_templates(cli: Cli) -> None:
    base = unique("base")
    assert cli("volume", "create", "--name", base, "--size", "8", "--wait").code == 0
    made = cli("volume", "template", "create", base, "-o", "json")
    assert made.code == 0, made.err
    assert made.json()[0]["state"] == "template"
    assert base in cli("volume", "template", "ls").out
    assert base not in cli("volume", "ls", "-q").out.split()
    child = unique("child")
    assert cli("volume", "clone", base, "--name", child, "--wait").code == 0
    assert cli("volume", "template", "rm", base).code == 0
    assert cli("volume", "rm", child).code == 0


def test_rm_all_asks_and_needs_yes_when_piped(server: LiveServer) -> None:
    # A tenant of its own: --all deletes every volume of the caller, and only those.
    token = server.add_user(unique("rmall"))
    env = {"VOLUMED_URL": server.url, "VOLUMED_TOKEN": token}
    for n in range(3):
        made = run_cli("volume", "create", "--name", f"v{n}", "--size", "8", "--wait", env=env)
        assert made.code == 0, made.err
    refused = run_cli("volume", "rm", "--all", env=env)
    assert refused.code == 2 and "--yes" in refused.err
    assert run_cli("volume", "rm", "--all", "v1", env=env).code == 2
    done = run_cli("volume", "rm", "--all", "--yes", "-o", "json", env=env)
    assert done.code == 0, done.err
    assert sorted(i["name"] for i in done.json()) == ["v0", "v1", "v2"]
    assert run_cli("volume", "ls", "-o", "json", env=env).json() == []
    assert "No volumes." in run_cli("volume", "ls", env=env).err


def test_events(cli: Cli, server: LiveServer) -> None:
    name = unique("ev")
    assert cli("volume", "create", "--name", name, "--size", "8", "--wait").code == 0
    uuid = cli("volume", "get", name, "-o", "json").json()[0]["uuid"]
    with server.client() as api:
        assert api.get(f"/volumed/v1/volumes/{uuid}/events").status_code == 200
    shown = cli("volume", "events", name)
    assert shown.code == 0, shown.err
    assert shown.out.splitlines()[0].split()[:4] == ["AT", "ACTOR", "ACTION", "RESULT"]
    actions = [e["action"] for e in cli("volume", "events", name, "-o", "json").json()]
    assert actions[0] == "create"
    missing = cli("volume", "events", "00000000-0000-4000-8000-000000000000")
    assert missing.code == 1 and "error 8" in missing.err


def test_help_everywhere_shows_examples() -> None:
    """In process (it needs no server): every group and command documents examples."""
    from click.testing import CliRunner

    from volumed.cli.main import cli

    def walk(command: click.Command, path: list[str]) -> Iterator[list[str]]:
        yield path
        if isinstance(command, click.Group):
            ctx = click.Context(command)
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                yield from walk(sub, [*path, name])

    runner = CliRunner()
    seen = []
    for path in walk(cli, []):
        shown = runner.invoke(cli, [*path, "--help"], prog_name="volumed")
        assert shown.exit_code == 0, (path, shown.output)
        assert "Examples:" in shown.output, path
        assert f"Usage: {' '.join(['volumed', *path])}" in shown.output
        seen.append(" ".join(path))
    for expected in (
        "volume import",
        "volume template create",
        "instance wait",
        "fsck",
        "token revoke",
        "quota set",
        "db migrate",
        "completion",
        "user rm",
    ):
        assert expected in seen


def test_completion_scripts() -> None:
    for shell, marker in (("bash", "_VOLUMED_COMPLETE"), ("zsh", "compdef"), ("fish", "complete")):
        done = run_cli("completion", shell)
        assert done.code == 0 and marker in done.out
    offered = run_cli(
        env={"_VOLUMED_COMPLETE": "bash_complete", "COMP_WORDS": "volumed vol", "COMP_CWORD": "1"}
    )
    assert "volume" in offered.out


def test_volume_names_complete_from_the_server(cli: Cli) -> None:
    name = unique("complete")
    assert cli("volume", "create", "--name", name, "--size", "8").code == 0
    for command in ("get", "rm", "export"):
        words = f"volumed volume {command} {name[:10]}"
        env = {"_VOLUMED_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": "3"}
        assert f"plain,{name}" in cli(env=env).out.splitlines(), command


@pytest.mark.parametrize(
    ("env", "args"),
    [
        ({"UKC_METRO": "{url}/v1", "UKC_TOKEN": "{token}"}, []),
        ({"VOLUMED_URL": "{url}/", "VOLUMED_DATA_DIR": "{data}"}, []),
        ({}, ["--url", "{url}", "--token", "{token}"]),
        ({"UKC_METRO": "fra", "VOLUMED_URL": "{url}"}, ["--data-dir", "{data}"]),
    ],
)
def test_server_and_token_resolution(
    server: LiveServer, env: dict[str, str], args: list[str]
) -> None:
    values = {"url": server.url, "token": server.token, "data": str(server.data_dir)}
    env = {k: v.format(**values) for k, v in env.items()}
    argv = [a.format(**values) for a in args]
    done = run_cli("volume", "ls", "-o", "json", *argv, env=env)
    assert done.code == 0, done.err
    assert isinstance(done.json(), list)


def test_request_level_failures_exit_3(server: LiveServer) -> None:
    wrong = run_cli("volume", "ls", env={"VOLUMED_URL": server.url, "VOLUMED_TOKEN": "nope"})
    assert wrong.code == 3 and "Invalid token" in wrong.err and "401" in wrong.err
    gone = run_cli("volume", "ls", env={"VOLUMED_URL": "http://127.0.0.1:9", "VOLUMED_TOKEN": "x"})
    assert gone.code == 3 and "cannot reach volumed" in gone.err
