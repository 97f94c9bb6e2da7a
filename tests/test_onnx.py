import json
import logging

import pytest
import torch

from model.backbone import load_backbone
from model.onnx_export import OnnxCache
from model.onnx_tower import CPU, OnnxTower, choose_providers
from tests.images import drawn_image

# ONNX Runtime fuses and reorders float32 maths: features agree with torch to this tolerance.
PARITY_ATOL = 1e-4

TEXTS = ["a dog", "a small red bus in the city", "the moon", "a cake"]
IMAGES = [drawn_image("disk"), drawn_image("stripes"), drawn_image("corner")]


def both_runtimes(config):
    return load_backbone(config, runtime="torch"), load_backbone(config, runtime="onnx")


@pytest.fixture(scope="module")
def cnn_pair(tiny_config):
    return both_runtimes(tiny_config)


@pytest.fixture(scope="module")
def vit_pair(tiny_vit_config):
    return both_runtimes(tiny_vit_config)


def assert_parity(torch_tower, onnx_tower, raw, prompt_length):
    inputs = torch_tower.preprocess(raw)
    batch = len(raw)
    for prompts in (None, torch.randn(batch, *torch_tower.prompt_shape(prompt_length)) * 0.5):
        expected = torch_tower.encode(inputs, prompts)
        got = onnx_tower.encode(inputs, prompts)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=PARITY_ATOL, rtol=1e-4)


@pytest.mark.parametrize("prompt_length", [0, 1, 5])
def test_text_parity(cnn_pair, prompt_length):
    torch_backbone, onnx_backbone = cnn_pair
    assert_parity(torch_backbone.text, onnx_backbone.text, TEXTS, prompt_length)


@pytest.mark.parametrize("prompt_length", [0, 3])
def test_vit_parity(vit_pair, prompt_length):
    torch_backbone, onnx_backbone = vit_pair
    assert_parity(torch_backbone.image, onnx_backbone.image, IMAGES, prompt_length)


def test_cnn_parity(cnn_pair):
    torch_backbone, onnx_backbone = cnn_pair
    assert_parity(torch_backbone.image, onnx_backbone.image, IMAGES, 0)


def test_onnx_towers_declare_the_capabilities_of_the_towers_they_run(cnn_pair, vit_pair):
    for torch_backbone, onnx_backbone in (cnn_pair, vit_pair):
        for side in ("image", "text"):
            torch_tower, onnx_tower = getattr(torch_backbone, side), getattr(onnx_backbone, side)
            assert onnx_tower.prompt_kind is torch_tower.prompt_kind, side
            assert onnx_tower.encodes_prompts_alone == torch_tower.encodes_prompts_alone, side
    assert cnn_pair[1].text.encodes_prompts_alone and not vit_pair[1].image.encodes_prompts_alone
    assert cnn_pair[1].text.prompt_only_inputs(2)["input_ids"].shape[0] == 2
    with pytest.raises(TypeError, match="cannot encode prompts alone"):
        vit_pair[1].image.prompt_only_inputs(2)


def test_onnx_batch_of_one_and_prompts_matter(cnn_pair):
    torch_backbone, onnx_backbone = cnn_pair
    inputs = onnx_backbone.text.preprocess(["a frog"])
    prompts = torch.randn(1, *onnx_backbone.text.prompt_shape(4))
    plain, prompted = onnx_backbone.text.encode(inputs), onnx_backbone.text.encode(inputs, prompts)
    assert plain.shape == (1, 16)
    assert (plain - prompted).abs().max() > 1e-3


def test_cpu_provider_here(cnn_pair):
    _, onnx_backbone = cnn_pair
    assert choose_providers("cpu") == [CPU]
    assert onnx_backbone.text.providers[-1] == CPU
    assert onnx_backbone.describe()["text"]["runtime"] == "onnxruntime"


def test_cache_is_reused(tiny_config, cnn_pair, caplog):
    torch_backbone, _ = cnn_pair
    cache = OnnxCache(tiny_config.cache_dir())
    path = cache.get_or_export(torch_backbone.text)
    stamp = path.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="model.onnx_export"):
        again = cache.get_or_export(torch_backbone.text)
    assert again == path and again.stat().st_mtime_ns == stamp
    assert "exporting" not in caplog.text


def test_corrupted_cache_is_rebuilt_not_used(tmp_path, cnn_pair, caplog):
    torch_backbone, _ = cnn_pair
    cache = OnnxCache(tmp_path)
    path = cache.get_or_export(torch_backbone.text)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # truncated
    with caplog.at_level(logging.WARNING, logger="model.onnx_export"):
        rebuilt = cache.get_or_export(torch_backbone.text)
    assert "does not match its tower; rebuilding" in caplog.text
    assert rebuilt.read_bytes() == good or len(rebuilt.read_bytes()) == len(good)
    OnnxTower(torch_backbone.text, rebuilt, device="cpu")  # loads


def test_cache_entry_of_another_fingerprint_is_not_used(tmp_path, cnn_pair):
    torch_backbone, _ = cnn_pair
    cache = OnnxCache(tmp_path)
    path = cache.get_or_export(torch_backbone.text)
    _, manifest_path = cache.entry(torch_backbone.text, torch_backbone.text.fingerprint())
    manifest = json.loads(manifest_path.read_text())
    manifest["fingerprint"] = "0" * 32
    manifest_path.write_text(json.dumps(manifest))
    assert cache.lookup(torch_backbone.text, torch_backbone.text.fingerprint()) is None
    assert cache.get_or_export(torch_backbone.text) == path


def test_fingerprint_follows_weights_and_config(tiny_root, tiny_config):
    from model.config import TextTowerConfig
    from model.text_tower import TextTower
    from tests.tiny_towers import make_bert_folder

    base = TextTower.load(tiny_config.text)
    same = TextTower.load(tiny_config.text)
    other_layers = TextTower.load(TextTowerConfig(path=tiny_config.text.path, max_length=16, prompt_layers=(0,)))
    other_weights = TextTower.load(
        TextTowerConfig(
            path=make_bert_folder(tiny_root / "bert-seed1", seed=1), max_length=16, prompt_layers=(0, 1)
        )
    )
    assert base.fingerprint() == same.fingerprint()
    assert len({base.fingerprint(), other_layers.fingerprint(), other_weights.fingerprint()}) == 3


def test_batches_padded_to_fixed_sizes_answer_as_unpadded(tiny_config, tmp_path):
    """The fixed-size path CUDA image towers take: padded rows change nothing, each size has its session."""
    config = tiny_config.model_copy(update={"onnx_cache_dir": tmp_path, "device": "cpu"})
    plain, padded = load_backbone(config, runtime="onnx"), load_backbone(config, runtime="onnx")
    padded.image.batch_sizes = (1, 4)
    for rows in (1, 3, 4, 6):  # 6: over the largest size, run as it is
        inputs = plain.image.preprocess(IMAGES[:1] * rows)
        prompts = torch.randn(rows, plain.image.feature_dim)
        expected = plain.image.encode(inputs, prompts)
        found = padded.image.encode(inputs, prompts)
        assert found.shape == expected.shape == (rows, plain.image.feature_dim)
        assert torch.allclose(found, expected, atol=1e-5)
    assert sorted(padded.image._fixed_sessions) == [1, 4]
    assert plain.image.batch_sizes == ()  # on the CPU provider, shapes are free
