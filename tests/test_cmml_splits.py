from collections import Counter
from pathlib import Path

import pytest

from benchmarks.cmml_splits import (
    apply_missing,
    draw_missing_table,
    grouped_train_test_split,
    keep_frequent_classes,
    shuffled_class_order,
)
from model.dataset import Sample
from model.modality import Modality

IMAGE = Path("/data/pic.png")


def labelled(counts: dict[str, int]) -> list[Sample]:
    """`counts[label]` samples per label, each with a text of its own."""
    return [
        Sample(id=f"{label}{index}", text=f"{label} text {index}", label=label)
        for label, count in counts.items()
        for index in range(count)
    ]


def test_keep_frequent_classes_keeps_order():
    samples = labelled({"a": 3, "b": 1, "c": 2})
    kept = keep_frequent_classes(samples, min_per_class=2)
    assert [sample.id for sample in kept] == ["a0", "a1", "a2", "c0", "c1"]
    assert keep_frequent_classes(samples, min_per_class=3) == samples[:3]
    with pytest.raises(ValueError, match="min_per_class must be at least 1, got 0"):
        keep_frequent_classes(samples, min_per_class=0)


def test_shuffled_class_order_is_a_seeded_permutation():
    classes = [f"c{i}" for i in range(12)]
    first = shuffled_class_order(classes, seed=3)
    assert first == shuffled_class_order(classes, seed=3)
    assert sorted(first) == sorted(classes)
    assert first != classes
    assert shuffled_class_order(classes, seed=4) != first
    assert classes == [f"c{i}" for i in range(12)]
    with pytest.raises(ValueError, match="must not repeat"):
        shuffled_class_order(["a", "a"], seed=0)


def texts_of(samples: list[Sample]) -> set[str]:
    return {sample.text for sample in samples if sample.text}


def grouped_samples() -> list[Sample]:
    """Class "a": 10 samples in text groups of sizes 3, 2, 1, 1, 1 and two without text; class "b": 5."""
    texts_a = ["x", "x", "x", "y", "y", "p", "q", "r", None, None]
    samples = [Sample(id=f"a{i}", image_path=IMAGE, text=text, label="a") for i, text in enumerate(texts_a)]
    samples += [Sample(id=f"b{i}", text=text, label="b") for i, text in enumerate(["u", "u", "v", "w", "z"])]
    return samples


@pytest.mark.parametrize("seed", range(20))
def test_grouped_split_keeps_texts_apart_and_sizes_close(seed):
    samples = grouped_samples()
    train, test = grouped_train_test_split(samples, test_fraction=0.3, seed=seed)
    assert not texts_of(train) & texts_of(test)
    assert sorted(s.id for s in train + test) == sorted(s.id for s in samples)
    test_counts = Counter(sample.label for sample in test)
    # a: target round(3.0) = 3; one group of at most 3 can overshoot by at most 2.
    assert 3 <= test_counts["a"] <= 5
    # b: target round(1.5) = 2 (round half to even); the "u" pair can overshoot by one.
    assert 2 <= test_counts["b"] <= 3
    assert [s.id for s in train] == [s.id for s in samples if s in train]


def test_grouped_split_exact_when_every_text_is_unique():
    samples = labelled({"a": 10, "b": 7, "c": 2})
    train, test = grouped_train_test_split(samples, test_fraction=0.25, seed=11)
    # a: round(2.5) = 2; b: round(1.75) = 2; c: round(0.5) = 0, raised to 1.
    assert Counter(sample.label for sample in test) == {"a": 2, "b": 2, "c": 1}
    assert Counter(sample.label for sample in train) == {"a": 8, "b": 5, "c": 1}
    again = grouped_train_test_split(samples, test_fraction=0.25, seed=11)
    assert again == (train, test)
    other = grouped_train_test_split(samples, test_fraction=0.25, seed=12)
    assert other != (train, test)


def test_grouped_split_leaves_a_training_sample():
    samples = labelled({"a": 3})
    train, test = grouped_train_test_split(samples, test_fraction=0.9, seed=0)
    assert (len(train), len(test)) == (1, 2)


def test_grouped_split_passes_over_a_group_that_would_empty_train():
    # Texts "big" x3 and "s" x1, target round(0.5 * 4) = 2. Drawn first, "big" fills the test side and
    # "s" trains; drawn after "s", "big" would leave nothing to train on and is passed over.
    samples = [Sample(id=f"a{i}", text="big", label="a") for i in range(3)]
    samples.append(Sample(id="a3", text="s", label="a"))
    outcomes = set()
    for seed in range(10):
        train, test = grouped_train_test_split(samples, test_fraction=0.5, seed=seed)
        outcomes.add((tuple(s.id for s in train), tuple(s.id for s in test)))
    assert outcomes == {(("a0", "a1", "a2"), ("a3",)), (("a3",), ("a0", "a1", "a2"))}


