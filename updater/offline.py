"""`rebq-serve train`: learn a JSONL data set task by task, writing one PromptState version per task."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from model.batch import EncodedBatch
from model.continual import ContinualModel
from model.dataset import Sample, classes_in_order, load_image, load_jsonl, split_into_tasks
from model.state import PromptState, latest_state
from updater.holdout import held_back
from updater.judging import judging_backbone
from updater.trainer import train_task, training_backbone

log = logging.getLogger(__name__)


def group_into_tasks(samples: list[Sample], tasks: int | None) -> list[tuple[str, list[Sample]]]:
    """By the samples' `task` fields when they all have one, else the classes split into `tasks` in order."""
    named = [sample.task for sample in samples]
    if any(named):
        if not all(named):
            missing = next(sample.id for sample in samples if not sample.task)
            raise ValueError(f"sample {missing!r} has no task field while others have one")
        if tasks is not None:
            raise ValueError("--tasks cannot be used with a data set whose samples name their task")
        order = list(dict.fromkeys(named))
        return [(name, [sample for sample in samples if sample.task == name]) for name in order]
    groups = split_into_tasks(classes_in_order(samples), tasks or 1)
    return [
        (f"task-{index}", [sample for sample in samples if sample.label in set(classes)])
        for index, classes in enumerate(groups)
    ]


def encode_samples(model: ContinualModel, samples: list[Sample]) -> EncodedBatch:
    images = [load_image(sample) if sample.image_path else None for sample in samples]
    return model.encode(images, [sample.text for sample in samples])


def train_offline(data: Path, state_dir: Path, tasks: int | None, app) -> Iterator[PromptState]:
    """Continue from the latest version in `state_dir` (if any) and publish one version per new task,
    each calibrated on the samples held back from its tasks in this run (`updater.holdout_fraction` of
    each class, as the updater holds back feedback), as answered by the towers replicas serve."""
    samples = load_jsonl(data)
    backbone = training_backbone(app.backbone, app.trainer)
    model = ContinualModel.resume(backbone, latest_state(state_dir), app.learner)
    judging = judging_backbone(app.backbone, backbone)
    calibration: list[Sample] = []
    for name, members in group_into_tasks(samples, tasks):
        classes = classes_in_order(members)
        if set(classes) <= set(model.classes):
            log.info("task %s: its classes are learned already; skipped", name)
            continue
        held = held_back([sample.label for sample in members], app.updater.holdout_fraction)
        trained = [sample for sample, flag in zip(members, held, strict=True) if not flag]
        calibration += [sample for sample, flag in zip(members, held, strict=True) if flag]
        batch = encode_samples(model, trained)
        result = train_task(model, name, classes, batch, [sample.label for sample in trained], app.trainer)
        if calibration:
            judged = model.run_by(judging)
            judged.calibrate(encode_samples(judged, calibration), [sample.label for sample in calibration])
            model.take_calibration(judged)
        notes = {"training": asdict(result), "data": str(data), "calibration_samples": len(calibration)}
        yield model.save(state_dir, notes=notes)
