"""Printing items: tables for people, JSON/YAML/list for programs, progress on a TTY.

``-o json`` prints exactly the API's items (a JSON array); ``-o yaml`` the same as YAML;
``-o list`` one ``key: value`` block per item; ``-o table`` (default) an aligned table
with human sizes and ages, states coloured only when stdout is a terminal.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import click

from volumed.cli.application import App
from volumed.domain.states import InstanceState, VolumeState

Item = dict[str, Any]
Column = tuple[str, Callable[[Item], str]]

_STATE_COLOURS: dict[str, str] = {
    VolumeState.AVAILABLE: "green",
    VolumeState.IDLE: "cyan",
    VolumeState.MOUNTED: "blue",
    InstanceState.RUNNING: "green",
    InstanceState.STOPPED: "white",
    VolumeState.BUSY: "yellow",
    VolumeState.UNINITIALIZED: "yellow",
    VolumeState.INITIALIZING: "yellow",
    InstanceState.STARTING: "yellow",
    InstanceState.STOPPING: "yellow",
    VolumeState.ERROR: "red",
    VolumeState.TEMPLATE: "magenta",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|[KMGT]iB|B)?\s*$", re.IGNORECASE)
_UNITS_MB = {"": 1.0, "K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0**2}


# ---------------------------------------------------------------------- sizes


def parse_size_mb(text: str) -> int:
    """``100`` (MB), ``512Mi``, ``512M``, ``2Gi``, ``1.5G``, ``1T`` → whole MiB.

    Units are binary (the API's MB is a MiB): ``M`` and ``Mi`` mean the same."""
    match = _SIZE.match(text)
    if match is None:
        raise click.BadParameter(f"'{text}' is not a size (e.g. 100, 512Mi, 2Gi)")
    number, unit = float(match.group(1)), (match.group(2) or "").upper()
    if unit == "B":
        mb = number / 1024**2
    else:
        mb = number * _UNITS_MB[unit[:1]]
    if mb < 1 or mb != int(mb):
        raise click.BadParameter(f"'{text}' is not a whole number of MiB (at least 1)")
    return int(mb)


def human_mb(mb: int | None) -> str:
    if mb is None:
        return "-"
    if mb < 1024:
        return f"{mb} MiB"
    if mb < 1024**2:
        return f"{mb / 1024:.1f} GiB"
    return f"{mb / 1024**2:.1f} TiB"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def age(created_at: str | None) -> str:
    if not created_at:
        return "-"
    try:
        then = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    except ValueError:
        return created_at
    seconds = max(0, int((datetime.now(tz=UTC) - then).total_seconds()))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def usage(app: App, item: Item) -> str:
    """Used space as a percentage of the size, with a bar on a terminal."""
    size, free = item.get("size_mb"), item.get("free_mb")
    if not isinstance(size, int) or not isinstance(free, int) or size <= 0:
        return "-"
    used = max(0, size - free)
    pct = min(100, round(100 * used / size))
    if not app.color:
        return f"{pct}%"
    filled = round(pct / 10)
    bar = "█" * filled + "░" * (10 - filled)
    colour = "red" if pct >= 90 else "yellow" if pct >= 75 else "green"
    return f"{click.style(bar, fg=colour)} {pct:>3}%"


def state(app: App, value: str | None) -> str:
    text = value or "-"
    colour = _STATE_COLOURS.get(text)
    return app.style(text, fg=colour) if colour else text


# ---------------------------------------------------------------------- printing


def print_items(
    app: App, items: Sequence[Item], columns: Sequence[Column], *, empty: str = ""
) -> None:
    """Print ``items`` in the chosen format; error items are left to the caller (stderr)."""
    if app.output == "json":
        click.echo(json.dumps(list(items), indent=2))
        return
    if app.output == "yaml":
        click.echo(to_yaml(list(items)), nl=False)
        return
    shown = [i for i in items if i.get("status") != "error"]
    if app.output == "list":
        blocks = ["\n".join(f"{k}: {_plain(v)}" for k, v in i.items()) for i in shown]
        if blocks:
            click.echo("\n\n".join(blocks))
        return
    if not shown:
        if empty:
            click.echo(empty, err=True)
        return
    table(app, shown, columns)


def table(app: App, items: Sequence[Item], columns: Sequence[Column]) -> None:
    headers = [name for name, _ in columns]
    rows = [[render(item) for _, render in columns] for item in items]
    widths = [
        max(len(_ANSI.sub("", cell)) for cell in [h, *(r[i] for r in rows)])
        for i, h in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        padded = [c + " " * (w - len(_ANSI.sub("", c))) for c, w in zip(cells, widths, strict=True)]
        return "  ".join(padded).rstrip()

    click.echo(app.style(line(headers), bold=True))
    for row in rows:
        click.echo(line(row))


def _plain(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---------------------------------------------------------------------- YAML

_PLAIN_STR = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./@+-]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def to_yaml(value: Any, indent: int = 0) -> str:
    """A small YAML emitter for JSON-shaped data (what the API returns)."""
    pad = " " * indent
    if isinstance(value, list):
        if not value:
            return f"{pad}[]\n"
        out = []
        for element in value:
            if isinstance(element, (dict, list)) and element:
                body = to_yaml(element, indent + 2)
                out.append(f"{pad}- {body[indent + 2 :]}")
            else:
                out.append(f"{pad}- {_scalar(element)}\n")
        return "".join(out)
    if isinstance(value, dict):
        if not value:
            return f"{pad}{{}}\n"
        out = []
        for key, element in value.items():
            if isinstance(element, (dict, list)) and element:
                out.append(f"{pad}{_scalar(str(key))}:\n{to_yaml(element, indent + 2)}")
            else:
                out.append(f"{pad}{_scalar(str(key))}: {_scalar(element)}\n")
        return "".join(out)
    return f"{pad}{_scalar(value)}\n"


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, list):
        return "[]"
    if isinstance(value, dict):
        return "{}"
    text = str(value)
    if _PLAIN_STR.match(text) and text.lower() not in _YAML_WORDS:
        return text
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(text)


# ---------------------------------------------------------------------- progress


class Spinner:
    """A one-line spinner on stderr, only when stderr is a terminal."""

    _FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, app: App, text: str) -> None:
        self._on = app.stderr_tty
        self._text = text
        self._n = 0

    def tick(self, text: str | None = None) -> None:
        if not self._on:
            return
        if text is not None:
            self._text = text
        frame = self._FRAMES[self._n % len(self._FRAMES)]
        self._n += 1
        sys.stderr.write(f"\r\x1b[2K{frame} {self._text}")
        sys.stderr.flush()

    def done(self) -> None:
        if self._on:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()


