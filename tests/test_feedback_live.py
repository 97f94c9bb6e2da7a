"""Feedback to a live server: durable intake, training on demand, the new version served, rollback."""

import shutil
import time

import httpx

from model.published import published_version
from model.state import TENSORS_FILE, list_versions, version_folder
from tests.live_server import scrape_until
from tests.updaters import feedback_samples
from updater.feedback_log import FeedbackLog


def wait_for_training(live_server, task: str, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        updater = live_server.get("/v1/model").json()["updater"]
        last = updater["last_training"]
        if updater["state"] == "idle" and last and last["task"] == task:
            return last
        time.sleep(0.2)
    raise AssertionError(f"task {task} not trained within {timeout_s} s")


def test_feedback_is_logged_trained_on_demand_and_served(live_server):
    before = live_server.version()
    body = {"samples": feedback_samples(["frog", "star"], 4, task="sky")}
    response = live_server.post("/v1/feedback", json=body)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["accepted"] == 8
    logged = list(FeedbackLog(live_server.state_dir / "feedback").read())
    assert len(logged) >= accepted["offset"] and {r.label for r in logged[-8:]} == {"frog", "star"}
    updater = live_server.get("/v1/model").json()["updater"]
    assert updater["buffered"]["sky"] == {"frog": 4, "star": 4}

    started = live_server.post("/v1/tasks/sky/train")
    assert started.status_code == 202 and started.json() == {"task": "sky", "state": "training"}
    while live_server.get("/v1/model").json()["updater"]["state"] == "training":  # predictions go on meanwhile
        assert live_server.post("/v1/predict", json={"text": "a red dog"}).status_code == 200
        time.sleep(0.1)
    outcome = wait_for_training(live_server, "sky")
    assert outcome["published"] and outcome["version"] > before, outcome
    live_server.wait_for_version(outcome["version"])
    info = live_server.get("/v1/model").json()
    assert info["tasks"][-1] == {"name": "sky", "classes": ["frog", "star"]}
    assert "sky" not in info["updater"]["buffered"]
    assert published_version(live_server.state_dir) == outcome["version"]

    scrape_until(
        live_server.metrics_url,
        lambda text: (
            'outcome="published"' in text
            and "ray_rebq_feedback_accepted_total" in text
            and "ray_rebq_task_accuracy{" in text
            and 'task="sky"' in text
        ),
    )

    rolled = live_server.post("/v1/model/rollback", json={"version": before})
    assert rolled.status_code == 200 and rolled.json() == {"version": before}
    live_server.wait_for_version(before)
    assert live_server.post("/v1/model/rollback", json={"version": outcome["version"]}).status_code == 200
    live_server.wait_for_version(outcome["version"])


def test_feedback_refusals(live_server):
    bad = live_server.post("/v1/feedback", json={"samples": [{"text": "x", "label": "a"}, {"label": "b"}]})
    assert bad.status_code == 422 and bad.json()["field"] == "samples[1].image"
    assert live_server.post("/v1/tasks/unknown/train").status_code == 404
    missing = live_server.post("/v1/model/rollback", json={"version": 999})
    assert missing.status_code == 404 and missing.json() == {
        "field": "version",
        "detail": "version: 999 does not exist",
    }


def test_a_corrupted_version_is_refused_in_plain_words(live_server):
    served = live_server.version()
    number = max(list_versions(live_server.state_dir)) + 1
    broken = version_folder(live_server.state_dir, number)
    shutil.copytree(version_folder(live_server.state_dir, served), broken)
    try:
        (broken / TENSORS_FILE).write_bytes(b"not the tensors its manifest names")
        refused = live_server.post("/v1/model/rollback", json={"version": number})
        assert refused.status_code == 409
        detail = refused.json()["detail"]
        assert detail.endswith(
            "cannot be served: its files are missing, unreadable or corrupted (the server's log says which)"
        )
        assert str(live_server.state_dir) not in detail and "Error" not in detail
        assert live_server.version() == served
    finally:
        shutil.rmtree(broken)


def test_a_buffered_task_can_be_dropped(live_server):
    sent = live_server.post("/v1/feedback", json={"samples": feedback_samples(["kite"], 2, task="to-drop")})
    assert sent.status_code == 202
    assert live_server.get("/v1/model").json()["updater"]["buffered"]["to-drop"] == {"kite": 2}
    dropped = httpx.delete(live_server.url + "/v1/tasks/to-drop", timeout=30)
    assert dropped.status_code == 200 and dropped.json() == {"task": "to-drop", "dropped": 2}
    assert "to-drop" not in live_server.get("/v1/model").json()["updater"]["buffered"]
    again = httpx.delete(live_server.url + "/v1/tasks/to-drop", timeout=30)
    assert again.status_code == 404 and again.json()["field"] == "name"


def test_feedback_for_learned_classes_is_counted_not_buffered(live_server):
    counted = live_server.get("/v1/model").json()["updater"]["known_class_samples"]
    assert live_server.post("/v1/feedback", json={"samples": feedback_samples(["dog"], 2)}).status_code == 202
    updater = live_server.get("/v1/model").json()["updater"]
    assert updater["known_class_samples"] == counted + 2 and "dog" not in str(updater["buffered"])
