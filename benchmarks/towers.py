"""`rebq-serve bench towers`: each tower's latency in torch eager and ONNX Runtime (fp32, with and without
prompts, and int8), all timed in turns within one run.

Inputs are preprocessed before timing: the figures are the towers' own forward passes. The int8 towers are
the ones `backbone.precision: int8` serves (see `model/quantisation.py`); where the towers run on CUDA,
which keeps fp32, there is no int8 figure.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from benchmarks.report import write_report
from benchmarks.samples import pictures, sentences
from benchmarks.timing import interleaved_median_ms
from model.backbone import load_backbone
from model.config import BackboneConfig

log = logging.getLogger(__name__)

BATCH_SIZES = (1, 16)
PROMPT_LENGTH = 8


def time_tower(torch_tower, onnx_tower, int8_tower, raw, repeats: int) -> dict[str, float]:
    inputs = torch_tower.preprocess(raw)
    prompts = torch.randn(len(raw), *torch_tower.prompt_shape(PROMPT_LENGTH)) * 0.1
    calls = {
        "torch_ms": lambda: torch_tower.encode(inputs),
        "onnx_ms": lambda: onnx_tower.encode(inputs),
        "onnx_prompted_ms": lambda: onnx_tower.encode(inputs, prompts),
    }
    if int8_tower is not None:
        calls["onnx_int8_ms"] = lambda: int8_tower.encode(inputs)
    with torch.inference_mode():
        return interleaved_median_ms(calls, repeats)


def run_towers_benchmark(config: BackboneConfig, repeats: int) -> dict:
    torch_backbone = load_backbone(config, runtime="torch")
    onnx_backbone = load_backbone(config.model_copy(update={"precision": "fp32"}), runtime="onnx")
    int8_backbone = load_backbone(config.model_copy(update={"precision": "int8"}), runtime="onnx")
    if int8_backbone.text.precision != "int8":
        int8_backbone = None
    raw_inputs = {"text": sentences(max(BATCH_SIZES)), "image": pictures(max(BATCH_SIZES))}
    results: dict = {}
    for modality in ("text", "image"):
        results[modality] = {}
        for batch in BATCH_SIZES:
            log.info("timing the %s tower at batch %d (%d repeats)", modality, batch, repeats)
            results[modality][f"batch_{batch}"] = time_tower(
                getattr(torch_backbone, modality),
                getattr(onnx_backbone, modality),
                getattr(int8_backbone, modality) if int8_backbone else None,
                raw_inputs[modality][:batch],
                repeats,
            )
    results["config"] = {
        "threads": torch.get_num_threads(),
        "prompt_length": PROMPT_LENGTH,
        "repeats": repeats,
        "backbone": onnx_backbone.describe(),
        "int8_backbone": int8_backbone.describe() if int8_backbone else None,
    }
    return results


def format_table(results: dict) -> str:
    rows = [
        f"{'tower':<6} {'batch':>5} {'torch ms':>10} {'onnx ms':>10} {'onnx+prompts ms':>16} {'speed-up':>9} "
        f"{'int8 ms':>9} {'int8 speed-up':>14}"
    ]
    for modality in ("text", "image"):
        for batch in BATCH_SIZES:
            cell = results[modality][f"batch_{batch}"]
            int8 = cell.get("onnx_int8_ms")
            rows.append(
                f"{modality:<6} {batch:>5} {cell['torch_ms']:>10.1f} {cell['onnx_ms']:>10.1f} "
                f"{cell['onnx_prompted_ms']:>16.1f} {cell['torch_ms'] / cell['onnx_ms']:>8.2f}x "
                + (f"{int8:>9.1f} {cell['onnx_ms'] / int8:>13.2f}x" if int8 else f"{'-':>9} {'-':>14}")
            )
    return "\n".join(rows)


def main(config: BackboneConfig, out: Path, repeats: int) -> dict:
    results = run_towers_benchmark(config, repeats)
    write_report(out, results)
    return results
