"""Synthetic inputs for latency benchmarks: pictures with shapes, sentences of about 16 tokens."""

from __future__ import annotations

import random

from PIL import Image, ImageDraw

SENTENCE = "a small {colour} {thing} standing next to a {other} in the middle of a sunny green park"
COLOURS = ["red", "blue", "green", "yellow", "white", "black"]
THINGS = ["dog", "cat", "bus", "house", "tree", "bicycle", "frog", "cake"]


def sentences(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        SENTENCE.format(colour=rng.choice(COLOURS), thing=rng.choice(THINGS), other=rng.choice(THINGS))
        for _ in range(count)
    ]


def pictures(count: int, size: int = 224, seed: int = 0) -> list[Image.Image]:
    rng = random.Random(seed)
    images = []
    for _ in range(count):
        image = Image.new("RGB", (size, size), (255, 255, 255))
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x, y = rng.randrange(size), rng.randrange(size)
            radius = rng.randrange(8, size // 3)
            colour = tuple(rng.randrange(256) for _ in range(3))
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
        images.append(image)
    return images
