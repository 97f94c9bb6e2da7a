"""The faults of `bench faults`, each a function of a running `Bench` that returns a `Verdict`.

1. `updater_killed_in_training`: a task of new classes is fed and trained; while the updater says it is
   training, its actor is killed and Ray restarts it. It must come back holding the whole task (read
   again from the log beyond its committed offset) and train it again to a published version.
2. `replica_killed`: a replica's actor is killed; Serve starts another, which serves the published version.
3. `corrupted_state_published`: a copy of the served version with its tensors cut in half is published;
   no answer may come from it, and the served version stays until the pointer is put back.
4. `wrecking_feedback`: the first task's samples, relabelled at random into two new classes, are fed and
   trained; the gate must refuse to publish (the first task would lose its held-back accuracy).
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import ray

from benchmarks.feedback_ledger import FeedbackLedger, SentSample
from benchmarks.swap import LoadLoop, rollback
from model.durable_files import write_atomically
from model.published import POINTER_FILE, publish
from model.state import TENSORS_FILE, list_versions, version_folder
from serving.deployment import REPLICA_NAMESPACE, replica_actor_names, running_replicas
from updater.actor import updater_handle


class FaultError(RuntimeError):
    """A fault that could not be carried out as planned."""


@dataclass
class Bench:
    """What the faults act on and watch: the server, the load on it, and the feedback acknowledged."""

    url: str
    state_dir: Path  # the server's
    client: httpx.Client  # carries the token
    ledger: FeedbackLedger
    load: LoadLoop
    stamp: str  # makes this run's task names unique
    timeout_s: float  # for any one thing a fault waits for
    corrupt_hold_s: float  # how long the corrupted version stays published


@dataclass(frozen=True)
class Verdict:
    outcome: str
    passed: bool


def wait_until(condition: Callable[[], object], timeout_s: float, what: str):
    """`condition()`'s first true value, polled every 50 ms."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")


def model_info(bench: Bench) -> dict:
    return bench.client.get(bench.url + "/v1/model").json()


def learned_classes(info: dict) -> set[str]:
    return {name for task in info["tasks"] for name in task["classes"]}


def wait_for_version(bench: Bench, version: int) -> None:
    wait_until(lambda: model_info(bench)["version"] == version, bench.timeout_s, f"version {version}")


def start_training(bench: Bench, task: str) -> str:
    started = bench.client.post(f"{bench.url}/v1/tasks/{task}/train")
    if started.status_code != 202:
        raise FaultError(f"training task {task}: {started.status_code} {started.text}")
    return task


def feed_and_train(bench: Bench, samples: list[SentSample]) -> str:
    task = samples[0].task
    if not bench.ledger.send(bench.client, samples):
        raise FaultError(f"the feedback of task {task} was not acknowledged")
    return start_training(bench, task)


def training_outcome(bench: Bench, task: str) -> dict:
    """The updater's last training once it is `task`'s and the updater is idle again."""

    def finished():
        updater = model_info(bench)["updater"]
        last = updater and updater["state"] == "idle" and updater["last_training"]
        return last if last and last["task"] == task else None

    return wait_until(finished, bench.timeout_s, f"task {task} trained")


