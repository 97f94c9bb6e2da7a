"""The interface every frozen tower offers: preprocess, encode with optional prompts, export to ONNX."""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import nn

from model.modality import Modality

EXPORT_FORMAT_VERSION = "1"


class PromptKind(enum.Enum):
    """Where a tower takes its prompts."""

    PREFIX = "prefix"  # key/value prefixes in some attention layers: prompt (Lp, 2, P, D)
    FEATURE = "feature"  # added to the pooled feature: prompt (D,)


class FrozenTower(Protocol):
    """What the learner and the replica use of a tower, whether torch runs it (`Tower`) or ONNX Runtime does
    (`OnnxTower`). Capabilities are attributes, never guessed from which methods an object has."""

    modality: Modality
    prompt_kind: PromptKind
    input_names: tuple[str, ...]
    feature_dim: int
    encodes_prompts_alone: bool

    def prompt_shape(self, length: int) -> tuple[int, ...]: ...

    def empty_prompts(self, batch: int) -> torch.Tensor: ...

    def preprocess(self, raw: Sequence[Any]) -> dict[str, torch.Tensor]: ...

    def prompt_only_inputs(self, batch: int) -> dict[str, torch.Tensor]: ...

    def encode(self, inputs: dict[str, torch.Tensor], prompts: torch.Tensor | None = None) -> torch.Tensor: ...

    def describe(self) -> dict[str, Any]: ...


class Tower(nn.Module):
    """A frozen encoder. Subclasses set the class attributes and implement `forward` and `preprocess`.

    `forward(*inputs, prompts)` takes the tensors named by `input_names` positionally (so that ONNX export
    sees them) and returns `(B, D)` features.
    """

    modality: Modality
    prompt_kind: PromptKind
    input_names: tuple[str, ...]
    feature_dim: int
    # True when the tower can encode its prompts with no input of its own (`prompt_only_inputs`): a memory
    # pool then reconstructs this modality by a prompted pass instead of holding whole features.
    encodes_prompts_alone: bool = False

    def freeze(self) -> None:
        """Frozen by construction: no tower parameter ever receives a gradient."""
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Tower:
        return super().train(False)  # dropout and batch-norm statistics stay as trained

    def prompt_shape(self, length: int) -> tuple[int, ...]:
        raise NotImplementedError

    def preprocess(self, raw: Sequence[Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def prompt_only_inputs(self, batch: int) -> dict[str, torch.Tensor]:
        """Inputs that carry nothing but the prompts; only towers with `encodes_prompts_alone` have them."""
        raise TypeError(f"{type(self).__name__} cannot encode prompts alone")

    def empty_prompts(self, batch: int) -> torch.Tensor:
        """Prompts that change nothing: zero-length prefixes, or a zero feature offset."""
        return torch.zeros(batch, *self.prompt_shape(0))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, inputs: dict[str, torch.Tensor], prompts: torch.Tensor | None = None) -> torch.Tensor:
        """`(B, D)` features of preprocessed inputs, prompted when `prompts (B, *prompt_shape)` is given.

        The tower may sit on another device than its callers (a GPU, say): inputs and prompts go to it, and
        the features come back to the device the prompts (or else the inputs) came from, gradients included.
        """
        first = inputs[self.input_names[0]]
        caller = prompts.device if prompts is not None else first.device
        if prompts is None:
            prompts = self.empty_prompts(first.shape[0])
        here = self.device
        features = self(*(inputs[name].to(here) for name in self.input_names), prompts.to(here))
        return features.to(caller)

    def example_inputs(self, batch: int, prompt_length: int) -> dict[str, torch.Tensor]:
        """Inputs used to trace the ONNX export."""
        raise NotImplementedError

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What a client or a manifest needs to know of the tower."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A digest of the weights, the architecture and the prompt layout: equal digests, equal towers."""
        digest = hashlib.sha256()
        digest.update(f"{EXPORT_FORMAT_VERSION}|{type(self).__name__}|{self.describe()}".encode())
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}".encode())
            digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
        return digest.hexdigest()[:32]
