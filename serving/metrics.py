"""Every metric that replicas and the updater report, declared here and nowhere else.

They go through `ray.serve.metrics`, so Ray tags them with application, deployment and replica and
exports them on each node's metrics port (Ray prefixes the names with `ray_`).
"""

from __future__ import annotations

import collections
import threading

from ray.serve.metrics import Counter, Gauge, Histogram

LATENCY_BUCKETS_S = [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]
BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256]
SWAP_BUCKETS_S = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
TRAINING_BUCKETS_S = [1, 5, 10, 30, 60, 120, 300, 600, 1800]
GAUGE_REFRESH_S = 2.0  # inside Ray's metrics export interval (10 s); a gauge not set for two is dropped


class RememberedGauge:
    """A gauge that keeps the last value of each tag set and can set them all again.

    Ray's metrics agent stops exporting a gauge value that is not set again within about two export
    intervals, so a value set once (the accuracy of a task trained an hour ago) would vanish.
    """

    def __init__(self, gauge) -> None:
        self._gauge = gauge
        self._lock = threading.Lock()
        self._last: dict[tuple[tuple[str, str], ...], float] = {}

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        with self._lock:
            self._last[tuple(sorted((tags or {}).items()))] = value
        self._gauge.set(value, tags=tags)

    def refresh(self) -> None:
        with self._lock:
            last = list(self._last.items())
        for tags, value in last:
            self._gauge.set(value, tags=dict(tags) or None)


class ReplicaMetrics:
    """Created inside a replica (Serve's tags need its context)."""

    def __init__(self) -> None:
        self.requests = Counter(
            "rebq_requests",
            "HTTP requests answered, by route, status and missing pattern",
            tag_keys=("route", "status", "missing"),
        )
        self.request_latency = Histogram(
            "rebq_request_latency_s",
            "Time in the replica from request to answer, seconds",
            boundaries=LATENCY_BUCKETS_S,
            tag_keys=("route",),
        )
        self.model_latency = Histogram(
            "rebq_model_latency_s",
            "Time to compute one batch (towers, pools, head), seconds",
            boundaries=LATENCY_BUCKETS_S,
        )
        self.batch_size = Histogram("rebq_batch_size", "Samples per computed batch", boundaries=BATCH_BUCKETS)
        self.reconstructions = Counter(
            "rebq_reconstructions",
            "Missing modalities reconstructed, by the modality rebuilt",
            tag_keys=("modality",),
        )
        self.unknown = Counter(
            "rebq_unknown_answers",
            "Answers flagged unknown (far from every learned class), by missing pattern",
            tag_keys=("missing",),
        )
        self.version = Gauge("rebq_model_version", "PromptState version this replica serves (0: none)")
        self.swaps = Counter("rebq_swaps", "PromptState versions installed by this replica")
        self.swap_latency = Histogram(
            "rebq_swap_latency_s",
            "Time to load, check and install a new version, seconds",
            boundaries=SWAP_BUCKETS_S,
        )

    def observe_request(self, route: str, status: int, missing: str, seconds: float) -> None:
        self.requests.inc(tags={"route": route, "status": str(status), "missing": missing})
        self.request_latency.observe(seconds, tags={"route": route})

    def observe_batch(
        self, size: int, seconds: float, rebuilt_images: int, rebuilt_texts: int, unknown: list[str]
    ) -> None:
        """A computed batch of `size` samples; `unknown`: the missing pattern of each answer flagged unknown."""
        for pattern, count in collections.Counter(unknown).items():
            self.unknown.inc(count, tags={"missing": pattern})
        self.batch_size.observe(size)
        self.model_latency.observe(seconds)
        if rebuilt_images:
            self.reconstructions.inc(rebuilt_images, tags={"modality": "image"})
        if rebuilt_texts:
            self.reconstructions.inc(rebuilt_texts, tags={"modality": "text"})

    def observe_swap(self, version: int, seconds: float) -> None:
        self.version.set(version)
        self.swaps.inc()
        self.swap_latency.observe(seconds)


class UpdaterMetrics:
    """The updater's observer (`updater.service.UpdaterObserver`), created inside the updater actor (plain
    Ray metrics: it is no Serve replica).

    Its gauges are set when something happens, which may be hours apart: the actor calls `refresh`
    every `refresh_s` (GAUGE_REFRESH_S) so that Ray keeps exporting their last values.
    """

    refresh_s = GAUGE_REFRESH_S

    def __init__(self) -> None:
        from ray.util.metrics import Counter as RayCounter
        from ray.util.metrics import Gauge as RayGauge
        from ray.util.metrics import Histogram as RayHistogram

        def task_gauge(name: str, description: str) -> RememberedGauge:
            return RememberedGauge(RayGauge(name, description, tag_keys=("task",)))

        self.accepted = RayCounter("rebq_feedback_accepted", "Feedback samples durably logged")
        self.buffered = task_gauge("rebq_samples_buffered", "Samples waiting in a pending task")
        self.known = RayCounter("rebq_feedback_known_class", "Feedback samples of classes already learned")
        self.runs = RayCounter("rebq_training_runs", "Trainings, by outcome", tag_keys=("outcome",))
        self.duration = RayHistogram(
            "rebq_training_seconds", "Time to train and gate one task, seconds", boundaries=TRAINING_BUCKETS_S
        )
        self.accuracy = task_gauge(
            "rebq_task_accuracy", "Last held-back accuracy of a newly trained task, percent"
        )
        self.forgetting = task_gauge("rebq_task_forgetting", "Points an earlier task lost at the last training")

    def observe_intake(self, accepted: int, buffered: dict[str, dict[str, int]], known_added: int) -> None:
        self.accepted.inc(accepted)
        if known_added:
            self.known.inc(known_added)
        self.observe_buffered(buffered)

    def observe_buffered(self, buffered: dict[str, dict[str, int]]) -> None:
        """Samples waiting in each pending task: after intake, training, or recovery from the log."""
        for task, counts in buffered.items():
            self.buffered.set(sum(counts.values()), tags={"task": task})

    def observe_training(self, outcome, buffered: dict[str, dict[str, int]], finished_task_gone: bool) -> None:
        self.runs.inc(tags={"outcome": "published" if outcome.published else "refused"})
        self.duration.observe(outcome.seconds)
        if outcome.accuracy is not None:
            self.accuracy.set(outcome.accuracy, tags={"task": outcome.task})
        for task, points in outcome.forgetting.items():
            self.forgetting.set(points, tags={"task": task})
        if finished_task_gone:
            self.buffered.set(0, tags={"task": outcome.task})
        self.observe_buffered(buffered)

    def observe_dropped(self, task: str) -> None:
        self.buffered.set(0, tags={"task": task})

    def refresh(self) -> None:
        """Set every gauge's last values again."""
        for gauge in (self.buffered, self.accuracy, self.forgetting):
            gauge.refresh()
