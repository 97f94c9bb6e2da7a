"""int8 towers: the real default towers agree with fp32, prompts still act, the cache keeps precisions apart."""

import json
import logging
from pathlib import Path

import onnx
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from pydantic import ValidationError

from model import onnx_tower
from model.backbone import load_backbone
from model.config import BackboneConfig
from model.onnx_export import OnnxCache
from model.onnx_tower import CPU, CUDA, OnnxTower, served_precision
from model.quantisation import calibration_pictures
from serving.cli import build_parser
from serving.config import AppConfig

PICTURES = sorted((Path(__file__).parent / "pictures").glob("*.png"))  # held out of calibration, see README
SENTENCES = [
    "A black cat sleeps on a warm windowsill in the afternoon sun.",
    "Two children fly a red kite on a windy beach.",
    "The train leaves the station at seven every morning.",
    "A bowl of fresh strawberries sits on the kitchen table.",
    "An old fisherman mends his nets beside the harbour.",
    "The orchestra tunes its instruments before the concert begins.",
    "A yellow school bus stops in front of the library.",
    "Snow covers the mountains and the small wooden houses below them.",
    "She wears a wide straw hat to keep the sun off her face.",
    "A hammer, a saw and a box of nails lie on the workbench.",
    "The football team celebrates its victory in the rain.",
    "A green frog sits on a lily pad in the middle of the pond.",
]
AGREEMENT = 0.99


@pytest.fixture(scope="module")
def default_pair(tmp_path_factory):
    """The default towers from their wheels, in ONNX Runtime at fp32 and at int8, sharing one cache."""
    config = BackboneConfig(onnx_cache_dir=tmp_path_factory.mktemp("onnx"), device="cpu")
    fp32 = load_backbone(config, runtime="onnx")
    int8 = load_backbone(config.model_copy(update={"precision": "int8"}), runtime="onnx")
    return fp32, int8


