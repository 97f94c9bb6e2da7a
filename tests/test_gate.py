"""The gate: accuracy of each group of held-back samples, what earlier tasks lost, and the thresholds."""

from types import SimpleNamespace

import torch

from model.batch import EncodedBatch
from updater.config import UpdaterConfig
from updater.gate import GateSamples, forgetting, refusal, scores
from updater.holdout_store import HeldBack

CONFIG = UpdaterConfig(min_accuracy=60.0, max_forgetting=5.0)


def test_scores_are_the_percent_right_of_each_group_in_order():
    predicted = ["a", "b", "a", "c", "b"]
    groups = {None: ["a", "a"], "empty": [], "old": ["a", "c", "c"]}
    assert scores(predicted, groups) == {None: 50.0, "old": 200.0 / 3}


def test_forgetting_is_what_each_earlier_task_lost():
    before = {None: 10.0, "old": 80.0, "older": 60.0, "gone": 50.0}
    after = {None: 90.0, "old": 75.5, "older": 70.0}
    assert forgetting(before, after) == {"old": 4.5, "older": -10.0}


def test_the_thresholds():
    assert refusal(None, {}, CONFIG) == "refused: no held-back sample to test the new task with"
    assert refusal(59.94, {}, CONFIG) == (
        "refused: accuracy 59.9% on held-back samples is under min_accuracy 60.0%"
    )
    assert refusal(60.0, {"old": 5.0, "older": -3.0}, CONFIG) is None  # at the limits: through
    assert refusal(100.0, {"old": 5.01, "older": 7.34, "oldest": 6.0}, CONFIG) == (
        "refused: task older would lose 7.3 points, over max_forgetting 5.0"
    )


def rows(*codes: int, text_length: int = 3) -> EncodedBatch:
    """A batch whose row i is recognised as class `codes[i]` by `ByFirstFeature`."""
    count = len(codes)
    return EncodedBatch(
        has_image=torch.ones(count, dtype=torch.bool),
        has_text=torch.ones(count, dtype=torch.bool),
        q_image=torch.tensor([[float(code), 0.0] for code in codes]),
        q_text=torch.zeros(count, 2),
        input_ids=torch.ones(count, text_length, dtype=torch.int64),
        attention_mask=torch.ones(count, text_length, dtype=torch.int64),
    )


class ByFirstFeature:
    classes = ["a", "b", "c"]

    def predict(self, batch, top_k):
        return [SimpleNamespace(labels=[self.classes[int(code)]]) for code in batch.q_image[:, 0].tolist()]


def test_every_group_is_measured_in_one_batch_in_order():
    new = HeldBack([SimpleNamespace(label="a"), SimpleNamespace(label="b")], rows(0, 0))
    old = HeldBack([SimpleNamespace(label="c")] * 3, rows(2, 2, 1, text_length=5))
    none_left = HeldBack([], None)
    tested = GateSamples({None: new, "none-left": none_left, "old": old})
    assert len(tested.batch) == 5 and tested.batch.input_ids.shape == (5, 5)
    assert tested.labels == ["a", "b", "c", "c", "c"]
    assert tested.accuracies(ByFirstFeature()) == {None: 50.0, "old": 200.0 / 3}
    assert GateSamples({None: none_left}).accuracies(ByFirstFeature()) == {}
