"""The feedback log: labelled samples, appended and fsynced before they are acknowledged.

`STATE_DIR/feedback/log.jsonl` holds one record a line; a record's offset is its line number from 0.
Pictures are stored once each under `images/`, named by their SHA-256, written and fsynced before
the line that names them. A request's records go in one write, so a crash leaves at most a partial
last line, never acknowledged, which the next start cuts off. `committed.json` holds the offset below
which every record has been consumed (learned, or counted for a class already learned).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from model.durable_files import fsync_folder, write_atomically

log = logging.getLogger(__name__)

LOG_FILE = "log.jsonl"
COMMITTED_FILE = "committed.json"
IMAGES = "images"


@dataclass(frozen=True)
class NewFeedback:
    """A checked sample about to be logged: the picture as its original bytes."""

    label: str
    task: str | None
    text: str | None
    image_bytes: bytes | None
    image_suffix: str = ".png"


@dataclass(frozen=True)
class FeedbackRecord:
    offset: int
    label: str
    task: str | None
    text: str | None
    image: str | None  # a file name under images/
    received: float  # seconds since the epoch


def image_digest(data: bytes) -> str:
    """A picture's file name under images/, less its suffix."""
    return hashlib.sha256(data).hexdigest()[:40]


def read_records(path: Path) -> Iterator[FeedbackRecord]:
    """Every whole record of a log file, read without changing it (an unfinished last line is passed over)."""
    with open(path, "rb") as handle:
        for line in handle:
            if line.endswith(b"\n"):
                yield FeedbackRecord(**json.loads(line))


class FeedbackLog:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.images = self.folder / IMAGES
        self.images.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / LOG_FILE
        self._lock = threading.Lock()
        self._end = self._recover()

    @property
    def end(self) -> int:
        """The number of records: the offset the next one gets."""
        return self._end

    def _recover(self) -> int:
        """Cut off a partial last line (an append that never finished); the number of whole records."""
        if not self.path.exists():
            return 0
        data = self.path.read_bytes()
        whole = data.rfind(b"\n") + 1
        if whole < len(data):
            log.warning("%s: cutting off %d bytes of an unfinished append", self.path, len(data) - whole)
            with open(self.path, "rb+") as handle:
                handle.truncate(whole)
                os.fsync(handle.fileno())
        return data[:whole].count(b"\n")

    def _store_image(self, data: bytes, suffix: str) -> str:
        name = image_digest(data) + suffix
        if not (self.images / name).exists():
            write_atomically(self.images / name, data)
        return name

    def append(self, samples: Sequence[NewFeedback]) -> list[FeedbackRecord]:
        """Log `samples` durably, in one write; their records (with offsets) once fsynced."""
        with self._lock:
            names = [
                self._store_image(sample.image_bytes, sample.image_suffix) if sample.image_bytes else None
                for sample in samples
            ]
            if any(names):
                fsync_folder(self.images)
            now = time.time()
            records = [
                FeedbackRecord(self._end + i, sample.label, sample.task, sample.text, name, now)
                for i, (sample, name) in enumerate(zip(samples, names, strict=True))
            ]
            lines = b"".join(json.dumps(asdict(record)).encode() + b"\n" for record in records)
            with open(self.path, "ab") as handle:
                handle.write(lines)
                handle.flush()
                os.fsync(handle.fileno())
            if self._end == 0:
                fsync_folder(self.folder)
            self._end += len(records)
            return records

    def read(self, start: int = 0) -> Iterator[FeedbackRecord]:
        """Records from offset `start` to the end as it is now."""
        end = self._end
        if not self.path.exists():
            return
        with open(self.path, "rb") as handle:
            for offset, line in enumerate(handle):
                if offset >= end:
                    break
                if offset >= start:
                    yield FeedbackRecord(**json.loads(line))

    def records(self, offsets: set[int]) -> list[FeedbackRecord]:
        return [record for record in self.read(min(offsets)) if record.offset in offsets] if offsets else []

    def image_path(self, record: FeedbackRecord) -> Path | None:
        return self.images / record.image if record.image else None

    def committed(self) -> int:
        try:
            return int(json.loads((self.folder / COMMITTED_FILE).read_text())["offset"])
        except FileNotFoundError:
            return 0

    def commit(self, offset: int) -> None:
        """Every record below `offset` is consumed; written atomically."""
        write_atomically(self.folder / COMMITTED_FILE, json.dumps({"offset": offset}).encode())
