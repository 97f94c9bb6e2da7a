"""`rebq-serve bench cmml`: the continual missing-modality benchmark of RebQ, methods side by side.

One run shares splits, missing tables and frozen features between the methods:
- rebq: ours, the learner as configured (by default its default strategy);
- one row per growth strategy (`first_task`, `fwd_prompt`, ...): the same learner with that strategy;
- prompt_no_rec: the same pools, missing modalities filled with blank inputs, no reconstruction;
- head_only: frozen features (blank-filled), no prompts, the head grown task after task;
- joint: the rebq model trained on all tasks at once (a reference; its matrix rows are the one model's
  accuracies on the tasks).
The blank-filled methods' rows look complete to the learner, so their LDA keeps pooled statistics.
Beside them, the frozen-feature references for rows missing a modality (`references`: mean fill and
marginalisation, see `benchmarks/missing_references.py`), scored on the same test rows.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from benchmarks.cl_metrics import (
    MISSING_ANY,
    MISSING_PATTERNS,
    accuracy,
    average_performance,
    by_missing_accuracy,
    mean_by_missing,
    paired_difference,
    summarise_runs,
    unknown_auroc,
)
from benchmarks.cmml_plot import plot_budgets, plot_results
from benchmarks.cmml_splits import (
    draw_missing_table,
    grouped_train_test_split,
    keep_frequent_classes,
    shuffled_class_order,
)
from benchmarks.feature_bank import blank_inputs, encode_samples, fill_blanks, with_table
from benchmarks.missing_references import REFERENCES, missing_row_predictions
from benchmarks.report import write_report
from model.backbone import Backbone, load_backbone
from model.batch import EncodedBatch
from model.config import BackboneConfig, LearnerConfig, StrictModel
from model.continual import ContinualModel
from model.dataset import classes_in_order, load_jsonl, split_into_tasks
from model.modality import Modality
from model.strategies import STRATEGIES, GrowthStrategy
from updater.holdout import held_back
from updater.judging import judging_backbone
from updater.trainer import TrainerConfig, train_task

log = logging.getLogger(__name__)

METHODS = ("rebq", *STRATEGIES, "prompt_no_rec", "head_only", "joint")
Method = Literal[METHODS]
LATENCY_REQUESTS = 32  # single-row predictions timed on the final model of each run
BLANK_FILLED: tuple[Method, ...] = ("prompt_no_rec", "head_only")  # missing modalities given blank inputs


class CmmlConfig(StrictModel):
    data: Path
    tasks: int = Field(5, ge=1)
    missing_rate: float = Field(0.7, ge=0, le=1)
    missing_type: Literal["both", "image", "text"] = "both"
    seeds: int = Field(3, ge=1)
    min_per_class: int = Field(20, ge=2)
    test_fraction: float = Field(0.3, gt=0, lt=1)
    validation: bool = False  # score on a validation split carved from the training data
    methods: tuple[Method, ...] = Field(METHODS, min_length=1)
    exemplar_budgets_kib: tuple[int, ...] = ()  # each also runs exemplar_replay with that buffer budget
    holdout_fraction: float = Field(0.2, ge=0, lt=1)  # of each task's training rows, held back to calibrate
    # (the configuration's `updater.holdout_fraction`, as the updater holds back feedback)
    learner: LearnerConfig = LearnerConfig()
    trainer: TrainerConfig = TrainerConfig()


def _predict(model: ContinualModel, batch: EncodedBatch, rows: torch.Tensor) -> list[str]:
    return [prediction.labels[0] for prediction in model.predict(batch.select(rows), top_k=1)]


def _presence(batch: EncodedBatch) -> list[Modality]:
    image = [Modality.IMAGE if flag else Modality.NONE for flag in batch.has_image.tolist()]
    return [
        present | (Modality.TEXT if flag else Modality.NONE)
        for present, flag in zip(image, batch.has_text.tolist(), strict=True)
    ]


class Split:
    """One side of a split with its missing table applied: the batch, its labels, and what each row lacks."""

    def __init__(self, batch: EncodedBatch, labels: list[str]):
        self.batch, self.labels, self.presence = batch, labels, _presence(batch)

    def rows(self, classes: list[str]) -> torch.Tensor:
        wanted = set(classes)
        return torch.tensor([i for i, label in enumerate(self.labels) if label in wanted], dtype=torch.long)

    def blank_filled(self, blank: EncodedBatch) -> Split:
        filled = Split(fill_blanks(self.batch, blank), self.labels)
        filled.presence = self.presence
        return filled

    def select(self, rows: torch.Tensor) -> Split:
        picked = rows.tolist()
        part = Split(self.batch.select(rows), [self.labels[i] for i in picked])
        part.presence = [self.presence[i] for i in picked]
        return part

    def held_back(self, fraction: float) -> tuple[Split, Split]:
        """The rows to train on and the rows held back to calibrate, as the updater holds back feedback."""
        held = torch.tensor(held_back(self.labels, fraction), dtype=torch.bool)  # (N,)
        return self.select((~held).nonzero().flatten()), self.select(held.nonzero().flatten())

    def accuracy(self, model: ContinualModel, classes: list[str]) -> float:
        rows = self.rows(classes)
        return accuracy(_predict(model, self.batch, rows), [self.labels[i] for i in rows])


@dataclass(frozen=True)
class FrozenFeatures:
    """Every sample's frozen features and one blank row (white image, empty text), encoded once."""

    bank: EncodedBatch
    blank: EncodedBatch

    def split(self, rows: list[int], table: list[Modality], labels: list[str]) -> Split:
        """The samples at `rows`, their modalities hidden as `table` says."""
        return Split(with_table(self.bank.select(torch.tensor(rows, dtype=torch.long)), table), labels)


