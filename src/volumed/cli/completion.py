"""``volumed completion bash|zsh|fish``: print the shell completion script."""

from __future__ import annotations

import click


@click.command(
    epilog="""\b
Examples:
  eval "$(volumed completion bash)"            # in ~/.bashrc
  eval "$(volumed completion zsh)"             # in ~/.zshrc
  volumed completion fish > ~/.config/fish/completions/volumed.fish

Same as click's own: _VOLUMED_COMPLETE=bash_source volumed
""",
)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for a shell."""
    from click.shell_completion import get_completion_class

    root = ctx.find_root().command
    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(root, {}, "volumed", "_VOLUMED_COMPLETE").source())
