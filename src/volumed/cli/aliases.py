"""Command aliases in the habits of ``kraft cloud``: ``list`` for ``ls``, ``remove`` and
``delete`` for ``rm``. An alias resolves to the command itself (same help, same
options); ``--help`` lists each command once, with its aliases beside it."""

from __future__ import annotations

import click

__all__ = ["AliasGroup", "COMMAND_ALIASES"]

COMMAND_ALIASES = {"list": "ls", "remove": "rm", "delete": "rm"}


class AliasGroup(click.Group):
    """A group that also answers to the names in :data:`COMMAND_ALIASES`."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and cmd_name in COMMAND_ALIASES:
            found = super().get_command(ctx, COMMAND_ALIASES[cmd_name])
        return found

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # Report the real name, so that usage lines and errors say `rm`, not `remove`.
        _, command, rest = super().resolve_command(ctx, args)
        return (command.name if command else None), command, rest

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            aliases = [a for a, target in COMMAND_ALIASES.items() if target == name]
            label = f"{name} ({', '.join(aliases)})" if aliases else name
            rows.append((label, command.get_short_help_str(formatter.width - len(label) - 6)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
