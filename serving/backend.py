"""What the HTTP layer needs from whoever answers: the replica in Serve, or an in-process stand-in.

Light on purpose (no torch): the Serve driver imports it to build the application.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from serving.decode import DecodedSample
    from serving.schemas import ModelInfo, PredictResponse, UnknownAnswer, VersionInfo
    from updater.feedback_log import NewFeedback


@dataclass(frozen=True)
class BatchInfo:
    """Which batch computed an answer: its size, and an id unique to that batch (replica and count)."""

    size: int
    id: str


class Backend(Protocol):
    async def predict(self, sample: DecodedSample) -> tuple[PredictResponse, BatchInfo]:
        """The answer and the batch that computed it; raises NoModelError before any task."""

    def model_info(self) -> ModelInfo: ...

    def versions(self) -> list[VersionInfo]:
        """Every version in the state directory, oldest first."""

    def recent_unknown(self) -> list[UnknownAnswer]:
        """This replica's latest answers flagged unknown, newest first."""

    def replica_info(self) -> dict[str, str | None]:
        """`{"replica": id, "node": Ray node id or None}`."""

    def observe(self, route: str, status: int, pattern: str, seconds: float) -> None:
        """Called once per request, for metrics."""

    async def feedback(self, samples: list[NewFeedback]) -> tuple[int, int]:
        """Durably logged, then (accepted, log length); raises UpdaterUnavailable without an updater."""

    async def train_task(self, name: str) -> None:
        """Training of buffered task `name` started; raises TaskNotBuffered, TrainingBusy, UpdaterUnavailable."""

    async def drop_task(self, name: str) -> int:
        """How many samples of `name` will never be trained; raises TaskNotBuffered, TaskTraining,
        UpdaterUnavailable."""

    def rollback(self, version: int) -> None:
        """Publish `version`, without the updater (blocking: run off the event loop); raises VersionMissing,
        VersionUnservable."""

    async def updater_status(self) -> dict | None: ...


class UpdaterUnavailable(RuntimeError):
    """No updater is running to take feedback."""


class Overloaded(RuntimeError):
    """The replica holds as many predictions as it may; the client should come back later."""

    def __init__(self, pending: int, retry_after_s: int = 1):
        super().__init__(f"the server is saturated ({pending} predictions pending on this replica); retry later")
        self.retry_after_s = retry_after_s


class AdmissionGate:
    """At most `limit` predictions pending in a replica at once; one more is refused with `Overloaded`."""

    def __init__(self, limit: int):
        self.limit = limit
        self.pending = 0

    def __enter__(self) -> AdmissionGate:
        if self.pending >= self.limit:
            raise Overloaded(self.pending)
        self.pending += 1
        return self

    def __exit__(self, *exc) -> None:
        self.pending -= 1
