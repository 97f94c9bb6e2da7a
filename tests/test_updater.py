import json
import logging
import random

import pytest

from model.published import load_published, published_version
from tests.updaters import feedback, make
from updater import updater as updater_module
from updater.errors import TaskNotBuffered, TaskTraining
from updater.feedback_log import FeedbackRecord, NewFeedback
from updater.holdout import split_holdout


def test_grouping_by_task_field_and_by_new_labels(tmp_path, tiny_backbone):
    updater = make(tmp_path, tiny_backbone)
    assert updater.accept(feedback(["dog"], 2, task="pets")) == (2, 2)
    updater.accept(feedback(["bus", "tree"], 2))
    updater.accept(feedback(["tree", "cake"], 1))
    assert updater.status()["buffered"] == {
        "pets": {"dog": 2},
        "feedback-1": {"bus": 2, "tree": 3, "cake": 1},
    }


def test_due_needs_enough_samples_and_quiet(tmp_path, tiny_backbone):
    updater = make(tmp_path, tiny_backbone, quiet_seconds=60)
    updater.accept(feedback(["dog", "bus"], 3))
    assert updater.due() is None  # not quiet yet
    task = updater.pending["feedback-1"]
    assert updater.due(now=task.last_received + 61) == "feedback-1"
    updater.accept(feedback(["tree"], 2))
    assert updater.due(now=task.last_received + 1000) is None  # tree has 2 of 3


def test_split_holdout_keeps_a_training_sample_per_class():
    made = [FeedbackRecord(i, "a" if i < 8 else "b", None, f"text {i}", None, 0.0) for i in range(10)]
    train, held = split_holdout(made, 0.25)
    assert [r.offset for r in held] == [0, 4] and len(train) == 8  # b (2 samples) gives 0 at 0.25


def test_train_publishes_then_old_classes_are_only_counted(tmp_path, tiny_backbone):
    updater = make(tmp_path, tiny_backbone)
    updater.accept(feedback(["dog", "bus"], 5))
    outcome = updater.train(updater.due())
    assert outcome.published and outcome.version == 1 and published_version(tmp_path) == 1
    assert outcome.held_back == 2 and outcome.train_samples == 8 and outcome.accuracy is not None
    published = load_published(tmp_path)
    assert published.manifest.notes["gate"] == {"accuracy": outcome.accuracy, "forgetting": {}, "held_back": 2}
    assert (published.tensors["calibration.temperature"] != 1).all()  # calibrated on the held-back samples
    assert updater.status()["buffered"] == {} and updater.status()["committed_offset"] == 10
    updater.accept(feedback(["dog"], 2))
    assert updater.status()["known_class_samples"] == 2 and updater.status()["buffered"] == {}
    updater.accept(feedback(["tree", "cake"], 4))
    second = updater.train("feedback-2")
    assert second.published and second.version == 2 and set(second.forgetting) == {"feedback-1"}


def test_the_gate_refuses_a_task_it_cannot_learn(tmp_path, tiny_backbone):
    updater = make(tmp_path, tiny_backbone, min_accuracy=95.0, holdout_fraction=0.4)
    updater.accept(feedback(["dog", "bus", "tree", "cake"], 5, shuffle_labels=True))
    outcome = updater.train("feedback-1")
    assert not outcome.published and "under min_accuracy" in outcome.reason
    assert published_version(tmp_path) is None and updater.status()["last_training"]["published"] is False
    assert updater.due() is None  # not retried until new samples come
    updater.accept(feedback(["dog"], 1))
    assert updater.due() == "feedback-1"


def test_restart_recovers_what_the_log_holds_beyond_the_committed_offset(tmp_path, tiny_backbone):
    first = make(tmp_path, tiny_backbone)
    first.accept(feedback(["dog", "bus"], 4))
    first.train("feedback-1")
    first.accept(feedback(["tree"], 3, task="plants"))
    restarted = make(tmp_path, tiny_backbone)
    assert restarted.status()["buffered"] == {"plants": {"tree": 3}}
    assert restarted.status()["committed_offset"] == 8 and restarted.log.end == 11
    assert restarted.train("plants").published and published_version(tmp_path) == 2
    assert make(tmp_path, tiny_backbone).status()["buffered"] == {}


def test_training_an_unknown_task_is_refused(tmp_path, tiny_backbone):
    with pytest.raises(TaskNotBuffered, match="no samples are buffered for task 'nothing'"):
        make(tmp_path, tiny_backbone).train("nothing")


def test_feedback_that_would_wreck_an_old_task_is_refused(tmp_path, tiny_backbone):
    updater = make(tmp_path, tiny_backbone, max_forgetting=10.0, holdout_fraction=0.4)
    updater.accept(feedback(["dog", "bus"], 6))
    first = updater.train("feedback-1")
    assert first.published and first.accuracy >= 50.0
    wrecking = [  # old classes' pictures and texts, relabelled at random into two new classes
        NewFeedback(
            label=random.Random(i).choice(["cat", "hen"]), task="wreck", text=s.text, image_bytes=s.image_bytes
        )
        for i, s in enumerate(feedback(["dog", "bus"], 6))
    ]
    updater.accept(wrecking)
    outcome = updater.train("wreck")
    assert not outcome.published and "task feedback-1 would lose" in outcome.reason, outcome
    assert outcome.forgetting["feedback-1"] > 10.0
    assert published_version(tmp_path) == 1


