"""Turning raw text and image bytes into tower inputs, without torchvision."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

WHITE = (255, 255, 255)


class ImageDecodeError(ValueError):
    """Bytes that are not a supported image."""


class ImageTooLargeError(ValueError):
    """An image whose pixel count is over the limit, refused before its pixels are decoded."""


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Open PNG, JPEG or WebP bytes; the header's size is checked before any pixel is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=("PNG", "JPEG", "WEBP"))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLargeError(f"{width}x{height} pixels is over the limit of {max_pixels}")
            image.load()
    except ImageTooLargeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageTooLargeError(str(error)) from error
    except UnidentifiedImageError as error:  # its message shows the stream object, not the user's words
        raise ImageDecodeError("not a PNG, JPEG or WebP image") from error
    except Exception as error:  # PIL raises many types for bad bytes
        damaged = "a PNG, JPEG or WebP image that cannot be decoded (truncated or damaged)"
        raise ImageDecodeError(damaged) from error
    return image


def to_rgb_on_white(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto white."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def pad_to_square(image: Image.Image) -> Image.Image:
    """Centre the picture on a white square so resizing keeps its aspect."""
    width, height = image.size
    side = max(width, height)
    if width == height:
        return image
    square = Image.new("RGB", (side, side), WHITE)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


class ImagePreprocessor:
    """PIL images to a normalised `(B, 3, S, S)` float tensor."""

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float]):
        self.size = size
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)

    def one(self, image: Image.Image) -> np.ndarray:
        square = pad_to_square(to_rgb_on_white(image)).resize((self.size, self.size), Image.Resampling.BILINEAR)
        pixels = np.asarray(square, dtype=np.float32).transpose(2, 0, 1) / 255.0  # (3, S, S)
        return (pixels - self.mean) / self.std

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        if not images:
            return torch.zeros(0, 3, self.size, self.size)
        return torch.from_numpy(np.stack([self.one(image) for image in images]))  # (B, 3, S, S)


class TextPreprocessor:
    """Strings to `input_ids (B, S)` and `attention_mask (B, S)`, int64, padded to the longest."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        if not texts:
            empty = torch.zeros(0, 2, dtype=torch.int64)
            return {"input_ids": empty, "attention_mask": empty.clone()}
        encoded = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {
            "input_ids": encoded["input_ids"].to(torch.int64),
            "attention_mask": encoded["attention_mask"].to(torch.int64),
        }

    def special_only(self, batch: int) -> dict[str, torch.Tensor]:
        """The shortest input, `[CLS] [SEP]`: the prompt-only pass reads its prompts through it."""
        ids = torch.tensor([[self.tokenizer.cls_token_id, self.tokenizer.sep_token_id]], dtype=torch.int64)
        ids = ids.expand(batch, 2).contiguous()  # (B, 2)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
