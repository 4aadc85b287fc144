"""The OpenAPI 3.1 document of the volumed API, built as a plain JSON-serialisable dict.

Served unauthenticated at ``GET /openapi.json`` and used to drive Schemathesis. It documents
what the server does: every route, every body form it accepts (a global-scope endpoint takes
one item object or an array of up to 253), every query parameter, and every response.

Two failure paths exist and the document keeps them apart:

* **Request-level** failures (malformed or ill-typed body, unknown field or query parameter,
  too many items, bad token, unknown route, wrong method, body too large, throttled, server
  fault, store down) end the request with HTTP 4xx/5xx and an ``ErrorEnvelope``; nothing is
  processed.
* **Per-item** failures (not found, wrong state, name taken, value out of range or not in an
  enum, neither or both of ``uuid``/``name``, ...) travel inside an HTTP 200 envelope: the item
  carries ``status: error``, ``error: <code>`` and ``message``, and the envelope says ``error``
  or ``partial_success``.

The pieces live in private modules: ``_openapi_schemas`` (component schemas),
``_openapi_operations`` (envelopes, bodies, parameters), ``_openapi_volumes`` and
``_openapi_platform`` (the paths).
"""

from __future__ import annotations

import copy
from typing import Final

from volumed import __version__
from volumed.api._openapi_operations import Paths, parameters
from volumed.api._openapi_platform import account_paths, instance_paths, volumed_paths
from volumed.api._openapi_schemas import component_schemas, ref
from volumed.api._openapi_volumes import template_paths, volume_paths

__all__ = ["openapi_document"]

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


def _paths() -> Paths:
    return account_paths() | volume_paths() | template_paths() | instance_paths() | volumed_paths()


def _components() -> dict[str, object]:
    return {
        "schemas": component_schemas(),
        "responses": {
            "ErrorEnvelope": {
                "description": _ERROR_DESCRIPTION,
                "content": {"application/json": {"schema": ref("ErrorEnvelope")}},
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
            "description": __doc__ or "",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
    }
    if server_url is not None:
        document["servers"] = [{"url": server_url}]
    document["security"] = [{"bearerAuth": []}]
    document["tags"] = [{"name": name, "description": text} for name, text in _TAGS]
    document["paths"] = _paths()
    document["components"] = _components()
    # Building blocks are shared module constants; copy so that no two places alias.
    return copy.deepcopy(document)
