import base64
import json

import pytest

from model.modality import Modality
from serving.config import LimitsConfig
from serving.decode import RequestError, decode_feedback, decode_form_request, decode_json_request
from tests.images import drawn_image, image_bytes

LIMITS = LimitsConfig(max_image_bytes=64 * 1024, max_image_pixels=128 * 128, max_text_chars=50, max_top_k=10)


def body(**fields) -> bytes:
    return json.dumps(fields).encode()


def png_b64(size: int = 32, fmt: str = "PNG") -> str:
    return base64.b64encode(image_bytes(drawn_image("disk", size), fmt)).decode()


def refused(call) -> RequestError:
    with pytest.raises(RequestError) as caught:
        call()
    return caught.value


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_image_and_text_decode(fmt):
    sample = decode_json_request(body(text="a red dog", image=png_b64(40, fmt), top_k=3), LIMITS)
    assert sample.image.size == (40, 40) and sample.text == "a red dog" and sample.top_k == 3
    assert sample.present == Modality.BOTH and sample.missing == [] and sample.pattern == "complete"


def test_missing_modalities_are_named():
    text_only = decode_json_request(body(text="a bus"), LIMITS)
    assert text_only.missing == ["image"] and text_only.pattern == "image_missing" and text_only.top_k == 5
    image_only = decode_json_request(body(image=png_b64(), text=None), LIMITS)
    assert image_only.missing == ["text"] and image_only.pattern == "text_missing"


def test_blank_text_counts_as_missing():
    assert decode_json_request(body(text="   ", image=png_b64()), LIMITS).missing == ["text"]


@pytest.mark.parametrize(
    ("fields", "status", "field", "words"),
    [
        ({}, 422, "image", "both missing"),
        ({"text": None, "image": None}, 422, "image", "both missing"),
        ({"text": "  "}, 422, "image", "both missing"),
        ({"text": "x", "colour": "red"}, 422, "colour", "unknown field"),
        ({"text": 5}, 422, "text", "string"),
        ({"text": "x", "top_k": 0}, 422, "top_k", "greater than or equal to 1"),
        ({"text": "x", "top_k": 11}, 422, "top_k", "outside 1..10"),
        ({"text": "x", "top_k": "many"}, 422, "top_k", "integer"),
        ({"image": "not base64!"}, 422, "image", "base64"),
        ({"image": base64.b64encode(b"hello, not an image").decode()}, 422, "image", "not a PNG, JPEG or WebP"),
        ({"image": ""}, 422, "image", "empty"),
        ({"text": "x" * 51}, 413, "text", "51 characters"),
        ({"image": png_b64(129)}, 413, "image", "129x129 pixels"),
    ],
)
def test_bad_json_is_refused_naming_the_field(fields, status, field, words):
    error = refused(lambda: decode_json_request(body(**fields), LIMITS))
    assert (error.status, error.field) == (status, field)
    assert words in error.detail and (field is None or error.detail.startswith(field) or "both" in words)


def test_body_that_is_not_a_json_object():
    for raw in (b"not json", b"[1, 2]", b""):
        error = refused(lambda raw=raw: decode_json_request(raw, LIMITS))
        assert error.status == 422 and "body" in error.detail


def test_image_over_the_byte_limit_is_413_before_decoding():
    noise = base64.b64encode(bytes(range(256)) * 400).decode()  # 100 KiB > 64 KiB
    error = refused(lambda: decode_json_request(body(image=noise), LIMITS))
    assert (error.status, error.field) == (413, "image")


def test_decompression_bomb_is_refused_from_its_header():
    bomb = LimitsConfig(max_image_pixels=64 * 64)
    small_file_many_pixels = base64.b64encode(image_bytes(drawn_image("disk", 400), "PNG")).decode()
    error = refused(lambda: decode_json_request(body(image=small_file_many_pixels), bomb))
    assert error.status == 413 and "400x400" in error.detail


def test_form_fields():
    sample = decode_form_request({"text": "a dog", "top_k": "2"}, image_bytes(drawn_image("disk", 24)), LIMITS)
    assert sample.text == "a dog" and sample.top_k == 2 and sample.image.size == (24, 24)
    assert decode_form_request({}, image_bytes(drawn_image("disk", 24)), LIMITS).missing == ["text"]


@pytest.mark.parametrize(
    ("form", "image", "status", "field"),
    [
        ({}, None, 422, "image"),
        ({"text": "x", "label": "dog"}, None, 422, "label"),
        ({"text": "x", "image": "aGk="}, None, 422, "image"),
        ({"text": "x", "top_k": "two"}, None, 422, "top_k"),
        ({"text": "x"}, b"GIF89a not really", 422, "image"),
        ({"text": "x" * 60}, None, 413, "text"),
    ],
)
def test_bad_forms_are_refused(form, image, status, field):
    error = refused(lambda: decode_form_request(form, image, LIMITS))
    assert (error.status, error.field) == (status, field)


def feedback_body(*samples) -> bytes:
    return json.dumps({"samples": list(samples)}).encode()


def test_feedback_samples_decode_with_their_picture_bytes():
    png = image_bytes(drawn_image("disk", 30), "PNG")
    jpeg = image_bytes(drawn_image("disk", 30), "JPEG")
    checked = decode_feedback(
        feedback_body(
            {"text": "a dog", "image": base64.b64encode(png).decode(), "label": "dog", "task": "pets"},
            {"image": base64.b64encode(jpeg).decode(), "label": "dog"},
            {"text": "a bus", "label": "bus"},
        ),
        LIMITS,
        max_samples=3,
    )
    assert [(s.label, s.task, s.text, s.image_suffix) for s in checked] == [
        ("dog", "pets", "a dog", ".png"),
        ("dog", None, None, ".jpg"),
        ("bus", None, "a bus", ".png"),
    ]
    assert checked[0].image_bytes == png and checked[2].image_bytes is None


@pytest.mark.parametrize(
    ("samples", "status", "field"),
    [
        ([{"text": "a dog"}], 422, "samples[0].label"),
        ([{"text": "a dog", "label": ""}], 422, "samples[0].label"),
        ([{"text": "x", "label": "a"}, {"label": "b"}], 422, "samples[1].image"),
        ([{"text": "x", "label": "a"}, {"label": "b", "image": "%%"}], 422, "samples[1].image"),
        ([{"text": "x", "label": "a", "colour": 1}], 422, "samples[0].colour"),
        ([{"text": "x", "label": "a", "task": "no spaces allowed"}], 422, "samples[0].task"),
        ([{"text": "x" * 51, "label": "a"}], 413, "samples[0].text"),
        ([{"text": "x", "label": "a"}] * 4, 413, "samples"),
        ([], 422, "samples"),
    ],
)
def test_a_bad_feedback_sample_refuses_the_request_naming_it(samples, status, field):
    error = refused(lambda: decode_feedback(feedback_body(*samples), LIMITS, max_samples=3))
    assert (error.status, error.field) == (status, field) and error.detail.startswith(field)
