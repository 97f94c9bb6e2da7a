import numpy as np
import pytest
import torch
from PIL import Image

from model.preprocess import (
    ImageDecodeError,
    ImagePreprocessor,
    ImageTooLargeError,
    decode_image,
    pad_to_square,
    to_rgb_on_white,
)
from tests.images import drawn_image, image_bytes


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_decode_supported_formats(fmt):
    image = decode_image(image_bytes(drawn_image("disk"), fmt), max_pixels=10_000)
    assert image.size == (64, 64)


def test_decode_refuses_non_image_bytes_in_plain_words():
    with pytest.raises(ImageDecodeError) as refused:
        decode_image(b"GIF89a not really", max_pixels=10_000)
    assert str(refused.value) == "not a PNG, JPEG or WebP image"  # nothing of PIL's stream object


def test_decode_refuses_a_truncated_image_in_plain_words():
    whole = image_bytes(drawn_image("disk"), "PNG")
    with pytest.raises(ImageDecodeError) as refused:
        decode_image(whole[: len(whole) // 2], max_pixels=10_000)
    assert str(refused.value) == "a PNG, JPEG or WebP image that cannot be decoded (truncated or damaged)"


def test_decode_refuses_unsupported_format():
    with pytest.raises(ImageDecodeError):
        decode_image(image_bytes(drawn_image("disk"), "BMP"), max_pixels=10_000)


def test_pixel_limit_checked_before_decoding():
    data = image_bytes(Image.new("RGB", (300, 200)), "PNG")
    with pytest.raises(ImageTooLargeError, match="300x200 pixels"):
        decode_image(data, max_pixels=300 * 200 - 1)
    assert decode_image(data, max_pixels=300 * 200).size == (300, 200)


def test_transparency_is_composited_onto_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    rgb = to_rgb_on_white(rgba)
    assert rgb.mode == "RGB"
    assert rgb.getpixel((1, 1)) == (255, 255, 255)
    assert rgb.getpixel((0, 0)) == (255, 0, 0)


def test_pad_to_square_centres_on_white():
    tall = Image.new("RGB", (2, 6), (0, 0, 0))
    square = pad_to_square(tall)
    assert square.size == (6, 6)
    assert square.getpixel((0, 3)) == (255, 255, 255)
    assert square.getpixel((2, 3)) == (0, 0, 0)


def test_normalisation_values():
    preprocess = ImagePreprocessor(size=4, mean=(127 / 255,) * 3, std=(128 / 255,) * 3)
    batch = preprocess([Image.new("RGB", (8, 8), (255, 127, 0))])
    assert batch.shape == (1, 3, 4, 4)
    np.testing.assert_allclose(batch[0, :, 0, 0].numpy(), [1.0, 0.0, -127 / 128], atol=1e-6)


def test_empty_batch_has_the_right_shape():
    assert ImagePreprocessor(size=8, mean=(0,) * 3, std=(1,) * 3)([]).shape == (0, 3, 8, 8)


def test_text_preprocessing_pads_and_truncates(tiny_backbone):
    inputs = tiny_backbone.text.preprocess(["a dog", "a small red dog " * 10])
    assert inputs["input_ids"].dtype == torch.int64
    assert inputs["input_ids"].shape[1] == 16  # max_length of the tiny config
    assert inputs["attention_mask"][0].sum() == 4  # [CLS] a dog [SEP]
    assert inputs["attention_mask"][1].sum() == 16


def test_prompt_only_inputs_are_cls_sep(tiny_backbone):
    inputs = tiny_backbone.text.prompt_only_inputs(3)
    tokenizer = tiny_backbone.text.text_preprocessor.tokenizer
    assert inputs["input_ids"].tolist() == [[tokenizer.cls_token_id, tokenizer.sep_token_id]] * 3
