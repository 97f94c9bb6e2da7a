"""New tasks fed to a server without end: each of a few classes of a data set, relabelled so that every task is one
the server has not learned, sent a batch at a time by one thread that goes on where it left off after a restart."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

import httpx

from benchmarks.feedback_ledger import FeedbackLedger, SentSample, as_feedback
from model.dataset import Sample

Batch = tuple[SentSample, ...]


def task_batches(data: Sequence[Sample], classes_per_task: int, per_class: int) -> Iterator[list[SentSample]]:
    """Task after task (`cut-0`, `cut-1`, ...): `per_class` samples of each of `classes_per_task` classes, taken in
    turn from the classes with that many samples, labelled `CLASS-N` for task N."""
    by_class: dict[str, list[Sample]] = {}
    for sample in data:
        by_class.setdefault(sample.label, []).append(sample)
    classes = sorted(label for label, members in by_class.items() if len(members) >= per_class)
    if len(classes) < classes_per_task:
        raise ValueError(f"fewer than {classes_per_task} classes with {per_class} samples each")
    sent = {label: as_feedback(by_class[label]) for label in classes}
    for number in itertools.count():
        task = f"cut-{number}"
        chosen = [classes[(number * classes_per_task + j) % len(classes)] for j in range(classes_per_task)]
        yield [
            replace(sample, label=f"{label}-{number}", task=task)
            for label in chosen
            for sample in itertools.islice(
                itertools.cycle(sent[label]), number * per_class, (number + 1) * per_class
            )
        ]


class Feeder:
    """Sends the samples of `tasks`, `batch` at a time, `interval_s` apart, and `task_pause_s` after each task
    (long enough for it to go quiet and train), from one thread while `running`. A batch that was not
    acknowledged (the server was killed under it) is not sent again."""

    def __init__(
        self,
        ledger: FeedbackLedger,
        client: httpx.Client,
        tasks: Iterator[list[SentSample]],
        batch: int,
        interval_s: float,
        task_pause_s: float,
    ):
        self.ledger, self.client = ledger, client
        self.interval_s, self.task_pause_s = interval_s, task_pause_s
        self._batches = self._paced(tasks, batch)
        self._stop = threading.Event()

    def _paced(self, tasks: Iterator[list[SentSample]], batch: int) -> Iterator[tuple[Batch, float]]:
        """(batch, seconds to wait after it)."""
        for samples in tasks:
            chunks = [tuple(samples[i : i + batch]) for i in range(0, len(samples), batch)]
            for index, chunk in enumerate(chunks):
                yield chunk, self.task_pause_s if index == len(chunks) - 1 else self.interval_s

    def _run(self) -> None:
        while not self._stop.is_set():
            chunk, pause = next(self._batches)
            self.ledger.send(self.client, chunk)
            self._stop.wait(pause)

    @contextmanager
    def running(self):
        """Feed the server until the block ends."""
        self._stop.clear()
        thread = threading.Thread(target=self._run, name="task-feeder", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=120)
