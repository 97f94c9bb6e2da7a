"""Batches joined: encoded apart then joined, they are the batch encoded at once."""

import torch

from model.batch import concat_batches, encode_batch
from tests.learning_data import samples


def test_batches_encoded_apart_and_joined_equal_one_encoded_at_once(tiny_backbone, tiny_vit_backbone):
    images, texts, _ = samples(["dog", "bus"], per_class=3, missing={1: "image", 4: "text"})
    texts[0] = "a red dog and a longer text than any other one here"  # the first part's text is the longest
    for backbone in (tiny_backbone, tiny_vit_backbone):  # pixel values kept for the ViT's prefix prompts
        whole = encode_batch(backbone.image, backbone.text, images, texts)
        parts = [encode_batch(backbone.image, backbone.text, images[a:b], texts[a:b]) for a, b in ((0, 2), (2, 6))]
        assert parts[0].input_ids.shape[1] > parts[1].input_ids.shape[1]  # the second part is padded
        joined = concat_batches(parts)
        assert len(joined) == 6 and joined.has_image.tolist() == [True, False, True, True, True, True]
        assert joined.has_text.tolist() == [True, True, True, True, False, True]
        assert torch.equal(joined.attention_mask, whole.attention_mask)
        assert torch.equal(joined.input_ids * joined.attention_mask, whole.input_ids * whole.attention_mask)
        torch.testing.assert_close(joined.q_image, whole.q_image)
        torch.testing.assert_close(joined.q_text, whole.q_text)
        assert (joined.pixel_values is None) == (whole.pixel_values is None)
        if whole.pixel_values is not None:
            torch.testing.assert_close(joined.pixel_values, whole.pixel_values)


def test_a_batch_counts_the_memory_its_tensors_hold(tiny_backbone, tiny_vit_backbone):
    images, texts, _ = samples(["dog", "bus"], per_class=2)
    plain = encode_batch(tiny_backbone.image, tiny_backbone.text, images, texts)
    width = plain.input_ids.shape[1]
    assert plain.pixel_values is None
    assert plain.nbytes == 4 * 2 + 4 * 4 * (plain.q_image.shape[1] + plain.q_text.shape[1]) + 2 * 4 * 8 * width
    with_pixels = encode_batch(tiny_vit_backbone.image, tiny_vit_backbone.text, images, texts)
    pixels = with_pixels.pixel_values
    assert with_pixels.nbytes - pixels.nelement() * 4 == plain.nbytes - 4 * 4 * plain.q_image.shape[1] + (
        4 * 4 * with_pixels.q_image.shape[1]
    )
