"""When a pending task is due: enough samples of each class, a quiet spell, more than its last refusal had."""

from updater.config import UpdaterConfig
from updater.feedback_log import FeedbackRecord
from updater.routing import PendingTask
from updater.schedule import first_due, is_due

CONFIG = UpdaterConfig(min_samples_per_class=3, quiet_seconds=30.0)


def task(name: str, labels: str, last_received: float = 100.0, tried_with: int = 0) -> PendingTask:
    records = [FeedbackRecord(i, label, None, "t", None, 0.0) for i, label in enumerate(labels)]
    return PendingTask(name, automatic=False, records=records, last_received=last_received, tried_with=tried_with)


def test_each_class_needs_enough_samples():
    assert not is_due(task("t", "aaabb"), CONFIG, now=1000.0)
    assert is_due(task("t", "aaabbb"), CONFIG, now=1000.0)
    assert not is_due(task("t", ""), CONFIG, now=1000.0)


def test_a_quiet_spell_since_the_last_sample():
    assert not is_due(task("t", "aaa"), CONFIG, now=129.9)
    assert is_due(task("t", "aaa"), CONFIG, now=130.0)


def test_a_refused_task_waits_for_new_samples():
    assert not is_due(task("t", "aaabbb", tried_with=6), CONFIG, now=1000.0)
    assert is_due(task("t", "aaabbbb", tried_with=6), CONFIG, now=1000.0)


def test_the_first_due_task_in_order():
    tasks = [task("early", "aa"), task("second", "aaa", last_received=200.0), task("third", "bbb")]
    assert first_due(tasks, CONFIG, now=229.0) == "third"
    assert first_due(tasks, CONFIG, now=230.0) == "second"
    assert first_due(tasks[:1], CONFIG, now=1e9) is None
