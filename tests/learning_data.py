"""Tiny labelled samples that tiny random towers can tell apart."""

from __future__ import annotations

import json

import yaml

from tests.images import drawn_image

CLASSES = {
    "dog": ("disk", (200, 30, 30), "a red dog"),
    "bus": ("stripes", (30, 30, 200), "a blue bus"),
    "tree": ("corner", (30, 160, 30), "a green tree"),
    "cake": ("disk", (230, 200, 40), "a yellow cake"),
    "frog": ("stripes", (30, 160, 30), "a green frog"),
    "star": ("corner", (230, 200, 40), "a small star"),
    "hat": ("disk", (30, 30, 200), "a blue hat"),
    "boat": ("corner", (200, 30, 30), "a red boat"),
    "apple": ("disk", (30, 160, 30), "a green apple"),
    "moon": ("stripes", (230, 200, 40), "a big moon"),
    "fish": ("stripes", (200, 30, 30), "a red fish"),
    "car": ("corner", (30, 30, 200), "a blue car"),
    "horse": ("disk", (120, 60, 20), "a big horse"),
    "kite": ("stripes", (120, 60, 20), "a brown kite"),
}


def samples(labels, per_class=6, missing=None):
    """`(images, texts, labels)`; `missing` maps a row index to 'image' or 'text' to leave out."""
    images, texts, out_labels = [], [], []
    for label in labels:
        shape, colour, text = CLASSES[label]
        for k in range(per_class):
            images.append(drawn_image(shape, 48 + 4 * k, colour))
            texts.append(text + (" ." * (k % 3)))
            out_labels.append(label)
    for row, modality in (missing or {}).items():
        if modality == "image":
            images[row] = None
        else:
            texts[row] = None
    return images, texts, out_labels


def write_jsonl_dataset(folder, labels, per_class=4, task=None, task_names=None):
    """A JSONL data set of `samples(labels)` with PNG files beside it, as a user's would be; its path.
    Every sample names `task`, or its label's task in `task_names`, when given."""
    images, texts, out_labels = samples(labels, per_class)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for index, (image, text, label) in enumerate(zip(images, texts, out_labels, strict=True)):
        name = f"images/{label}-{index}.png"
        image.save(folder / name, format="PNG")
        line = {"id": f"{label}-{index}", "image": name, "text": text, "label": label}
        if task or task_names:
            line["task"] = task or task_names[label]
        lines.append(json.dumps(line))
    path = folder / "samples.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_config(path, backbone_config, epochs=3):
    """A configuration file of `backbone_config`'s towers, small pools and a short training."""
    config = {
        "backbone": json.loads(backbone_config.model_dump_json()),
        "learner": {
            "components_per_task": 2,
            "prompt_length": 2,
            "memory_components_per_task": 2,
            "memory_prompt_length": 2,
        },
        "trainer": {"epochs": epochs, "batch_size": 8},
    }
    path.write_text(yaml.safe_dump(config))
    return path
