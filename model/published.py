"""Which PromptState version is published: the one every replica should serve.

`current.json` in the state directory names it, and is replaced atomically, so publishing a new
version and rolling back to an old one are the same one-file write. Without the file (a directory
written before it existed, or by hand) the newest version that reads cleanly is served.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from model.durable_files import write_atomically
from model.state import PromptState, StateError, latest_state, list_versions, load_state, version_folder

log = logging.getLogger(__name__)

POINTER_FILE = "current.json"


def publish(directory: Path, version: int) -> None:
    """Make `version` the one served; it must exist and read cleanly."""
    directory = Path(directory)
    load_state(version_folder(directory, version))  # raises StateError if missing or broken
    write_atomically(directory / POINTER_FILE, json.dumps({"version": version}).encode())


def published_version(directory: Path) -> int | None:
    """The version named by the pointer, else the newest present (not yet checked for integrity)."""
    pointer = Path(directory) / POINTER_FILE
    try:
        version = json.loads(pointer.read_text())["version"]
        if isinstance(version, int) and version > 0:
            return version
        log.error("%s names no valid version: %r", pointer, version)
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.error("%s unreadable, serving the newest version instead: %s", pointer, error)
    versions = list_versions(directory)
    return versions[-1] if versions else None


def load_published(directory: Path) -> PromptState | None:
    """The published state; a broken published version falls back to the newest one that reads."""
    version = published_version(directory)
    if version is None:
        return None
    try:
        return load_state(version_folder(directory, version))
    except StateError as error:
        log.error("published PromptState version %d refused: %s", version, error)
        return latest_state(directory)


def next_version(directory: Path) -> int:
    """The number a new version gets: above every version present, even after a rollback."""
    versions = list_versions(directory)
    return versions[-1] + 1 if versions else 1
