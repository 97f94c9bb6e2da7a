"""Where every benchmark's figures end up: a JSON file, its folder made if needed."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def write_report(out: Path, figures: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    log.info("wrote %s", out)
