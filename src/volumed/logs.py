"""Logging for an unattended server: one JSON object per line when stderr is not a
terminal, readable lines when it is.

Every record carries ``ts`` (RFC 3339, UTC, milliseconds), ``level``, ``logger`` and
``msg``, plus whatever the caller passed in ``extra=`` (``request_id``, ``tenant``,
``route``, ``job``, ``volume``, ...). Keys that name a secret are redacted, as a last line
of defence: no caller logs a token or an ``Authorization`` header in the first place.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import traceback
from typing import Any, TextIO

import msgspec

__all__ = ["AccessLine", "AccessLog", "JsonFormatter", "TextFormatter", "configure", "wants_json"]

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
_SECRET_KEYS = frozenset({"authorization", "token", "password", "secret", "api_key"})
_REDACTED = "[redacted]"
# granian logs through these; they should look like ours and reach the same stream.
_ADOPTED = ("_granian", "granian.access")
_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning"}
_EMBEDDED_NOTICE = "Embedded server is experimental!"


class _DropEmbeddedNotice(logging.Filter):
    """granian warns ``Embedded server is experimental!`` on every start. volumed runs
    granian embedded on purpose (the API, the worker and the metrics listener share one
    event loop; docs/operations.md, "Why granian runs embedded"), so that line is no
    news to an operator, and at warning level it sets off log alerts. Only that exact
    line is dropped: every other granian warning still reaches the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _EMBEDDED_NOTICE


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    attrs = record.__dict__
    found = {key: attrs[key] for key in attrs.keys() - _STANDARD if not key.startswith("_")}
    for key in found.keys() & _SECRET_KEYS:
        found[key] = _REDACTED
    return found


_second: tuple[int, str] = (0, "")
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))


def _timestamp(created: float) -> str:
    """RFC 3339 in UTC with milliseconds; the part up to the second is cached."""
    return _timestamp_ms(int(created * 1000))


def _timestamp_ms(ms: int) -> str:
    """:func:`_timestamp` of a time in whole milliseconds since the epoch."""
    global _second
    whole, ms = divmod(ms, 1000)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return _second[1] + _MILLIS[ms]


class JsonFormatter(logging.Formatter):
    """``{"ts": …, "level": …, "logger": …, "msg": …, <extras>, "exc": …}`` on one line."""

    def __init__(self) -> None:
        super().__init__()
        self._encoder = msgspec.json.Encoder(enc_hook=str)

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        body.update(_extras(record))
        if record.exc_info:
            body["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if record.stack_info:
            body["stack"] = record.stack_info
        return self._encoder.encode(body).decode("utf-8")


class TextFormatter(logging.Formatter):
    """``2026-01-31T12:00:00.000Z INFO  volumed.api  message  key=value …`` for people."""

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{_timestamp(record.created)} {record.levelname:<7} {record.name}  "
            f"{record.getMessage()}"
        )
        extras = _extras(record)
        if extras:
            line += "  " + " ".join(f"{k}={v}" for k, v in extras.items())
        if record.exc_info:
            line += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return line


def configure(level: str, log_format: str = "auto", stream: TextIO | None = None) -> None:
    """Send every record at ``level`` or above to ``stream`` (stderr), JSON or text.

    ``log_format`` is ``json``, ``text`` or ``auto`` (JSON unless the stream is a
    terminal). Safe to call again: it replaces what an earlier call (or granian, which
    configures its own loggers when its server is built) installed.
    """
    out = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if wants_json(log_format, out) else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _ADOPTED:
        adopted = logging.getLogger(name)
        for old in list(adopted.handlers):
            adopted.removeHandler(old)
        adopted.propagate = True
        adopted.setLevel(logging.NOTSET)
        if not any(isinstance(f, _DropEmbeddedNotice) for f in adopted.filters):
            adopted.addFilter(_DropEmbeddedNotice())


def wants_json(log_format: str, stream: TextIO) -> bool:
    return log_format == "json" or (log_format == "auto" and not stream.isatty())


_KINDS_KEPT = 1024
"""Request kinds (level, tenant, method, route, path, status) whose encoded line parts are
kept; past it, all are forgotten."""
_Queued = tuple[int, int, "str | None", "str | None", str, str, str, int, list[int], int]
"""What :meth:`AccessLog.write` keeps until the batch is written."""


class AccessLine(msgspec.Struct):
    """One access-log record: the fields every line has, then the request's (in the
    order of the line's keys; built positionally, which costs less than by keyword)."""

    ts: str
    level: str
    logger: str
    msg: str
    request_id: str | None
    tenant: str | None
    method: str
    route: str
    path: str
    status: int
    item_errors: list[int]
    duration_ms: float


