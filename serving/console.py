"""The console at `/`: one page that shows what the server knows and lets a person try it and correct it.

Plain HTML, a script and a style sheet that ship in `serving/console/`, no build step and nothing
fetched from elsewhere; the page calls the same `/v1` routes as any client (and sends the bearer token
a person types in, when the server asks for one).
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response

CONSOLE_URL = "/console"
FILES = {"console.js": "text/javascript", "console.css": "text/css"}  # served beside the page


def console_file(name: str) -> bytes:
    return (files("serving") / "console" / name).read_bytes()


def add_console(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def console_page() -> HTMLResponse:
        return HTMLResponse(console_file("index.html"), headers={"cache-control": "no-cache"})

    @app.get(f"{CONSOLE_URL}/{{name}}", include_in_schema=False)
    async def console_asset(name: str) -> Response:
        if name not in FILES:
            return JSONResponse(
                {"field": "name", "detail": f"name: no such console file {name!r}"}, status_code=404
            )
        return Response(console_file(name), media_type=FILES[name], headers={"cache-control": "no-cache"})