class Progress:
    """A byte progress bar on stderr (a terminal only): ``[####    ] 40% 80 MiB 120 MiB/s``."""

    def __init__(self, app: App, label: str, total: int | None) -> None:
        self._on = app.stderr_tty
        self._label = label
        self._total = total
        self.done_bytes = 0
        self._started = time.monotonic()
        self._last = 0.0

    def add(self, n: int) -> None:
        self.done_bytes += n
        now = time.monotonic()
        if self._on and now - self._last >= 0.1:
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.done_bytes / max(now - self._started, 1e-6)
        text = f"{self._label} {human_bytes(self.done_bytes)}"
        if self._total:
            frac = min(1.0, self.done_bytes / self._total)
            bar = "#" * int(frac * 30)
            text = f"{self._label} [{bar:<30}] {frac * 100:3.0f}% {human_bytes(self.done_bytes)}"
        sys.stderr.write(f"\r\x1b[2K{text} {human_bytes(rate)}/s")
        sys.stderr.flush()

    def note(self, text: str) -> None:
        """Replace the bar with a status line (e.g. while the server finishes)."""
        if self._on:
            sys.stderr.write(f"\r\x1b[2K{self._label}: {human_bytes(self.done_bytes)} sent, {text}")
            sys.stderr.flush()

    def close(self) -> float:
        """Clear the bar; returns the seconds elapsed."""
        if self._on:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()
        return time.monotonic() - self._started


# ---------------------------------------------------------------------- columns


def volume_columns(app: App, *, uuid: bool = True) -> list[Column]:
    columns: list[Column] = [
        ("NAME", lambda i: str(i.get("name", "-"))),
        ("STATE", lambda i: state(app, i.get("state"))),
        ("SIZE", lambda i: human_mb(i.get("size_mb"))),
        ("USED", lambda i: usage(app, i)),
        (
            "ATTACHED TO",
            lambda i: (
                ",".join(a.get("name") or a.get("uuid", "") for a in i.get("attached_to") or [])
                or "-"
            ),
        ),
        ("TAGS", lambda i: ",".join(i.get("tags") or []) or "-"),
        ("CREATED", lambda i: age(i.get("created_at"))),
    ]
    if uuid:
        columns.append(("UUID", lambda i: str(i.get("uuid", "-"))))
    return columns


def result_columns(app: App, result: str) -> list[Column]:
    """The one result table of the commands that change volumes (create, rm, attach,
    detach, clone, update, template): NAME, UUID and RESULT, what was done, with the
    volume's state beside it when the answer carries one."""

    def outcome(item: Item) -> str:
        found = item.get("state")
        return f"{result} ({state(app, str(found))})" if found else result

    return [
        ("NAME", lambda i: str(i.get("name", "-"))),
        ("UUID", lambda i: str(i.get("uuid", "-"))),
        ("RESULT", outcome),
    ]


def print_details(app: App, items: Sequence[Item]) -> None:
    """``volume get``: each volume as a block of labelled lines, every field shown."""
    blocks = []
    for item in items:
        if item.get("status") == "error":
            continue
        attached = ", ".join(
            a.get("name") or a.get("uuid", "") for a in item.get("attached_to") or []
        )
        mounted = ", ".join(
            (m.get("name") or m.get("uuid", "")) + (" (read-only)" if m.get("readonly") else "")
            for m in item.get("mounted_by") or []
        )
        rows = [
            ("Name", str(item.get("name", "-"))),
            ("UUID", str(item.get("uuid", "-"))),
            ("State", state(app, item.get("state"))),
            ("Size", human_mb(item.get("size_mb"))),
            ("Used", usage(app, item)),
            ("Free", human_mb(item.get("free_mb")) if item.get("free_mb") is not None else "-"),
            ("Quota policy", str(item.get("quota_policy", "-"))),
            ("Access mode", str(item.get("access_mode", "-"))),
            ("Persistent", "yes" if item.get("persistent") else "no"),
            ("Delete lock", "on" if item.get("delete_lock") else "off"),
            ("File system", str(item.get("filesystem", "-"))),
            ("Attached to", attached or "-"),
            ("Mounted by", mounted or "-"),
            ("Tags", ", ".join(item.get("tags") or []) or "-"),
            ("Created", f"{item.get('created_at', '-')} ({age(item.get('created_at'))})"),
        ]
        if item.get("message"):
            rows.append(("Message", str(item["message"])))
        width = max(len(label) for label, _ in rows) + 1
        blocks.append(
            "\n".join(
                app.style(f"{label + ':':<{width}}", bold=True) + f" {value}"
                for label, value in rows
            )
        )
    if blocks:
        click.echo("\n\n".join(blocks))
