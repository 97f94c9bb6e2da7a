"""`rebq-serve bench power-cut`: every process of a server SIGKILLed at a random moment while it is fed, trains and
publishes; started again, checked, N times.

A real `rebq-serve serve` runs in a session of its own (`ServerProcess`), its updater set to train a task as soon
as it holds `samples_per_class` samples of each class and has been quiet for a second, and to publish whatever
it learns. Tasks of classes it has not learned are fed all along (`Feeder`), and a `Watcher` asks which version
answers. At a moment drawn from `kill_after_s` after the server became healthy (seeded), every process of the
session (the command, Ray's node, its workers and agents) is stopped and SIGKILLed at once. Then it is started
again, on the same state directory, Ray temp dir and ports, and checked (`checks.check_start`).

SIGKILL ends processes, not the machine: what they handed the kernel still reaches the disk. So this shows that
no file is left half-written where a restart would trip on it and that nothing acknowledged is missing; that a
real power cut loses nothing acknowledged rests, beyond it, on the fsync before each acknowledgement.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from pydantic import Field
from tqdm import tqdm

from benchmarks.faults import count_by_status, statuses_text
from benchmarks.feedback_ledger import FeedbackLedger
from benchmarks.report import aligned, write_report
from benchmarks.restart_checks import Watcher, check_start, torn_versions
from benchmarks.server_process import ServerFailed, ServerProcess, free_port
from benchmarks.swap import admin_client
from benchmarks.task_feeder import Feeder, task_batches
from model.config import StrictModel
from model.dataset import load_jsonl
from model.state import list_versions
from serving.config import AppConfig, RayConfig
from updater.config import UpdaterConfig

log = logging.getLogger(__name__)


class PowerCutConfig(StrictModel):
    data: Path  # JSONL: each task takes `classes_per_task` of its classes, relabelled so that every task is new
    work_dir: Path  # the server's state directory and each start's output go here
    cycles: int = Field(20, ge=1, le=500)
    seed: int = 0
    kill_after_s: tuple[float, float] = (2.0, 30.0)  # the kill comes this long after the server is healthy
    classes_per_task: int = Field(2, ge=1, le=20)
    samples_per_class: int = Field(4, ge=2, le=200)
    feedback_batch: int = Field(4, ge=1, le=256)
    feedback_interval_s: float = Field(0.3, gt=0, le=60)
    task_pause_s: float = Field(2.0, ge=0, le=600)  # after each task: it goes quiet, and trains
    epochs: int = Field(2, ge=1, le=100)
    restart_timeout_s: float = Field(300, gt=0)  # from a start to healthy, with the updater up
    max_seconds: float = Field(7200, gt=0)


def server_config(base: AppConfig, config: PowerCutConfig, ray_dir: Path) -> AppConfig:
    """`base` with the bench's thresholds: train each task at once, publish whatever it learns."""
    updater = UpdaterConfig(
        min_samples_per_class=config.samples_per_class,
        quiet_seconds=1.0,
        min_accuracy=0.0,
        max_forgetting=100.0,
        poll_seconds=0.2,
        max_samples_per_request=base.updater.max_samples_per_request,
    )
    server = base.server.model_copy(
        update={"port": free_port(), "proxy_port": free_port(), "state_dir": config.work_dir / "state"}
    )
    ray = RayConfig(
        num_cpus=base.ray.num_cpus,
        object_store_memory=base.ray.object_store_memory,
        temp_dir=ray_dir,
        metrics_port=free_port(),
    )
    trainer = base.trainer.model_copy(update={"epochs": config.epochs})
    return base.model_copy(update={"updater": updater, "server": server, "ray": ray, "trainer": trainer})


