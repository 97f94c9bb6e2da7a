"""Updaters on tiny towers in a test's folder, and labelled feedback for them."""

import base64
import random

from tests.images import image_bytes
from tests.learning_data import samples
from tests.served_state import SMALL
from updater.config import TrainerConfig, UpdaterConfig
from updater.feedback_log import NewFeedback
from updater.updater import Updater

FAST = TrainerConfig(epochs=6)


def feedback(labels, per_class=5, task=None, shuffle_labels=False) -> list[NewFeedback]:
    images, texts, out = samples(labels, per_class)
    if shuffle_labels:
        random.Random(0).shuffle(out)
    return [
        NewFeedback(label=label, task=task, text=text, image_bytes=image_bytes(image))
        for image, text, label in zip(images, texts, out, strict=True)
    ]


def make(folder, backbone, **config) -> Updater:
    """An updater that trains a task once each class has 3 samples, at once, whatever its accuracy."""
    settings = {"min_samples_per_class": 3, "quiet_seconds": 0, "min_accuracy": 0.0, **config}
    return Updater(folder, backbone, SMALL, FAST, UpdaterConfig(**settings))


def feedback_samples(labels, per_class, task=None) -> list[dict]:
    """Labelled feedback as `POST /v1/feedback` takes it: the pictures base64-encoded."""
    images, texts, out = samples(labels, per_class)
    return [
        {"text": text, "image": base64.b64encode(image_bytes(image)).decode(), "label": label, "task": task}
        for image, text, label in zip(images, texts, out, strict=True)
    ]
