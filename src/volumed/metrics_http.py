"""The metrics listener: ``GET /metrics`` on its own address, apart from the API.

A few dozen lines of asyncio instead of ``prometheus_client.start_http_server``: that
one serves from a thread, and the scrape reads the store, whose connection belongs to
the event loop's thread. One scrape at a time is plenty; nothing here is public.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from prometheus_client import CONTENT_TYPE_LATEST

from volumed.metrics import Metrics

__all__ = ["MetricsListener"]

log = logging.getLogger("volumed.metrics")

_MAX_HEAD = 8192
_READ_TIMEOUT_S = 10.0


class MetricsListener:
    """Serves ``/metrics`` on a socket bound beforehand (:func:`volumed.edge.listener.bind`):
    a busy metrics port stops ``volumed serve`` before it starts, like a busy API port, so
    no one runs a server whose metrics silently go elsewhere."""

    def __init__(self, metrics: Metrics, sock: socket.socket) -> None:
        self._metrics = metrics
        self._socket = sock
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        host, port = self._socket.getsockname()[:2]
        self._server = await asyncio.start_server(self._serve, sock=self._socket)
        log.info(
            "metrics on http://%s:%d/metrics",
            host,
            port,
            extra={"metrics_host": host, "metrics_port": port},
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=1.0)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT_S)
            method, target = _request_line(head)
            if target.split("?", 1)[0] not in ("/metrics", "/metrics/"):
                await _answer(writer, 404, b"text/plain", b"Not found: try /metrics\n")
            elif method not in ("GET", "HEAD"):
                await _answer(writer, 405, b"text/plain", b"Use GET\n")
            else:
                body = await self._metrics.render()
                await _answer(
                    writer, 200, CONTENT_TYPE_LATEST.encode(), body, head_only=method == "HEAD"
                )
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except ConnectionError:
            pass
        except Exception:
            log.exception("metrics scrape failed")
            with contextlib.suppress(Exception):
                await _answer(writer, 500, b"text/plain", b"Internal error\n")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _request_line(head: bytes) -> tuple[str, str]:
    line = head[: min(len(head), _MAX_HEAD)].split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3:
        return "", ""
    return parts[0], parts[1]


async def _answer(
    writer: asyncio.StreamWriter,
    status: int,
    content_type: bytes,
    body: bytes,
    *,
    head_only: bool = False,
) -> None:
    reason = {200: b"OK", 404: b"Not Found", 405: b"Method Not Allowed"}.get(status, b"Error")
    writer.write(
        b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        % (status, reason, content_type, len(body))
    )
    if not head_only:
        writer.write(body)
    await writer.drain()
