"""Train one new task (pure torch, no Ray): masked cross-entropy plus reconstruction on dropped modalities.

The frozen, prompt-independent queries arrive precomputed in an `EncodedBatch`, once per sample; each
step re-runs only what depends on the prompts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from model.backbone import load_backbone
from model.batch import EncodedBatch, with_halves_hidden
from model.continual import ContinualModel
from model.devices import place_towers, resolve_device
from model.modality import Modality
from model.state import TaskRecord
from updater.config import TrainerConfig

log = logging.getLogger(__name__)


def training_backbone(backbone_config, trainer_config: TrainerConfig):
    """The frozen torch towers the trainer runs, on the device `trainer.device` resolves to."""
    backbone = load_backbone(backbone_config, runtime="torch")
    place_towers(backbone, resolve_device(trainer_config.device, "trainer.device"))
    return backbone


@dataclass
class TrainingResult:
    task: str
    classes: list[str]
    samples: int
    steps: int
    seconds: float
    loss: float


def class_prototypes(
    model: ContinualModel, batch: EncodedBatch, targets: torch.Tensor, count: int
) -> torch.Tensor:
    """Mean fused feature of each new class `(count, F)`, from complete samples where a class has some."""
    with torch.no_grad():
        fused = model.forward(batch).fused  # (N, F)
    complete = batch.has_image & batch.has_text  # (N,)
    rows = []
    for index in range(count):
        members = targets == index
        chosen = members & complete if (members & complete).any() else members
        rows.append(fused[chosen].mean(0))
    return torch.stack(rows)  # (count, F)


def drop_modalities(batch: EncodedBatch, rate: float, generator: torch.Generator):
    """Hide one modality of some complete rows: which rows lost their image, which their text."""
    complete = batch.has_image & batch.has_text  # (B,)
    dropped = complete & (torch.rand(len(batch), generator=generator) < rate)  # (B,)
    lose_image = dropped & (torch.rand(len(batch), generator=generator) < 0.5)  # (B,)
    lose_text = dropped & ~lose_image  # (B,)
    return batch.with_presence(batch.has_image & ~lose_image, batch.has_text & ~lose_text), lose_image, lose_text


def summarise_task(
    model: ContinualModel, batch: EncodedBatch, targets: torch.Tensor, count: int, hide_halves: bool = True
) -> None:
    """Hand a trained task's queries to the strategy and its class statistics to the discriminant.

    The statistics take every row of `batch` and, with `hide_halves`, each complete row twice more, once
    with its image and once with its text hidden, so that every class has reconstructed rows of both
    kinds, reconstructed by the same memory pools that will reconstruct its test rows.
    """
    rows, view = with_halves_hidden(batch) if hide_halves else (torch.arange(len(batch)), batch)
    with torch.no_grad():
        output = model.forward(view)
    present = view.has_image | view.has_text  # (M,) rows the pools were asked about
    model.learner.strategy.observe_task(  # each row's queries, real or reconstructed
        {Modality.IMAGE: output.q_image[present], Modality.TEXT: output.q_text[present]}
    )
    as_they_came = torch.arange(len(rows)) < len(batch)  # (M,) the view starts with the batch's own rows
    model.learner.lda.add_classes(
        output.fused, targets[rows], count, view.has_image, view.has_text, halves_from=as_they_came
    )


def reconstruction_loss(output, truth: EncodedBatch, lose_image: torch.Tensor, lose_text: torch.Tensor):
    """Mean squared distance of reconstructed to true queries, over the rows that lost a modality."""
    terms = []
    if lose_image.any():
        terms.append((output.q_hat_image[lose_image] - truth.q_image[lose_image]).pow(2).sum(-1))
    if lose_text.any():
        terms.append((output.q_hat_text[lose_text] - truth.q_text[lose_text]).pow(2).sum(-1))
    return torch.cat(terms).mean() if terms else torch.zeros(())


def train_task(
    model: ContinualModel,
    name: str,
    classes: list[str],
    batch: EncodedBatch,
    labels: list[str],
    config: TrainerConfig,
    progress: bool = True,
    hide_halves: bool = True,
) -> TrainingResult:
    """Grow `model` by one task of `classes` and train it on `batch` with `labels`; old parts stay frozen.

    `hide_halves=False`: the class statistics take the rows as they come, for inputs whose missing
    halves were filled in before they came (the benchmark's blank-filled rows)."""
    start = time.perf_counter()
    known = set(model.classes)
    if known & set(classes):
        raise ValueError(f"task {name!r}: classes {sorted(known & set(classes))} were learned already")
    targets = torch.tensor([classes.index(label) for label in labels])  # (N,) index among the new classes
    generator = torch.Generator().manual_seed(config.seed + 1000 * len(model.tasks))
    torch.manual_seed(config.seed)
    class_rows = class_prototypes(model, batch, targets, len(classes))  # (n, F) under the pools as they are
    soft_targets = model.learner.strategy.soft_targets(model.learner, batch)  # before anything grows
    model.learner.strategy.open_task(model.learner, batch)
    model.learner.grow(class_rows, generator, len(model.tasks))
    first_new = len(model.classes)
    model.tasks.append(TaskRecord(name=name, classes=tuple(classes)))
    trainable = [parameter for parameter in model.learner.parameters() if parameter.requires_grad]
    optimiser = torch.optim.Adam(trainable, lr=config.learning_rate)
    # a task without new components has nothing to train: the discriminant, not the head, ranks predictions,
    # and the head's rows only serve to train prompts
    rows_only = all(p is model.learner.head.new_weight or p.numel() == 0 for p in trainable)
    epochs = 0 if rows_only else config.epochs
    steps_per_epoch = -(-len(batch) // config.batch_size)
    bar = tqdm(total=epochs * steps_per_epoch, desc=f"task {name}", disable=not progress, leave=False)
    loss_value, steps = float("nan"), 0
    for _ in range(epochs):
        order = torch.randperm(len(batch), generator=generator)
        for chunk in order.split(config.batch_size):
            truth = batch.select(chunk)
            seen, lose_image, lose_text = drop_modalities(truth, config.modality_drop, generator)
            output = model.forward(seen)
            logits = output.head_logits[:, first_new:]  # older classes' logits masked out
            loss = F.cross_entropy(logits, targets[chunk])
            loss = loss + config.reconstruction_weight * reconstruction_loss(output, truth, lose_image, lose_text)
            if soft_targets is not None:
                loss = loss + soft_targets.loss(output.head_logits[:, :first_new], chunk, lose_image, lose_text)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            loss_value, steps = float(loss.detach()), steps + 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}")
    bar.close()
    model.learner.strategy.task_trained(model.learner, batch, first_new + targets)
    summarise_task(model, batch, targets, len(classes), hide_halves)
    model.learner.freeze_current()
    seconds = time.perf_counter() - start
    log.info(
        "task %s: %d classes, %d samples, %d steps, %.1f s, loss %.3f",
        name,
        len(classes),
        len(batch),
        steps,
        seconds,
        loss_value,
    )
    return TrainingResult(name, list(classes), len(batch), steps, seconds, loss_value)
