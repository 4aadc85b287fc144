"""The object every command receives (``@click.pass_obj``): where the server is, which
token to send, how to print, and the one way to fail (:meth:`App.abort`).

The exit codes are in :mod:`volumed.cli.exits`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from volumed.cli.exits import EXIT_ITEM_FAILED, EXIT_USAGE

if TYPE_CHECKING:
    from volumed.cli.client import Client
    from volumed.settings import Settings


DEFAULT_URL = "http://127.0.0.1:8080"
OUTPUT_FORMATS = ("table", "json", "yaml", "list")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class App:
    environ: Mapping[str, str] = field(default_factory=dict)
    url: str | None = None
    token: str | None = None
    data_dir: Path | None = None
    output: str = "table"
    failed: int = 0
    """Items that failed so far: the exit code is 1 if any did."""
    _client: Client | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ failing

    def abort(self, message: str, code: int = EXIT_ITEM_FAILED) -> NoReturn:
        """Print ``message`` on stderr and exit with ``code``: the one way out."""
        if message:
            click.echo(self.style(f"error: {message}", fg="red"), err=True)
        raise click.exceptions.Exit(code)

    def item_error(self, what: str, item: Mapping[str, Any]) -> None:
        """Report one failed item on stderr, naming the volume (or instance)."""
        self.failed += 1
        code = item.get("error")
        suffix = f" (error {code})" if code is not None else ""
        from volumed.cli.wording import in_cli_words

        message = in_cli_words(str(item.get("message", "failed")))
        click.echo(self.style(f"error: {what}: {message}{suffix}", fg="red"), err=True)

    def finish(self) -> None:
        """Exit 1 if any item failed, else return (click then exits 0)."""
        if self.failed:
            raise click.exceptions.Exit(EXIT_ITEM_FAILED)

    # ------------------------------------------------------------------ terminal

    @property
    def stdout_tty(self) -> bool:
        return sys.stdout.isatty()

    @property
    def stderr_tty(self) -> bool:
        return sys.stderr.isatty()

    @property
    def color(self) -> bool:
        return self.stdout_tty and "NO_COLOR" not in self.environ

    def style(self, text: str, **styles: Any) -> str:
        return click.style(text, **styles) if self.color else text

    # ------------------------------------------------------------------ configuration

    def resolved_data_dir(self) -> Path:
        if self.data_dir is not None:
            return self.data_dir
        return Path(self.environ.get("VOLUMED_DATA_DIR") or ".volumed")

    def resolved_url(self) -> str:
        """--url, VOLUMED_URL, UKC_METRO when it is a URL (without a trailing /v1),
        else the local default."""
        for candidate in (self.url, self.environ.get("VOLUMED_URL")):
            if candidate:
                return _base_url(candidate)
        metro = self.environ.get("UKC_METRO", "")
        if "://" in metro:
            return _base_url(metro)
        return DEFAULT_URL

    def resolved_token(self) -> str | None:
        """--token, VOLUMED_TOKEN, UKC_TOKEN, else ``<data-dir>/token`` (a local
        server's token file, sent only to a server on this machine)."""
        for candidate in (
            self.token,
            self.environ.get("VOLUMED_TOKEN"),
            self.environ.get("UKC_TOKEN"),
        ):
            if candidate:
                return candidate.strip()
        if not _is_local(self.resolved_url()):
            return None
        path = self.resolved_data_dir() / "token"
        try:
            return path.read_text(encoding="utf-8").strip() or None
        except OSError:
            return None

    def client(self) -> Client:
        if self._client is None:
            from volumed.cli.client import Client

            self._client = Client(self, self.resolved_url(), self.resolved_token())
        return self._client

    def settings(self) -> Settings:
        """Server settings for the admin commands (data directory, database URL)."""
        from volumed.settings import Settings, SettingsError

        overrides = {"data_dir": self.data_dir}
        try:
            return Settings.load(overrides, self.environ)
        except SettingsError as exc:
            self.abort(str(exc), EXIT_USAGE)


def _is_local(url: str) -> bool:
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def _base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    return url.removesuffix("/v1").rstrip("/")


# ---------------------------------------------------------------------- shared options


def app_of(ctx: click.Context) -> App:
    """The context's App; one made here if the root group did not run (completion)."""
    app = ctx.find_object(App)
    if app is None:
        app = App(environ=os.environ)
        ctx.obj = app
    return app


def _store(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        if value is not None:
            setattr(app_of(ctx), name, value)

    return callback


def client_options(func: F) -> F:
    """``--url``, ``--token``, ``--data-dir``: where the server is and who we are."""
    func = click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        expose_value=False,
        callback=_store("data_dir"),
        help="Data directory of a local server, for its token file "
        "[$VOLUMED_DATA_DIR, ./.volumed].",
    )(func)
    func = click.option(
        "--token",
        metavar="TOKEN",
        expose_value=False,
        callback=_store("token"),
        help="Bearer token [$VOLUMED_TOKEN, $UKC_TOKEN, <data-dir>/token].",
    )(func)
    func = click.option(
        "--url",
        metavar="URL",
        expose_value=False,
        callback=_store("url"),
        help=f"Server URL [$VOLUMED_URL, $UKC_METRO if a URL, {DEFAULT_URL}].",
    )(func)
    return func


def output_option(func: F) -> F:
    return click.option(
        "-o",
        "--output",
        type=click.Choice(OUTPUT_FORMATS),
        default="table",
        show_default=True,
        expose_value=False,
        callback=_store("output"),
        help="Output format.",
    )(func)


def admin_options(func: F) -> F:
    """``--data-dir`` for commands that open the data directory and database directly."""
    return click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        expose_value=False,
        callback=_store("data_dir"),
        help="Data directory [$VOLUMED_DATA_DIR, ./.volumed]; the database is "
        "$VOLUMED_DATABASE_URL or <data-dir>/volumed.db.",
    )(func)


pass_app = click.make_pass_decorator(App, ensure=False)
