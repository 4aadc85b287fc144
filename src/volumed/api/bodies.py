"""Request bodies as msgspec types: unknown fields and wrong JSON types are a 400.

Global-scope endpoints take one object or an array of objects; a local-scope call
(``/{uuid}/…``) takes an object without identifiers.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from volumed.api.http import RequestError

MAX_ITEMS = 253


class Body(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Base of every request item."""


class RefBody(Body):
    uuid: str | None = None
    name: str | None = None


class CreateVolumeBody(Body):
    name: str | None = None
    size_mb: int | None = None
    template: RefBody | None = None
    quota_policy: str | None = None
    filesystem: str | None = None
    tags: list[str] | None = None
    access_mode: str | None = None
    host_path: str | None = None
    uid: int | None = None
    gid: int | None = None
    args: dict[str, str] | None = None


class ListFilterBody(Body):
    persistent: bool | None = None
    state: str | None = None


T = TypeVar("T", bound=Body)

_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def _decoder(kind: type[T]) -> msgspec.json.Decoder[T | list[T]]:
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = msgspec.json.Decoder(kind | list[kind])  # type: ignore[valid-type]
        _decoders[kind] = decoder
    return decoder


def parse_items(body: bytes, kind: type[T], *, required: bool = True) -> list[T]:
    """An object or an array of at most 253 objects of ``kind``."""
    if not body.strip():
        if required:
            raise RequestError(400, "A JSON request body is required")
        return []
    try:
        value = _decoder(kind).decode(body)
    except msgspec.ValidationError as exc:
        raise RequestError(400, f"Invalid request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise RequestError(400, f"Malformed JSON in request body: {exc}") from None
    items = value if isinstance(value, list) else [value]
    if len(items) > MAX_ITEMS:
        raise RequestError(
            400, f"Too many items: at most {MAX_ITEMS} per request, got {len(items)}"
        )
    return items


def parse_object(body: bytes, kind: type[T]) -> T:
    """A single object of ``kind``; an empty body means all defaults."""
    if not body.strip():
        return kind()
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise RequestError(400, f"Invalid request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise RequestError(400, f"Malformed JSON in request body: {exc}") from None
