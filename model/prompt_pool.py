"""A CODA-Prompt pool: components, keys and attention vectors, stacked; it grows by whole tasks.

For a query `q (B, Dq)` the weight of component m is the cosine of `q * A_m` with `K_m`; the prompt is
the weighted sum of the components, one einsum over the stacked tensors. Components of finished tasks
live in buffers, so they receive no gradient by construction; only the current task's are parameters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

POOL_TENSORS = ("keys", "attention", "components")


def orthogonal_rows(count: int, width: int, existing: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """`count` unit rows of `width`, orthogonal to `existing (M, width)` and to each other where room allows."""
    rows = torch.randn(count, width, generator=generator)  # (n, W)
    if existing.shape[0] + count > width:
        return F.normalize(rows, dim=-1)
    basis = torch.cat([existing, rows]).T  # (W, M + n)
    q, _ = torch.linalg.qr(basis)  # (W, M + n): Gram-Schmidt of the old rows, then the new
    return q[:, existing.shape[0] :].T.contiguous()  # (n, W)


class PromptPool(nn.Module):
    def __init__(self, query_dim: int, prompt_shape: tuple[int, ...]):
        super().__init__()
        self.query_dim = query_dim
        self.prompt_shape = tuple(prompt_shape)
        self.component_size = math.prod(self.prompt_shape)
        self.register_buffer("frozen_keys", torch.zeros(0, query_dim))  # (M_old, Dq)
        self.register_buffer("frozen_attention", torch.zeros(0, query_dim))  # (M_old, Dq)
        self.register_buffer("frozen_components", torch.zeros(0, self.component_size))  # (M_old, E)
        self.new_keys = nn.Parameter(torch.zeros(0, query_dim))  # (M_new, Dq)
        self.new_attention = nn.Parameter(torch.zeros(0, query_dim))  # (M_new, Dq)
        self.new_components = nn.Parameter(torch.zeros(0, self.component_size))  # (M_new, E)

    @property
    def size(self) -> int:
        return self.frozen_keys.shape[0] + self.new_keys.shape[0]

    def stacked(self, name: str) -> torch.Tensor:
        return torch.cat([getattr(self, f"frozen_{name}"), getattr(self, f"new_{name}")])

    def freeze_current(self) -> None:
        """Move the current task's components into the frozen buffers."""
        for name in POOL_TENSORS:
            setattr(self, f"frozen_{name}", self.stacked(name).detach().clone())
            setattr(self, f"new_{name}", nn.Parameter(torch.zeros(0, getattr(self, f"new_{name}").shape[1])))

    def grow(self, count: int, generator: torch.Generator) -> None:
        """Freeze what was learned and add `count` trainable components, orthogonal to the old ones."""
        self.freeze_current()
        widths = {"keys": self.query_dim, "attention": self.query_dim, "components": self.component_size}
        for name, width in widths.items():
            rows = orthogonal_rows(count, width, getattr(self, f"frozen_{name}"), generator)
            setattr(self, f"new_{name}", nn.Parameter(rows))

    def weights(self, query: torch.Tensor) -> torch.Tensor:
        """Cosine attention of `query (B, Dq)` on every component: `(B, M)`."""
        attended = torch.einsum("bd,md->bmd", query, self.stacked("attention"))  # (B, M, Dq)
        return torch.einsum("bmd,md->bm", F.normalize(attended, dim=-1), F.normalize(self.stacked("keys"), dim=-1))

    def prompts(self, query: torch.Tensor) -> torch.Tensor | None:
        """`(B, *prompt_shape)` prompts for each query; None while the pool is empty."""
        if self.size == 0:
            return None
        mixed = torch.einsum("bm,me->be", self.weights(query), self.stacked("components"))  # (B, E)
        return mixed.reshape(query.shape[0], *self.prompt_shape)

    def export_tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.{name}": self.stacked(name).detach().clone() for name in POOL_TENSORS}

    def import_tensors(self, prefix: str, tensors: dict[str, torch.Tensor]) -> None:
        """Install saved tensors, all frozen; shapes were checked by the caller."""
        for name in POOL_TENSORS:
            setattr(self, f"frozen_{name}", tensors[f"{prefix}.{name}"].clone())
            setattr(self, f"new_{name}", nn.Parameter(torch.zeros(0, getattr(self, f"new_{name}").shape[1])))

    def expected_shapes(self, prefix: str, size: int) -> dict[str, tuple[int, ...]]:
        return {
            f"{prefix}.keys": (size, self.query_dim),
            f"{prefix}.attention": (size, self.query_dim),
            f"{prefix}.components": (size, self.component_size),
        }
