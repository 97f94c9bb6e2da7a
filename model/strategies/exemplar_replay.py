"""`exemplar_replay`: every task adds components; a bounded buffer of compact exemplars keeps old classes'
statistics true as their features drift.

After Exemplar Masking (Lee et al., "Exemplar Masking for Multimodal Incremental Learning", 2024), which
keeps a small replay buffer of exemplars stripped to what matters, so that more of them fit in the same
memory.

Adapted to two frozen towers whose inputs are encoded once: an exemplar is what the learner needs to
compute a row's features under any prompts and nothing more: its frozen image query (a pooled feature
prompts are added to, in half precision), its frozen text query (half precision) and its token ids with
their attention mask (the prefix-prompted text tower re-reads them). That is about 3.6 KB a row with
EfficientNet-Lite0 and MiniLM, against some 150 KB for the picture at 224 pixels. The buffer has a
byte budget (`exemplar_budget_bytes`), so a fixed number of slots, shared equally by every class seen;
a class's exemplars are drawn from its task's training rows (the feedback a server was sent), complete
rows first. It travels in the PromptState, so it survives a restart.

Dense CODA attention lets a new task's components move old classes' features. Before a task grows the
pools, the strategy computes its exemplars' features under the model as published; after the task
trains, again; each old class's discriminant means then move by the mean drift of its exemplars (each
half by the drift of exemplars where that half is real), so old classes are scored where their inputs
now land. A prefix-prompted image tower (ViT) would need the pixels; it is refused.
"""

from __future__ import annotations

import torch

from model.batch import EncodedBatch, with_halves_hidden
from model.config import LearnerConfig
from model.modality import Modality
from model.strategies.base import GrowthStrategy
from model.tower import PromptKind


