"""The OpenAPI 3.1 document of the volumed API, built as a plain JSON-serialisable dict.

Served unauthenticated at ``GET /openapi.json`` and used to drive Schemathesis. The
operations are the rows of ``_openapi_operations.OPERATIONS``; every schema is generated
from the structs the server decodes requests into and encodes answers from
(``_openapi_schemas``), so the document says what the server does.
"""

from __future__ import annotations

import copy
from typing import Final

from volumed import __version__
from volumed.api._openapi_operations import OPERATIONS, parameters
from volumed.api._openapi_schemas import Schema, component_schemas, type_ref
from volumed.api.wire import ErrorEnvelope

__all__ = ["openapi_document"]

DESCRIPTION: Final = """\
volumed stores persistent volumes (ext4 file systems) for unikernel instances, behind the
KraftCloud / Unikraft Cloud Volumes API v1: the official SDK and CLI work against it. It also
offers the part of the Instances API that volumes depend on, and a few extensions under
`/volumed/v1`.

**Authentication.** Send `Authorization: Bearer <token>` with every request. Only the probes
(`/healthz`, `/readyz`) and this document are public.

**Requests.** A call on a collection (`/v1/volumes`) takes one object or an array of up to
253; each names its object by `uuid` or by `name`. A call on one object
(`/v1/volumes/{uuid}/...`) takes the UUID from the path, and its body names no other.

**Answers.** Every answer is a JSON envelope: `{"status", "message"?, "data": {"<things>":
[...]}, "op_time_us"}`, one item in `data` per item of the request.

**Errors come in two kinds.**

* The request as a whole fails: HTTP 4xx/5xx with `status: error`, a `message` and `errors`,
  and nothing was done. That is a malformed body, an unknown field or query parameter, a
  value of the wrong JSON type, more than 253 items, a missing or bad token (401), an unknown
  route (404) or method (405), a body too large (413) or too slow (408), too many failed
  logins (429, see `Retry-After`), or the service unable to answer (500, 503).
* One item fails: the answer is still HTTP 200, the item carries `status: error`, a numeric
  `error` code and a `message`, and the envelope's `status` is `partial_success` (some items
  succeeded) or `error` (none did). Not found, wrong state, name taken, quota exceeded, a
  value out of range or not in its enum are per-item errors.
"""

_ERROR_DESCRIPTION: Final = (
    "Request-level failure; nothing was processed. 400: malformed JSON, top level not an object "
    "or array, an item not an object, unknown field or query parameter, wrong JSON type, more "
    "than 253 items, or identifiers in the body of a /{uuid} call. 401: missing or invalid "
    "bearer token (WWW-Authenticate is set). 404: unknown route. 405: method not allowed "
    "(Allow lists the methods). 408: the body did not arrive in time. 413: body too large. "
    "415: a body whose Content-Type is not JSON. 429: too many failed authentication attempts "
    "(Retry-After is set). 500: internal error. 503: metadata store unavailable (Retry-After "
    "is set)."
)

_TAGS: Final = (
    ("volumes", "Volumes API v1 (KraftCloud / Unikraft Cloud compatible)."),
    ("templates", "Template volumes."),
    ("instances", "The slice of the Instances API that volumes depend on."),
    ("users", "Quotas of the calling user."),
    ("metros", "Metro discovery."),
    ("volumed", "volumed extensions: probes, this document, events, import and export."),
)


def _paths() -> dict[str, dict[str, Schema]]:
    paths: dict[str, dict[str, Schema]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = op.operation()
    return paths


def _components() -> Schema:
    return {
        "schemas": component_schemas(kind for op in OPERATIONS for kind in op.kinds()),
        "responses": {
            "ErrorEnvelope": {
                "description": _ERROR_DESCRIPTION,
                "content": {"application/json": {"schema": type_ref(ErrorEnvelope)}},
            }
        },
        "parameters": parameters(),
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
    }


def openapi_document(server_url: str | None = None) -> dict[str, object]:
    """The complete OpenAPI 3.1 document; ``server_url`` becomes its single ``servers`` entry.

    A fresh dict on every call, so a caller may change it without affecting the next one.
    """
    document: dict[str, object] = {
        "openapi": "3.1.0",
        "info": {
            "title": "volumed",
            "version": __version__,
            "summary": "A self-hosted KraftCloud / Unikraft Cloud Volumes API (v1).",
            "description": DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
    }
    if server_url is not None:
        document["servers"] = [{"url": server_url}]
    document["security"] = [{"bearerAuth": []}]
    document["tags"] = [{"name": name, "description": text} for name, text in _TAGS]
    document["paths"] = _paths()
    document["components"] = _components()
    # Some building blocks are module constants; copy so that no two places alias.
    return copy.deepcopy(document)