def frozen_features(
    backbone_config: BackboneConfig, learner: LearnerConfig, samples: list, image_size: int
) -> FrozenFeatures:
    """`samples` and a blank row through `backbone_config`'s ONNX towers, at its precision."""
    encoder = ContinualModel(load_backbone(backbone_config, runtime="onnx"), learner)
    return FrozenFeatures(encode_samples(encoder, samples), blank_inputs(encoder, image_size))


class NoPools(GrowthStrategy):
    """`head_only`'s growth: no task adds components, only head rows and class statistics."""

    name = "head_only"

    def prompt_tasks(self, tasks: int) -> int:
        return 0


def budget_name(kib: int) -> str:
    return f"exemplar_replay_{kib}KiB"


def method_learners(config: CmmlConfig) -> dict[str, LearnerConfig]:
    """The learner each run trains: the methods', then exemplar_replay at each budget of the sweep."""
    learners = {}
    for method in config.methods:
        learner = config.learner
        if method in STRATEGIES:
            learner = learner.model_copy(update={"strategy": method})
        if method == "head_only":  # its NoPools stands in for a strategy that saves no tensors of its own
            learner = learner.model_copy(update={"strategy": "first_task"})
        learners[method] = learner
    for kib in config.exemplar_budgets_kib:
        budget = {"strategy": "exemplar_replay", "exemplar_budget_bytes": kib * 1024}
        learners[budget_name(kib)] = config.learner.model_copy(update=budget)
    return learners


