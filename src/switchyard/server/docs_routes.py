"""``GET /docs``: the gateway's OpenAPI documents in Swagger UI, served from inside the package (no CDN).

``/docs`` shows the admin API's document (``/admin/openapi.json``), ``/docs/v1`` the data plane's
(``/v1/openapi.json``); both documents are generated from the code and public, and so are these pages (no key: they
describe the API, they hold no data). The viewer is ``swagger-ui-dist`` (Apache-2.0), vendored unchanged under
``static/swagger-ui/`` (see ``VENDORED.md`` there) and served from ``/docs/assets/`` out of an allowlist.

Decisions worth knowing:

- The pages carry a Content-Security-Policy that lets scripts, styles, images and requests come from this origin
  only; the start-up script is a file (``docs.js``), not inline. Swagger UI's outside validator is off, its
  ``?url=`` query is ignored, and a key typed into "Authorize" stays in the page's memory, not the browser's storage.
- An asset is read from the package once (in a thread, off the loop), kept in memory, gzip-compressed once, and
  served with a strong ETag; the pages name each asset with its digest (``?v=``), so an upgrade is never hidden by
  a cache.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..errors import NotFound
from ..protocols.openai_errors import render_error
from .common import JSON_TYPE

SWAGGER_UI_VERSION = "5.35.0"

_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".png": "image/png",
          ".txt": "text/plain; charset=utf-8", "": "text/plain; charset=utf-8"}
#: every file ``/docs/assets/{name}`` serves, with its media type; anything else is a 404
ASSETS: dict[str, str] = {name: _TYPES[name[name.rfind("."):] if "." in name else ""] for name in (
    "swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "docs.js", "docs.css",
    "LICENSE", "NOTICE", "swagger-ui-bundle.js.LICENSE.txt")}

#: the pages: path -> (title in the bar, the OpenAPI document it shows)
PAGES: dict[str, tuple[str, str]] = {
    "/docs": ("Admin API", "/admin/openapi.json"),
    "/docs/v1": ("Data plane API (/v1)", "/v1/openapi.json"),
}

PAGE_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes | None  # None: not worth compressing (an image, a tiny file)
    digest: str  # the first 16 hex digits of the body's SHA-256
    media_type: str


_assets: dict[str, Asset] = {}


def _read(name: str) -> Asset:
    """Blocking: reads and compresses one file of the package (called in a thread, once per file)."""
    body = resources.files("switchyard.server").joinpath("static", "swagger-ui", name).read_bytes()
    media_type = ASSETS[name]
    gzipped = gzip.compress(body, 6, mtime=0) if len(body) > 1024 and media_type.startswith("text/") else None
    return Asset(body, gzipped, hashlib.sha256(body).hexdigest()[:16], media_type)


async def load_asset(name: str) -> Asset:
    asset = _assets.get(name)
    if asset is None:
        asset = _assets[name] = await asyncio.to_thread(_read, name)
    return asset


def _accepts_gzip(header: str) -> bool:
    for part in header.lower().split(","):
        coding, _, params = part.partition(";")
        if coding.strip() in ("gzip", "*"):
            q = params.strip()
            try:
                return not q.startswith("q=") or float(q[2:]) > 0
            except ValueError:
                return False
    return False


def _not_found(request: Request) -> Response:
    err = NotFound(f"Unknown path {request.url.path[:200]}.", code="unknown_url")
    return Response(render_error(err), status_code=404, media_type=JSON_TYPE)


async def asset_endpoint(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in ASSETS:
        return _not_found(request)
    asset = await load_asset(name)
    compressed = asset.gzipped is not None and _accepts_gzip(request.headers.get("accept-encoding", ""))
    etag = f'"{asset.digest}-gz"' if compressed else f'"{asset.digest}"'
    headers = {"etag": etag, "cache-control": "public, max-age=86400", "x-content-type-options": "nosniff"}
    if asset.gzipped is not None:
        headers["vary"] = "Accept-Encoding"
    match = request.headers.get("if-none-match")
    if match is not None and (match.strip() == "*" or etag in (t.strip() for t in match.split(","))):
        return Response(status_code=304, headers=headers)
    if compressed:
        assert asset.gzipped is not None
        headers["content-encoding"] = "gzip"
        return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


async def _url(name: str) -> str:
    return f"/docs/assets/{name}?v={(await load_asset(name)).digest}"


async def render_page(path: str) -> str:
    title, spec = PAGES[path]
    current = ' aria-current="page"'
    nav = "".join(f'<a href="{p}"{current if p == path else ""}>{t}</a>' for p, (t, _) in PAGES.items())
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Switchyard: {title}</title>\n"
        f'<link rel="icon" type="image/png" href="{await _url("favicon-32x32.png")}">\n'
        f'<link rel="stylesheet" href="{await _url("swagger-ui.css")}">\n'
        f'<link rel="stylesheet" href="{await _url("docs.css")}">\n'
        "</head>\n<body>\n"
        f'<nav class="sy-nav"><strong>Switchyard</strong>{nav}'
        f'<a class="sy-raw" href="{spec}">{spec}</a></nav>\n'
        f'<div id="swagger-ui" data-spec-url="{spec}"></div>\n'
        f'<script src="{await _url("swagger-ui-bundle.js")}"></script>\n'
        f'<script src="{await _url("docs.js")}"></script>\n'
        "</body>\n</html>\n")


async def page_endpoint(request: Request) -> Response:
    return Response(await render_page(request.url.path), media_type="text/html; charset=utf-8",
                    headers=PAGE_HEADERS)


ROUTES: list[BaseRoute] = [
    *(Route(path, page_endpoint, methods=["GET"]) for path in PAGES),
    Route("/docs/assets/{name}", asset_endpoint, methods=["GET"]),
]


def openapi_paths(request_id: dict[str, Any], error: dict[str, Any]) -> dict[str, Any]:
    """These routes in the data plane's OpenAPI document (:mod:`.openapi_v1` merges them in); ``request_id`` is its
    ``x-request-id`` header object, ``error`` the content of an OpenAI error object."""
    html = {"text/html": {"schema": {"type": "string"}}}
    out: dict[str, Any] = {}
    for path, (title, spec) in PAGES.items():
        op_id = "docs" + "".join(part.capitalize() for part in path.split("/")[2:])
        out[path] = {"get": {"operationId": op_id, "summary": f"Swagger UI on {spec} ({title})", "tags": ["meta"],
                             "security": [], "responses": {"200": {"description": "OK", "headers": request_id,
                                                                   "content": html}}}}
    media = sorted(set(ASSETS.values()))
    out["/docs/assets/{name}"] = {"get": {
        "operationId": "docsAsset", "summary": "A file of the /docs pages (Swagger UI, vendored)", "tags": ["meta"],
        "security": [],
        "parameters": [{"name": "name", "in": "path", "required": True,
                        "schema": {"type": "string", "enum": sorted(ASSETS)}}],
        "responses": {
            "200": {"description": "OK", "headers": request_id,
                    "content": {m: {"schema": {"type": "string"}} for m in media}},
            "304": {"description": "Not modified (If-None-Match)", "headers": request_id},
            "404": {"description": "No such file", "headers": request_id, "content": error},
        }}}
    return out
