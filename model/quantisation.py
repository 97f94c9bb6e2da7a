"""int8 versions of a tower's ONNX export, made with ONNX Runtime's quantisation tools.

A tower whose prompts are key/value prefixes (a transformer: the text tower, a ViT) is quantised
dynamically: the weights of its matrix products become int8 (one scale per output channel), their inputs
are quantised on each call, and the prompts stay float graph inputs, as does every product that touches
them (attention scores and values).

A tower whose prompts are added to its pooled feature (a CNN) never sees a prompt before that addition, so
its activation ranges can be fixed in advance: it is quantised statically into QDQ form (uint8
activations, int8 weights per channel), its ranges calibrated on real pictures (99.999th percentile), by
default the 48 public-domain clip-art pictures shipped in `model/int8_pictures/` (see the README there).
The first quarter of its convolutions (EfficientNet-Lite0's stem and first four blocks, at 112 and 56 px)
and the prompt addition stay float: on CPUs without VNNI, int8 kernels there cost the most agreement with
fp32 (see docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image

from model.tower import PromptKind, Tower

log = logging.getLogger(__name__)

RECIPE_VERSION = "1"
PICTURES = Path(__file__).parent / "int8_pictures"
CALIBRATION_BATCH = 8
FLOAT_CONVOLUTIONS_SHARE = 0.25


def calibration_pictures() -> list[Image.Image]:
    """The shipped calibration pictures, in file-name order."""
    paths = sorted(PICTURES.glob("*.png"))
    if not paths:
        raise FileNotFoundError(f"no calibration pictures in {PICTURES}")
    return [Image.open(path).convert("RGB") for path in paths]


def is_static(tower: Tower) -> bool:
    """Statically calibrated: prompts act only after the network, on its pooled feature."""
    return tower.prompt_kind is PromptKind.FEATURE


def calibration_batches(tower: Tower, pictures: Sequence[Image.Image]) -> list[dict[str, np.ndarray]]:
    """The export's feeds for `pictures`, in batches, with prompts that change nothing."""
    batches = []
    for start in range(0, len(pictures), CALIBRATION_BATCH):
        inputs = tower.preprocess(pictures[start : start + CALIBRATION_BATCH])
        rows = inputs[tower.input_names[0]].shape[0]
        feeds = {name: inputs[name].numpy() for name in tower.input_names}
        feeds["prompts"] = tower.empty_prompts(rows).numpy()
        batches.append(feeds)
    return batches


def recipe(tower: Tower, pictures: Sequence[Image.Image] | None = None) -> dict[str, Any]:
    """What an int8 file depends on besides its tower: the method and, when static, its calibration inputs."""
    if not is_static(tower):
        return {"version": RECIPE_VERSION, "method": "dynamic"}
    digest = hashlib.sha256()
    for feeds in calibration_batches(tower, pictures or calibration_pictures()):
        for name in tower.input_names:
            digest.update(np.ascontiguousarray(feeds[name]).tobytes())
    return {"version": RECIPE_VERSION, "method": "static", "calibration_sha256": digest.hexdigest()}


def quantise(tower: Tower, source: Path, target: Path, pictures: Sequence[Image.Image] | None = None) -> None:
    """Write the int8 version of `tower`'s fp32 export `source` to `target`."""
    with quiet_tools():
        if is_static(tower):
            quantise_static(tower, source, target, pictures or calibration_pictures())
        else:
            quantise_dynamic(source, target)


class _ToolChatter(logging.Filter):
    """Drops ONNX Runtime's quantisation tools' records below WARNING (they log each tensor on the root logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "onnxruntime" not in record.pathname


@contextlib.contextmanager
def quiet_tools() -> Iterator[None]:
    """While quantising: the tools' progress prints go to this module's debug log, their info records nowhere."""
    chatter, printed = _ToolChatter(), io.StringIO()
    loggers = [logging.getLogger(), logging.getLogger("onnxruntime.quantization.shape_inference")]
    for logger in loggers:
        logger.addFilter(chatter)
    try:
        with contextlib.redirect_stdout(printed):
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(chatter)
        if printed.getvalue():
            log.debug("quantisation tools: %s", printed.getvalue().strip())


def prepare(source: Path, folder: Path) -> Path:
    """`source` as the tools want it: shapes inferred, constants folded (a CNN's padding into its convolutions)."""
    prepared = Path(folder) / "prepared.onnx"
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    return prepared


def quantise_dynamic(source: Path, target: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="rebq-int8-") as folder:
        quantize_dynamic(
            str(prepare(source, Path(folder))),
            str(target),
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            weight_type=QuantType.QInt8,
        )


class CalibrationFeeds(CalibrationDataReader):
    """Calibration inputs, one batch at a time; `set_range` lets the calibrator take them in strides, so that it
    keeps one stride's activations in memory rather than every picture's."""

    def __init__(self, batches: list[dict[str, np.ndarray]]):
        self.batches = batches
        self._pending: Iterator[dict[str, np.ndarray]] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._pending, None)

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._pending = iter(self.batches[start_index:end_index])


def float_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes kept float: all before the first quarter of the convolutions ends, and whatever reads the prompts."""
    nodes = list(model.graph.node)
    convolutions = [index for index, node in enumerate(nodes) if node.op_type == "Conv"]
    float_count = int(len(convolutions) * FLOAT_CONVOLUTIONS_SHARE)
    end = convolutions[float_count] if float_count < len(convolutions) else len(nodes)
    leading = nodes[:end] if float_count else []
    return [node.name for node in leading] + [node.name for node in nodes if "prompts" in node.input]


def quantise_static(tower: Tower, source: Path, target: Path, pictures: Sequence[Image.Image]) -> None:
    log.info("calibrating the int8 %s tower on %d pictures", tower.modality.label, len(pictures))
    with tempfile.TemporaryDirectory(prefix="rebq-int8-") as folder:
        prepared = prepare(source, Path(folder))
        quantize_static(
            str(prepared),
            str(target),
            CalibrationFeeds(calibration_batches(tower, pictures)),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=float_nodes(onnx.load(str(prepared))),
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={"CalibStridedMinMax": 1},  # histograms merged one batch at a time
        )
