"""A tower run by ONNX Runtime: the CUDA provider where a GPU is usable, the CPU provider otherwise."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from model.modality import Modality
from model.onnx_export import OUTPUT_NAME
from model.tower import Tower

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def gpu_present() -> bool:
    """An NVIDIA GPU is visible to this process."""
    return torch.cuda.is_available() or Path("/dev/nvidia0").exists()


def cuda_available() -> bool:
    """Whether ONNX Runtime has a CUDA provider and a GPU to run it on; loads pip-installed CUDA libraries."""
    if CUDA not in ort.get_available_providers() or not gpu_present():
        return False
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except Exception as error:  # libraries missing: the CPU provider will do
            log.warning("CUDA libraries could not be loaded for ONNX Runtime: %s", error)
            return False
    return True


def choose_providers(device: str) -> list[str]:
    """`auto`: CUDA when usable; `cuda`: CUDA or an error; `cpu`: CPU only."""
    if device == "cpu":
        return [CPU]
    if cuda_available():
        return [CUDA, CPU]
    if device == "cuda":
        raise RuntimeError("device: cuda was asked for but ONNX Runtime has no usable CUDA provider here")
    return [CPU]


def served_precision(precision: str, device: str) -> str:
    """int8 on the CPU provider; a tower on CUDA keeps fp32."""
    if precision == "int8" and choose_providers(device)[0] == CUDA:
        log.info("precision: int8 is for the CPU provider; the towers run on CUDA in fp32")
        return "fp32"
    return precision


# cuDNN's exhaustive search runs again for every new input shape, and batch sizes vary with the load.
CUDA_OPTIONS = {"cudnn_conv_algo_search": "HEURISTIC"}


FIXED_BATCH_SIZES = (1, 4, 16, 64)


def pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
    """`array (b, ...)` with zero rows appended up to `(rows, ...)`."""
    missing = rows - array.shape[0]
    return np.concatenate([array, np.zeros((missing, *array.shape[1:]), array.dtype)]) if missing else array


def with_options(providers: list[str]) -> list:
    return [(name, CUDA_OPTIONS) if name == CUDA else name for name in providers]


def session_options(threads: int | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # torch shares the process: spinning ORT threads would steal its cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class OnnxTower:
    """Same `encode`, `preprocess` and `prompt_shape` as the torch tower it was exported from."""

    def __init__(
        self,
        tower: Tower,
        model_path: Path,
        device: str = "auto",
        threads: int | None = None,
        precision: str = "fp32",
    ):
        self.tower = tower
        self.precision = precision
        self.modality = tower.modality
        self.prompt_kind = tower.prompt_kind
        self.input_names = tower.input_names
        self.feature_dim = tower.feature_dim
        self.encodes_prompts_alone = tower.encodes_prompts_alone
        self.model_path = Path(model_path)
        self.threads = threads
        self.session = self._new_session(choose_providers(device))
        self.providers = self.session.get_providers()
        if device == "cuda" and not self.on_gpu:
            raise RuntimeError(f"device: cuda was asked for but the session runs on {self.providers[0]}")
        # On CUDA, a convolutional tower re-plans its convolutions whenever the batch shape changes (a few
        # hundred ms each time): image batches are padded to fixed sizes, each with a session of its own.
        self.batch_sizes = FIXED_BATCH_SIZES if self.on_gpu and self.modality is Modality.IMAGE else ()
        self._fixed_sessions: dict[int, ort.InferenceSession] = {}

    def _new_session(self, providers: list[str]) -> ort.InferenceSession:
        return ort.InferenceSession(
            str(self.model_path), sess_options=session_options(self.threads), providers=with_options(providers)
        )

    @property
    def on_gpu(self) -> bool:
        return self.providers[0] == CUDA

    def prompt_shape(self, length: int) -> tuple[int, ...]:
        return self.tower.prompt_shape(length)

    def empty_prompts(self, batch: int) -> torch.Tensor:
        return self.tower.empty_prompts(batch)

    def preprocess(self, raw: Sequence[Any]) -> dict[str, torch.Tensor]:
        return self.tower.preprocess(raw)

    def prompt_only_inputs(self, batch: int) -> dict[str, torch.Tensor]:
        return self.tower.prompt_only_inputs(batch)

    def describe(self) -> dict[str, Any]:
        description = {**self.tower.describe(), "runtime": "onnxruntime", "provider": self.providers[0]}
        return {**description, "precision": self.precision}

    def encode(self, inputs: dict[str, torch.Tensor], prompts: torch.Tensor | None = None) -> torch.Tensor:
        batch = inputs[self.input_names[0]].shape[0]
        if prompts is None:
            prompts = self.empty_prompts(batch)
        feeds = {name: np.ascontiguousarray(inputs[name].numpy()) for name in self.input_names}
        feeds["prompts"] = np.ascontiguousarray(prompts.detach().to(torch.float32).numpy())
        return torch.from_numpy(self._run(feeds, batch))  # (B, D)

    def _run(self, feeds: dict[str, np.ndarray], batch: int) -> np.ndarray:
        size = next((size for size in self.batch_sizes if size >= batch), None)
        if size is None:
            (features,) = self.session.run([OUTPUT_NAME], feeds)
            return features
        if size not in self._fixed_sessions:
            self._fixed_sessions[size] = self._new_session(self.providers)
        padded = {name: pad_rows(array, size) for name, array in feeds.items()}
        (features,) = self._fixed_sessions[size].run([OUTPUT_NAME], padded)
        return features[:batch]

    __call__ = encode
