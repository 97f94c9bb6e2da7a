"""Prefix key/value prompts for any transformers model that dispatches through AttentionInterface.

The prompted layers' attention modules carry an integer `rebq_prompt_slot`; the forward call passes
`rebq_prefix (Lp, 2, B, H, P, hd)` as a keyword argument, which transformers hands to every attention
call. A slot's keys and values are prepended to that layer's own, and the padding mask gains P columns
that every query attends to. Everything else is the stock SDPA attention, so ONNX export traces it.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTENTION_NAME = "rebq_prefix"
PREFIX_KWARG = "rebq_prefix"
SLOT_ATTRIBUTE = "rebq_prompt_slot"


def _pad_mask(mask: torch.Tensor | None, prefix_length: int) -> torch.Tensor | None:
    """Add `prefix_length` attend-columns in front of a (B, 1, Q, K) mask, bool or additive."""
    if mask is None:
        return None
    batch, heads, queries, _ = mask.shape
    if mask.dtype == torch.bool:
        pad = torch.ones(batch, heads, queries, prefix_length, dtype=torch.bool, device=mask.device)
    else:
        pad = torch.zeros(batch, heads, queries, prefix_length, dtype=mask.dtype, device=mask.device)
    return torch.cat([pad, mask], dim=-1)  # (B, 1, Q, P + K)


def prefix_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs,
):
    prefix = kwargs.pop(PREFIX_KWARG, None)
    slot = getattr(module, SLOT_ATTRIBUTE, None)
    if prefix is not None and slot is not None:
        prefix_keys = prefix[slot, 0].to(key.dtype)  # (B, H, P, hd)
        prefix_values = prefix[slot, 1].to(value.dtype)  # (B, H, P, hd)
        key = torch.cat([prefix_keys, key], dim=2)  # (B, H, P + K, hd)
        value = torch.cat([prefix_values, value], dim=2)  # (B, H, P + K, hd)
        attention_mask = _pad_mask(attention_mask, prefix.shape[-2])
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def register_prefix_attention() -> str:
    """Register the prefix attention (and its mask builder, without which padding masks vanish)."""
    AttentionInterface.register(ATTENTION_NAME, prefix_attention_forward)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    return ATTENTION_NAME


def _encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ModuleList of transformer layers: as long as the config's `num_hidden_layers`."""
    count = model.config.num_hidden_layers
    for name, child in model.named_modules():
        if isinstance(child, nn.ModuleList) and len(child) == count and name.split(".")[-1] in {"layer", "layers"}:
            return child
    raise ValueError(f"{type(model).__name__}: no list of {count} encoder layers found for prefix prompts")


def _self_attention(layer: nn.Module) -> nn.Module:
    """The module of a layer that projects keys and calls the attention function."""
    for child in layer.modules():
        projection = getattr(child, "key", None) or getattr(child, "k_proj", None)
        if isinstance(projection, nn.Linear):
            return child
    raise ValueError(f"{type(layer).__name__}: no self-attention with a key projection found")


def mark_prompt_layers(model: nn.Module, layers: tuple[int, ...]) -> None:
    """Give each prompted layer's attention its slot in the prefix tensor, in the order given."""
    encoder_layers = _encoder_layers(model)
    count = len(encoder_layers)
    for layer_index in layers:
        if not 0 <= layer_index < count:
            raise ValueError(f"prompt_layers: layer {layer_index} does not exist; the model has {count} layers")
    for slot, layer_index in enumerate(layers):
        setattr(_self_attention(encoder_layers[layer_index]), SLOT_ATTRIBUTE, slot)
    model.set_attn_implementation(register_prefix_attention())


def split_heads(prompts: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, Lp, 2, P, D) prompts into the (Lp, 2, B, H, P, hd) layout the attention function reads.

    Split and stack rather than reshape: an exported Reshape cannot infer a dimension when P is 0.
    """
    heads = torch.stack(prompts.chunk(num_heads, dim=-1), dim=4)  # (B, Lp, 2, P, H, hd)
    return heads.permute(1, 2, 0, 4, 3, 5)  # (Lp, 2, B, H, P, hd)
