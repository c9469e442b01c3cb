"""``/docs`` (Swagger UI) and ``/redoc`` with their JavaScript and CSS served from the image.

FastAPI's own pages load the assets from a CDN: a blank page on an offline host.
The assets come from the pinned ``fastapi-offline`` wheel (it ships swagger-ui and
redoc builds and nothing else we use), which the gateway image installs from its
wheels folder; the HTML names only this server's paths.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.responses import FileResponse, Response

ASSETS_PATH = "/docs/assets"
#: file name -> media type; nothing outside this list is ever served
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}


def assets_dir() -> Path | None:
    """The folder of the installed fastapi-offline package's static files (None when it is not installed)."""
    found = importlib.util.find_spec("fastapi_offline")
    if found is None or not found.submodule_search_locations:
        return None
    folder = Path(next(iter(found.submodule_search_locations))) / "static"
    return folder if folder.is_dir() else None


def add_docs_routes(app: FastAPI, title: str) -> None:
    """Call on an app made with ``docs_url=None, redoc_url=None``."""
    folder = assets_dir()
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> Response:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{title} - docs",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> Response:
        return get_redoc_html(openapi_url=openapi_url, title=f"{title} - ReDoc",
                              redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
                              redoc_favicon_url=f"{ASSETS_PATH}/favicon.png", with_google_fonts=False)

    @app.get(ASSETS_PATH + "/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        media = ASSETS.get(name)  # a fixed list: no path from the client ever reaches the filesystem
        if media is None or folder is None:
            return Response(b'{"detail":"Not Found"}', status_code=404, media_type="application/json")
        return FileResponse(folder / name, media_type=media, headers={"Cache-Control": "public, max-age=86400"})