def run_method(
    method: str,
    learner: LearnerConfig,
    backbone: Backbone,
    judge: Backbone,
    config: CmmlConfig,
    task_classes: list[list[str]],
    train: Split,
    held: Split,
    test: Split,
    seed: int,
) -> dict:
    """Train one method task after task (or jointly) on `backbone`, testing it on every task seen after each
    one as `judge`'s towers answer (`updater/judging.py`: the int8 ones when they are what replicas serve);
    `held` and `test` are encoded by `judge`'s towers, `train` by the trained ones."""
    trainer = config.trainer.model_copy(update={"seed": seed})
    blank_filled = method in BLANK_FILLED  # rows look complete: no pattern to tell apart, nothing to rebuild
    if blank_filled:
        trainer = trainer.model_copy(update={"modality_drop": 0.0, "reconstruction_weight": 0.0})
    model = ContinualModel(backbone, learner)
    if method == "head_only":
        model.learner.strategy = NoPools(learner, model.learner.strategy.query_dims)
    schedule = [sum(task_classes, [])] if method == "joint" else task_classes
    matrix, seconds, stages = [], 0.0, []
    for index, classes in enumerate(schedule):
        rows = train.rows(classes)
        labels = [train.labels[i] for i in rows]
        batch = train.batch.select(rows)
        result = train_task(model, f"task-{index}", classes, batch, labels, trainer, hide_halves=not blank_filled)
        seconds += result.seconds
        judged = model.run_by(judge)
        calibration_rows = held.rows(model.classes)  # every task's held-back rows so far
        if len(calibration_rows):
            judged.calibrate(held.batch.select(calibration_rows), [held.labels[i] for i in calibration_rows])
        if method != "joint":
            matrix.append([test.accuracy(judged, task) for task in task_classes[: index + 1]])
            if index + 1 < len(schedule):
                stages.append(novelty_scores(judged, test, sum(task_classes[: index + 1], [])))
    model = judged  # the final model, as served
    if method == "joint":
        final = [test.accuracy(model, task) for task in task_classes]
        matrix = [final[: index + 1] for index in range(len(task_classes))]
    seen = test.rows(sum(task_classes, []))
    truth, presence = [test.labels[i] for i in seen], [test.presence[i] for i in seen]
    batch = test.batch.select(seen)
    with torch.no_grad():
        output = model.forward(batch)
        probabilities, _ = model.scores(output, batch)  # (R, C) calibrated
    answers = _labels(model, output.logits)
    right = [answer == label for answer, label in zip(answers, truth, strict=True)]
    run = {
        "confidence": probabilities.max(-1).values.tolist(),
        "confidence_uncalibrated": output.logits.softmax(-1).max(-1).values.tolist(),
        "correct": right,
        **novelty_detection(stages),
        "acc_matrix": matrix,
        "by_missing": by_missing_accuracy(answers, truth, presence),
        "train_seconds": seconds,
        "latency_ms": request_latency_ms(model, test.batch, seen[:LATENCY_REQUESTS]),
    }
    filled = _labels(model, model.learner.lda.full(output.fused))  # missing halves filled in, scored whole
    run["by_missing_filled"] = by_missing_accuracy(filled, truth, presence)
    return run


def novelty_scores(model: ContinualModel, test: Split, learned: list[str]) -> dict[str, list[float]]:
    """Each test row's novelty (the served one, and one minus the top calibrated probability), split into
    rows of the classes `learned` so far and rows of classes still to come."""
    with torch.no_grad():
        output = model.forward(test.batch)
        probabilities, novelty = model.scores(output, test.batch)  # (N, C), (N,)
    learned_classes = set(learned)
    known = torch.tensor([label in learned_classes for label in test.labels])  # (N,)
    by_probability = 1 - probabilities.max(-1).values  # (N,)
    return {
        "known": novelty[known].tolist(),
        "unknown": novelty[~known].tolist(),
        "known_msp": by_probability[known].tolist(),
        "unknown_msp": by_probability[~known].tolist(),
    }


def novelty_detection(stages: list[dict[str, list[float]]]) -> dict[str, float]:
    """AUROC of telling unlearned classes' test rows from learned ones, the mean over the stages before the
    last task: by the served novelty, and by the top calibrated probability (the baseline it is compared with)."""
    if not stages:
        return {}
    return {
        "unknown_auroc": statistics.fmean(unknown_auroc(stage["known"], stage["unknown"]) for stage in stages),
        "unknown_auroc_msp": statistics.fmean(
            unknown_auroc(stage["known_msp"], stage["unknown_msp"]) for stage in stages
        ),
    }


def _labels(model: ContinualModel, scores: torch.Tensor) -> list[str]:
    return [model.classes[index] for index in scores.argmax(-1).tolist()]  # scores (B, C)


def request_latency_ms(model: ContinualModel, batch: EncodedBatch, rows: torch.Tensor) -> float:
    """Median milliseconds of one single-row prediction after the frozen queries: pools, prompted passes,
    reconstruction and classifier, as the method adds them."""
    timings = []
    for row in rows.tolist():
        start = time.perf_counter()
        _predict(model, batch, torch.tensor([row]))
        timings.append(1000 * (time.perf_counter() - start))
    return statistics.median(timings)