def _milliseconds(ns: int) -> float:
    """Nanoseconds as milliseconds to the microsecond (``round(ns / 1e6, 3)`` but for
    ties; round() of a float costs ten times this)."""
    return ((ns + 500) // 1000) / 1000


class AccessLog:
    """One line per HTTP request, in the format of :func:`configure`'s records.

    A GET costs about a hundred microseconds of Python, and a line through ``logging``
    about twenty-five more. This class skips the ``logging`` machinery (the level still
    comes from the ``volumed.access`` logger's configuration) and does almost nothing
    per request: :meth:`write` queues the raw values, and the lines are formatted and
    written in batches, ``flush_s`` after the first line of a batch, at once past
    ``_BATCH_LINES``, and at shutdown (:meth:`flush`). A ``kill -9`` can lose the last
    ``flush_s`` of access lines, nothing else.
    """

    NAME = "volumed.access"
    _BATCH_LINES = 512

    def __init__(
        self, log_format: str = "auto", stream: TextIO | None = None, *, flush_s: float = 0.05
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._json = wants_json(log_format, self._stream)
        self._logger = logging.getLogger(self.NAME)
        self._encoder = msgspec.json.Encoder()
        self._flush_s = flush_s
        self._queue: list[_Queued] = []
        self._kinds: dict[tuple[int, str | None, str, str, str, int], tuple[bytes, bytes]] = {}
        try:
            self._fd: int | None = self._stream.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None

    def enabled(self, level: int) -> bool:
        return self._logger.isEnabledFor(level)

    def write(
        self,
        level: int,
        request_id: str | None,
        tenant: str | None,
        method: str,
        route: str,
        path: str,
        status: int,
        item_errors: list[int],
        elapsed_ns: int,
    ) -> None:
        """Queue the line of one request (call :meth:`enabled` first)."""
        queue = self._queue
        queue.append(
            (time.time_ns() // 1_000_000, level, request_id, tenant, method, route, path, status,
             item_errors, elapsed_ns)
        )  # fmt: skip
        if len(queue) == 1:
            try:
                asyncio.get_running_loop().call_later(self._flush_s, self.flush)
            except RuntimeError:
                self.flush()
        elif len(queue) >= self._BATCH_LINES:
            self.flush()

    def _format(self, queued: list[_Queued]) -> bytes:
        ms_text, last_ms = "", -1
        if not self._json:
            text = []
            for ms, level, request_id, tenant, method, route, path, status, errors, ns in queued:
                if ms != last_ms:
                    ms_text, last_ms = _timestamp_ms(ms), ms
                name = _LEVEL_NAMES.get(level) or logging.getLevelName(level).lower()
                path = path[:200]
                text.append(
                    f"{ms_text} {name.upper():<7} {self.NAME}  {method} {path} {status}  "
                    f"request_id={request_id} tenant={tenant} route={route} "
                    f"item_errors={errors} duration_ms={_milliseconds(ns)}\n"
                )
            return "".join(text).encode()
        # Lines of one request kind differ only in their time, request id and duration:
        # the rest is encoded once per kind (bytes equal to encoding an AccessLine).
        encode = self._encoder.encode
        kinds = self._kinds
        out: list[bytes] = []
        ts = b""
        for entry in queued:
            ms, level, request_id, tenant, method, route, path, status, errors, ns = entry
            if ms != last_ms:
                ts, last_ms = _timestamp_ms(ms).encode(), ms
            if errors:
                out += (encode(self._line(ts.decode(), entry)), b"\n")
                continue
            key = (level, tenant, method, route, path, status)
            kind = kinds.get(key)
            if kind is None:
                if len(kinds) >= _KINDS_KEPT:
                    kinds.clear()
                kind = kinds[key] = self._kind(level, tenant, method, route, path, status)
            out += (b'{"ts":"', ts, kind[0], encode(request_id), kind[1])
            out += (encode(_milliseconds(ns)), b"}\n")
        return b"".join(out)

    def _line(self, ts: str, entry: _Queued) -> AccessLine:
        """The record of a queued line, at time ``ts``."""
        _, level, request_id, tenant, method, route, path, status, errors, ns = entry
        name = _LEVEL_NAMES.get(level) or logging.getLevelName(level).lower()
        path = path[:200]
        return AccessLine(
            ts,
            name,
            self.NAME,
            f"{method} {path} {status}",
            request_id,
            tenant,
            method,
            route,
            path,
            status,
            errors,
            _milliseconds(ns),
        )

    def _kind(
        self, level: int, tenant: str | None, method: str, route: str, path: str, status: int
    ) -> tuple[bytes, bytes]:
        """The encoded line of a request kind around its request id: what follows the
        time up to ``"request_id":``, and what follows the id up to ``"duration_ms":``."""
        line = self._encoder.encode(
            self._line("", (0, level, None, tenant, method, route, path, status, [], 0))
        )
        # Inside a string every quote is escaped: the first unescaped key is the key.
        at = line.index(b',"request_id":null,')
        assert line.startswith(b'{"ts":""') and line.endswith(b'"duration_ms":0.0}')
        return line[7:at] + b',"request_id":', line[at + len(b',"request_id":null') : -4]

    def flush(self) -> None:
        """Write every queued line now."""
        if not self._queue:
            return
        queued, self._queue = self._queue, []
        data = self._format(queued)
        if self._fd is None:
            self._stream.write(data.decode())
            self._stream.flush()
            return
        self._stream.flush()  # whatever ``logging`` wrote first goes first
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                time.sleep(0.001)  # a non-blocking stderr that is full: wait, as a
                continue  # blocking one would
            except OSError:
                return  # nowhere to log to: drop, as logging.StreamHandler would
            view = view[written:]
