"""The API pages, `/docs` (Swagger UI) and `/redoc`, drawn from assets that ship in the `fastapi-offline`
package: a server without internet shows its docs as one with it does, nothing is fetched from a CDN."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

from serving.packaged_files import add_packaged_files

ASSETS_URL = "/docs-assets"
ASSETS = {  # file in fastapi_offline/static -> its media type
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}


def add_api_docs(app: FastAPI) -> None:
    """Serve `/docs`, `/redoc` and their assets on `app`, which must be made with `docs_url=None` and
    `redoc_url=None`."""
    page = {"openapi_url": app.openapi_url, "title": f"{app.title}: API"}
    favicon = f"{ASSETS_URL}/favicon.png"

    folder = files("fastapi_offline") / "static"
    add_packaged_files(app, ASSETS_URL, folder, ASSETS, "public, max-age=86400", "docs asset")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            **page,
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=favicon,
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            **page,
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=favicon,
            with_google_fonts=False,
        )
