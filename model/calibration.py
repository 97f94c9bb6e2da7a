"""Scores that mean what they say, and an answer that may be "none of what I know".

The discriminant's scores are thousands apart, so their plain softmax calls nearly every answer certain.
Each training fits, on samples held back from training, per missing pattern (complete, text missing,
image missing; `model/modality.py`):

- a temperature: answers' probabilities are `softmax(discriminants / T)` (temperature scaling, Guo et
  al. 2017), `T` the one with the least Brier score on the held-back samples, drawn towards the
  temperature fitted on all patterns so that a pattern with few samples is not fitted to them alone
  (fitting by likelihood instead, or each pattern on its own, calibrated worse on the validation
  splits: docs/calibration.md);
- an open-set score from two measures of a row: its squared Mahalanobis distance to the nearest class
  mean under the discriminant's shared covariance, and its doubt, one minus its top calibrated
  probability. Each is ranked among the same pattern's held-back samples (the share of them below it,
  from `RANK_KNOTS` quantiles kept per pattern), which puts the three patterns on one scale, and the two
  ranks are added. The cut lets `KNOWN_QUANTILE` of all held-back samples through; an answer beyond it
  is flagged unknown, the sign that a new task is needed. (The distance alone, each pattern's divided by
  its median, told unlearned classes from learned ones less well on both validation splits:
  docs/calibration.md.)

A pattern with fewer than `MIN_SCALE_ROWS` held-back samples has no quantiles and ranks every row 0
(every answer known). A version saved before calibration is served uncalibrated, and one saved with
the distance threshold of earlier releases keeps its temperatures: both answer every row known.
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
MIN_SCALE_ROWS = 5  # held-back samples of a pattern needed to rank its rows (else every answer known)
RANK_KNOTS = 33  # quantiles kept of each pattern's held-back distances and doubts, to rank new rows among
LOG_TEMPERATURES = torch.linspace(-4.0, 10.0, 281, dtype=torch.float64)  # natural log, the search grid
SEARCH_ELEMENTS = 4_000_000  # probabilities held at once while searching (temperatures x rows x classes)
NAMES = ("calibration.temperature", "calibration.knots", "calibration.cut")
MEASURES = ("distance", "doubt")  # what a row is ranked by, in the order of the knots' second axis
OBSOLETE = ("calibration.threshold",)  # the distance threshold of earlier releases, superseded by the ranks


def pattern_masks(has_image: torch.Tensor, has_text: torch.Tensor) -> torch.Tensor:
    """`(P, B)` bool: which rows of masks `has_image`, `has_text (B,)` have each pattern of `PATTERNS`."""
    return torch.stack([has_image & has_text, has_image & ~has_text, ~has_image & has_text])


def pattern_index(has_image: torch.Tensor, has_text: torch.Tensor) -> torch.Tensor:
    """`(B,)` each row's position in `PATTERNS` from masks `has_image`, `has_text (B,)`."""
    return torch.where(has_image & has_text, 0, torch.where(has_image, 1, 2))


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


