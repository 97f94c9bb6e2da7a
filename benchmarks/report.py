"""Where every benchmark's figures end up: a JSON file, its folder made if needed, and a summary printed as
named lines."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def write_report(out: Path, figures: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    log.info("wrote %s", out)


def aligned(rows: list[tuple[str, str]]) -> str:
    """Named figures as lines, the names padded to one column."""
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