def one_cycle(
    index: int, app: AppConfig, config: PowerCutConfig, ledger: FeedbackLedger, feeder: Feeder, pause: float
) -> dict:
    """Start the server, check it, feed it until `pause` seconds after it is healthy, then cut its power."""
    server = ServerProcess(app, config.work_dir / "config.json", config.work_dir / f"start-{index}.txt")
    try:
        record = check_start(server, ledger, app.server.state_dir, config.restart_timeout_s)
        watcher = Watcher(server.url, app.server.state_dir, record["updater_started"], record["published_version"])
        with watcher, feeder.running():
            time.sleep(max(0.0, pause - (time.monotonic() - server.started - record["healthy_s"])))
            at_kill = watcher.latest()
            killed = server.power_cut()
    finally:
        if server.running:
            server.power_cut()
    return {
        **record,
        "alarms": server.alarms(),
        "kill_after_s": round(pause, 2),
        "killed_processes": killed,
        "updater_state_at_kill": at_kill.get("state"),
        "acknowledged_samples": ledger.acknowledged_samples,
        "versions_answered": sorted(watcher.versions_answered),
        "versions_published": sorted(watcher.versions_published),
        "invalid_answers": watcher.invalid_answers(),
        "updater_restarts": watcher.updater_restarts,
    }


def last_start(app: AppConfig, config: PowerCutConfig, ledger: FeedbackLedger) -> dict:
    """A start after the last cut, checked, then stopped as a service manager would (SIGTERM to its group)."""
    server = ServerProcess(app, config.work_dir / "config.json", config.work_dir / "start-last.txt")
    try:
        record = check_start(server, ledger, app.server.state_dir, config.restart_timeout_s)
        record["stop_s"] = round(server.stop(), 2)
    finally:
        if server.running:
            server.power_cut()
    return {**record, "alarms": server.alarms()}


def run_power_cut(config: PowerCutConfig, base: AppConfig) -> dict:
    config.work_dir.mkdir(parents=True, exist_ok=True)
    ray_dir = Path(tempfile.mkdtemp(prefix="rebq-cut-"))  # short: Ray's socket paths must fit in 107 bytes
    app = server_config(base, config, ray_dir)
    rng, ledger = random.Random(config.seed), FeedbackLedger(f"http://{app.server.host}:{app.server.port}")
    batches = task_batches(load_jsonl(config.data), config.classes_per_task, config.samples_per_class)
    feeder = Feeder(
        ledger, admin_client(60), batches, config.feedback_batch, config.feedback_interval_s, config.task_pause_s
    )
    origin, cycles, failure = time.monotonic(), [], None
    try:
        for index in tqdm(range(config.cycles), desc="power cuts"):
            if time.monotonic() - origin > config.max_seconds:
                failure = f"stopped after {len(cycles)} cycles: max_seconds ({config.max_seconds:.0f} s) passed"
                break
            record = one_cycle(index, app, config, ledger, feeder, rng.uniform(*config.kill_after_s))
            cycles.append(record)
            log.info(cycle_line(index, record))
        last = last_start(app, config, ledger)
    except ServerFailed as error:
        failure, last = f"start {len(cycles)}: {error}", None
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    return summary(config, app, cycles, last, failure, ledger, time.monotonic() - origin)


def cycle_line(index: int, record: dict) -> str:
    return (
        f"cycle {index}: healthy after {record['healthy_s']:.1f} s, {record['lost_samples']} of "
        f"{record['acknowledged_before']} acknowledged samples lost, serving version {record['served_version']} "
        f"(published {record['published_version']}); killed {record['killed_processes']} processes after "
        f"{record['kill_after_s']:.1f} s, updater {record['updater_state_at_kill']}"
    )


