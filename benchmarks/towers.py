"""`rebq-serve bench towers`: each tower's latency in torch eager and ONNX Runtime, with and without prompts.

Inputs are preprocessed before timing: the figures are the towers' own forward passes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from benchmarks.report import write_report
from benchmarks.samples import pictures, sentences
from benchmarks.timing import median_ms
from model.backbone import load_backbone
from model.config import BackboneConfig

log = logging.getLogger(__name__)

BATCH_SIZES = (1, 16)
PROMPT_LENGTH = 8


def time_tower(torch_tower, onnx_tower, raw, repeats: int) -> dict[str, float]:
    inputs = torch_tower.preprocess(raw)
    prompts = torch.randn(len(raw), *torch_tower.prompt_shape(PROMPT_LENGTH)) * 0.1
    with torch.inference_mode():
        return {
            "torch_ms": median_ms(lambda: torch_tower.encode(inputs), repeats),
            "onnx_ms": median_ms(lambda: onnx_tower.encode(inputs), repeats),
            "onnx_prompted_ms": median_ms(lambda: onnx_tower.encode(inputs, prompts), repeats),
        }


def run_towers_benchmark(config: BackboneConfig, repeats: int) -> dict:
    torch_backbone = load_backbone(config, runtime="torch")
    onnx_backbone = load_backbone(config, runtime="onnx")
    raw_inputs = {"text": sentences(max(BATCH_SIZES)), "image": pictures(max(BATCH_SIZES))}
    results: dict = {}
    for modality in ("text", "image"):
        results[modality] = {}
        for batch in BATCH_SIZES:
            log.info("timing the %s tower at batch %d (%d repeats)", modality, batch, repeats)
            results[modality][f"batch_{batch}"] = time_tower(
                getattr(torch_backbone, modality),
                getattr(onnx_backbone, modality),
                raw_inputs[modality][:batch],
                repeats,
            )
    results["config"] = {
        "threads": torch.get_num_threads(),
        "prompt_length": PROMPT_LENGTH,
        "repeats": repeats,
        "backbone": onnx_backbone.describe(),
    }
    return results


def format_table(results: dict) -> str:
    rows = [f"{'tower':<6} {'batch':>5} {'torch ms':>10} {'onnx ms':>10} {'onnx+prompts ms':>16} {'speed-up':>9}"]
    for modality in ("text", "image"):
        for batch in BATCH_SIZES:
            cell = results[modality][f"batch_{batch}"]
            rows.append(
                f"{modality:<6} {batch:>5} {cell['torch_ms']:>10.1f} {cell['onnx_ms']:>10.1f} "
                f"{cell['onnx_prompted_ms']:>16.1f} {cell['torch_ms'] / cell['onnx_ms']:>8.2f}x"
            )
    return "\n".join(rows)


def main(config: BackboneConfig, out: Path, repeats: int) -> dict:
    results = run_towers_benchmark(config, repeats)
    write_report(out, results)
    return results