def run_cmml(config: CmmlConfig, backbone_config: BackboneConfig) -> dict:
    start = time.perf_counter()
    samples = keep_frequent_classes(load_jsonl(config.data), config.min_per_class)
    classes = classes_in_order(samples)
    log.info("%d samples in %d classes with at least %d samples", len(samples), len(classes), config.min_per_class)
    backbone = load_backbone(backbone_config, runtime="torch")
    judge = judging_backbone(backbone_config, backbone)
    image_size = getattr(backbone.image, "image_size", 224)
    fp32 = backbone_config.model_copy(update={"precision": "fp32"})
    trained_features = frozen_features(fp32, config.learner, samples, image_size)
    judged_features = trained_features
    if judge is not backbone:  # held-back and test rows as the int8 towers see them
        judged_features = frozen_features(backbone_config, config.learner, samples, image_size)
    index_of = {sample.id: i for i, sample in enumerate(samples)}
    learners = method_learners(config)
    runs: dict[str, list[dict]] = {method: [] for method in learners}
    references: dict[str, list[dict]] = {name: [] for name in REFERENCES}
    for seed in range(config.seeds):
        task_classes = split_into_tasks(shuffled_class_order(classes, seed), config.tasks)
        train_samples, test_samples = grouped_train_test_split(samples, config.test_fraction, seed)
        if config.validation:
            train_samples, test_samples = grouped_train_test_split(
                train_samples, config.test_fraction, seed + 1000
            )
        train_part, test_part = (
            [index_of[sample.id] for sample in part] for part in (train_samples, test_samples)
        )
        train_table = draw_missing_table(len(train_part), config.missing_rate, config.missing_type, seed)
        test_table = draw_missing_table(len(test_part), config.missing_rate, config.missing_type, seed + 500)
        train_labels = [sample.label for sample in train_samples]
        train = trained_features.split(train_part, train_table, train_labels).held_back(config.holdout_fraction)[0]
        held = judged_features.split(train_part, train_table, train_labels).held_back(config.holdout_fraction)[1]
        test = judged_features.split(test_part, test_table, [sample.label for sample in test_samples])
        for name, by_missing in reference_accuracies(train, test, task_classes, config.learner).items():
            references[name].append(by_missing)
        for method, learner in learners.items():
            log.info("seed %d/%d: %s", seed + 1, config.seeds, method)
            sides = (train, held, test)
            if method in BLANK_FILLED:
                blanks = (trained_features.blank, judged_features.blank, judged_features.blank)
                sides = tuple(side.blank_filled(blank) for side, blank in zip(sides, blanks, strict=True))
            run = run_method(method, learner, backbone, judge, config, task_classes, *sides, seed)
            runs[method].append(run)
            log.info("seed %d %s: AP %.1f", seed, method, sum(run["acc_matrix"][-1]) / len(run["acc_matrix"][-1]))
    return {
        "config": {
            **json.loads(config.model_dump_json()),
            "classes": classes,
            "samples": len(samples),
            "backbone": backbone.describe(),
            "precision": backbone_config.precision,  # of the towers that answer; training runs fp32
            "seconds": time.perf_counter() - start,
        },
        "methods": {method: summarise_runs(method_runs) for method, method_runs in runs.items()},
        "references": {
            name: {"by_missing": mean_by_missing(seeds), "by_missing_runs": seeds}
            for name, seeds in references.items()
        },
        "paired": rebq_against_the_others(runs, references),
        "marginalised_minus_filled": {
            method: paired_difference(
                [run["by_missing"][MISSING_ANY] for run in method_runs],
                [run["by_missing_filled"][MISSING_ANY] for run in method_runs],
            )
            for method, method_runs in runs.items()
            if "by_missing_filled" in method_runs[0]
        },
    }


