"""A CODA-Prompt pool: components, keys and attention vectors, stacked; it grows by whole tasks.

For a query `q (B, Dq)` the weight of component m is the cosine of `q * A_m` with `K_m`; the prompt is
the weighted sum of the components, one einsum over the stacked tensors. Components of finished tasks
live in buffers, so they receive no gradient by construction; only the current task's are parameters.

A task may grow its components inside a subspace of the query space (`grow(..., key_projection=P)`): their
keys are `k P` for trainable `k`, and their attention vectors stay ones, so a query `q` weighs such a
component by `cos(q, k P)`, exactly zero for every query that `P` maps to zero (see `model/strategies/
fwd_prompt.py`); their components start at zero, so that the task starts from the model as it was. What
is frozen and saved is the projected key, so a saved pool is plain CODA-Prompt.
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
        self.key_projection: torch.Tensor | None = None  # (Dq, Dq) symmetric, applied to the new keys

    @property
    def size(self) -> int:
        return self.frozen_keys.shape[0] + self.new_keys.shape[0]

    def stacked(self, name: str) -> torch.Tensor:
        new = getattr(self, f"new_{name}")
        if name == "keys" and self.key_projection is not None:
            new = new @ self.key_projection  # (M_new, Dq)
        return torch.cat([getattr(self, f"frozen_{name}"), new])

    def _clear_new(self) -> None:
        for name in POOL_TENSORS:
            setattr(self, f"new_{name}", nn.Parameter(torch.zeros(0, getattr(self, f"new_{name}").shape[1])))
        self.key_projection = None

    def freeze_current(self) -> None:
        """Move the current task's components into the frozen buffers."""
        for name in POOL_TENSORS:
            setattr(self, f"frozen_{name}", self.stacked(name).detach().clone())
        self._clear_new()

    def grow(self, count: int, generator: torch.Generator, key_projection: torch.Tensor | None = None) -> None:
        """Freeze what was learned and add `count` trainable components, orthogonal to the old ones.

        With `key_projection (Dq, Dq)`, the new keys live in its range, the new attention vectors are fixed
        ones (no gradient) and the new components start at zero: every prompt is what it was before the
        pool grew, and training moves a component only as far as the task's loss pays for.
        """
        self.freeze_current()
        widths = {"keys": self.query_dim, "attention": self.query_dim, "components": self.component_size}
        for name, width in widths.items():
            rows = orthogonal_rows(count, width, getattr(self, f"frozen_{name}"), generator)
            setattr(self, f"new_{name}", nn.Parameter(rows))
        if key_projection is not None:
            keys = F.normalize(self.new_keys.detach() @ key_projection, dim=-1)  # (n, Dq) inside the subspace
            self.new_keys = nn.Parameter(keys)
            self.new_attention = nn.Parameter(torch.ones(count, self.query_dim), requires_grad=False)
            self.key_projection = key_projection.to(keys.dtype)
            self.new_components = nn.Parameter(torch.zeros_like(self.new_components))

    def weights(self, query: torch.Tensor) -> torch.Tensor:
        """Cosine attention of `query (B, Dq)` on every component: `(B, M)`."""
        attended = torch.einsum("bd,md->bmd", query, self.stacked("attention"))  # (B, M, Dq)
        return torch.einsum("bmd,md->bm", F.normalize(attended, dim=-1), F.normalize(self.stacked("keys"), dim=-1))

    def prompts(self, query: torch.Tensor, components: torch.Tensor | None = None) -> torch.Tensor | None:
        """`(B, *prompt_shape)` prompts for each query, from the components `components (B, M)` allows (all
        when None); None while the pool is empty."""
        if self.size == 0:
            return None
        weights = self.weights(query)  # (B, M)
        if components is not None:
            weights = weights * components
        mixed = torch.einsum("bm,me->be", weights, self.stacked("components"))  # (B, E)
        return mixed.reshape(query.shape[0], *self.prompt_shape)

    def export_tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.{name}": self.stacked(name).detach().clone() for name in POOL_TENSORS}

    def import_tensors(self, prefix: str, tensors: dict[str, torch.Tensor]) -> None:
        """Install saved tensors, all frozen; shapes were checked by the caller."""
        for name in POOL_TENSORS:
            setattr(self, f"frozen_{name}", tensors[f"{prefix}.{name}"].clone())
        self._clear_new()

    def expected_shapes(self, prefix: str, size: int) -> dict[str, tuple[int, ...]]:
        return {
            f"{prefix}.keys": (size, self.query_dim),
            f"{prefix}.attention": (size, self.query_dim),
            f"{prefix}.components": (size, self.component_size),
        }