def version_figures(cycles: list[dict], starts: list[dict], state_dir: Path) -> dict:
    """Which versions were published, answered, saved but never published (the power was cut between), torn."""
    published = {start["published_version"] for start in starts} - {0}
    answered = set()
    for cycle in cycles:
        published.update(cycle["versions_published"])  # as seen by a look every 0.5 s
        answered.update(cycle["versions_answered"])  # served, and so published
    torn = torn_versions(state_dir)
    return {
        "served_not_published": sum(not start["served_is_published"] for start in starts),
        "invalid_answers": sum(len(cycle["invalid_answers"]) for cycle in cycles),
        "versions_published": sorted(published),
        "versions_answered": sorted(answered),
        "versions_never_published": sorted(set(list_versions(state_dir)) - published - answered - set(torn)),
        "torn_versions": torn,
    }


def summary(
    config: PowerCutConfig,
    app: AppConfig,
    cycles: list[dict],
    last: dict | None,
    failure: str | None,
    ledger: FeedbackLedger,
    seconds: float,
) -> dict:
    starts = [*cycles, *([last] if last else [])]
    restart_s = [start["healthy_s"] for start in starts[1:]]
    result = {
        "cycles": len(cycles),
        "acknowledged_samples": ledger.acknowledged_samples,
        "lost_samples": max((start["lost_samples"] for start in starts), default=0),
        "feedback_requests": ledger.requests,
        "unacknowledged_feedback_requests": sum(ledger.unacknowledged.values()),
        "unacknowledged_feedback_by_status": count_by_status(ledger.unacknowledged.elements()),
        **version_figures(cycles, starts, app.server.state_dir),
        "kills_while_training": sum(cycle["updater_state_at_kill"] == "training" for cycle in cycles),
        "restart_s": {"median": round(statistics.median(restart_s), 1), "max": round(max(restart_s), 1)}
        if restart_s
        else None,
        "updater_restarts": sum(cycle["updater_restarts"] for cycle in cycles),
        "alarm_lines": sum(len(start["alarms"]) for start in starts),
        "stop_s": last["stop_s"] if last else None,
        "failure": failure,
        "seconds": round(seconds, 1),
        "cycle_records": cycles,
        "last_start": last,
        "config": json.loads(config.model_dump_json()),
    }
    result["passed"] = passed(result)
    return result


def passed(result: dict) -> bool:
    return (
        result["failure"] is None
        and result["lost_samples"] == 0
        and result["served_not_published"] == 0
        and result["invalid_answers"] == 0
        and result["updater_restarts"] == 0
        and len(result["versions_published"]) > 0
    )


def format_report(result: dict) -> str:
    r = result
    restart = r["restart_s"] or {"median": float("nan"), "max": float("nan")}
    answered = r["versions_answered"]
    rows = [
        ("power cuts", f"{r['cycles']}, {r['kills_while_training']} of them while the updater trained"),
        (
            "feedback",
            f"{r['acknowledged_samples']} samples acknowledged, {r['lost_samples']} of them lost; "
            f"{r['feedback_requests']} requests, not acknowledged: "
            f"{statuses_text(r['unacknowledged_feedback_by_status'])}",
        ),
        (
            "versions",
            f"{len(r['versions_published'])} published, {len(answered)} answered "
            f"({min(answered, default=0)} to {max(answered, default=0)}); {r['served_not_published']} starts "
            f"serving another than the published one, {r['invalid_answers']} answered from one never published "
            f"or that does not load; {len(r['versions_never_published'])} saved but not published when the power "
            f"was cut, {len(r['torn_versions'])} left torn",
        ),
        (
            "restarts",
            f"healthy after median {restart['median']} s, max {restart['max']} s; "
            f"{r['updater_restarts']} updater restarts beyond them",
        ),
        ("stop", f"{r['stop_s']} s after SIGTERM to the group" if r["stop_s"] is not None else "not reached"),
        ("output", f"{r['alarm_lines']} lines of warnings or errors from the server's starts"),
        ("verdict", "ok" if r["passed"] else f"FAILED {r['failure'] or ''}".strip()),
    ]
    return aligned(rows)


def main(config: PowerCutConfig, base: AppConfig, out: Path) -> dict:
    result = run_power_cut(config, base)
    write_report(out, result)
    return result
