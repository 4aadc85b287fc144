"""``volumed``: one command group; each subcommand lives in its own module."""

from __future__ import annotations

import os

import click

from volumed import __version__
from volumed.cli.admin.db import db
from volumed.cli.admin.fsck import fsck
from volumed.cli.admin.quota import quota
from volumed.cli.admin.token import token
from volumed.cli.admin.user import user
from volumed.cli.application import App
from volumed.cli.completion import completion
from volumed.cli.instance import instance
from volumed.cli.serve import serve
from volumed.cli.volume import volume


@click.group(
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


cli.add_command(serve)
for _command in (volume, instance, user, token, quota, db, fsck, completion):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="volumed")
