"""Tiny random towers of each kind (BERT, ViT, CNN), written to folders as a user's checkpoints would be."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import BertConfig, BertModel, BertTokenizerFast, ViTConfig, ViTModel

from model.cnn_tower import build_efficientnet
from model.config import BackboneConfig, ImageTowerConfig, TextTowerConfig

WORDS = (
    "a an the small big red blue green dog puppy cat bird frog bus car train city house tree flower "
    "apple cake hat shoe star moon sun ball boat plane fish horse"
).split()


def make_bert_folder(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "."]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(folder / "vocab.txt"))
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    return folder


def make_vit_folder(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
    )
    ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    processor = {"image_mean": [0.4, 0.45, 0.5], "image_std": [0.25, 0.25, 0.25]}
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return folder


TINY_CNN = {"image_size": 32, "width_coefficient": 0.25, "depth_coefficient": 0.25}


def make_cnn_weights(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    network = build_efficientnet(ImageTowerConfig(kind="efficientnet", **TINY_CNN))
    torch.save(network.state_dict(), path)
    return path


def tiny_backbone_config(root: Path, image_kind: str = "efficientnet") -> BackboneConfig:
    """A backbone config of tiny towers under `root`, built on first use."""
    bert = root / "bert"
    if not (bert / "config.json").exists():
        make_bert_folder(bert)
    text = TextTowerConfig(path=bert, max_length=16, prompt_layers=(0, 1))
    if image_kind == "vit":
        vit = root / "vit"
        if not (vit / "config.json").exists():
            make_vit_folder(vit)
        image = ImageTowerConfig(kind="vit", path=vit, prompt_layers=(1,))
    else:
        weights = root / "cnn.pth"
        if not weights.exists():
            make_cnn_weights(weights)
        image = ImageTowerConfig(kind="efficientnet", path=weights, **TINY_CNN)
    return BackboneConfig(text=text, image=image, onnx_cache_dir=root / "onnx", device="cpu")
