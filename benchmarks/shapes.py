"""`rebq-serve bench shapes`: the ONNX image tower when each call's batch size differs from the last.

Under load, consecutive batches rarely have the same size. On ONNX Runtime's CUDA provider a
convolutional tower plans its kernels again at every new input shape; padding batches to a few fixed
sizes, one session each, avoids it. This times both on the configured device, call by call.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path

from benchmarks.report import write_report
from benchmarks.samples import pictures
from model.backbone import load_backbone
from model.config import BackboneConfig
from model.onnx_tower import FIXED_BATCH_SIZES

log = logging.getLogger(__name__)

# batch sizes as a loaded server meets them: each differs from the one before
SEQUENCE = (1, 5, 9, 13, 32, 64, 5, 9, 13, 32, 64, 5, 32, 5, 32, 1, 64)


def time_calls(tower, batches: dict[int, dict], sequence: tuple[int, ...]) -> list[float]:
    """Milliseconds of each call of `sequence`, first calls included: a new shape's cost is the point."""
    times = []
    for size in sequence:
        start = time.perf_counter()
        tower.encode(batches[size])
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def run_shapes_benchmark(config: BackboneConfig, sequence: tuple[int, ...] = SEQUENCE) -> dict:
    images = pictures(max(sequence))
    results: dict = {"sequence": list(sequence)}
    tower = load_backbone(config, runtime="onnx").image
    batches = {size: tower.preprocess(images[:size]) for size in set(sequence)}
    # free shapes run in the tower's own session; fixed sizes in fresh sessions of their own, one per size
    for variant, sizes in (("free_shapes", ()), ("fixed_sizes", FIXED_BATCH_SIZES)):
        tower.batch_sizes = sizes
        log.info("timing the image tower, %s, over %d calls", variant.replace("_", " "), len(sequence))
        times = time_calls(tower, batches, sequence)
        results[variant] = {"ms": times, "median_ms": statistics.median(times), "total_ms": sum(times)}
    results["config"] = {"provider": tower.providers[0], "fixed_sizes": list(FIXED_BATCH_SIZES)}
    return results


def format_table(results: dict) -> str:
    rows = [f"image tower on {results['config']['provider']}, batch sizes {results['sequence']}"]
    for variant in ("free_shapes", "fixed_sizes"):
        name, figures = variant.replace("_", " "), results[variant]
        rows.append(f"{name:<12}  median {figures['median_ms']:.1f} ms, all calls {figures['total_ms']:.0f} ms")
    return "\n".join(rows)


def main(config: BackboneConfig, out: Path) -> dict:
    results = run_shapes_benchmark(config)
    write_report(out, results)
    return results
