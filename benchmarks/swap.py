"""`rebq-serve bench swap`: version swaps under constant load, and how fresh a newly fed task gets.

Load runs all along: first a while without swaps, then K swaps, alternating between the served
version and the one before it (rollback and forward), `interval_s` apart. Every answer names its
version and its batch, so the run counts failed requests, batches whose answers name more than one
version, and each swap's propagation: from the rollback's acknowledgement to the start of the first
request after which every answer names the new version.

Freshness: a task of ~`freshness_samples` samples of classes the server has not learned is fed,
trained at once (`POST /v1/tasks/{name}/train`), and the clock runs from the last sample's
acknowledgement to the first answer from the version that learned it.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import statistics
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import Field
from tqdm import tqdm

from benchmarks.load import percentile_ms
from benchmarks.report import aligned, write_report
from model.config import StrictModel
from model.dataset import Sample, load_jsonl
from serving.auth import TOKEN_VARIABLE
from serving.http_api import BATCH_ID_HEADER

log = logging.getLogger(__name__)


class SwapConfig(StrictModel):
    url: str
    swaps: int = Field(10, ge=1, le=1000)
    concurrency: int = Field(8, ge=1, le=256)
    interval_s: float = Field(3.0, gt=0, le=600)
    baseline_s: float = Field(10.0, gt=0, le=600)
    data: Path | None = None  # for freshness; None skips it
    freshness_samples: int = Field(100, ge=2, le=10_000)
    freshness_timeout_s: float = Field(600, gt=0)


@dataclass
class Answer:
    started: float  # time.monotonic()
    seconds: float
    status: int
    version: int | None
    batch: str | None


class LoadLoop:
    """`concurrency` threads sending text-only predictions until stopped, or until `max_requests` were sent or
    `max_seconds` passed; every answer kept."""

    TEXTS = ("A red fire truck.", "A frog.", "A slice of pizza.", "A hat.", "A star.", "A green tree.")
    PAUSE_AFTER_FAILURE_S = 0.5  # as a client would before trying again: no storm of refused connections

    def __init__(self, url: str, concurrency: int, max_requests: int = 10_000_000, max_seconds: float = 86_400):
        self.url = url.rstrip("/") + "/v1/predict"
        self.concurrency = concurrency
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sent = itertools.count()
        self._max_requests, self._max_seconds = max_requests, max_seconds
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(concurrency)]

    def _more(self, deadline: float) -> bool:
        return not self._stop.is_set() and next(self._sent) < self._max_requests and time.monotonic() < deadline

    def _run(self, index: int) -> None:
        deadline = time.monotonic() + self._max_seconds
        with httpx.Client(timeout=30) as client:
            count = 0
            while self._more(deadline):
                text = self.TEXTS[(index + count) % len(self.TEXTS)]
                count += 1
                start = time.monotonic()
                try:
                    response = client.post(self.url, json={"text": text, "top_k": 1})
                    ok = response.status_code == 200
                    answer = Answer(
                        start,
                        time.monotonic() - start,
                        response.status_code,
                        response.json()["model_version"] if ok else None,
                        response.headers.get(BATCH_ID_HEADER),
                    )
                except httpx.HTTPError as error:
                    log.warning("request failed: %s", error)
                    answer = Answer(start, time.monotonic() - start, 0, None, None)
                with self._lock:
                    self.answers.append(answer)
                if answer.status != 200:
                    self._stop.wait(self.PAUSE_AFTER_FAILURE_S)

    def __enter__(self) -> LoadLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def since(self, start: float) -> list[Answer]:
        with self._lock:
            return [answer for answer in self.answers if answer.started >= start]


def propagation_s(answers: list[Answer], acknowledged: float, new_version: int) -> float | None:
    """From `acknowledged` to the start of the first request after which every answer is `new_version`."""
    later = sorted((a for a in answers if a.started >= acknowledged and a.status == 200), key=lambda a: a.started)
    last_old = max((i for i, a in enumerate(later) if a.version != new_version), default=-1)
    if last_old + 1 >= len(later):
        return None
    return later[last_old + 1].started - acknowledged


def mixed_version_batches(answers: list[Answer]) -> int:
    versions: dict[str, set[int]] = defaultdict(set)
    for answer in answers:
        if answer.batch and answer.version is not None:
            versions[answer.batch].add(answer.version)
    return sum(len(seen) > 1 for seen in versions.values())


def admin_client(timeout_s: float) -> httpx.Client:
    """A client carrying REBQ_SERVE_TOKEN, when set, for feedback, training and rollback."""
    token = os.environ.get(TOKEN_VARIABLE)
    return httpx.Client(timeout=timeout_s, headers={"authorization": f"Bearer {token.strip()}"} if token else {})


def rollback(client: httpx.Client, url: str, version: int) -> None:
    response = client.post(url + "/v1/model/rollback", json={"version": version})
    if response.status_code != 200:
        raise RuntimeError(f"rollback to {version}: {response.status_code} {response.text}")


def run_swaps(config: SwapConfig) -> dict:
    url = config.url.rstrip("/")
    client = admin_client(60)
    served = client.get(url + "/v1/model").json()["version"]
    if served < 2:
        raise ValueError(f"{url} serves version {served}: swaps need two versions (teach it two tasks first)")
    versions = (served, served - 1)
    propagation: list[float] = []
    with LoadLoop(url, config.concurrency) as load:
        start = time.monotonic()
        time.sleep(config.baseline_s)
        swaps_start = time.monotonic()
        for swap in tqdm(range(config.swaps), desc="swaps", unit="swap"):
            target = versions[(swap + 1) % 2]
            rollback(client, url, target)
            acknowledged = time.monotonic()
            time.sleep(config.interval_s)
            measured = propagation_s(load.since(acknowledged), acknowledged, target)
            if measured is None:
                log.warning("swap %d: version %d not seen within %.1f s", swap + 1, target, config.interval_s)
            propagation.append(measured if measured is not None else float("inf"))
        end = time.monotonic()
    rollback(client, url, served)
    baseline = [a for a in load.answers if start <= a.started < swaps_start]
    during = [a for a in load.answers if swaps_start <= a.started < end]
    everything = baseline + during
    return {
        "swaps": config.swaps,
        "requests": len(everything),
        "failed_requests": sum(a.status != 200 for a in everything),
        "mixed_version_batches": mixed_version_batches(everything),
        "propagation_p50_s": statistics.median(propagation),
        "propagation_max_s": max(propagation),
        "p99_ms_during_swaps": percentile_ms([a.seconds for a in during if a.status == 200], 99),
        "p99_ms_without": percentile_ms([a.seconds for a in baseline if a.status == 200], 99),
        "throughput_rps_during_swaps": len(during) / (end - swaps_start),
        "versions": list(versions),
    }


def unlearned_task(data: Path, learned: set[str], size: int, min_per_class: int = 10) -> list[Sample]:
    """`size` samples of classes the server has not learned, smallest classes (of `min_per_class`) first."""
    by_class: dict[str, list[Sample]] = defaultdict(list)
    for sample in load_jsonl(data):
        if sample.label not in learned:
            by_class[sample.label].append(sample)
    chosen: list[Sample] = []
    for members in sorted((m for m in by_class.values() if len(m) >= min_per_class), key=len):
        if len(chosen) >= size:
            break
        chosen.extend(members)
    if len(chosen) < size:
        raise ValueError(f"{data}: fewer than {size} samples of classes the server has not learned")
    return chosen[:size]


def measure_freshness(config: SwapConfig) -> dict:
    url = config.url.rstrip("/")
    client = admin_client(120)
    model = client.get(url + "/v1/model").json()
    learned = {name for task in model["tasks"] for name in task["classes"]}
    samples = unlearned_task(config.data, learned, config.freshness_samples)
    name = f"fresh-{int(time.time())}"
    body = {
        "samples": [
            {
                "text": sample.text,
                "image": base64.b64encode(sample.image_path.read_bytes()).decode() if sample.image_path else None,
                "label": sample.label,
                "task": name,
            }
            for sample in samples
        ]
    }
    response = client.post(url + "/v1/feedback", json=body)
    response.raise_for_status()
    last_sample = time.monotonic()
    client.post(url + f"/v1/tasks/{name}/train").raise_for_status()
    probe = {"text": samples[-1].text or "", "image": body["samples"][-1]["image"]}
    deadline = last_sample + config.freshness_timeout_s
    while time.monotonic() < deadline:
        answer = client.post(url + "/v1/predict", json=probe).json()
        info = client.get(url + "/v1/model").json()
        trained = info["updater"]["last_training"] if info.get("updater") else None
        if trained and trained["task"] == name and not trained["published"]:
            raise RuntimeError(f"task {name} was not published: {trained['reason']}")
        if trained and trained["task"] == name and answer["model_version"] == trained["version"]:
            return {
                "freshness_s": time.monotonic() - last_sample,
                "freshness_samples": len(samples),
                "freshness_classes": sorted({sample.label for sample in samples}),
                "freshness_training_s": trained["seconds"],
                "freshness_version": trained["version"],
            }
        time.sleep(0.2)
    raise TimeoutError(f"task {name} not served within {config.freshness_timeout_s} s")


def main(config: SwapConfig, out: Path) -> dict:
    result = run_swaps(config)
    if config.data is not None:
        result.update(measure_freshness(config))
    result["config"] = json.loads(config.model_dump_json())
    write_report(out, result)
    return result


def format_report(result: dict) -> str:
    r = result
    rows = [
        ("swaps", f"{r['swaps']} under load: {r['requests']} requests, {r['failed_requests']} failed"),
        ("mixed-version batches", str(result["mixed_version_batches"])),
        ("propagation", f"p50 {result['propagation_p50_s']:.2f} s, max {result['propagation_max_s']:.2f} s"),
        ("p99", f"{result['p99_ms_during_swaps']:.1f} ms during swaps, {result['p99_ms_without']:.1f} ms without"),
    ]
    if "freshness_s" in result:
        rows.append(
            (
                "freshness",
                f"{result['freshness_s']:.1f} s for {result['freshness_samples']} samples "
                f"(training {result['freshness_training_s']:.1f} s)",
            )
        )
    return aligned(rows)
