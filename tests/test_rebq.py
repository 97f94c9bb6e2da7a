import pytest
import torch
import torch.nn.functional as F

from model.config import LearnerConfig
from model.continual import ContinualModel
from tests.learning_data import samples

SMALL = LearnerConfig(components_per_task=3, prompt_length=2, memory_components_per_task=3, memory_prompt_length=2)


@pytest.fixture
def grown(tiny_backbone):
    """A model grown by hand by one task of two classes, with class statistics of random features."""
    model = ContinualModel(tiny_backbone, SMALL)
    generator = torch.Generator().manual_seed(0)
    width = model.learner.head.feature_dim
    model.learner.grow(torch.randn(2, width, generator=generator), generator, len(model.tasks))
    every = torch.ones(6, dtype=torch.bool)
    features, targets = torch.randn(6, width, generator=generator), torch.tensor([0, 0, 0, 1, 1, 1])
    model.learner.lda.add_classes(features, targets, 2, every, every, halves_from=every)
    return model


def mixed_batch(model):
    images, texts, _ = samples(["dog", "bus"], per_class=2, missing={1: "text", 2: "image"})
    return model.encode(images, texts)  # rows: complete, image only, text only, complete


def test_each_missing_pattern_fills_the_right_query(grown):
    batch = mixed_batch(grown)
    assert batch.has_image.tolist() == [True, True, False, True]
    assert batch.has_text.tolist() == [True, False, True, True]
    output = grown.forward(batch)
    assert output.reconstructed.tolist() == [False, True, True, False]
    image_rebuilt = output.q_hat_image.abs().sum(-1) > 0
    text_rebuilt = output.q_hat_text.abs().sum(-1) > 0
    assert image_rebuilt.tolist() == [False, False, True, False]
    assert text_rebuilt.tolist() == [False, True, False, False]
    image_dim = grown.backbone.image.feature_dim
    # a missing modality's feature is its reconstructed query
    torch.testing.assert_close(output.fused[1, image_dim:] * 2**0.5, output.q_hat_text[1])
    torch.testing.assert_close(output.fused[2, :image_dim] * 2**0.5, output.q_hat_image[2])


def test_text_is_reconstructed_by_a_prompt_only_pass(grown):
    batch = mixed_batch(grown)
    output = grown.forward(batch)
    text_tower, learner = grown.backbone.text, grown.learner
    memory_prompts = learner.text_memory.prompts(batch.q_image[1:2])  # queried with the image
    expected = F.normalize(text_tower.encode(text_tower.prompt_only_inputs(1), memory_prompts), dim=-1)
    torch.testing.assert_close(output.q_hat_text[1:2], expected)


def test_image_is_reconstructed_in_feature_space(grown):
    batch = mixed_batch(grown)
    output = grown.forward(batch)
    expected = grown.learner.image_memory.prompts(batch.q_text[2:3])
    torch.testing.assert_close(output.q_hat_image[2:3], expected)


def test_mixed_batch_equals_a_per_sample_loop(grown):
    batch = mixed_batch(grown)
    with torch.no_grad():
        batched = grown.forward(batch).logits
        looped = torch.cat([grown.forward(batch.select(torch.tensor([row]))).logits for row in range(len(batch))])
    assert batched.shape == (4, 2)
    torch.testing.assert_close(batched, looped, atol=1e-5, rtol=1e-5)


def test_prompts_reach_the_prompted_pass(grown, tiny_backbone):
    batch = mixed_batch(grown)
    bare = ContinualModel(tiny_backbone, SMALL)
    bare.learner.head.grow(grown.learner.head.weight())
    with torch.no_grad():
        prompted, plain = grown.forward(batch).fused, bare.forward(batch).fused
    assert (prompted[0] - plain[0]).abs().max() > 1e-4  # a complete row differs once pools hold prompts


def test_predict_before_any_task_is_refused(tiny_backbone):
    model = ContinualModel(tiny_backbone, SMALL)
    images, texts, _ = samples(["dog"], per_class=1)
    with pytest.raises(RuntimeError, match="no task has been learned yet"):
        model.predict(model.encode(images, texts), top_k=1)


def test_a_blank_text_is_a_missing_text_when_encoded(tiny_backbone):
    model = ContinualModel(tiny_backbone, SMALL)
    images, _, _ = samples(["dog"], per_class=2)
    batch = model.encode(images, ["   ", "a red dog"])
    assert batch.has_text.tolist() == [False, True]
    assert float(batch.q_text[0].abs().sum()) == 0.0
