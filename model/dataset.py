"""The JSONL data-set format: one labelled image+text sample a line, images relative to the file.

A line is `{"id": str, "image": str|null, "text": str|null, "label": str, "task": str|null}`; `task` is
optional and any other key (such as "subcategory") is ignored. An empty "image" or "text" counts as
missing, so a sample always has at least one modality it really carries.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from model.config import StrictModel
from model.modality import Modality, given_text

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A JSONL data set that cannot be read; the message names the file and line."""


class Sample(StrictModel):
    """One labelled sample; `image_path` is absolute and resolved."""

    id: str
    image_path: Path | None = None
    text: str | None = None
    label: str
    task: str | None = None

    @property
    def present(self) -> Modality:
        present = Modality.NONE
        if self.image_path is not None:
            present |= Modality.IMAGE
        if self.text:
            present |= Modality.TEXT
        return present


def _optional_string(record: dict[str, Any], key: str, where: str) -> str | None:
    """The value of `key` as a string, None when absent, null or empty."""
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise DatasetError(f"{where}: {key!r} must be a string or null, got {type(value).__name__}")
    return value or None


def _required_string(record: dict[str, Any], key: str, where: str) -> str:
    if key not in record:
        raise DatasetError(f"{where}: missing {key!r}")
    value = _optional_string(record, key, where)
    if value is None:
        raise DatasetError(f"{where}: {key!r} must be a non-empty string")
    return value


def _parse_record(raw: bytes, where: str) -> dict[str, Any]:
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise DatasetError(f"{where}: not UTF-8: {error}") from error
    except json.JSONDecodeError as error:
        raise DatasetError(f"{where}: invalid JSON: {error}") from error
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def _resolve_image(image: str | None, folder: Path, where: str) -> Path | None:
    if image is None:
        return None
    image_path = (folder / image).resolve()
    if not image_path.is_file():
        raise DatasetError(f"{where}: image file not found: {image_path}")
    return image_path


def _sample_from_record(record: dict[str, Any], folder: Path, where: str) -> Sample:
    sample_id = _required_string(record, "id", where)
    label = _required_string(record, "label", where)
    text = given_text(_optional_string(record, "text", where))
    image = _optional_string(record, "image", where)
    if image is None and text is None:
        raise DatasetError(f"{where}: sample {sample_id!r} has neither image nor text")
    return Sample(
        id=sample_id,
        image_path=_resolve_image(image, folder, where),
        text=text,
        label=label,
        task=_optional_string(record, "task", where),
    )


def read_samples(lines: Iterable[bytes], folder: Path, source: str) -> list[Sample]:
    """Samples from JSONL lines whose image paths are relative to `folder`; blank lines are skipped."""
    samples: list[Sample] = []
    first_line_of_id: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        where = f"{source}:{number}"
        sample = _sample_from_record(_parse_record(raw, where), folder, where)
        if sample.id in first_line_of_id:
            first = first_line_of_id[sample.id]
            raise DatasetError(f"{where}: duplicate id {sample.id!r} (first on line {first})")
        first_line_of_id[sample.id] = number
        samples.append(sample)
    return samples


def load_jsonl(path: Path) -> list[Sample]:
    """Every sample of a JSONL file, in file order; image paths are relative to the file."""
    path = Path(path).resolve()
    with path.open("rb") as lines:
        samples = read_samples(lines, path.parent, str(path))
    log.info("loaded %d samples from %s", len(samples), path)
    return samples


def load_image(sample: Sample) -> Image.Image:
    """The sample's picture, opened and loaded into memory (in its own mode, not converted)."""
    if sample.image_path is None:
        raise DatasetError(f"sample {sample.id!r} has no image")
    try:
        image = Image.open(sample.image_path)
        image.load()  # reads the pixels and closes the file of a single-frame image
    except OSError as error:  # PIL's UnidentifiedImageError and truncated files are OSErrors
        raise DatasetError(f"sample {sample.id!r}: cannot read image {sample.image_path}: {error}") from error
    return image


def classes_in_order(samples: Sequence[Sample]) -> list[str]:
    """Each label once, in order of first appearance."""
    return list(dict.fromkeys(sample.label for sample in samples))


def split_into_tasks(classes: list[str], tasks: int) -> list[list[str]]:
    """Contiguous groups of classes whose sizes differ by at most one, the larger first."""
    if not 1 <= tasks <= len(classes):
        raise ValueError(f"tasks must be between 1 and the {len(classes)} classes, got {tasks}")
    base, larger = divmod(len(classes), tasks)
    groups: list[list[str]] = []
    start = 0
    for task in range(tasks):
        size = base + 1 if task < larger else base
        groups.append(classes[start : start + size])
        start += size
    return groups