def test_grouped_split_reused_for_validation():
    train, _ = grouped_train_test_split(labelled({"a": 20}), test_fraction=0.5, seed=1)
    fit, validation = grouped_train_test_split(train, test_fraction=0.2, seed=2)
    assert (len(fit), len(validation)) == (8, 2)
    assert not {s.id for s in fit} & {s.id for s in validation}


def test_grouped_split_refusals():
    with pytest.raises(ValueError, match="class 'a' has 1 sample"):
        grouped_train_test_split(labelled({"a": 1, "b": 4}), test_fraction=0.5, seed=0)
    one_text = [Sample(id=f"a{i}", text="same", label="a") for i in range(3)]
    with pytest.raises(ValueError, match="class 'a': all 3 samples share one text"):
        grouped_train_test_split(one_text, test_fraction=0.5, seed=0)
    for fraction in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="test_fraction must be strictly between 0 and 1"):
            grouped_train_test_split(labelled({"a": 4}), test_fraction=fraction, seed=0)


@pytest.mark.parametrize(
    ("count", "rate", "missing_type", "expected"),
    [
        (10, 0.7, "both", {Modality.BOTH: 3, Modality.TEXT: 3, Modality.IMAGE: 4}),
        (10, 0.7, "image", {Modality.BOTH: 3, Modality.TEXT: 7}),
        (10, 0.7, "text", {Modality.BOTH: 3, Modality.IMAGE: 7}),
        (9, 0.5, "both", {Modality.BOTH: 5, Modality.TEXT: 2, Modality.IMAGE: 2}),
        (7, 0.0, "both", {Modality.BOTH: 7}),
        (4, 1.0, "both", {Modality.TEXT: 2, Modality.IMAGE: 2}),
        (0, 0.7, "text", {}),
    ],
)
def test_missing_table_counts(count, rate, missing_type, expected):
    table = draw_missing_table(count, rate, missing_type, seed=5)
    assert len(table) == count
    assert Counter(table) == expected


def test_missing_table_is_seeded():
    first = draw_missing_table(50, 0.7, "both", seed=1)
    assert first == draw_missing_table(50, 0.7, "both", seed=1)
    assert first != draw_missing_table(50, 0.7, "both", seed=2)
    # The same samples lose a modality whatever the type, for one seed.
    complete = [p == Modality.BOTH for p in first]
    assert complete == [p == Modality.BOTH for p in draw_missing_table(50, 0.7, "image", seed=1)]


def test_missing_table_refusals():
    with pytest.raises(ValueError, match="rate must be between 0 and 1, got 1.5"):
        draw_missing_table(10, 1.5, "both", seed=0)
    with pytest.raises(ValueError, match="count must be non-negative, got -1"):
        draw_missing_table(-1, 0.5, "both", seed=0)
    with pytest.raises(ValueError, match="missing_type must be"):
        draw_missing_table(10, 0.5, "audio", seed=0)


def test_apply_missing_removes_modalities_but_never_all():
    samples = [
        Sample(id="full1", image_path=IMAGE, text="t1", label="a"),
        Sample(id="full2", image_path=IMAGE, text="t2", label="a"),
        Sample(id="full3", image_path=IMAGE, text="t3", label="a"),
        Sample(id="text_only", text="t4", label="a"),
        Sample(id="image_only", image_path=IMAGE, label="a"),
        Sample(id="text_only2", text="t5", label="a"),
    ]
    table = [Modality.BOTH, Modality.TEXT, Modality.IMAGE, Modality.TEXT, Modality.TEXT, Modality.IMAGE]
    result = apply_missing(samples, table)
    assert [(s.image_path, s.text) for s in result] == [
        (IMAGE, "t1"),
        (None, "t2"),
        (IMAGE, None),
        (None, "t4"),
        (IMAGE, None),  # would lose its only modality: kept as it is
        (None, "t5"),  # idem
    ]
    assert [s.present for s in result] == [
        Modality.BOTH,
        Modality.TEXT,
        Modality.IMAGE,
        Modality.TEXT,
        Modality.IMAGE,
        Modality.TEXT,
    ]
    assert samples[1].image_path == IMAGE  # the originals are untouched
    assert [s.id for s in result] == [s.id for s in samples]
    assert all(s.label == "a" for s in result)


def test_apply_missing_refuses_a_table_of_another_length():
    with pytest.raises(ValueError, match="the missing table has 1 entries for 2 samples"):
        apply_missing(labelled({"a": 2}), [Modality.BOTH])
