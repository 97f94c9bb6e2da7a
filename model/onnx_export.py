"""Export a tower to ONNX once and keep it in a cache keyed by the tower's fingerprint.

A cache entry is `<modality>-<fingerprint>.onnx` beside a JSON manifest holding the fingerprint and
the file's SHA-256. An entry whose manifest or checksum does not match is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch

from model.durable_files import write_atomically
from model.tower import Tower

log = logging.getLogger(__name__)

OPSET = 17
OUTPUT_NAME = "features"
TRACE_BATCH = 2
TRACE_PROMPT_LENGTH = 2


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
    """ONNX files of towers, keyed by fingerprint, verified by checksum on every use."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def entry(self, tower: Tower, fingerprint: str) -> tuple[Path, Path]:
        stem = f"{tower.modality.label}-{fingerprint}"
        return self.root / f"{stem}.onnx", self.root / f"{stem}.json"

    def lookup(self, tower: Tower, fingerprint: str) -> Path | None:
        """The cached file if its manifest names this fingerprint and its bytes match the checksum."""
        model_path, manifest_path = self.entry(tower, fingerprint)
        if not (model_path.is_file() and manifest_path.is_file()):
            return None
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError):
            log.warning("ONNX cache manifest %s is unreadable; rebuilding", manifest_path)
            return None
        if manifest.get("fingerprint") != fingerprint or manifest.get("sha256") != file_sha256(model_path):
            log.warning("ONNX cache entry %s does not match its tower; rebuilding", model_path)
            return None
        return model_path

    def get_or_export(self, tower: Tower, fingerprint: str | None = None) -> Path:
        fingerprint = fingerprint or tower.fingerprint()
        cached = self.lookup(tower, fingerprint)
        if cached is not None:
            return cached
        self.root.mkdir(parents=True, exist_ok=True)
        model_path, manifest_path = self.entry(tower, fingerprint)
        handle, temporary = tempfile.mkstemp(dir=self.root, prefix=model_path.name, suffix=".tmp")
        os.close(handle)
        log.info("exporting the %s tower to ONNX (%s)", tower.modality.label, model_path.name)
        try:
            export_tower(tower, Path(temporary))
            manifest = {
                "fingerprint": fingerprint,
                "sha256": file_sha256(Path(temporary)),
                "tower": tower.describe(),
            }
            os.replace(temporary, model_path)
        finally:
            Path(temporary).unlink(missing_ok=True)
        write_atomically(manifest_path, json.dumps(manifest, indent=2).encode())
        return model_path
