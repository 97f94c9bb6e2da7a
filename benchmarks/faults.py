"""`rebq-serve bench faults`: faults injected one after another into a running server, under load.

Text predictions run all along (`LoadLoop`, bounded in count and time), and so does feedback of classes
the server has learned (`FeedbackStream`, logged and counted, never trained); every acknowledged sample
is looked up in the durable feedback log at the end. The faults (`benchmarks.fault_injection`) come in
turn, each in its own window, after `settle_s` of load without one; a window counts the requests that
failed while it was open. Killing actors takes the server's Ray: the bench joins it as one more driver
(`attach_local_ray`).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx
import ray
from pydantic import Field
from tqdm import tqdm

from benchmarks import fault_injection as inject
from benchmarks.fault_injection import Bench, FaultError, Verdict
from benchmarks.feedback_ledger import FeedbackLedger, FeedbackStream, SentSample, as_feedback, lost_samples
from benchmarks.report import aligned, write_report
from benchmarks.swap import Answer, LoadLoop, admin_client
from model.config import StrictModel
from model.dataset import Sample, load_jsonl
from serving.config import RayConfig
from serving.launcher import attach_local_ray

log = logging.getLogger(__name__)

FAULTS = ("updater_killed_in_training", "replica_killed", "corrupted_state_published", "wrecking_feedback")


class FaultsConfig(StrictModel):
    url: str
    state_dir: Path  # the server's: the feedback log is read there, the corrupted version written there
    data: Path  # JSONL: classes the server has learned (background feedback) and new ones (the task)
    ray: RayConfig = RayConfig()  # where the server's Ray is found
    concurrency: int = Field(4, ge=1, le=64)
    task_classes: int = Field(2, ge=2, le=20)
    samples_per_class: int = Field(20, ge=3, le=1000)
    feedback_batch: int = Field(4, ge=1, le=256)
    feedback_interval_s: float = Field(0.5, gt=0, le=60)
    settle_s: float = Field(3.0, ge=0, le=600)  # load without a fault before each one and after the last
    corrupt_hold_s: float = Field(3.0, gt=0, le=600)  # how long the corrupted version stays published
    fault_timeout_s: float = Field(300, gt=0)  # for any one thing a fault waits for
    max_requests: int = Field(200_000, ge=1)
    max_seconds: float = Field(1800, gt=0)


def failed_during(answers: list[Answer], start: float, end: float) -> int:
    """Failed requests that were in flight at some moment of `[start, end]`."""
    return sum(a.status != 200 and a.started <= end and a.started + a.seconds >= start for a in answers)


def count_by_status(statuses: Iterable[int]) -> dict[str, int]:
    """`{"503": 2, "0": 1}`; 0 stands for no answer at all."""
    return {str(status): count for status, count in sorted(Counter(statuses).items())}


def new_task(data: list[Sample], learned: set[str], config: FaultsConfig, name: str) -> list[SentSample]:
    """`samples_per_class` samples of each of the first `task_classes` classes the server has not learned."""
    by_class: dict[str, list[Sample]] = {}
    for sample in data:
        if sample.label not in learned:
            by_class.setdefault(sample.label, []).append(sample)
    size = config.samples_per_class
    chosen = [members[:size] for members in by_class.values() if len(members) >= size][: config.task_classes]
    if len(chosen) < config.task_classes:
        raise ValueError(f"{config.data}: fewer than {config.task_classes} unlearned classes with {size} samples")
    return as_feedback([sample for members in chosen for sample in members], task=name)


def run_fault(bench: Bench, name: str, fault: Callable[[Bench], Verdict], origin: float, settle_s: float) -> dict:
    time.sleep(settle_s)
    start = time.monotonic()
    try:
        verdict = fault(bench)
    except (FaultError, TimeoutError, ValueError, httpx.HTTPError) as error:  # ValueError: an actor not found
        verdict = Verdict(f"error: {error}", False)
    end = time.monotonic()
    answers = bench.load.since(0.0)
    log.info("%s: %s", name, verdict.outcome)
    return {
        "name": name,
        "started": round(start - origin, 3),
        "seconds": round(end - start, 3),
        "failed_requests_during": failed_during(answers, start, end),
        "versions_served": sorted({a.version for a in answers if a.status == 200 and start <= a.started <= end}),
        "outcome": verdict.outcome,
        "passed": verdict.passed,
    }


def run_faults(config: FaultsConfig) -> dict:
    url, client = config.url.rstrip("/"), admin_client(60)
    info = client.get(url + "/v1/model").json()
    if info["version"] == 0 or info["updater"] is None:
        raise ValueError(f"{url}: the faults need a learned task and a running updater")
    data, learned = load_jsonl(config.data), inject.learned_classes(info)
    background = as_feedback([sample for sample in data if sample.label in learned])
    if not background:
        raise ValueError(f"{config.data}: no sample of the classes the server has learned: {sorted(learned)}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    task = new_task(data, learned, config, f"faults-{stamp}")
    attached = attach_local_ray(config.ray)
    ledger = FeedbackLedger(url)
    faults: dict[str, Callable[[Bench], Verdict]] = {
        "updater_killed_in_training": lambda bench: inject.updater_killed_in_training(bench, task),
        "replica_killed": inject.replica_killed,
        "corrupted_state_published": inject.corrupted_state_published,
        "wrecking_feedback": lambda bench: inject.wrecking_feedback(bench, task),
    }
    origin = time.monotonic()
    try:
        with (
            LoadLoop(url, config.concurrency, config.max_requests, config.max_seconds) as load,
            FeedbackStream(
                ledger,
                admin_client(60),
                background,
                config.feedback_batch,
                config.feedback_interval_s,
                config.max_requests,
            ),
        ):
            bench = Bench(
                url, config.state_dir, client, ledger, load, stamp, config.fault_timeout_s, config.corrupt_hold_s
            )
            records = [
                run_fault(bench, name, faults[name], origin, config.settle_s)
                for name in tqdm(FAULTS, desc="faults")
            ]
            time.sleep(config.settle_s)
    finally:
        if attached:
            ray.shutdown()  # leaves the server's Ray: this process only joined it
    answers = load.since(0.0)
    failed = sum(a.status != 200 for a in answers)
    return {
        "requests": len(answers),
        "failed_requests": failed,
        "failed_requests_by_status": count_by_status(a.status for a in answers if a.status != 200),
        "failed_requests_outside_faults": failed - sum(record["failed_requests_during"] for record in records),
        "acknowledged_samples": ledger.acknowledged_samples,
        "lost_samples": lost_samples(ledger.acknowledged, config.state_dir / "feedback"),
        "feedback_requests": ledger.requests,
        "unacknowledged_feedback_requests": sum(ledger.unacknowledged.values()),
        "unacknowledged_feedback_by_status": count_by_status(ledger.unacknowledged.elements()),
        "seconds": round(time.monotonic() - origin, 1),
        "faults": records,
        "config": json.loads(config.model_dump_json()),
    }


def statuses_text(counts: dict[str, int]) -> str:
    """`{"500": 2, "0": 1}` as `2 answered 500, 1 unanswered`."""
    parts = [f"{n} unanswered" if status == "0" else f"{n} answered {status}" for status, n in counts.items()]
    return ", ".join(parts) or "none"


def format_report(result: dict) -> str:
    r = result
    failed = statuses_text(r["failed_requests_by_status"])
    refused = statuses_text(r["unacknowledged_feedback_by_status"])
    rows = [
        (
            "predictions",
            f"{r['requests']} sent; failed: {failed}; {r['failed_requests_outside_faults']} outside faults",
        ),
        (
            "feedback",
            f"{r['acknowledged_samples']} samples acknowledged, {r['lost_samples']} of them lost; "
            f"{r['feedback_requests']} requests, not acknowledged: {refused}",
        ),
    ]
    for fault in r["faults"]:
        verdict = "ok" if fault["passed"] else "FAILED"
        failed = fault["failed_requests_during"]
        rows.append((fault["name"], f"{verdict}, {fault['seconds']:.1f} s, {failed} failed: {fault['outcome']}"))
    return aligned(rows)


def main(config: FaultsConfig, out: Path) -> dict:
    result = run_faults(config)
    write_report(out, result)
    return result