def cosines(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(first, second, dim=-1)  # (B,)


def real_pictures() -> list[Image.Image]:
    return [Image.open(path).convert("RGB") for path in PICTURES]


def test_int8_image_features_agree_with_fp32_on_real_pictures(default_pair):
    fp32, int8 = default_pair
    assert (fp32.image.precision, int8.image.precision) == ("fp32", "int8")
    assert len(PICTURES) == 12
    inputs = fp32.image.preprocess(real_pictures())
    agreement = cosines(fp32.image.encode(inputs), int8.image.encode(inputs))
    assert agreement.min() >= AGREEMENT, agreement


def test_int8_text_features_agree_with_fp32_on_real_sentences(default_pair):
    fp32, int8 = default_pair
    assert int8.describe()["text"]["precision"] == "int8"
    inputs = fp32.text.preprocess(SENTENCES)
    agreement = cosines(fp32.text.encode(inputs), int8.text.encode(inputs))
    assert agreement.min() >= AGREEMENT, agreement


def test_prompts_still_change_the_int8_text_tower_as_they_change_fp32(default_pair):
    fp32, int8 = default_pair
    inputs = fp32.text.preprocess(SENTENCES)
    prompts = torch.randn(len(SENTENCES), *fp32.text.prompt_shape(8), generator=torch.Generator().manual_seed(0))
    plain, prompted = int8.text.encode(inputs), int8.text.encode(inputs, prompts * 0.5)
    expected = fp32.text.encode(inputs, prompts * 0.5)
    moved = cosines(plain, prompted)
    assert moved.max() < 0.995, moved  # the prompts act
    agreement = cosines(prompted, expected)
    assert agreement.mean() >= AGREEMENT and agreement.min() >= 0.98, agreement
    assert (agreement > moved).all()  # ... and move the features where fp32's prompts move them


def test_zero_length_prompts_change_nothing_in_int8(default_pair):
    fp32, int8 = default_pair
    for tower, raw in ((int8.text, SENTENCES[:4]), (int8.image, real_pictures()[:4])):
        inputs = tower.preprocess(raw)
        nothing = torch.zeros(len(raw), *tower.prompt_shape(0))
        unprompted = tower.encode(inputs, nothing)
        assert torch.equal(unprompted, tower.encode(inputs))
        reference = getattr(fp32, tower.modality.label).tower.encode(inputs)  # torch, no prompt input at all
        assert cosines(unprompted, reference).min() >= AGREEMENT


def test_image_prompts_are_added_in_float(default_pair):
    _, int8 = default_pair
    inputs = int8.image.preprocess(real_pictures()[:3])
    prompts = torch.randn(3, int8.image.feature_dim)
    added = int8.image.encode(inputs, prompts) - int8.image.encode(inputs)
    torch.testing.assert_close(added, prompts, atol=1e-5, rtol=0)  # not rounded to an int8 step


def test_text_prompts_stay_a_float_input_no_quantiser_reads(default_pair):
    _, int8 = default_pair
    graph = onnx.load(str(int8.text.model_path)).graph
    (prompts,) = [value for value in graph.input if value.name == "prompts"]
    assert prompts.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(node.op_type == "MatMulInteger" for node in graph.node)
    readers = {node.op_type for node in graph.node if "prompts" in node.input}
    assert readers and not readers & {"QuantizeLinear", "DynamicQuantizeLinear", "MatMulInteger"}


# --- the cache, on tiny towers -------------------------------------------------------------------------------


@pytest.fixture()
def tiny_towers(tiny_backbone):
    return tiny_backbone.text, tiny_backbone.image


def test_cache_keeps_fp32_and_int8_apart(tmp_path, tiny_towers):
    cache = OnnxCache(tmp_path)
    for tower, method in zip(tiny_towers, ("dynamic", "static"), strict=True):
        fp32 = cache.get_or_export(tower)
        stamp = fp32.stat().st_mtime_ns
        int8 = cache.get_or_export(tower, precision="int8")
        assert int8 != fp32 and fp32.stat().st_mtime_ns == stamp
        assert int8.read_bytes() != fp32.read_bytes()
        manifests = [json.loads(path.with_suffix(".json").read_text()) for path in (fp32, int8)]
        assert [manifest["precision"] for manifest in manifests] == ["fp32", "int8"]
        assert manifests[1]["quantisation"]["method"] == method and "quantisation" not in manifests[0]
        assert cache.get_or_export(tower, precision="int8") == int8
        assert cache.get_or_export(tower) == fp32
    assert len(list(tmp_path.glob("*.onnx"))) == 4


def test_corrupt_int8_entry_is_rebuilt_not_used(tmp_path, tiny_towers, caplog):
    text, _ = tiny_towers
    cache = OnnxCache(tmp_path)
    path = cache.get_or_export(text, precision="int8")
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with caplog.at_level(logging.WARNING, logger="model.onnx_export"):
        rebuilt = cache.get_or_export(text, precision="int8")
    assert "does not match its tower; rebuilding" in caplog.text
    assert rebuilt == path and len(rebuilt.read_bytes()) == len(good)
    inputs = text.preprocess(["a red bus"])
    assert OnnxTower(text, rebuilt, device="cpu", precision="int8").encode(inputs).shape == (1, text.feature_dim)


def test_an_fp32_manifest_does_not_pass_for_int8(tmp_path, tiny_towers):
    text, _ = tiny_towers
    cache = OnnxCache(tmp_path)
    fp32 = cache.get_or_export(text)
    int8 = cache.get_or_export(text, precision="int8")
    int8.write_bytes(fp32.read_bytes())
    int8.with_suffix(".json").write_text(fp32.with_suffix(".json").read_text())  # checksum right, precision wrong
    assert cache.lookup(text, text.fingerprint(), "int8") is None
    with pytest.raises(ValueError, match="precision: 'fp16'"):
        cache.get_or_export(text, precision="fp16")


def test_other_calibration_pictures_make_another_int8_image_tower(tmp_path, tiny_towers):
    _, image = tiny_towers
    shipped = OnnxCache(tmp_path)
    path = shipped.get_or_export(image, precision="int8")
    assert shipped.lookup(image, image.fingerprint(), "int8") == path
    other = OnnxCache(tmp_path, pictures=calibration_pictures()[:8])
    assert other.lookup(image, image.fingerprint(), "int8") is None
    other.get_or_export(image, precision="int8")
    assert shipped.lookup(image, image.fingerprint(), "int8") is None  # rebuilt for the other pictures


# --- configuration ---------------------------------------------------------------------------------------------


def test_precision_is_checked_at_the_edge():
    assert BackboneConfig().precision == "fp32"
    with pytest.raises(ValidationError, match="precision"):
        BackboneConfig(precision="int4")
    with pytest.raises(ValidationError, match="precision: int8 runs on the CPU provider"):
        BackboneConfig(device="cuda", precision="int8")


def test_precision_flag_overrides_the_config():
    args = build_parser().parse_args(["serve", "--precision", "int8"])
    app = AppConfig().with_overrides(device=args.device, precision=args.precision)
    assert app.backbone.precision == "int8" and app.backbone.device == "auto"
    assert AppConfig().with_overrides(precision=None).backbone.precision == "fp32"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--precision", "int4"])


@pytest.mark.parametrize("strategy", ["first_task", "fwd_prompt"])  # head_only under either configured learner
def test_bench_cmml_takes_its_frozen_features_from_the_int8_towers(tmp_path, tiny_config, strategy):
    from serving.cli import main
    from tests.learning_data import write_config, write_jsonl_dataset

    data = write_jsonl_dataset(tmp_path / "data", ["dog", "bus", "tree", "cake"], per_class=6)
    config = write_config(tmp_path / "config.yaml", tiny_config.model_copy(update={"onnx_cache_dir": tmp_path}), 1)
    written = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**written, "learner": {**written["learner"], "strategy": strategy}}))
    out = tmp_path / "cmml.json"
    args = ["bench", "cmml", "--data", str(data), "--tasks", "2", "--seeds", "1", "--min-per-class", "4"]
    args += ["--methods", "head_only", "--out", str(out), "--config", str(config), "--precision", "int8"]
    assert main(args) == 0
    assert json.loads(out.read_text())["config"]["precision"] == "int8"
    assert list(tmp_path.glob("text-*-int8.onnx")) and list(tmp_path.glob("image-*-int8.onnx"))


def test_cuda_keeps_fp32(monkeypatch):
    monkeypatch.setattr(onnx_tower, "choose_providers", lambda device: [CUDA, CPU])
    assert served_precision("int8", "auto") == "fp32"
    monkeypatch.setattr(onnx_tower, "choose_providers", lambda device: [CPU])
    assert served_precision("int8", "auto") == "int8"
    assert served_precision("fp32", "cpu") == "fp32"