def test_a_dropped_task_is_gone_for_good_and_the_others_stay(tmp_path, tiny_backbone):
    updater = make(tmp_path, tiny_backbone)
    updater.accept(feedback(["dog"], 2, task="pets"))  # offsets 0-1
    updater.accept(feedback(["tree"], 3, task="plants"))  # offsets 2-4
    updater.accept(feedback(["bus"], 2, task="pets"))  # offsets 5-6
    assert updater.drop("plants") == 3
    assert updater.status()["buffered"] == {"pets": {"dog": 2, "bus": 2}}
    assert updater.status()["committed_offset"] == 0  # pets still waits at offset 0
    restarted = make(tmp_path, tiny_backbone)  # the log is read again from offset 0
    assert restarted.status()["buffered"] == {"pets": {"dog": 2, "bus": 2}}
    assert restarted.drop("pets") == 4
    assert restarted.status()["committed_offset"] == 7 and restarted.status()["buffered"] == {}
    assert make(tmp_path, tiny_backbone).status()["buffered"] == {}


def test_only_a_buffered_task_that_is_not_training_can_be_dropped(tmp_path, tiny_backbone):
    updater = make(tmp_path, tiny_backbone)
    with pytest.raises(TaskNotBuffered):
        updater.drop("nothing")
    updater.accept(feedback(["dog"], 2, task="pets"))
    updater.training = "pets"  # as while train() runs
    with pytest.raises(TaskTraining, match="task pets is training; drop it after"):
        updater.drop("pets")
    assert updater.status()["buffered"] == {"pets": {"dog": 2}}


def test_a_refused_task_can_be_dropped_and_no_longer_holds_the_log_back(tmp_path, tiny_backbone):
    updater = make(tmp_path, tiny_backbone, min_accuracy=95.0, holdout_fraction=0.4)
    updater.accept(feedback(["dog", "bus", "tree", "cake"], 5, shuffle_labels=True))
    assert not updater.train("feedback-1").published
    assert updater.status()["committed_offset"] == 0
    updater.drop("feedback-1")
    assert updater.status()["committed_offset"] == 20


def test_an_unreadable_holdout_file_is_set_aside_and_the_updater_starts(tmp_path, tiny_backbone, caplog):
    updater = make(tmp_path, tiny_backbone)
    updater.accept(feedback(["dog", "bus"], 5))
    assert updater.train(updater.due()).published
    holdout = updater.log.folder / "holdout.json"
    assert json.loads(holdout.read_text()) == {"feedback-1": [0, 5]} == updater.holdout.offsets
    holdout.write_bytes(holdout.read_bytes()[:7])  # torn, as a disk fault could leave it
    restarted = make(tmp_path, tiny_backbone)
    assert restarted.holdout.offsets == {} and not holdout.exists()
    assert (updater.log.folder / "holdout.json.unreadable").read_bytes() == b'{"feedba'[:7]
    assert "holdout.json is unreadable" in caplog.text
    restarted.accept(feedback(["tree", "cake"], 4))
    assert restarted.train("feedback-2").published  # the gate measures what it can


def test_a_damaged_dropped_file_brings_the_dropped_samples_back_rather_than_losing_any(tmp_path, tiny_backbone):
    updater = make(tmp_path, tiny_backbone)
    updater.accept(feedback(["dog"], 2, task="pets"))  # offsets 0-1
    updater.accept(feedback(["tree"], 3, task="plants"))  # offsets 2-4
    updater.drop("plants")
    dropped = updater.log.folder / "dropped.json"
    assert json.loads(dropped.read_text()) == [2, 3, 4]
    dropped.write_bytes(b"[2, 3")
    restarted = make(tmp_path, tiny_backbone)
    assert restarted.status()["buffered"] == {"pets": {"dog": 2}, "plants": {"tree": 3}}
    assert (updater.log.folder / "dropped.json.unreadable").read_bytes() == b"[2, 3"


def test_a_damaged_committed_offset_rereads_the_whole_log(tmp_path, tiny_backbone, caplog):
    updater = make(tmp_path, tiny_backbone)
    updater.accept(feedback(["dog", "bus"], 5))
    assert updater.train("feedback-1").published and updater.status()["committed_offset"] == 10
    updater.accept(feedback(["tree"], 2))
    (updater.log.folder / "committed.json").write_bytes(b'{"offs')
    with caplog.at_level(logging.ERROR):
        restarted = make(tmp_path, tiny_backbone)
    assert "committed.json is unreadable" in caplog.text
    status = restarted.status()
    assert status["committed_offset"] == 0 and status["known_class_samples"] == 10  # learned: counted only
    assert status["buffered"] == {"feedback-2": {"tree": 2}}


def test_held_back_samples_are_encoded_once(tmp_path, tiny_backbone, monkeypatch):
    encoded = []

    def counting(model, log, records):
        encoded.append(len(records))
        return encode(model, log, records)

    encode = updater_module.encode_records
    monkeypatch.setattr(updater_module, "encode_records", counting)
    first = make(tmp_path, tiny_backbone)
    first.accept(feedback(["dog", "bus"], 5))
    assert first.train("feedback-1").published and encoded == [2, 8]  # held back, then trained on
    restarted = make(tmp_path, tiny_backbone)
    restarted.accept(feedback(["tree", "cake"], 4))
    encoded.clear()
    assert restarted.train("feedback-2").published and encoded == [2, 2, 6]  # feedback-1's held back, once
    restarted.accept(feedback(["frog", "star"], 4))
    encoded.clear()
    outcome = restarted.train("feedback-3")
    assert outcome.published and encoded == [2, 6] and set(outcome.forgetting) == {"feedback-1", "feedback-2"}
