"""Which samples training holds back: the gate tests a new version on them and calibration fits its scores."""

from __future__ import annotations

from collections.abc import Sequence

from updater.feedback_log import FeedbackRecord


def held_back(labels: Sequence[str], fraction: float) -> list[bool]:
    """Which samples of `labels` are held back: about `fraction` of each class, evenly spread through its
    samples in order, every class keeping at least one for training. (Holding back whole groups of
    samples that share a text calibrated worse on tuxpaint-cmml and no better on openclipart-cmml:
    docs/calibration.md.)"""
    by_class: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    held = [False] * len(labels)
    for members in by_class.values():
        count = min(len(members) - 1, round(len(members) * fraction))
        step = len(members) / count if count else 0
        for position in range(count):
            held[members[int(position * step)]] = True
    return held


def split_holdout(records: Sequence[FeedbackRecord], fraction: float) -> tuple[list, list]:
    """The records to train on and those held back (`held_back`)."""
    flags = held_back([record.label for record in records], fraction)
    train = [record for record, flag in zip(records, flags, strict=True) if not flag]
    return train, [record for record, flag in zip(records, flags, strict=True) if flag]
