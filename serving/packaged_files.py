"""Files that ship inside a Python package, served read-only under one URL prefix: only the names listed,
anything else a 404 that names the field."""

from __future__ import annotations

from importlib.resources.abc import Traversable

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response


def add_packaged_files(
    app: FastAPI, prefix: str, folder: Traversable, media_types: dict[str, str], cache_control: str, what: str
) -> None:
    """Serve `folder`'s files named in `media_types` (name -> media type) at `{prefix}/{name}`."""

    @app.get(f"{prefix}/{{name}}", include_in_schema=False)
    async def packaged_file(name: str) -> Response:
        if name not in media_types:
            return JSONResponse({"field": "name", "detail": f"name: no such {what} {name!r}"}, status_code=404)
        headers = {"cache-control": cache_control}
        return Response((folder / name).read_bytes(), media_type=media_types[name], headers=headers)
