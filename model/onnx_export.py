"""Export a tower to ONNX once and keep it in a cache keyed by the tower's fingerprint and precision.

A cache entry is `<modality>-<fingerprint>.onnx` (fp32) or `<modality>-<fingerprint>-int8.onnx` beside a
JSON manifest holding the fingerprint, the precision, the file's SHA-256 and, for int8, the quantisation
recipe (method and calibration inputs, see `model/quantisation.py`). An int8 entry is made from the fp32
one. An entry whose manifest, recipe or checksum does not match is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from model import quantisation
from model.durable_files import write_atomically
from model.tower import Tower

log = logging.getLogger(__name__)

OPSET = 17
OUTPUT_NAME = "features"
TRACE_BATCH = 2
TRACE_PROMPT_LENGTH = 2
PRECISIONS = ("fp32", "int8")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_tower(tower: Tower, path: Path) -> None:
    """Trace `tower` to ONNX with dynamic batch, sequence and prompt length."""
    example = tower.example_inputs(TRACE_BATCH, TRACE_PROMPT_LENGTH)
    names = [*tower.input_names, "prompts"]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about python control flow on constant shapes
        torch.onnx.export(
            tower,
            tuple(example[name] for name in names),
            str(path),
            input_names=names,
            output_names=[OUTPUT_NAME],
            dynamic_axes=tower.dynamic_axes(),
            opset_version=OPSET,
            dynamo=False,
        )


class OnnxCache:
    """ONNX files of towers, keyed by fingerprint and precision, verified by checksum on every use.

    `pictures`: what an int8 image tower is calibrated on (None: the pictures shipped with the package).
    """

    def __init__(self, root: Path, pictures: Sequence[Image.Image] | None = None):
        self.root = Path(root)
        self.pictures = pictures

    def entry(self, tower: Tower, fingerprint: str, precision: str = "fp32") -> tuple[Path, Path]:
        stem = f"{tower.modality.label}-{fingerprint}" + ("" if precision == "fp32" else f"-{precision}")
        return self.root / f"{stem}.onnx", self.root / f"{stem}.json"

    def identity(self, tower: Tower, fingerprint: str, precision: str) -> dict[str, Any]:
        """What a manifest must say for its file to serve `tower` at `precision`."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
        identity: dict[str, Any] = {"fingerprint": fingerprint, "precision": precision}
        if precision == "int8":
            identity["quantisation"] = quantisation.recipe(tower, self.pictures)
        return identity

    def lookup(self, tower: Tower, fingerprint: str, precision: str = "fp32") -> Path | None:
        """The cached file if its manifest names this tower, precision and recipe and its bytes match."""
        return self._verified(tower, fingerprint, precision, self.identity(tower, fingerprint, precision))

    def _verified(self, tower: Tower, fingerprint: str, precision: str, identity: dict[str, Any]) -> Path | None:
        model_path, manifest_path = self.entry(tower, fingerprint, precision)
        if not (model_path.is_file() and manifest_path.is_file()):
            return None
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError):
            log.warning("ONNX cache manifest %s is unreadable; rebuilding", manifest_path)
            return None
        stated = {**manifest, "precision": manifest.get("precision", "fp32")}
        matches = all(stated.get(key) == value for key, value in identity.items())
        if not matches or manifest.get("sha256") != file_sha256(model_path):
            log.warning("ONNX cache entry %s does not match its tower; rebuilding", model_path)
            return None
        return model_path

    def get_or_export(self, tower: Tower, fingerprint: str | None = None, precision: str = "fp32") -> Path:
        fingerprint = fingerprint or tower.fingerprint()
        identity = self.identity(tower, fingerprint, precision)
        cached = self._verified(tower, fingerprint, precision, identity)
        if cached is not None:
            return cached
        source = self.get_or_export(tower, fingerprint) if precision == "int8" else None
        self.root.mkdir(parents=True, exist_ok=True)
        model_path, manifest_path = self.entry(tower, fingerprint, precision)
        handle, temporary = tempfile.mkstemp(dir=self.root, prefix=model_path.name, suffix=".tmp")
        os.close(handle)
        log.info("exporting the %s tower to ONNX at %s (%s)", tower.modality.label, precision, model_path.name)
        try:
            if source is None:
                export_tower(tower, Path(temporary))
            else:
                quantisation.quantise(tower, source, Path(temporary), self.pictures)
            manifest = {**identity, "sha256": file_sha256(Path(temporary)), "tower": tower.describe()}
            os.replace(temporary, model_path)
        finally:
            Path(temporary).unlink(missing_ok=True)
        write_atomically(manifest_path, json.dumps(manifest, indent=2).encode())
        return model_path
