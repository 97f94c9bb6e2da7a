"""Scores that mean what they say, and an answer that may be "none of what I know".

The discriminant's scores are thousands apart, so their plain softmax calls nearly every answer certain.
Each training fits, on samples held back from training, per missing pattern (complete, text missing,
image missing; `model/modality.py`):

- a temperature: answers' probabilities are `softmax(discriminants / T)` (temperature scaling, Guo et
  al. 2017), `T` the one with the least Brier score on the held-back samples, drawn towards the
  temperature fitted on all patterns so that a pattern with few samples is not fitted to them alone
  (fitting by likelihood instead, or each pattern on its own, calibrated worse on the validation
  splits: docs/calibration.md);
- an open-set threshold on the squared Mahalanobis distance to the nearest class mean under the
  discriminant's shared covariance: each pattern's distances are divided by their median over its
  held-back samples, so that the three are comparable, and the threshold lets `KNOWN_QUANTILE` of all
  held-back samples through; an answer beyond it is flagged unknown, the sign that a new task is needed.

A pattern with fewer than `MIN_SCALE_ROWS` held-back samples has no threshold (every answer known). A
version saved before calibration is served uncalibrated: temperature 1, every answer known.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from model.modality import Modality, missing_pattern

log = logging.getLogger(__name__)

PATTERNS = (Modality.BOTH, Modality.IMAGE, Modality.TEXT)  # what a row has; the order of the saved values
KNOWN_QUANTILE = 0.95  # share of held-back samples of known classes that must be answered as known
PRIOR_WEIGHT = 2.0  # how hard a pattern's temperature is drawn towards the one fitted on every pattern
MIN_SCALE_ROWS = 5  # held-back samples of a pattern needed to scale its distances (else no threshold)
LOG_TEMPERATURES = torch.linspace(-4.0, 10.0, 281, dtype=torch.float64)  # natural log, the search grid
SEARCH_ELEMENTS = 4_000_000  # probabilities held at once while searching (temperatures x rows x classes)
NAMES = ("calibration.temperature", "calibration.threshold")


def pattern_masks(has_image: torch.Tensor, has_text: torch.Tensor) -> torch.Tensor:
    """`(P, B)` bool: which rows of masks `has_image`, `has_text (B,)` have each pattern of `PATTERNS`."""
    return torch.stack([has_image & has_text, has_image & ~has_text, ~has_image & has_text])


def per_row(values: torch.Tensor, has_image: torch.Tensor, has_text: torch.Tensor) -> torch.Tensor:
    """Each row's value `(B,)` from one value per pattern, `values (P,)` in the order of `PATTERNS`."""
    complete, image_only, text_only = values
    return torch.where(has_image & has_text, complete, torch.where(has_image, image_only, text_only))


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, prior: float | None = None) -> float:
    """The temperature of `logits (N, C)` with the least Brier score over `targets (N,)`, searched on
    `LOG_TEMPERATURES` and refined between its neighbours; with a `prior` temperature, plus
    `PRIOR_WEIGHT` times the squared log-ratio to it (worth as much as a couple of rows)."""
    data = logits.detach().to(torch.float64)
    truth = nn.functional.one_hot(targets, data.shape[-1]).to(torch.float64)  # (N, C)

    def brier(log_t: torch.Tensor) -> torch.Tensor:  # (g,) -> summed Brier score (g,)
        probabilities = (data.unsqueeze(0) / log_t.exp().view(-1, 1, 1)).softmax(-1)  # (g, N, C)
        return (probabilities - truth).pow(2).sum((-1, -2))

    def losses(log_t: torch.Tensor) -> torch.Tensor:  # (G,) -> (G,), a few temperatures at a time
        total = torch.cat([brier(chunk) for chunk in log_t.split(max(1, SEARCH_ELEMENTS // data.numel()))])
        if prior is not None:
            total = total + PRIOR_WEIGHT * (log_t - math.log(prior)) ** 2
        return total

    grid = LOG_TEMPERATURES
    best = int(losses(grid).argmin())
    fine = torch.linspace(float(grid[max(best - 1, 0)]), float(grid[min(best + 1, len(grid) - 1)]), 41)
    return float(fine[losses(fine).argmin()].exp())


def pattern_temperatures(logits: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor) -> list[float]:
    """Each pattern's temperature `(P,)` from its rows of `masks (P, N)`, drawn towards the one fitted on
    every row (all a pattern without rows gets)."""
    pooled = fit_temperature(logits, targets)
    return [fit_temperature(logits[rows], targets[rows], prior=pooled) if rows.any() else pooled for rows in masks]


def pattern_thresholds(distances: torch.Tensor, masks: torch.Tensor) -> list[float]:
    """Each pattern's distance threshold `(P,)`: its median distance times the `KNOWN_QUANTILE` of every
    row's distance over its pattern's median; infinite for a pattern with fewer than `MIN_SCALE_ROWS`."""
    scaled = []
    medians = []
    for rows in masks:
        if rows.sum() < MIN_SCALE_ROWS:
            medians.append(math.inf)
            continue
        median = float(distances[rows].median().clamp(min=1e-12))
        medians.append(median)
        scaled.append(distances[rows] / median)
    if not scaled:
        return medians
    cut = float(torch.cat(scaled).quantile(KNOWN_QUANTILE, interpolation="higher"))
    return [median * cut for median in medians]


class Calibration(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("temperature", torch.ones(len(PATTERNS)))  # (P,)
        self.register_buffer("threshold", torch.full((len(PATTERNS),), float("inf")))  # (P,)

    def fit(
        self,
        logits: torch.Tensor,
        distances: torch.Tensor,
        targets: torch.Tensor,
        has_image: torch.Tensor,
        has_text: torch.Tensor,
    ) -> None:
        """Fit each pattern's temperature and threshold on held-back rows: discriminants `logits (N, C)`,
        squared distances to the nearest class `distances (N,)`, true classes `targets (N,)`, masks `(N,)`."""
        if len(targets) == 0:
            raise ValueError("calibration needs at least one held-back sample")
        masks = pattern_masks(has_image, has_text)  # (P, N)
        temperature = pattern_temperatures(logits, targets, masks)
        threshold = pattern_thresholds(distances, masks)
        sizes = masks.sum(-1).tolist()
        for pattern, size, value, limit in zip(PATTERNS, sizes, temperature, threshold, strict=True):
            log.info(
                "calibration %s: %d held-back samples, temperature %.3g, threshold %.4g",
                missing_pattern(pattern),
                size,
                value,
                limit,
            )
        self.temperature, self.threshold = torch.tensor(temperature), torch.tensor(threshold)

    def probabilities(self, logits: torch.Tensor, has_image: torch.Tensor, has_text: torch.Tensor) -> torch.Tensor:
        """Calibrated class probabilities `(B, C)` of discriminants `logits (B, C)`."""
        return (logits / per_row(self.temperature, has_image, has_text).unsqueeze(-1)).softmax(-1)

    def novelty(self, distances: torch.Tensor, has_image: torch.Tensor, has_text: torch.Tensor) -> torch.Tensor:
        """`(B,)` each row's distance to the nearest class over its pattern's threshold: above 1 is unknown."""
        return distances / per_row(self.threshold, has_image, has_text)

    def export_tensors(self) -> dict[str, torch.Tensor]:
        return dict(zip(NAMES, (self.temperature.clone(), self.threshold.clone()), strict=True))

    def import_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.temperature, self.threshold = (tensors[name].clone() for name in NAMES)

    @staticmethod
    def expected_shapes() -> dict[str, tuple[int, ...]]:
        return {name: (len(PATTERNS),) for name in NAMES}

    @staticmethod
    def uncalibrated() -> dict[str, torch.Tensor]:
        """What a version saved before calibration is served with: temperature 1, no threshold."""
        return Calibration().export_tensors()
