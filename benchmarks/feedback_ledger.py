"""Feedback sent during a benchmark: every acknowledged sample remembered, then looked up in the durable log.

A 202 answer `{"accepted": n, "offset": o}` says that the request's n samples are records o - n .. o - 1
of `STATE_DIR/feedback/log.jsonl`, in the order sent. A sample is lost when its record is missing from
the log or differs from what was sent.
"""

from __future__ import annotations

import base64
import itertools
import logging
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from model.dataset import Sample
from model.modality import given_text
from updater.feedback_log import IMAGES, LOG_FILE, FeedbackRecord, image_digest, read_records

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SentSample:
    label: str
    task: str | None
    text: str | None
    image: str | None  # base64 of the picture's file

    def body(self) -> dict:
        return {"text": self.text, "image": self.image, "label": self.label, "task": self.task}


def as_feedback(samples: Sequence[Sample], task: str | None = None) -> list[SentSample]:
    """Data-set samples as feedback samples, in `task` (None: the server chooses)."""
    return [
        SentSample(
            label=sample.label,
            task=task,
            text=given_text(sample.text),  # a blank text is logged as none
            image=base64.b64encode(sample.image_path.read_bytes()).decode() if sample.image_path else None,
        )
        for sample in samples
    ]


@dataclass(frozen=True)
class Acknowledged:
    offset: int  # the log's length once the request's samples were in it
    samples: tuple[SentSample, ...]


class FeedbackLedger:
    """Sends feedback and remembers what was acknowledged; safe to share between threads."""

    def __init__(self, url: str):
        self.url = url.rstrip("/") + "/v1/feedback"
        self.acknowledged: list[Acknowledged] = []
        self.requests = 0
        self.unacknowledged: Counter[int] = Counter()  # requests not acknowledged, by status (0: no answer)
        self._lock = threading.Lock()

    def send(self, client: httpx.Client, samples: Sequence[SentSample]) -> bool:
        """True once the server acknowledged every sample (202)."""
        status, answer = 0, None
        try:
            response = client.post(self.url, json={"samples": [sample.body() for sample in samples]})
            status = response.status_code
            answer = response.json() if status == 202 else None
            if answer is None:
                log.warning("feedback not acknowledged: %d %s", status, response.text[:200])
        except httpx.HTTPError as error:
            log.warning("feedback not sent: %s", error)
        with self._lock:
            self.requests += 1
            if answer is None or answer["accepted"] != len(samples):
                self.unacknowledged[status] += 1
                return False
            self.acknowledged.append(Acknowledged(answer["offset"], tuple(samples)))
        return True

    @property
    def acknowledged_samples(self) -> int:
        with self._lock:
            return sum(len(ack.samples) for ack in self.acknowledged)


class FeedbackStream:
    """A thread sending `batch` samples of `pool` (cycled) every `interval_s`, until stopped or `max_requests`."""

    def __init__(
        self,
        ledger: FeedbackLedger,
        client: httpx.Client,
        pool: Sequence[SentSample],
        batch: int,
        interval_s: float,
        max_requests: int,
    ):
        self.ledger, self.client, self.batch = ledger, client, batch
        self.interval_s, self.max_requests = interval_s, max_requests
        self._pool = itertools.cycle(pool)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feedback-stream", daemon=True)

    def _run(self) -> None:
        for _ in range(self.max_requests):
            self.ledger.send(self.client, [next(self._pool) for _ in range(self.batch)])
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> FeedbackStream:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=120)


def logged_as_sent(record: FeedbackRecord | None, sample: SentSample, images: Path) -> bool:
    """Whether `record` holds `sample`: its label, task and text, and its picture stored under `images`."""
    if record is None or (record.label, record.task, record.text) != (sample.label, sample.task, sample.text):
        return False
    if sample.image is None:
        return record.image is None
    digest = image_digest(base64.b64decode(sample.image))
    return record.image is not None and Path(record.image).stem == digest and (images / record.image).is_file()


def lost_samples(acknowledged: Sequence[Acknowledged], log_folder: Path) -> int:
    """Acknowledged samples whose record in the log (or whose picture) is missing or differs from what was sent."""
    logged = {record.offset: record for record in read_records(log_folder / LOG_FILE)}
    lost = 0
    for ack in acknowledged:
        first = ack.offset - len(ack.samples)
        for index, sample in enumerate(ack.samples):
            lost += not logged_as_sent(logged.get(first + index), sample, log_folder / IMAGES)
    return lost
