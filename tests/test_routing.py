"""Routing logged samples to pending tasks, and the names of automatic tasks."""

from updater.feedback_log import FeedbackRecord
from updater.routing import Router


def record(offset: int, label: str, task: str | None = None) -> FeedbackRecord:
    return FeedbackRecord(offset, label, task, "t", None, 0.0)


def test_samples_join_their_task_their_class_or_the_open_automatic_task():
    training = [None]
    router = Router(lambda: {"dog": "feedback-1"}, lambda: training[0])
    router.route(record(0, "dog"), now=1.0)  # learned: counted only
    router.route(record(1, "cat"), now=2.0)
    router.route(record(2, "hen", task="farm"), now=3.0)
    router.route(record(3, "hen"), now=4.0)  # joins the task holding its class
    assert router.known_samples == 1
    assert router.buffered() == {"feedback-2": {"cat": 1}, "farm": {"hen": 2}}
    training[0] = "feedback-2"  # an automatic task is closed once it trains
    router.route(record(4, "owl"), now=5.0)
    assert router.buffered()["feedback-3"] == {"owl": 1} and router.pending["farm"].last_received == 4.0
    assert router.first_waiting() == 1


def test_consuming_keeps_what_arrived_during_training():
    router = Router(dict, lambda: None)
    for offset in range(4):
        router.route(record(offset, "cat", task="pets"), now=offset)
    router.pending["pets"].tried_with = 2
    router.consume("pets", 3)
    assert [r.offset for r in router.pending["pets"].records] == [3] and router.pending["pets"].tried_with == 0
    router.consume("pets", 1)
    assert router.pending == {} and router.first_waiting() is None
