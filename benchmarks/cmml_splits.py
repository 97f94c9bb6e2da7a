"""The continual missing-modality benchmark protocol (RebQ-style): classes, splits and missing tables.

Every draw takes an explicit seed and uses its own `random.Random`, so a protocol is reproduced exactly
from its seeds. Sample order is kept wherever samples are filtered or split.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Sequence
from typing import Literal

from model.dataset import Sample, classes_in_order
from model.modality import Modality

log = logging.getLogger(__name__)

MissingType = Literal["both", "image", "text"]


def keep_frequent_classes(samples: Sequence[Sample], min_per_class: int) -> list[Sample]:
    """The samples whose class has at least `min_per_class` samples, in their order."""
    if min_per_class < 1:
        raise ValueError(f"min_per_class must be at least 1, got {min_per_class}")
    counts = Counter(sample.label for sample in samples)
    kept = [sample for sample in samples if counts[sample.label] >= min_per_class]
    frequent = sum(1 for count in counts.values() if count >= min_per_class)
    log.info("kept %d of %d classes with >= %d samples", frequent, len(counts), min_per_class)
    return kept


def shuffled_class_order(classes: Sequence[str], seed: int) -> list[str]:
    """The classes in an order drawn with `random.Random(seed)`."""
    if len(set(classes)) != len(classes):
        raise ValueError("classes must not repeat a class")
    order = list(classes)
    random.Random(seed).shuffle(order)
    return order


def _text_groups(samples: Sequence[Sample]) -> list[list[Sample]]:
    """One class's samples grouped by exact text, in order of first appearance; no text: a group alone."""
    groups: dict[str, list[Sample]] = {}
    for sample in samples:
        key = f"text:{sample.text}" if sample.text else f"id:{sample.id}"
        groups.setdefault(key, []).append(sample)
    return list(groups.values())


def _test_ids_of_class(label: str, samples: list[Sample], test_fraction: float, rng: random.Random) -> set[str]:
    """Whole text groups, drawn in shuffled order, until the class's test share is reached.

    A group that would leave no training sample is passed over; at least one test sample is taken.
    """
    size = len(samples)
    if size < 2:
        raise ValueError(f"class {label!r} has {size} sample; a train/test split needs at least 2")
    target = min(max(round(test_fraction * size), 1), size - 1)
    groups = _text_groups(samples)
    rng.shuffle(groups)
    test_ids: set[str] = set()
    for group in groups:
        if len(test_ids) >= target:
            break
        if len(test_ids) + len(group) >= size:
            continue
        test_ids.update(sample.id for sample in group)
    if not test_ids:
        raise ValueError(f"class {label!r}: all {size} samples share one text, so it cannot be split")
    return test_ids


def grouped_train_test_split(
    samples: Sequence[Sample], test_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """`(train, test)`: per class about `test_fraction` of its samples go to test, a text never to both.

    Classes are visited in order of first appearance with one `random.Random(seed)`. Each class keeps at
    least one sample on each side. Also used to carve a validation split out of a training split.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")
    ids = [sample.id for sample in samples]
    if len(set(ids)) != len(ids):
        raise ValueError("sample ids must be unique to be split")
    rng = random.Random(seed)
    test_ids: set[str] = set()
    for label in classes_in_order(samples):
        of_class = [sample for sample in samples if sample.label == label]
        test_ids |= _test_ids_of_class(label, of_class, test_fraction, rng)
    train = [sample for sample in samples if sample.id not in test_ids]
    test = [sample for sample in samples if sample.id in test_ids]
    return train, test


def draw_missing_table(count: int, rate: float, missing_type: MissingType, seed: int) -> list[Modality]:
    """What each of `count` samples keeps: `round(rate * count)` of them, drawn at random, lose one modality.

    "image": they lose the image (present TEXT); "text": they lose the text (present IMAGE); "both": the
    first half of the drawn ones (rounded down) lose the image and the rest lose the text.
    """
    if count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be between 0 and 1, got {rate}")
    if missing_type not in ("both", "image", "text"):
        raise ValueError(f"missing_type must be 'both', 'image' or 'text', got {missing_type!r}")
    missing = random.Random(seed).sample(range(count), round(rate * count))
    image_missing = {"both": len(missing) // 2, "image": len(missing), "text": 0}[missing_type]
    table = [Modality.BOTH] * count
    for position, index in enumerate(missing):
        table[index] = Modality.TEXT if position < image_missing else Modality.IMAGE
    return table


def _with_modalities(sample: Sample, keep: Modality) -> Sample:
    """A copy carrying only the modalities in `keep`; the sample itself when it would carry none."""
    present = sample.present & keep
    if present in (sample.present, Modality.NONE):
        return sample
    return sample.model_copy(
        update={
            "image_path": sample.image_path if present & Modality.IMAGE else None,
            "text": sample.text if present & Modality.TEXT else None,
        }
    )


def apply_missing(samples: Sequence[Sample], table: Sequence[Modality]) -> list[Sample]:
    """The samples with the modalities the table removes set to None; none is ever left with nothing."""
    if len(samples) != len(table):
        raise ValueError(f"the missing table has {len(table)} entries for {len(samples)} samples")
    return [_with_modalities(sample, keep) for sample, keep in zip(samples, table, strict=True)]
