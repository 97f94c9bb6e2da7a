"""The updater at work without Ray: intake, training on request, dropping, and what it reports."""

import threading

import pytest

from tests.updaters import feedback, make
from updater.errors import TaskNotBuffered, TaskTraining, TrainingBusy
from updater.service import UpdaterService


class RecordingObserver:
    refresh_s = 3600.0

    def __init__(self):
        self.seen = []
        self.trained = threading.Event()

    def observe_intake(self, accepted, buffered, known_added):
        self.seen.append(("intake", accepted, buffered, known_added))

    def observe_buffered(self, buffered):
        self.seen.append(("buffered", buffered))

    def observe_training(self, outcome, buffered, finished_task_gone):
        self.seen.append(("training", outcome.task, outcome.published, buffered, finished_task_gone))
        self.trained.set()

    def observe_dropped(self, task):
        self.seen.append(("dropped", task))

    def refresh(self):
        pass


@pytest.fixture
def service(tmp_path, tiny_backbone):
    started = UpdaterService(make(tmp_path, tiny_backbone, quiet_seconds=3600), RecordingObserver())
    yield started
    started.stop()


def test_intake_and_refusals(service):
    assert service.accept(feedback(["dog"], 2, task="pets")) == (2, 2)
    assert service.observer.seen == [("buffered", {}), ("intake", 2, {"pets": {"dog": 2}}, 0)]
    with pytest.raises(TaskNotBuffered):
        service.train_now("plants")
    service.updater.training = "pets"  # as while it trains
    with pytest.raises(TrainingBusy, match="task pets is training; try again after it"):
        service.train_now("pets")
    with pytest.raises(TaskTraining):
        service.drop_task("pets")
    service.updater.training = None
    assert service.drop_task("pets") == 2 and service.observer.seen[-1] == ("dropped", "pets")
    with pytest.raises(TaskNotBuffered):
        service.drop_task("pets")
    assert service.status()["buffered"] == {} and service.status()["started"] == service.started


def test_a_training_on_request_runs_on_its_own_thread_and_is_reported(service):
    service.accept(feedback(["dog", "bus"], 4, task="pets"))
    service.accept(feedback(["tree"], 2, task="plants"))
    service.train_now("pets")
    assert service.observer.trained.wait(120)
    assert service.observer.seen[-1] == ("training", "pets", True, {"plants": {"tree": 2}}, True)
    assert service.status()["last_training"]["version"] == 1 and service.status()["state"] == "idle"