def reference_accuracies(train: Split, test: Split, task_classes: list[list[str]], learner) -> dict[str, dict]:
    """Accuracy by missing pattern of the frozen-feature references for missing halves, over every class."""
    classes = sum(task_classes, [])
    targets = torch.tensor([classes.index(label) for label in train.labels])  # (N,)
    predicted = missing_row_predictions(train.batch, targets, test.batch, len(classes), learner.lda_shrinkage)
    return {
        name: by_missing_accuracy([classes[i] for i in indices.tolist()], test.labels, test.presence)
        for name, indices in predicted.items()
    }


def rebq_against_the_others(
    runs: dict[str, list[dict]], references: dict[str, list[dict]]
) -> dict[str, dict[str, dict[str, float]]]:
    """rebq minus each other method, seed by seed on the same splits: AP, and accuracy on the test rows that
    miss a modality; minus each missing-half reference on those rows."""
    if "rebq" not in runs:
        return {}

    def figures(method: str) -> dict[str, list[float]]:
        return {
            "ap": [average_performance(run["acc_matrix"]) for run in runs[method]],
            "missing": [run["by_missing"][MISSING_ANY] for run in runs[method]],
        }

    ours = figures("rebq")
    paired = {
        f"rebq_minus_{method}": {
            measure: paired_difference(ours[measure], values) for measure, values in figures(method).items()
        }
        for method in runs
        if method != "rebq"
    }
    for name, seeds in references.items():
        missing = [by_missing[MISSING_ANY] for by_missing in seeds]
        paired[f"rebq_minus_{name}"] = {"missing": paired_difference(ours["missing"], missing)}
    return paired


PAIRED_MEASURES = {"ap": "AP", "missing": "rows missing a modality"}


def format_table(results: dict) -> str:
    header = ["method", "AP", "+-", "forgetting", "+-", "last", "complete", "img miss", "txt miss", "missing"]
    header += ["train s", "ms/req", "ECE", "ECE floor", "ECE raw", "unk AUROC"]
    lines = [" ".join(f"{name:>10}" for name in header)]
    for method, summary in results["methods"].items():
        missing = summary["by_missing"]
        figures = [summary[key] for key in ("ap", "ap_std", "forgetting", "forgetting_std", "last")]
        figures += [missing.get(key, float("nan")) for key in (*MISSING_PATTERNS, MISSING_ANY)]
        figures += [
            summary["train_seconds"],
            summary.get("latency_ms", float("nan")),
            summary.get("ece", float("nan")),
            summary.get("ece_floor", float("nan")),
            summary.get("ece_uncalibrated", float("nan")),
        ]
        auroc = summary.get("unknown_auroc", float("nan"))  # a fraction
        lines.append(f"{method:>10} " + " ".join(f"{value:>10.1f}" for value in figures) + f" {auroc:>10.3f}")
    for name, reference in results.get("references", {}).items():
        missing = reference["by_missing"]
        figures = [missing.get(key, float("nan")) for key in (*MISSING_PATTERNS, MISSING_ANY)]
        lines.append(f"{name:>10} " + " " * 55 + " ".join(f"{value:>10.1f}" for value in figures))
    for method, difference in results.get("marginalised_minus_filled", {}).items():
        lines.append(
            f"{method}, rows missing a modality, their missing half marginalised - filled: "
            f"{difference['mean']:+.2f} (standard error {difference['stderr']:.2f}; "
            f"ahead in {difference['ahead']} of {difference['seeds']} seeds)"
        )
    for name, measures in results.get("paired", {}).items():
        for measure, difference in measures.items():
            lines.append(
                f"{name.replace('_minus_', ' - ')}, {PAIRED_MEASURES[measure]}: {difference['mean']:+.2f} "
                f"(standard error {difference['stderr']:.2f}; "
                f"ahead in {difference['ahead']} of {difference['seeds']} seeds)"
            )
    return "\n".join(lines)


def main(config: CmmlConfig, backbone_config: BackboneConfig, out: Path, plot: Path | None) -> dict:
    results = run_cmml(config, backbone_config)
    write_report(out, results)
    if plot is not None:
        plot_results(results, plot)
        if config.exemplar_budgets_kib:
            plot_budgets(results, plot.with_name(plot.stem + "-budgets.png"))
    log.info("cmml benchmark took %.0f s", results["config"]["seconds"])
    return results
