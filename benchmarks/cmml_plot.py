"""A PNG of continual-learning results: one accuracy-matrix heatmap per method and their seen-task curves.

matplotlib is imported, with the Agg backend, only when a plot is made.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.cl_metrics import check_matrix, seen_task_means

log = logging.getLogger(__name__)

PANEL_WIDTH_INCHES = 4.5
PANEL_HEIGHT_INCHES = 4.0
DPI = 100


def _square_matrix(matrix: list[list[float]]) -> np.ndarray:
    """The lower-triangular accuracy matrix as a `(T, T)` array, nan above the diagonal."""
    check_matrix(matrix)
    tasks = len(matrix)
    square = np.full((tasks, tasks), np.nan)  # (T, T): row = after task t, column = task j
    for task, row in enumerate(matrix):
        square[task, : task + 1] = row
    return square


def _method_title(name: str, summary: dict[str, Any]) -> str:
    ap = f"AP {summary['ap']:.1f} ± {summary.get('ap_std', 0.0):.1f}"
    forgotten = f"forgetting {summary['forgetting']:.1f} ± {summary.get('forgetting_std', 0.0):.1f}"
    return f"{name}\n{ap}, {forgotten}"


def _draw_heatmap(axes, name: str, summary: dict[str, Any]):
    """One method's mean accuracy matrix, each cell annotated with its value; returns the image."""
    square = _square_matrix(summary["acc_matrix"])
    tasks = square.shape[0]
    image = axes.imshow(np.ma.masked_invalid(square), cmap="viridis", vmin=0.0, vmax=100.0)
    for task in range(tasks):
        for seen in range(task + 1):
            value = square[task, seen]
            if math.isnan(value):
                continue
            colour = "black" if value > 60.0 else "white"
            axes.text(seen, task, f"{value:.1f}", ha="center", va="center", color=colour, fontsize=8)
    ticks = list(range(tasks))
    labels = [str(task + 1) for task in ticks]
    axes.set_xticks(ticks, labels)
    axes.set_yticks(ticks, labels)
    axes.set_xlabel("task evaluated")
    axes.set_ylabel("after learning task")
    axes.set_title(_method_title(name, summary), fontsize=9)
    return image


def _draw_seen_task_curves(axes, methods: dict[str, dict[str, Any]]) -> None:
    """Each method's mean accuracy over the tasks seen so far, after each task, on one axes."""
    most_tasks = 0
    for name, summary in methods.items():
        means = seen_task_means(summary["acc_matrix"])
        most_tasks = max(most_tasks, len(means))
        axes.plot(range(1, len(means) + 1), means, marker="o", label=name)
    axes.set_xticks(range(1, most_tasks + 1))
    axes.set_xlabel("after learning task")
    axes.set_ylabel("average accuracy over seen tasks (%)")
    axes.set_ylim(0.0, 100.0)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title("average accuracy over seen tasks", fontsize=9)


def _save(figure, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, format="png")
    log.info("wrote %s", path)


def plot_results(results: dict[str, Any], path: Path) -> None:
    """Write a PNG of `results["methods"]` (name -> summary from `summarise_runs`) to `path`.

    The figure is `PANEL_WIDTH_INCHES * (methods + 1)` by `PANEL_HEIGHT_INCHES` inches at `DPI`.
    """
    methods: dict[str, dict[str, Any]] = results.get("methods") or {}
    if not methods:
        raise ValueError("results['methods'] holds no method to plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = len(methods) + 1
    figure, axes = plt.subplots(
        1, panels, figsize=(PANEL_WIDTH_INCHES * panels, PANEL_HEIGHT_INCHES), squeeze=False, layout="constrained"
    )
    heatmap_axes, curve_axes = list(axes[0][:-1]), axes[0][-1]
    try:
        images = [
            _draw_heatmap(panel, name, summary)
            for panel, (name, summary) in zip(heatmap_axes, methods.items(), strict=True)
        ]
        figure.colorbar(images[-1], ax=heatmap_axes, shrink=0.8, label="accuracy (%)")
        _draw_seen_task_curves(curve_axes, methods)
        _save(figure, path)
    finally:
        plt.close(figure)


BUDGET_PREFIX, BUDGET_SUFFIX = "exemplar_replay_", "KiB"


def budget_points(methods: dict[str, dict[str, Any]]) -> list[tuple[int, float, float]]:
    """`(budget KiB, AP, its standard deviation)` of each exemplar-buffer budget run, smallest first."""
    points = []
    for name, summary in methods.items():
        if name.startswith(BUDGET_PREFIX) and name.endswith(BUDGET_SUFFIX):
            kib = int(name[len(BUDGET_PREFIX) : -len(BUDGET_SUFFIX)])
            points.append((kib, summary["ap"], summary["ap_std"]))
    return sorted(points)


def plot_budgets(results: dict[str, Any], path: Path) -> None:
    """Write a PNG of AP against the exemplar buffer's budget, with every other method's AP as a line."""
    methods: dict[str, dict[str, Any]] = results.get("methods") or {}
    points = budget_points(methods)
    if not points:
        raise ValueError("results['methods'] holds no exemplar_replay budget run to plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(PANEL_WIDTH_INCHES * 1.5, PANEL_HEIGHT_INCHES), layout="constrained")
    try:
        budgets, aps, spreads = zip(*points, strict=True)
        label = "exemplar_replay (bars: standard deviation over seeds)"
        axes.errorbar(budgets, aps, yerr=spreads, marker="o", capsize=3, label=label)
        for name, summary in methods.items():
            if not name.startswith(BUDGET_PREFIX):
                axes.axhline(summary["ap"], linestyle="--", linewidth=1, label=name, color=f"C{len(axes.lines)}")
        positive = [budget for budget in budgets if budget > 0]
        if positive:  # linear below the smallest budget, so that a budget of 0 has a place
            axes.set_xscale("symlog", linthresh=min(positive))
            axes.set_xlim(left=0)
        axes.set_xlabel("exemplar buffer budget (KiB)")
        axes.set_ylabel("average performance (%)")
        axes.legend(fontsize="small")
        _save(figure, path)
    finally:
        plt.close(figure)
