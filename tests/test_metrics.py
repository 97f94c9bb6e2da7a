"""The updater's gauges can be set again with their last values (Ray drops a gauge that is not), without Ray."""

from types import SimpleNamespace

import pytest
from ray.serve.metrics import Counter
from ray.util.metrics import Gauge

from serving.metrics import RememberedGauge, ReplicaMetrics, UpdaterMetrics


class RecordingGauge:
    def __init__(self):
        self.calls = []

    def set(self, value, tags=None):
        self.calls.append((value, tags))


def test_refresh_sets_the_last_value_of_each_tag_set_again():
    gauge = RecordingGauge()
    remembered = RememberedGauge(gauge)
    remembered.set(5, tags={"task": "first"})
    remembered.set(7, tags={"task": "first"})
    remembered.set(3, tags={"task": "second"})
    gauge.calls.clear()
    remembered.refresh()
    assert sorted(gauge.calls, key=str) == [(3, {"task": "second"}), (7, {"task": "first"})]


def test_refresh_of_an_untagged_gauge_and_of_nothing_set():
    gauge = RecordingGauge()
    remembered = RememberedGauge(gauge)
    remembered.refresh()
    assert gauge.calls == []
    remembered.set(2.5)
    remembered.refresh()
    assert gauge.calls == [(2.5, None), (2.5, None)]


@pytest.fixture
def recorded(monkeypatch):
    """What every Ray gauge is set to: {(metric, task): [values]}."""
    values = {}

    def record(gauge, value, tags=None):
        values.setdefault((gauge.info["name"], (tags or {}).get("task")), []).append(value)

    monkeypatch.setattr(Gauge, "set", record)
    return values


def test_the_updater_refreshes_every_gauge_it_set(recorded):
    metrics = UpdaterMetrics()
    metrics.observe_intake(12, {"second": {"cat": 8, "van": 4}}, known_added=0)
    outcome = SimpleNamespace(task="first", published=True, accuracy=91.0, forgetting={"zero": 4.5}, seconds=12.0)
    metrics.observe_training(outcome, {"second": {"cat": 8, "van": 4}}, finished_task_gone=True)
    before = {key: list(values) for key, values in recorded.items()}
    metrics.refresh()
    again = {key: values[len(before[key]) :] for key, values in recorded.items()}
    assert again == {
        ("rebq_samples_buffered", "second"): [12],
        ("rebq_samples_buffered", "first"): [0],
        ("rebq_task_accuracy", "first"): [91.0],
        ("rebq_task_forgetting", "zero"): [4.5],
    }


def test_samples_recovered_from_the_log_are_reported_and_kept(recorded):
    metrics = UpdaterMetrics()
    metrics.observe_buffered({"kill-test": {"fish": 2, "moon": 3}, "other": {}})
    assert recorded == {("rebq_samples_buffered", "kill-test"): [5], ("rebq_samples_buffered", "other"): [0]}
    metrics.refresh()
    assert recorded[("rebq_samples_buffered", "kill-test")] == [5, 5]


def test_a_dropped_task_buffers_nothing_from_then_on(recorded):
    metrics = UpdaterMetrics()
    metrics.observe_buffered({"to-drop": {"kite": 2}})
    metrics.observe_dropped("to-drop")
    metrics.refresh()
    assert recorded == {("rebq_samples_buffered", "to-drop"): [2, 0, 0]}


def test_a_replica_counts_unknown_answers_by_missing_pattern(monkeypatch):
    counted = []
    monkeypatch.setattr(
        Counter, "inc", lambda counter, value=1.0, tags=None: counted.append((counter.info["name"], value, tags))
    )
    metrics = ReplicaMetrics()
    metrics.observe_batch(5, 0.01, 1, 0, ["image_missing", "complete", "image_missing"])
    unknown = sorted((value, tags["missing"]) for name, value, tags in counted if name == "rebq_unknown_answers")
    assert unknown == [(1, "complete"), (2, "image_missing")]
    counted.clear()
    metrics.observe_batch(2, 0.01, 0, 0, [])
    assert [name for name, _, _ in counted if name == "rebq_unknown_answers"] == []
