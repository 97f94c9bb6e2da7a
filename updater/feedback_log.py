"""The feedback log: labelled samples, appended and fsynced before they are acknowledged.

`STATE_DIR/feedback/log.jsonl` holds one record a line; a record's offset is its line number from 0.
Pictures are stored once each under `images/`, named by their SHA-256, written and fsynced before
the line that names them. A request's records go in one write, so a crash leaves at most a partial
last line, never acknowledged, which the next start cuts off. `committed.json` holds the offset below
which every record has been consumed (learned, or counted for a class already learned).

The log keeps where each line starts, so it reads from an offset (or picks out records) without
scanning from the start; a line that does not parse (a disk fault) is logged and passed over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import TypeAdapter

from model.durable_files import fsync_folder, write_atomically
from updater.state_files import read_state, write_state

log = logging.getLogger(__name__)

LOG_FILE = "log.jsonl"
COMMITTED_FILE = "committed.json"
IMAGES = "images"
COMMITTED_SHAPE = TypeAdapter(dict[str, int])


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
        for offset, line in enumerate(handle):
            if line.endswith(b"\n") and (record := parse_record(line, offset, path)) is not None:
                yield record


def parse_record(line: bytes, offset: int, path: Path) -> FeedbackRecord | None:
    """The record of one line, or None (logged) for a line that does not parse."""
    try:
        return FeedbackRecord(**json.loads(line))
    except (ValueError, TypeError) as error:
        log.error("%s: record %d is unreadable and passed over: %s", path, offset, error)
        return None


def line_starts(data: bytes) -> array:
    """Where each line of `data` (whole lines) starts, then where the last one ends."""
    starts = array("q", [0])
    for line in data.split(b"\n")[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    return starts


class FeedbackLog:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.images = self.folder / IMAGES
        self.images.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / LOG_FILE
        self._lock = threading.Lock()
        self._starts = self._recover()  # (end + 1,) byte positions: each record's line, then the file's end
        self._committed = read_state(self.folder / COMMITTED_FILE, COMMITTED_SHAPE, {}).get("offset", 0)

    @property
    def end(self) -> int:
        """The number of records: the offset the next one gets."""
        return len(self._starts) - 1

    def _recover(self) -> array:
        """Cut off a partial last line (an append that never finished); where each whole record starts."""
        if not self.path.exists():
            return array("q", [0])
        data = self.path.read_bytes()
        whole = data.rfind(b"\n") + 1
        if whole < len(data):
            log.warning("%s: cutting off %d bytes of an unfinished append", self.path, len(data) - whole)
            with open(self.path, "rb+") as handle:
                handle.truncate(whole)
                os.fsync(handle.fileno())
        return line_starts(data[:whole])

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
            now, end = time.time(), self.end
            records = [
                FeedbackRecord(end + i, sample.label, sample.task, sample.text, name, now)
                for i, (sample, name) in enumerate(zip(samples, names, strict=True))
            ]
            lines = [json.dumps(asdict(record)).encode() + b"\n" for record in records]
            with open(self.path, "ab") as handle:
                handle.write(b"".join(lines))
                handle.flush()
                os.fsync(handle.fileno())
            if end == 0:
                fsync_folder(self.folder)
            for line in lines:
                self._starts.append(self._starts[-1] + len(line))
            return records

    def read(self, start: int = 0) -> Iterator[FeedbackRecord]:
        """Records from offset `start` to the end as it is now."""
        end = self.end
        if start >= end:
            return
        with open(self.path, "rb") as handle:
            handle.seek(self._starts[start])
            for offset in range(start, end):
                if (record := parse_record(handle.readline(), offset, self.path)) is not None:
                    yield record

    def records(self, offsets: Iterable[int]) -> list[FeedbackRecord]:
        """The records at `offsets` that the log holds, in offset order."""
        wanted = sorted(offset for offset in set(offsets) if 0 <= offset < self.end)
        if not wanted:
            return []
        picked = []
        with open(self.path, "rb") as handle:
            for offset in wanted:
                handle.seek(self._starts[offset])
                if (record := parse_record(handle.readline(), offset, self.path)) is not None:
                    picked.append(record)
        return picked

    def image_path(self, record: FeedbackRecord) -> Path | None:
        return self.images / record.image if record.image else None

    def committed(self) -> int:
        """The offset below which every record is consumed (0 while none is, or if its file was damaged)."""
        return self._committed

    def commit(self, offset: int) -> None:
        """Every record below `offset` is consumed; written atomically."""
        write_state(self.folder / COMMITTED_FILE, {"offset": offset})
        self._committed = offset
