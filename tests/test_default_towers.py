"""The real default towers, loaded offline from their wheels."""

import pytest
import torch
import torch.nn.functional as F

from model.backbone import load_backbone
from model.config import BackboneConfig
from tests.images import drawn_image


@pytest.fixture(scope="module")
def default_backbone(tmp_path_factory):
    config = BackboneConfig(onnx_cache_dir=tmp_path_factory.mktemp("onnx"), device="cpu")
    return load_backbone(config, runtime="onnx")


def test_minilm_puts_a_puppy_near_a_small_dog(default_backbone):
    tower = default_backbone.text
    features = F.normalize(tower.encode(tower.preprocess(["a puppy", "a small dog", "a city bus"])), dim=-1)
    assert features.shape == (3, 384)
    puppy_dog, puppy_bus = features[0] @ features[1], features[0] @ features[2]
    assert puppy_dog > puppy_bus + 0.2


def test_minilm_matches_sentence_transformers_pooling(default_backbone):
    """Mean pooling over real tokens: a padded batch gives each text its own embedding."""
    tower = default_backbone.text.tower
    texts = ["a frog", "a very long description of a green frog sitting on a leaf"]
    batched = tower.encode(tower.preprocess(texts))
    alone = torch.cat([tower.encode(tower.preprocess([text])) for text in texts])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


def test_efficientnet_features_see_shapes(default_backbone):
    tower = default_backbone.image
    disk, flipped = drawn_image("disk", 96), drawn_image("disk", 96).transpose(0)
    stripes = drawn_image("stripes", 96, colour=(20, 20, 200))
    features = F.normalize(tower.encode(tower.preprocess([disk, flipped, stripes])), dim=-1)
    assert features.shape == (3, 1280)
    assert features[0] @ features[1] > features[0] @ features[2] + 0.1


def test_default_backbone_describes_itself(default_backbone):
    description = default_backbone.describe()
    assert description["text"]["feature_dim"] == 384 and description["text"]["layers"] == 6
    assert description["image"]["variant"] == "efficientnet-lite0"
    assert description["image"]["image_size"] == 224
    assert len(description["fingerprint"]) == 32
