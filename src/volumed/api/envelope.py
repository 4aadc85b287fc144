"""The response envelope of api-reference §3, and nothing else."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()
FAILED_ALL = "Failed to perform all operations"

Item = dict[str, Any]
AnyItem = Item | msgspec.Struct
"""A wire item: a dict, or a struct of api/wire.py (always a success)."""

item_errors: ContextVar[list[int] | None] = ContextVar("volumed_item_errors", default=None)
"""Where the request being answered collects the codes of its failed items (set by
:class:`volumed.api.app.VolumedApp`, for the access log and the metrics)."""


def op_time_us(started_ns: int) -> int:
    return (time.perf_counter_ns() - started_ns) // 1000


def items_envelope(key: str, items: Sequence[AnyItem], started_ns: int, **extra: Any) -> bytes:
    """HTTP 200 envelope: ``success``, ``partial_success`` or ``error`` by the items' status."""
    # Only a dict can be a failed item (the structs are successes): one pass, no calls.
    failed = [item for item in items if item.__class__ is dict and item.get("status") == "error"]
    if not failed and not extra:
        # The most frequent envelope (every GET one): built in one go.
        return _encoder.encode(
            {"status": "success", "data": {key: items}, "op_time_us": op_time_us(started_ns)}
        )
    body: dict[str, Any] = {}
    if not failed:
        body["status"] = "success"
    else:
        body["status"] = "error" if len(failed) == len(items) else "partial_success"
        body["message"] = FAILED_ALL
        sink = item_errors.get()
        if sink is not None:
            sink.extend(item.get("error", 0) for item in failed)
    body.update(extra)
    body["data"] = {key: items}
    body["op_time_us"] = op_time_us(started_ns)
    return _encoder.encode(body)


def streamed_items_envelope(
    key: str, pages: AsyncIterator[Sequence[AnyItem]], started_ns: int
) -> AsyncIterator[bytes]:
    """The envelope of a listing too long to hold at once, one page of items a chunk:
    the bytes :func:`items_envelope` would make of the same successful items."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"status":"success","data":{' + _encoder.encode(key) + b":["
        first = True
        async for page in pages:
            if not page:
                continue
            encoded = _encoder.encode(page)[1:-1]
            yield encoded if first else b"," + encoded
            first = False
        yield b']},"op_time_us":' + str(op_time_us(started_ns)).encode() + b"}"

    return chunks()


def data_envelope(key: str, value: Any, started_ns: int) -> bytes:
    body = {"status": "success", "data": {key: value}, "op_time_us": op_time_us(started_ns)}
    return _encoder.encode(body)


def error_envelope(status: int, message: str, started_ns: int) -> bytes:
    """A request-level failure: nothing was processed."""
    body = {
        "status": "error",
        "message": message,
        "errors": [{"status": status, "message": message}],
        "op_time_us": op_time_us(started_ns),
    }
    return _encoder.encode(body)


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def failed_item(code: int, message: str, **ids: Any) -> Item:
    item: Item = {"status": "error"}
    item.update({k: v for k, v in ids.items() if v is not None})
    item["error"] = code
    item["message"] = message
    return item
