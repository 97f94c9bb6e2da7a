"""Logged feedback as the model's input: each record's picture opened from the log's store, then encoded."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from model.batch import EncodedBatch
from model.continual import ContinualModel
from updater.feedback_log import FeedbackLog, FeedbackRecord


def open_image(log: FeedbackLog, record: FeedbackRecord) -> Image.Image | None:
    """The record's picture, decoded (None: it has none)."""
    path = log.image_path(record)
    if path is None:
        return None
    with Image.open(path) as image:
        image.load()
        return image.copy()


def encode_records(model: ContinualModel, log: FeedbackLog, records: Sequence[FeedbackRecord]) -> EncodedBatch:
    """`records` through the frozen towers, in order: each picture decoded once."""
    images = [open_image(log, record) for record in records]
    return model.encode(images, [record.text for record in records])