def updater_killed_in_training(bench: Bench, samples: list[SentSample]) -> Verdict:
    task = samples[0].task
    if not bench.ledger.send(bench.client, samples):
        raise FaultError(f"the feedback of task {task} was not acknowledged")
    before = model_info(bench)
    committed, version = before["updater"]["committed_offset"], before["version"]
    start_training(bench, task)  # answered 202 once the updater's training thread runs: kill it now
    ray.kill(updater_handle(), no_restart=False)
    killed = time.monotonic()

    def back():
        info = model_info(bench)
        updater = info["updater"]
        if updater is None:
            return None
        if info["version"] != version or (updater["state"] == "idle" and task not in updater["buffered"]):
            raise FaultError(f"task {task} finished training before the updater was killed")
        return updater if updater["state"] == "idle" and task in updater["buffered"] else None  # restarted

    status = wait_until(back, bench.timeout_s, "the updater back")
    back_s, held = time.monotonic() - killed, status["buffered"][task]
    resumed = held == dict(Counter(s.label for s in samples)) and status["committed_offset"] == committed
    outcome = training_outcome(bench, start_training(bench, task))
    if outcome["published"]:
        wait_for_version(bench, outcome["version"])
    text = (
        f"killed while training {task}; back after {back_s:.1f} s from committed offset {committed}, holding "
        f"{sum(held.values())} of its {len(samples)} samples; trained again: {outcome['reason']}"
    )
    return Verdict(text, resumed and outcome["published"])


def replica_killed(bench: Bench) -> Verdict:
    replicas = replica_actor_names()
    if not replicas:
        raise FaultError("no replica actor found in the server's Ray")
    victim = replicas[0]
    ray.kill(ray.get_actor(victim, namespace=REPLICA_NAMESPACE), no_restart=True)
    killed = time.monotonic()

    def replaced() -> bool:
        names = replica_actor_names()
        return victim not in names and len(names) == len(replicas) and running_replicas() == len(replicas)

    wait_until(replaced, bench.timeout_s, "the replica replaced")
    seconds = time.monotonic() - killed
    answer = bench.client.post(bench.url + "/v1/predict", json={"text": LoadLoop.TEXTS[0]})
    served = model_info(bench)["version"]
    version = answer.json().get("model_version") if answer.status_code == 200 else None
    text = f"replica {victim.rsplit('#', 1)[-1]} killed; {len(replicas)} running again after {seconds:.1f} s"
    return Verdict(f"{text}, answering from version {version}", version == served)


def corrupted_state_published(bench: Bench) -> Verdict:
    state_dir = bench.state_dir
    served = model_info(bench)["version"]
    broken = max(list_versions(state_dir)) + 1
    folder = version_folder(state_dir, broken)
    shutil.copytree(version_folder(state_dir, served), folder)
    tensors = folder / TENSORS_FILE
    tensors.write_bytes(tensors.read_bytes()[: tensors.stat().st_size // 2])  # cut short, as by a full disk
    write_atomically(state_dir / POINTER_FILE, json.dumps({"version": broken}).encode())
    published = time.monotonic()
    try:
        time.sleep(bench.corrupt_hold_s)
        versions = {a.version for a in bench.load.since(published) if a.status == 200}
        still = model_info(bench)["version"]
    finally:
        publish(state_dir, served)
        shutil.rmtree(folder)
    text = f"version {broken} (tensors cut in half) published for {bench.corrupt_hold_s:.1f} s"
    kept = versions == {served} and still == served
    return Verdict(f"{text}: answers from versions {sorted(versions)}, version {still} served", kept)


def wrecking_feedback(bench: Bench, learned: list[SentSample]) -> Verdict:
    info = model_info(bench)
    if not {sample.label for sample in learned} <= learned_classes(info):
        return Verdict("not run: the task it would wreck was not learned", False)
    task = f"wreck-{bench.stamp}"
    labels, pick = (f"{task}-a", f"{task}-b"), random.Random(0)
    wrecking = [replace(sample, label=pick.choice(labels), task=task) for sample in learned]
    outcome = training_outcome(bench, feed_and_train(bench, wrecking))
    if outcome["published"]:
        rollback(bench.client, bench.url, info["version"])
        return Verdict(f"published as version {outcome['version']}, rolled back to {info['version']}", False)
    kept = model_info(bench)["version"]
    lost = ", ".join(f"{name} {points:.1f}" for name, points in outcome["forgetting"].items())
    return Verdict(
        f"{outcome['reason']} (points earlier tasks would lose: {lost}); version {kept} kept",
        kept == info["version"],
    )
