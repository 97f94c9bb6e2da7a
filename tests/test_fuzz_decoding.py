"""Property tests: whatever a client sends, decoding answers a sample or a RequestError, never anything else."""

import base64
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.preprocess import ImageDecodeError, ImageTooLargeError, decode_image
from serving.config import LimitsConfig
from serving.decode import DecodedSample, RequestError, decode_feedback, decode_form_request, decode_json_request
from tests.images import drawn_image, image_bytes

LIMITS = LimitsConfig(max_image_bytes=32 * 1024, max_image_pixels=64 * 64, max_text_chars=64, max_top_k=10)
PNG = image_bytes(drawn_image("disk", 24))
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
images = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.binary(max_size=300).map(lambda raw: base64.b64encode(raw).decode()),
    st.just(base64.b64encode(PNG).decode()),
    st.binary(min_size=8, max_size=len(PNG)).map(lambda cut: base64.b64encode(PNG[: len(cut)]).decode()),
)
predict_bodies = st.fixed_dictionaries(
    {},
    optional={
        "text": st.none() | st.text(max_size=100),
        "image": images,
        "top_k": json_values,
        "extra": json_values,
    },
)


def decodes_or_refuses(call) -> None:
    try:
        result = call()
    except RequestError as error:
        assert 400 <= error.status < 500 and error.detail
        if error.field:
            assert error.detail.startswith(error.field) or "both missing" in error.detail
        return
    assert result is not None


@FAST
@given(st.binary(max_size=400))
def test_any_bytes_as_a_json_body(raw):
    decodes_or_refuses(lambda: decode_json_request(raw, LIMITS))


@FAST
@given(json_values)
def test_any_json_value_as_a_body(value):
    decodes_or_refuses(lambda: decode_json_request(json.dumps(value).encode(), LIMITS))


@FAST
@given(predict_bodies)
def test_prediction_shaped_bodies(body):
    def decode():
        sample = decode_json_request(json.dumps(body).encode(), LIMITS)
        assert isinstance(sample, DecodedSample) and (sample.image is not None or sample.text is not None)
        assert 1 <= sample.top_k <= LIMITS.max_top_k
        return sample

    decodes_or_refuses(decode)


@FAST
@given(
    st.lists(
        st.fixed_dictionaries(
            {"label": json_values}, optional={"text": json_values, "image": images, "task": json_values}
        ),
        max_size=4,
    )
)
def test_feedback_shaped_bodies(samples):
    decodes_or_refuses(lambda: decode_feedback(json.dumps({"samples": samples}).encode(), LIMITS, max_samples=3))


@FAST
@given(st.dictionaries(st.text(max_size=8), st.text(max_size=70), max_size=4), st.none() | st.binary(max_size=200))
def test_any_multipart_form(form, picture):
    decodes_or_refuses(lambda: decode_form_request(form, picture, LIMITS))


@FAST
@given(st.binary(max_size=600))
def test_image_decoding_fails_only_in_its_own_ways(raw):
    try:
        decode_image(raw, max_pixels=64 * 64)
    except (ImageDecodeError, ImageTooLargeError):
        pass