def pattern_knots(values: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """`(P, RANK_KNOTS)`: each pattern's `values (N,)` over its rows of `masks (P, N)` at evenly spaced
    quantiles, lowest first; infinite for a pattern with fewer than `MIN_SCALE_ROWS` rows."""
    levels = torch.linspace(0, 1, RANK_KNOTS, dtype=torch.float64)
    return torch.stack(
        [
            values[rows].to(torch.float64).quantile(levels)
            if rows.sum() >= MIN_SCALE_ROWS
            else torch.full((RANK_KNOTS,), math.inf, dtype=torch.float64)
            for rows in masks
        ]
    ).to(torch.float32)


def rank_among(values: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """`(...)` in [0, 1]: the share of held-back rows below each of `values (...)`, linear between its
    quantiles `knots (..., K)`; 0 below the lowest (and wherever the knots are infinite), 1 above the highest."""
    last = knots.shape[-1] - 1
    above = torch.searchsorted(knots, values.unsqueeze(-1).contiguous())  # (..., 1) in [0, K]
    bounds = knots.gather(-1, torch.cat([above - 1, above], -1).clamp(0, last))  # (..., 2) around each value
    lower, upper = bounds.unbind(-1)  # (...) each
    within = ((values - lower) / (upper - lower)).nan_to_num(1.0).clamp(0.0, 1.0)  # (...) 1 where they tie
    position = (above.squeeze(-1) - 1).clamp(min=0) + within * (above.squeeze(-1) > 0)  # (...) in [0, K]
    return (position / last).clamp(max=1.0)


def doubt(probabilities: torch.Tensor) -> torch.Tensor:
    """`(B,)` one minus each row's top probability of `probabilities (B, C)`."""
    return 1.0 - probabilities.max(-1).values


class Calibration(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("temperature", torch.ones(len(PATTERNS)))  # (P,)
        self.register_buffer(
            "knots", torch.full((len(PATTERNS), len(MEASURES), RANK_KNOTS), math.inf)
        )  # (P, M, K)
        self.register_buffer("cut", torch.tensor(math.inf))  # () on the summed ranks: above it is unknown

    def fit(
        self,
        logits: torch.Tensor,
        distances: torch.Tensor,
        targets: torch.Tensor,
        has_image: torch.Tensor,
        has_text: torch.Tensor,
    ) -> None:
        """Fit each pattern's temperature and quantiles, and the cut, on held-back rows: discriminants
        `logits (N, C)`, squared distances to the nearest class `distances (N,)`, true classes `targets (N,)`,
        masks `(N,)`."""
        if len(targets) == 0:
            raise ValueError("calibration needs at least one held-back sample")
        masks = pattern_masks(has_image, has_text)  # (P, N)
        self.temperature = torch.tensor(pattern_temperatures(logits, targets, masks))
        doubts = doubt(self.probabilities(logits, has_image, has_text))  # (N,)
        self.knots = torch.stack([pattern_knots(distances, masks), pattern_knots(doubts, masks)], 1)  # (P, M, K)
        ranked = self.ranks(distances, doubts, has_image, has_text)  # (N,)
        scored = self._ranked_rows(masks)  # (N,)
        self.cut = (
            ranked[scored].quantile(KNOWN_QUANTILE, interpolation="higher")
            if scored.any()
            else torch.tensor(math.inf)
        )
        for pattern, size, value, knots in zip(
            PATTERNS, masks.sum(-1).tolist(), self.temperature.tolist(), self.knots[:, 0], strict=True
        ):
            log.info(
                "calibration %s: %d held-back samples, temperature %.3g, median distance %.4g",
                missing_pattern(pattern),
                size,
                value,
                float(knots[RANK_KNOTS // 2]),
            )
        log.info("calibration: unknown above summed ranks of %.3f", float(self.cut))

    def _ranked_rows(self, masks: torch.Tensor) -> torch.Tensor:
        """`(N,)` the rows of `masks (P, N)` whose pattern has quantiles to rank them by."""
        return masks[self.knots[:, 0, 0].isfinite()].any(0)

    def probabilities(self, logits: torch.Tensor, has_image: torch.Tensor, has_text: torch.Tensor) -> torch.Tensor:
        """Calibrated class probabilities `(B, C)` of discriminants `logits (B, C)`."""
        return (logits / per_row(self.temperature, has_image, has_text).unsqueeze(-1)).softmax(-1)

    def ranks(
        self, distances: torch.Tensor, doubts: torch.Tensor, has_image: torch.Tensor, has_text: torch.Tensor
    ) -> torch.Tensor:
        """`(B,)` in [0, 2]: each row's distance and doubt `(B,)` ranked among its pattern's held-back rows,
        added."""
        measures = torch.stack([distances, doubts], -1)  # (B, M)
        return rank_among(measures, self.knots[pattern_index(has_image, has_text)]).sum(-1)

    def novelty(
        self, distances: torch.Tensor, probabilities: torch.Tensor, has_image: torch.Tensor, has_text: torch.Tensor
    ) -> torch.Tensor:
        """`(B,)` each row's summed ranks over the cut (above 1 is unknown), from its squared distance to the
        nearest class `distances (B,)` and its calibrated `probabilities (B, C)`."""
        ranked = self.ranks(distances, doubt(probabilities), has_image, has_text)  # (B,)
        return ranked / self.cut.clamp(min=1e-6)

    def export_tensors(self) -> dict[str, torch.Tensor]:
        values = (self.temperature, self.knots, self.cut)
        return {name: value.clone() for name, value in zip(NAMES, values, strict=True)}

    def import_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.temperature, self.knots, self.cut = (tensors[name].clone() for name in NAMES)

    @staticmethod
    def expected_shapes() -> dict[str, tuple[int, ...]]:
        patterns = len(PATTERNS)
        return dict(zip(NAMES, ((patterns,), (patterns, len(MEASURES), RANK_KNOTS), ()), strict=True))

    @staticmethod
    def uncalibrated() -> dict[str, torch.Tensor]:
        """What a version saved before calibration is served with: temperature 1, every answer known."""
        return Calibration().export_tensors()
