import pytest
import torch
from pydantic import ValidationError

from model.backbone import load_image_tower
from model.config import ImageTowerConfig, TextTowerConfig
from model.modality import Modality
from model.prefix_attention import SLOT_ATTRIBUTE
from model.text_tower import TextTower
from model.tower import PromptKind
from tests.images import drawn_image

TEXTS = ["a dog", "a small red bus in the city", "the moon"]


def prefix_towers(tiny_backbone, tiny_vit_backbone):
    images = [drawn_image("disk"), drawn_image("stripes"), drawn_image("corner")]
    return [
        (tiny_backbone.text, tiny_backbone.text.preprocess(TEXTS)),
        (tiny_vit_backbone.image, tiny_vit_backbone.image.preprocess(images)),
    ]


@pytest.fixture
def towers(tiny_backbone, tiny_vit_backbone):
    return prefix_towers(tiny_backbone, tiny_vit_backbone)


def test_prefix_towers_shapes(towers):
    for tower, inputs in towers:
        assert tower.prompt_kind is PromptKind.PREFIX
        features = tower.encode(inputs)
        assert features.shape == (3, tower.feature_dim) == (3, 16)
        assert tower.prompt_shape(5) == (len(tower.config.prompt_layers), 2, 5, 16)


def test_zero_length_prompt_changes_nothing(towers):
    for tower, inputs in towers:
        plain = tower.encode(inputs)
        empty = tower.encode(inputs, torch.zeros(3, *tower.prompt_shape(0)))
        assert torch.equal(plain, empty)


def test_prompts_change_the_output_per_row(towers):
    for tower, inputs in towers:
        plain = tower.encode(inputs)
        prompts = torch.zeros(3, *tower.prompt_shape(4))
        prompts[1] = torch.randn(*tower.prompt_shape(4))
        prompted = tower.encode(inputs, prompts)
        assert (prompted[1] - plain[1]).abs().max() > 1e-3
        # zero keys give uniform extra attention mass to zero values: rows 0 and 2 change, but less
        assert not torch.equal(prompted[0], plain[0])


def test_batched_prompted_text_equals_one_at_a_time(tiny_backbone):
    """Padding in a batch must not leak into the prompted result: the mask gains the prefix columns."""
    tower = tiny_backbone.text
    prompts = torch.randn(3, *tower.prompt_shape(3))
    batched = tower.encode(tower.preprocess(TEXTS), prompts)
    for row, text in enumerate(TEXTS):
        alone = tower.encode(tower.preprocess([text]), prompts[row : row + 1])
        torch.testing.assert_close(batched[row], alone[0], atol=1e-5, rtol=1e-5)


def test_only_marked_layers_take_prompts(tiny_config):
    config = TextTowerConfig(path=tiny_config.text.path, max_length=16, prompt_layers=(1,))
    tower = TextTower.load(config)
    slots = [getattr(layer.attention.self, SLOT_ATTRIBUTE, None) for layer in tower.encoder.encoder.layer]
    assert slots == [None, 0]
    assert tower.prompt_shape(2) == (1, 2, 2, 16)
    inputs = tower.preprocess(TEXTS)
    prompted = tower.encode(inputs, torch.randn(3, 1, 2, 2, 16))
    assert not torch.allclose(prompted, tower.encode(inputs))


def test_cnn_prompts_add_to_the_pooled_feature(tiny_backbone):
    tower = tiny_backbone.image
    assert tower.modality is Modality.IMAGE and tower.prompt_kind is PromptKind.FEATURE
    inputs = tower.preprocess([drawn_image("disk"), drawn_image("stripes")])
    plain = tower.encode(inputs)
    offset = torch.randn(2, tower.feature_dim)
    torch.testing.assert_close(tower.encode(inputs, offset), plain + offset)
    assert tower.prompt_shape(7) == (tower.feature_dim,)


def test_towers_are_frozen(tiny_backbone):
    for tower in (tiny_backbone.image, tiny_backbone.text):
        assert not any(parameter.requires_grad for parameter in tower.parameters())
        tower.train()
        assert not tower.training


def test_prompt_gradients_flow_through_the_frozen_text_tower(tiny_backbone):
    tower = tiny_backbone.text
    prompts = torch.zeros(2, *tower.prompt_shape(2), requires_grad=True)
    tower.encode(tower.preprocess(TEXTS[:2]), prompts).sum().backward()
    assert prompts.grad is not None and prompts.grad.abs().sum() > 0


def test_a_layer_that_does_not_exist_is_refused(tiny_config):
    config = TextTowerConfig(path=tiny_config.text.path, prompt_layers=(0, 5))
    with pytest.raises(ValueError, match="prompt_layers: layer 5 does not exist; the model has 2 layers"):
        TextTower.load(config)


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ValidationError, match="prompt_layers"):
        TextTowerConfig(prompt_layers=(1, 1))
    with pytest.raises(ValidationError, match="extra_field"):
        TextTowerConfig(extra_field=1)
    with pytest.raises(FileNotFoundError, match="image tower path"):
        load_image_tower(ImageTowerConfig(kind="vit", path=tmp_path / "nothing"))
    with pytest.raises(ValueError, match="variant"):
        load_image_tower(ImageTowerConfig(variant="resnet50", path=tmp_path))


def test_vit_folder_normalisation_is_read(tiny_vit_backbone):
    preprocessor = tiny_vit_backbone.image.image_preprocessor
    assert preprocessor.mean.ravel().tolist() == pytest.approx([0.4, 0.45, 0.5])
    assert preprocessor.size == 32
