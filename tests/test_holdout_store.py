"""The holdout store: written atomically, a damaged file set aside, each task's samples encoded once."""

import json
import logging
import os

import pytest

from updater.feedback_log import FeedbackLog, NewFeedback
from updater.holdout_store import HOLDOUT_FILE, HoldoutStore


@pytest.fixture
def log(tmp_path):
    log = FeedbackLog(tmp_path)
    log.append([NewFeedback(label=f"c{i}", task=None, text=f"text {i}", image_bytes=None) for i in range(6)])
    return log


class CountingEncoder:
    def __init__(self):
        self.calls = []

    def __call__(self, records):
        self.calls.append([record.offset for record in records])
        return f"encoded {[record.offset for record in records]}"


def test_each_task_is_read_and_encoded_once_in_the_order_added(log):
    store = HoldoutStore(log)
    records = log.records(range(6))
    store.add("second", records[4:6])
    store.add("first", records[0:2], batch="given")
    encode = CountingEncoder()
    held = store.held_back(["first", "second", "unknown"], encode)
    assert list(held) == ["second", "first"] and encode.calls == [[4, 5]]
    assert held["second"].labels == ["c4", "c5"] and held["second"].batch == "encoded [4, 5]"
    assert held["first"].batch == "given"
    assert store.held_back(["second"], encode)["second"].batch == "encoded [4, 5]" and encode.calls == [[4, 5]]
    store.add("second", records[2:3])  # trained again: its new slice replaces the old one
    assert store.held_back(["second"], encode)["second"].labels == ["c2"] and encode.calls == [[4, 5], [2]]
    assert json.loads((log.folder / HOLDOUT_FILE).read_text()) == {"second": [2], "first": [0, 1]}
    assert HoldoutStore(log).offsets == {"second": [2], "first": [0, 1]}


class Encoding:
    """An encoding of `rows` samples of 100 bytes each."""

    def __init__(self, rows):
        self.nbytes = 100 * rows


def test_encodings_past_the_memory_budget_are_dropped_oldest_first_and_encoded_again(log):
    store = HoldoutStore(log, memory_bytes=450)
    records = log.records(range(6))
    calls = []

    def encode(records):
        calls.append([record.offset for record in records])
        return Encoding(len(records))

    for task, rows in (("first", records[0:2]), ("second", records[2:4]), ("third", records[4:6])):
        store.add(task, rows)
    held = store.held_back(["first", "second", "third"], encode)  # 600 bytes asked for, 450 allowed
    assert {task: group.labels for task, group in held.items()} == {
        "first": ["c0", "c1"],
        "second": ["c2", "c3"],
        "third": ["c4", "c5"],
    }
    assert calls == [[0, 1], [2, 3], [4, 5]]
    store.held_back(["second", "third"], encode)  # the two newest were kept
    assert calls == [[0, 1], [2, 3], [4, 5]]
    store.held_back(["first"], encode)  # the oldest was dropped: encoded again, and now second is dropped
    assert calls == [[0, 1], [2, 3], [4, 5], [0, 1]]
    store.held_back(["second"], encode)
    assert calls[-1] == [2, 3]
    unlimited = HoldoutStore(log)
    unlimited.held_back(["first", "second", "third"], encode)
    unlimited.held_back(["first", "second", "third"], encode)
    assert len(calls) == 8  # without a budget each task is encoded once


def test_a_task_whose_samples_are_gone_has_no_batch(log):
    store = HoldoutStore(log)
    store.add("far", [])
    encode = CountingEncoder()
    assert store.held_back(["far"], encode)["far"].records == [] and encode.calls == []


def test_a_write_cut_short_leaves_the_old_file_and_no_debris(log, monkeypatch):
    store = HoldoutStore(log)
    store.add("first", log.records([0, 1]))
    before = (log.folder / HOLDOUT_FILE).read_bytes()

    def power_cut(source, target):
        raise OSError("power cut before the rename")

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(OSError, match="power cut"):
        store.add("second", log.records([2]))
    monkeypatch.undo()
    assert (log.folder / HOLDOUT_FILE).read_bytes() == before and store.offsets == {"first": [0, 1]}
    assert sorted(path.name for path in log.folder.iterdir()) == ["holdout.json", "images", "log.jsonl"]


@pytest.mark.parametrize(
    "damaged",
    [b'{"first": [0, 1', b'["first"]', b'{"first": ["0"]}', b"\xff\xfe"],
)
def test_a_damaged_file_is_set_aside_loudly_and_read_as_empty(log, caplog, damaged):
    (log.folder / HOLDOUT_FILE).write_bytes(damaged)
    with caplog.at_level(logging.ERROR):
        store = HoldoutStore(log)
    assert store.offsets == {} and not (log.folder / HOLDOUT_FILE).exists()
    assert (log.folder / "holdout.json.unreadable").read_bytes() == damaged
    assert "holdout.json is unreadable" in caplog.text and "starting without it" in caplog.text
    store.add("first", log.records([0]))  # and it is written anew
    assert HoldoutStore(log).offsets == {"first": [0]}