class ExemplarReplay(GrowthStrategy):
    name = "exemplar_replay"

    def __init__(self, config: LearnerConfig, query_dims: dict[Modality, int]):
        super().__init__(config, query_dims)
        self.text_length, self.slot_bytes, self.capacity = 0, 0, 0  # known once the towers are attached
        self.buffer = self._empty(0)
        self._before: torch.Tensor | None = None  # (M, F) exemplar features under the published model

    def attach_towers(self, image_tower, text_tower) -> None:
        if image_tower.prompt_kind is PromptKind.PREFIX:
            raise ValueError(
                "learner.strategy: exemplar_replay keeps frozen image features, which a prefix-prompted image "
                "tower (ViT) cannot be prompted from; use the efficientnet image tower or another strategy"
            )
        self.text_length = int(text_tower.describe()["max_length"])
        self.slot_bytes = sum(tensor.nbytes for tensor in self._empty(1).values())  # one exemplar, stored
        self.capacity = self.config.exemplar_budget_bytes // self.slot_bytes
        self.buffer = self._empty(self.capacity)

    def _empty(self, slots: int) -> dict[str, torch.Tensor]:
        image, text, length = self.query_dims[Modality.IMAGE], self.query_dims[Modality.TEXT], self.text_length
        return {
            "labels": torch.full((slots,), -1, dtype=torch.int64),  # -1: a free slot
            "has_image": torch.zeros(slots, dtype=torch.bool),
            "has_text": torch.zeros(slots, dtype=torch.bool),
            "q_image": torch.zeros(slots, image, dtype=torch.float16),
            "q_text": torch.zeros(slots, text, dtype=torch.float16),
            "input_ids": torch.zeros(slots, length, dtype=torch.int32),
            "attention_mask": torch.zeros(slots, length, dtype=torch.bool),
        }

    @property
    def used(self) -> torch.Tensor:
        return self.buffer["labels"] >= 0  # (S,)

    def exemplars(self) -> tuple[EncodedBatch, torch.Tensor]:
        """The buffered exemplars as a batch the learner reads, and their classes `(E,)`."""
        rows = {name: tensor[self.used] for name, tensor in self.buffer.items()}
        batch = EncodedBatch(
            has_image=rows["has_image"],
            has_text=rows["has_text"],
            q_image=rows["q_image"].float(),
            q_text=rows["q_text"].float(),
            input_ids=rows["input_ids"].long(),
            attention_mask=rows["attention_mask"].long(),
        )
        return batch, rows["labels"]

    def _features(self, learner) -> tuple[torch.Tensor, EncodedBatch, torch.Tensor]:
        """The exemplars' fused features `(M, F)` under `learner`, each complete one also with a half hidden,
        the batch of those rows and their classes `(M,)`."""
        batch, labels = self.exemplars()
        rows, view = with_halves_hidden(batch)
        with torch.no_grad():
            return learner(view).fused, view, labels[rows]

    def open_task(self, learner, batch) -> None:
        self._before = self._features(learner)[0] if bool(self.used.any()) else None

    def task_trained(self, learner, batch: EncodedBatch, targets: torch.Tensor) -> None:
        if self._before is not None:
            after, view, labels = self._features(learner)
            first_copy = torch.arange(len(labels)) < int(self.used.sum())  # (M,) rows as they came
            learner.lda.follow_drift(after - self._before, labels, view.has_image, view.has_text, first_copy)
            self._before = None
        self._remember(batch, targets)

    def _remember(self, batch: EncodedBatch, targets: torch.Tensor) -> None:
        """Share the slots equally among every class seen: old classes keep their first exemplars, new
        classes bring theirs from `batch`, complete rows first, in an order drawn from the class count."""
        classes = int(targets.max()) + 1 if len(targets) else 0
        quota = self.capacity // max(classes, 1)
        kept = [index for label in range(classes) for index in self._slots_of(label)[:quota]]
        old = {name: tensor[kept] for name, tensor in self.buffer.items()}
        generator = torch.Generator().manual_seed(classes)
        order = torch.randperm(len(targets), generator=generator)  # (N,)
        complete_first = order[(~(batch.has_image & batch.has_text))[order].argsort(stable=True)]  # (N,)
        chosen = torch.cat(
            [complete_first[targets[complete_first] == label][:quota] for label in targets.unique().tolist()]
        )  # (n,)
        new = self._compact(batch.select(chosen), targets[chosen])
        buffer = self._empty(self.capacity)
        for name in buffer:
            rows = torch.cat([old[name], new[name]])
            buffer[name][: len(rows)] = rows
        self.buffer = buffer

    def _slots_of(self, label: int) -> list[int]:
        return (self.buffer["labels"] == label).nonzero().flatten().tolist()

    def _compact(self, batch: EncodedBatch, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Rows of `batch` in the buffer's storage types, token ids padded to the text tower's length."""
        length = self.text_length
        ids = torch.zeros(len(batch), length, dtype=torch.int32)
        mask = torch.zeros(len(batch), length, dtype=torch.bool)
        width = min(batch.input_ids.shape[1], length)
        ids[:, :width] = batch.input_ids[:, :width].to(torch.int32)
        mask[:, :width] = batch.attention_mask[:, :width].bool()
        return {
            "labels": labels.to(torch.int64),
            "has_image": batch.has_image.clone(),
            "has_text": batch.has_text.clone(),
            "q_image": batch.q_image.to(torch.float16),
            "q_text": batch.q_text.to(torch.float16),
            "input_ids": ids,
            "attention_mask": mask,
        }

    def export_tensors(self) -> dict[str, torch.Tensor]:
        return {f"exemplar_replay.{name}": tensor.clone() for name, tensor in self.buffer.items()}

    def import_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.buffer = {name: tensors[f"exemplar_replay.{name}"].clone() for name in self.buffer}

    def expected_shapes(self, tasks: int) -> dict[str, tuple[int, ...]]:
        empty = self._empty(self.capacity)
        return {f"exemplar_replay.{name}": tuple(tensor.shape) for name, tensor in empty.items()}
