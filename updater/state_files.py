"""The updater's small JSON state files: written atomically, read back so that a damaged one never stops a start.

A file that does not parse or has the wrong shape (a disk fault: writes are atomic) is set aside as
`NAME.unreadable`, logged as an error, and read as its empty value, so that the updater still starts
rather than failing every restart. What it loses is bookkeeping; the feedback itself is in the log.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from model.durable_files import write_atomically

log = logging.getLogger(__name__)

UNREADABLE_SUFFIX = ".unreadable"


def write_state(path: Path, value: Any) -> None:
    """`value` as JSON at `path`, all or nothing."""
    write_atomically(path, json.dumps(value).encode())


def read_state(path: Path, shape: TypeAdapter, empty: Any) -> Any:
    """The JSON at `path` checked against `shape`; `empty` while it has not been written or once it was
    found damaged and set aside."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return empty
    try:
        return shape.validate_json(data, strict=True)
    except ValidationError as error:
        aside = path.with_name(path.name + UNREADABLE_SUFFIX)
        path.replace(aside)
        reason = error.errors()[0]["msg"]
        log.error("%s is unreadable (%s); set aside as %s, starting without it", path, reason, aside.name)
        return empty
