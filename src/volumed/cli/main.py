"""``volumed``: one command group; each subcommand lives in its own module."""

from __future__ import annotations

import click

from volumed import __version__
from volumed.cli.serve import serve


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Examples:
  volumed serve                          # API on 127.0.0.1:8080, data in ./.volumed
  volumed serve --port 9000 --data-dir /srv/volumed
""",
)
@click.version_option(__version__, prog_name="volumed")
def cli() -> None:
    """volumed: the KraftCloud Volumes API on your own machine, with real ext4 volumes."""


cli.add_command(serve)


def main() -> None:
    cli()
