"""Continual-learning metrics, all in percent but the AUROC (a fraction).

An accuracy matrix is a list of rows: row `t` holds `t + 1` accuracies, entry `j` being the accuracy on
task `j` after learning task `t`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import torch

from model.modality import MISSING_PATTERNS, Modality, missing_pattern

Matrix = Sequence[Sequence[float]]
MISSING_ANY = "missing"  # every row lacking either modality, pooled by rows (not the mean of the two patterns)


def accuracy(predictions: Sequence[str], labels: Sequence[str]) -> float:
    """Percent of predictions equal to their label; nan when there are none."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    if not labels:
        return math.nan
    correct = sum(prediction == label for prediction, label in zip(predictions, labels, strict=True))
    return 100.0 * correct / len(labels)


def check_matrix(matrix: Matrix) -> None:
    """Raise ValueError unless the matrix is non-empty and lower-triangular (row t has t + 1 entries)."""
    if not matrix:
        raise ValueError("the accuracy matrix is empty")
    for task, row in enumerate(matrix):
        if len(row) != task + 1:
            raise ValueError(f"row {task} of the accuracy matrix has {len(row)} entries, expected {task + 1}")


def average_performance(matrix: Matrix) -> float:
    """Mean accuracy over all tasks seen, after the last task (the last row's mean)."""
    check_matrix(matrix)
    return statistics.fmean(matrix[-1])


def forgetting(matrix: Matrix) -> float:
    """Mean over the earlier tasks of (accuracy just after learning it - accuracy after the last task)."""
    check_matrix(matrix)
    last = len(matrix) - 1
    if last == 0:
        return 0.0
    return statistics.fmean(matrix[task][task] - matrix[last][task] for task in range(last))


def seen_task_means(matrix: Matrix) -> list[float]:
    """The mean accuracy over the tasks seen so far, after each task (each row's mean)."""
    check_matrix(matrix)
    return [statistics.fmean(row) for row in matrix]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (ddof=0)."""
    if not values:
        raise ValueError("mean_std needs at least one value")
    return statistics.fmean(values), statistics.pstdev(values)


def by_missing_accuracy(
    predictions: Sequence[str], labels: Sequence[str], presents: Sequence[Modality]
) -> dict[str, float]:
    """Accuracy of the complete, image-missing and text-missing samples apart, then of every sample missing a
    modality pooled (`"missing"`, weighted by rows); nan where there are none."""
    if not len(predictions) == len(labels) == len(presents):
        raise ValueError(
            f"{len(predictions)} predictions, {len(labels)} labels and {len(presents)} presence flags"
        )
    pairs: dict[str, tuple[list[str], list[str]]] = {pattern: ([], []) for pattern in MISSING_PATTERNS}
    for index, (prediction, label, present) in enumerate(zip(predictions, labels, presents, strict=True)):
        pattern = missing_pattern(present)
        if pattern not in pairs:
            raise ValueError(f"presents[{index}] carries no modality")
        pairs[pattern][0].append(prediction)
        pairs[pattern][1].append(label)
    result = {pattern: accuracy(*pairs[pattern]) for pattern in MISSING_PATTERNS}
    image_missing, text_missing = pairs["image_missing"], pairs["text_missing"]
    result[MISSING_ANY] = accuracy(image_missing[0] + text_missing[0], image_missing[1] + text_missing[1])
    return result


def mean_matrix(matrices: Sequence[Matrix]) -> list[list[float]]:
    """The elementwise mean of accuracy matrices of one shape."""
    for matrix in matrices:
        check_matrix(matrix)
    shapes = {len(matrix) for matrix in matrices}
    if len(shapes) != 1:
        raise ValueError(f"accuracy matrices of different task counts cannot be averaged: {sorted(shapes)}")
    return [
        [statistics.fmean(matrix[task][seen] for matrix in matrices) for seen in range(task + 1)]
        for task in range(len(matrices[0]))
    ]


def nan_mean(values: Sequence[float]) -> float:
    """The mean of the values that are not nan; nan when none is."""
    numbers = [value for value in values if not math.isnan(value)]
    return statistics.fmean(numbers) if numbers else math.nan


def mean_by_missing(by_missing: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per key (in order of first appearance), the mean over runs, ignoring nan and absent keys."""
    keys = list(dict.fromkeys(key for entry in by_missing for key in entry))
    return {key: nan_mean([entry[key] for entry in by_missing if key in entry]) for key in keys}


ECE_BINS = 15


def expected_calibration_error(
    confidence: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS
) -> float:
    """Expected calibration error in percent: over `bins` equal-width bins of the top score `confidence`
    (in [0, 1]), the gap between accuracy and mean confidence, weighted by the bin's share of rows."""
    if len(confidence) != len(correct) or not confidence:
        raise ValueError("expected_calibration_error needs as many confidences as outcomes, at least one")
    total, gap = len(confidence), 0.0
    members: dict[int, list[int]] = {}
    for row, score in enumerate(confidence):
        members.setdefault(min(int(score * bins), bins - 1), []).append(row)
    for rows in members.values():
        accuracy = sum(bool(correct[row]) for row in rows) / len(rows)
        mean_confidence = sum(confidence[row] for row in rows) / len(rows)
        gap += len(rows) / total * abs(accuracy - mean_confidence)
    return 100.0 * gap


