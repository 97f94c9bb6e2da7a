"""The console at `/`: one page that shows what the server knows and lets a person try it and correct it.

Plain HTML, a script and a style sheet that ship in `serving/console/`, no build step and nothing
fetched from elsewhere; the page calls the same `/v1` routes as any client (and sends the bearer token
a person types in, when the server asks for one).
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from serving.packaged_files import add_packaged_files

CONSOLE_URL = "/console"
FILES = {"console.js": "text/javascript", "console.css": "text/css"}  # served beside the page
FOLDER = files("serving") / "console"


def add_console(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def console_page() -> HTMLResponse:
        return HTMLResponse((FOLDER / "index.html").read_bytes(), headers={"cache-control": "no-cache"})

    add_packaged_files(app, CONSOLE_URL, FOLDER, FILES, "no-cache", "console file")
