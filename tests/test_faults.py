"""Faults on the live server: a replica killed, the updater killed; nothing acknowledged is lost."""

import time

import httpx
import ray

from model.published import published_version
from serving.deployment import REPLICA_NAMESPACE, replica_actor_names
from serving.http_api import BATCH_ID_HEADER
from tests.updaters import feedback_samples
from updater.actor import NAMESPACE, UPDATER_NAME


def replica_actor_name() -> str:
    names = replica_actor_names()
    assert len(names) == 1, names
    return names[0]


def wait_for_answer(live_server, timeout_s: float = 120) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            response = live_server.post("/v1/predict", json={"text": "a red dog"})
            if response.status_code == 200:
                return response
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("no answer after the replica was killed")


def test_a_killed_replica_comes_back_serving_the_published_version(live_server):
    before = live_server.post("/v1/predict", json={"text": "a red dog"})
    old_replica = before.headers[BATCH_ID_HEADER].split("-")[0]
    name = replica_actor_name()
    ray.kill(ray.get_actor(name, namespace=REPLICA_NAMESPACE), no_restart=True)
    answer = wait_for_answer(live_server)
    assert answer.headers[BATCH_ID_HEADER].split("-")[0] != old_replica  # a new replica answers
    assert answer.json()["model_version"] == published_version(live_server.state_dir)


def test_a_killed_updater_comes_back_with_every_acknowledged_sample(live_server):
    accepted = live_server.post("/v1/feedback", json={"samples": feedback_samples(["fish"], 2, task="kill-test")})
    assert accepted.status_code == 202
    before = live_server.get("/v1/model").json()["updater"]
    ray.kill(ray.get_actor(UPDATER_NAME, namespace=NAMESPACE), no_restart=False)
    served = published_version(live_server.state_dir)
    rolled = live_server.post("/v1/model/rollback", json={"version": served})  # needs no updater
    assert rolled.status_code == 200 and rolled.json() == {"version": served}
    deadline, status = time.monotonic() + 120, None
    while time.monotonic() < deadline:  # until the restarted updater answers, not the one being killed
        status = live_server.get("/v1/model").json()["updater"]
        if status is not None and status["started"] > before["started"]:
            break
        time.sleep(0.5)
    assert status is not None and status["started"] > before["started"]
    assert status["buffered"]["kill-test"] == before["buffered"]["kill-test"] == {"fish": 2}
    again = live_server.post("/v1/feedback", json={"samples": feedback_samples(["fish"], 1, task="kill-test")})
    assert again.status_code == 202 and again.json()["offset"] == accepted.json()["offset"] + 1


def test_a_corrupted_published_version_is_refused_and_the_old_one_kept(live_server):
    import shutil

    from model.published import POINTER_FILE, publish
    from model.state import TENSORS_FILE, list_versions, version_folder

    served = live_server.version()
    broken = max(list_versions(live_server.state_dir)) + 1
    shutil.copytree(version_folder(live_server.state_dir, served), version_folder(live_server.state_dir, broken))
    tensors = version_folder(live_server.state_dir, broken) / TENSORS_FILE
    tensors.write_bytes(tensors.read_bytes()[: tensors.stat().st_size // 2])  # truncated on disk
    (live_server.state_dir / POINTER_FILE).write_text(f'{{"version": {broken}}}')
    deadline, listed = time.monotonic() + 30, {}
    while time.monotonic() < deadline and not listed.get("refused"):  # until the replica has looked at it
        listed = {v["version"]: v for v in live_server.get("/v1/versions").json()}.get(broken, {})
        time.sleep(0.1)
    assert listed["refused"] == "its files are missing, unreadable or corrupted" and not listed["served"]
    assert live_server.version() == served
    answer = live_server.post("/v1/predict", json={"text": "a red dog"})
    assert answer.status_code == 200 and answer.json()["model_version"] == served
    publish(live_server.state_dir, served)
    shutil.rmtree(version_folder(live_server.state_dir, broken))