def unknown_auroc(known: Sequence[float], unknown: Sequence[float]) -> float:
    """Area under the ROC curve of telling rows of unlearned classes from learned ones by a novelty score
    (higher: more likely unknown): the chance that an unknown row outscores a known one, ties half."""
    if not known or not unknown:
        raise ValueError("unknown_auroc needs at least one known and one unknown row")
    known_scores = torch.tensor(known, dtype=torch.float64).unsqueeze(0)  # (1, K)
    unknown_scores = torch.tensor(unknown, dtype=torch.float64).unsqueeze(1)  # (U, 1)
    wins = (unknown_scores > known_scores).double() + 0.5 * (unknown_scores == known_scores).double()  # (U, K)
    return float(wins.mean())


AVERAGED = ("latency_ms", "unknown_auroc", "unknown_auroc_msp")  # averaged over runs when runs carry them
FLOOR_DRAWS = 200


def calibration_floor(confidence: Sequence[float], draws: int = FLOOR_DRAWS) -> float:
    """The expected calibration error of a perfectly calibrated predictor with these confidences: each
    outcome drawn right with its confidence's probability, the mean over `draws` (a fixed seed). With a
    few hundred rows it is several points; a measured ECE near it is within noise of calibrated."""
    generator = torch.Generator().manual_seed(0)
    scores = torch.tensor(confidence, dtype=torch.float64)  # (N,)
    outcomes = torch.rand(draws, len(scores), generator=generator, dtype=torch.float64) < scores  # (D, N)
    return statistics.fmean(expected_calibration_error(confidence, row) for row in outcomes.tolist())


def pooled_calibration(runs: list[dict[str, Any]]) -> dict[str, float]:
    """ECE over every run's test rows pooled (seeds draw different splits of one population, so pooling
    cuts the binning noise that inflates each run's own ECE), before and after calibration, and its floor."""
    confidence = [score for run in runs for score in run["confidence"]]
    correct = [flag for run in runs for flag in run["correct"]]
    uncalibrated = [score for run in runs for score in run["confidence_uncalibrated"]]
    return {
        "ece": expected_calibration_error(confidence, correct),
        "ece_uncalibrated": expected_calibration_error(uncalibrated, correct),
        "ece_floor": calibration_floor(confidence),
    }


def summarise_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread over runs (seeds) of AP, forgetting, last-task accuracy, matrix and missing patterns.

    Each run is `{"acc_matrix", "by_missing", "train_seconds"}`.
    """
    if not runs:
        raise ValueError("summarise_runs needs at least one run")
    for index, run in enumerate(runs):
        absent = {"acc_matrix", "by_missing", "train_seconds"} - run.keys()
        if absent:
            raise ValueError(f"run {index} lacks {sorted(absent)}")
    matrices = [run["acc_matrix"] for run in runs]
    aps = [average_performance(matrix) for matrix in matrices]
    ap, ap_std = mean_std(aps)
    forgotten, forgotten_std = mean_std([forgetting(matrix) for matrix in matrices])
    return {
        "ap": ap,
        "ap_std": ap_std,
        "forgetting": forgotten,
        "forgetting_std": forgotten_std,
        "last": statistics.fmean(matrix[-1][-1] for matrix in matrices),
        "acc_matrix": mean_matrix(matrices),
        "by_missing": mean_by_missing([run["by_missing"] for run in runs]),
        "train_seconds": statistics.fmean(run["train_seconds"] for run in runs),
        "runs": len(runs),
        "by_missing_runs": [dict(run["by_missing"]) for run in runs],
        **{key: nan_mean([run[key] for run in runs]) for key in AVERAGED if key in runs[0]},
        **(pooled_calibration(runs) if "confidence" in runs[0] else {}),
        **(
            {"by_missing_filled": mean_by_missing([run["by_missing_filled"] for run in runs])}
            if "by_missing_filled" in runs[0]
            else {}
        ),
        "ap_runs": aps,
        "forgetting_runs": [forgetting(matrix) for matrix in matrices],
    }


def paired_difference(ours: Sequence[float], theirs: Sequence[float]) -> dict[str, float]:
    """Seed-by-seed difference `ours - theirs` of two methods run on the same splits: its mean, standard
    deviation (ddof=1), standard error of the mean, and in how many seeds ours is ahead."""
    if len(ours) != len(theirs) or not ours:
        sizes = f"{len(ours)} and {len(theirs)}"
        raise ValueError(f"a paired difference needs as many runs on each side, at least one: {sizes}")
    differences = [mine - other for mine, other in zip(ours, theirs, strict=True)]
    spread = statistics.stdev(differences) if len(differences) > 1 else 0.0
    return {
        "mean": statistics.fmean(differences),
        "std": spread,
        "stderr": spread / math.sqrt(len(differences)),
        "ahead": sum(difference > 0 for difference in differences),
        "seeds": len(differences),
    }
