"""The web console (``/console/``) and the interactive API docs (``/docs``).

Both are static files shipped in Python packages (:mod:`volumed.console`; Swagger UI 5,
which reads OpenAPI 3.1, from the ``swagger-ui-py`` package) and served without a token:
they hold no data. Everything they show comes from the API, called by the page with the
token the user signs in with (sent as ``Authorization: Bearer``, never in a URL, so never in a log).

Every answer carries a strict Content-Security-Policy: scripts only from this origin, no
inline script or style, no requests to other hosts, no framing. A name or tag holding
HTML therefore cannot run even if a bug rendered it as markup (the console only ever sets
text).
"""

from __future__ import annotations

import importlib.util
from importlib import resources
from pathlib import Path

from volumed.api.assets import AssetSet
from volumed.api.http import Request
from volumed.api.routing import Response, Router

__all__ = ["ConsoleHandlers", "console_files", "docs_files"]

_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    b"frame-ancestors 'none'"
)
_HEADERS = [
    (b"content-security-policy", _CSP),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
_SWAGGER_FILES = ("swagger-ui-bundle.js", "swagger-ui.css")


def console_files() -> list[Path]:
    root = Path(str(resources.files("volumed.console") / "static"))
    return sorted(p for p in root.iterdir() if p.is_file())


def docs_files() -> list[Path]:
    """Swagger UI from its package (located, not imported: only its files are used), plus
    the page and the script that starts it."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is missing; reinstall volumed")
    swagger = Path(spec.submodule_search_locations[0]) / "static"
    own = Path(str(resources.files("volumed.console") / "docs"))
    return [swagger / name for name in _SWAGGER_FILES] + sorted(own.iterdir())


class ConsoleHandlers:
    def __init__(self) -> None:
        self.console = AssetSet(console_files(), _HEADERS)
        self.docs = AssetSet(docs_files(), _HEADERS)

    def register(self, router: Router) -> None:
        router.add("GET", "/console", self.to_console, public=True)
        router.add("GET", "/console/", self.console_index, public=True)
        router.add("GET", "/console/{name}", self.console_file, public=True)
        router.add("GET", "/docs", self.docs_index, public=True)
        router.add("GET", "/docs/{name}", self.docs_file, public=True)

    async def to_console(self, request: Request) -> Response:
        return Response(b"", 308, [(b"location", b"/console/")], b"text/plain")

    async def console_index(self, request: Request) -> Response:
        return await self.console.respond(request, "index.html")

    async def console_file(self, request: Request) -> Response:
        return await self.console.respond(request, request.path_params["name"])

    async def docs_index(self, request: Request) -> Response:
        return await self.docs.respond(request, "index.html")

    async def docs_file(self, request: Request) -> Response:
        return await self.docs.respond(request, request.path_params["name"])
