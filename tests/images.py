"""Small synthetic pictures, encoded as a client would send them."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw


def drawn_image(kind: str, size: int = 64, colour=(200, 30, 30)) -> Image.Image:
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    if kind == "disk":
        draw.ellipse((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=colour)
    elif kind == "stripes":
        for x in range(0, size, 8):
            draw.rectangle((x, 0, x + 3, size), fill=colour)
    elif kind == "corner":
        draw.polygon([(0, 0), (size // 2, 0), (0, size // 2)], fill=colour)
    else:
        raise ValueError(kind)
    return image


def image_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()
