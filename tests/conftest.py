import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from model.backbone import load_backbone  # noqa: E402
from tests.tiny_towers import tiny_backbone_config  # noqa: E402


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny-towers")


@pytest.fixture(scope="session")
def tiny_config(tiny_root):
    return tiny_backbone_config(tiny_root)


@pytest.fixture(scope="session")
def tiny_vit_config(tiny_root):
    return tiny_backbone_config(tiny_root, image_kind="vit")


@pytest.fixture(scope="session")
def tiny_backbone(tiny_config):
    return load_backbone(tiny_config)


@pytest.fixture(scope="session")
def tiny_vit_backbone(tiny_vit_config):
    return load_backbone(tiny_vit_config)
