"""The gate: a new version is published only if the new task reaches `min_accuracy` on its held-back
samples and no earlier task (one learned here, with its own held-back slice) loses more than
`max_forgetting` points on its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from model.batch import concat_batches
from model.continual import ContinualModel
from updater.config import UpdaterConfig
from updater.holdout_store import HeldBack


class GateSamples:
    """Every held-back sample a version is tested with: the new task's (under None), then each earlier
    task's; encoded once, in one batch, for the measures before and after training and the calibration."""

    def __init__(self, groups: Mapping[str | None, HeldBack]):
        self.groups = dict(groups)
        batches = [group.batch for group in self.groups.values() if group.batch is not None]
        self.batch = concat_batches(batches) if batches else None  # N rows: every group's, in order
        self.labels = [label for group in self.groups.values() for label in group.labels]  # (N,)

    def accuracies(self, model: ContinualModel) -> dict[str | None, float]:
        """Percent right of each group under `model`."""
        if self.batch is None:
            return {}
        predicted = [prediction.labels[0] for prediction in model.predict(self.batch, top_k=1)]
        return scores(predicted, {task: group.labels for task, group in self.groups.items()})


def scores(predicted: Sequence[str], groups: Mapping[str | None, Sequence[str]]) -> dict[str | None, float]:
    """Percent of each group's labels that `predicted` (every group's samples, in order) gets right; a
    group without samples has no entry."""
    right, start = {}, 0
    for task, labels in groups.items():
        if labels:
            guesses = predicted[start : start + len(labels)]
            right[task] = 100.0 * sum(g == label for g, label in zip(guesses, labels, strict=True)) / len(labels)
        start += len(labels)
    return right


def forgetting(before: Mapping[str | None, float], after: Mapping[str | None, float]) -> dict[str, float]:
    """Points each earlier task lost between `before` and `after` (a gain is a negative loss)."""
    return {task: before[task] - after[task] for task in before if task is not None and task in after}


def refusal(accuracy: float | None, lost: Mapping[str, float], config: UpdaterConfig) -> str | None:
    """Why the gate refuses a version whose new task scored `accuracy` and whose earlier tasks lost
    `lost` points; None when it lets the version through."""
    if accuracy is None:
        return "refused: no held-back sample to test the new task with"
    if accuracy < config.min_accuracy:
        return (
            f"refused: accuracy {accuracy:.1f}% on held-back samples is under min_accuracy {config.min_accuracy}%"
        )
    worst = max(lost.items(), key=lambda item: item[1], default=None)
    if worst and worst[1] > config.max_forgetting:
        return (
            f"refused: task {worst[0]} would lose {worst[1]:.1f} points, over max_forgetting "
            f"{config.max_forgetting}"
        )
    return None
