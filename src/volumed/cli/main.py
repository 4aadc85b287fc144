"""``volumed``: one command group; each subcommand lives in its own module."""

from __future__ import annotations

import importlib
import os

import click

from volumed import __version__
from volumed.cli.application import App

# Subcommands by name, imported only when used (so `volumed volume ls` does not load
# the server, and --help stays fast).
_LAZY = {
    "serve": "volumed.cli.serve:serve",
    "volume": "volumed.cli.volume:volume",
    "instance": "volumed.cli.instance:instance",
    "image": "volumed.cli.image:image",
    "user": "volumed.cli.admin.user:user",
    "token": "volumed.cli.admin.token:token",
    "quota": "volumed.cli.admin.quota:quota",
    "db": "volumed.cli.admin.db:db",
    "fsck": "volumed.cli.admin.fsck:fsck",
    "job": "volumed.cli.admin.job:job",
    "backup": "volumed.cli.admin.backup:backup",
    "restore": "volumed.cli.admin.backup:restore",
    "completion": "volumed.cli.completion:completion",
}


# `kraft cloud vol …` works as `kraft cloud volume …`; so does `volumed vol …`.
_GROUP_ALIASES = {"vol": "volume"}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*_LAZY, *(n for n in super().list_commands(ctx) if n not in _LAZY)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _LAZY.get(_GROUP_ALIASES.get(cmd_name, cmd_name))
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, attr = target.split(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Examples:
  volumed serve                          # API on 127.0.0.1:8080, data in ./.volumed
  volumed serve --port 9000 --data-dir /srv/volumed
  volumed volume create --name data --size 1Gi --wait
  volumed volume ls
  volumed volume import data --source ./site
  volumed volume export data --output ./copy
  volumed instance create --name web --image nginx --volume data:/data
  volumed user create alice              # admin: works on the data directory
  volumed fsck

\b
Client commands find the server through --url, $VOLUMED_URL or $UKC_METRO and send
--token, $VOLUMED_TOKEN, $UKC_TOKEN or the local server's <data-dir>/token.
Exit codes: 0 all done, 1 an item failed, 2 usage error, 3 request refused/unreachable.
Shell completion: eval "$(volumed completion bash)".
""",
)
@click.version_option(__version__, prog_name="volumed")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """volumed: the KraftCloud Volumes API on your own machine, with real ext4 volumes."""
    ctx.obj = App(environ=os.environ)


def main() -> None:
    cli(prog_name="volumed")
