"""PromptState: everything trainable, the task and class registry, a version and the towers' fingerprint.

A version is a folder `v000042/` holding `state.safetensors` and `manifest.json` (with the tensors'
SHA-256). It is written to a temporary folder and renamed into place, so a reader sees all or nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, ValidationError, field_validator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from model.config import LearnerConfig, StrictModel
from model.durable_files import fsync_folder

log = logging.getLogger(__name__)

STATE_FORMAT = 1
TENSORS_FILE = "state.safetensors"
MANIFEST_FILE = "manifest.json"
VERSION_PATTERN = re.compile(r"^v(\d{6,})$")


class StateError(ValueError):
    """A PromptState that cannot be read: missing, truncated or corrupted."""


class StateMismatchError(ValueError):
    """A PromptState that does not fit the towers or the learner it is meant for."""


# learner keys of earlier manifests, each with the one value that is still served (and now implied)
RETIRED_LEARNER_KEYS = {"classifier": "lda", "prompts": True, "lda_statistics": "pooled_with_hidden"}


class TaskRecord(StrictModel):
    name: str
    classes: tuple[str, ...]


class StateManifest(StrictModel):
    format: int = STATE_FORMAT
    version: int = Field(ge=1)
    created: float
    backbone_fingerprint: str
    backbone: dict[str, Any] = {}
    learner: LearnerConfig
    tasks: tuple[TaskRecord, ...]
    tensors_sha256: str
    notes: dict[str, Any] = {}

    @field_validator("learner", mode="before")
    @classmethod
    def _learner_with_a_strategy(cls, learner: Any) -> Any:
        """Manifests written before growth strategies lack the per-half discriminants rows missing a
        modality are scored with: refused, with the reason. A retired key holding the one value still
        served says nothing more and is dropped; any other value is refused."""
        if isinstance(learner, dict) and "strategy" not in learner:
            raise ValueError(
                "learner: written by an older rebq-serve, before growth strategies and the per-half "
                "statistics that score rows missing a modality; train the tasks again"
            )
        if isinstance(learner, dict):
            for key, only in RETIRED_LEARNER_KEYS.items():
                if key in learner and learner[key] != only:
                    raise ValueError(
                        f"learner.{key}: {learner[key]!r} is no longer served (only {only!r} is, and it is "
                        "implied now); train the tasks again"
                    )
            learner = {key: value for key, value in learner.items() if key not in RETIRED_LEARNER_KEYS}
        return learner

    @property
    def classes(self) -> list[str]:
        return [name for task in self.tasks for name in task.classes]


@dataclass(frozen=True)
class PromptState:
    manifest: StateManifest
    tensors: dict[str, torch.Tensor]

    @property
    def version(self) -> int:
        return self.manifest.version


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def version_folder(directory: Path, version: int) -> Path:
    return Path(directory) / f"v{version:06d}"


def list_versions(directory: Path) -> list[int]:
    """Versions present in `directory`, oldest first (not yet checked for integrity)."""
    if not Path(directory).is_dir():
        return []
    found = (VERSION_PATTERN.match(entry.name) for entry in Path(directory).iterdir() if entry.is_dir())
    return sorted(int(match.group(1)) for match in found if match)


def save_state(
    directory: Path,
    tensors: dict[str, torch.Tensor],
    *,
    version: int,
    backbone_fingerprint: str,
    backbone: dict[str, Any],
    learner: LearnerConfig,
    tasks: list[TaskRecord],
    notes: dict[str, Any] | None = None,
) -> PromptState:
    """Write version `version` atomically; refuses to overwrite an existing version."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = version_folder(directory, version)
    if target.exists():
        raise FileExistsError(f"version {version} already exists in {directory}")
    staging = Path(tempfile.mkdtemp(dir=directory, prefix=f".v{version:06d}-"))
    try:
        save_file({name: tensor.contiguous() for name, tensor in tensors.items()}, staging / TENSORS_FILE)
        manifest = StateManifest(
            version=version,
            created=time.time(),
            backbone_fingerprint=backbone_fingerprint,
            backbone=backbone,
            learner=learner,
            tasks=tuple(tasks),
            tensors_sha256=_sha256(staging / TENSORS_FILE),
            notes=notes or {},
        )
        (staging / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))
        for name in (TENSORS_FILE, MANIFEST_FILE):
            with open(staging / name, "rb+") as handle:
                os.fsync(handle.fileno())
        os.rename(staging, target)
        fsync_folder(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return PromptState(manifest, {name: tensor.clone() for name, tensor in tensors.items()})


def read_manifest(folder: Path) -> StateManifest:
    """One version folder's manifest alone (what it learned and how it was gated), without its tensors."""
    folder = Path(folder)
    try:
        return StateManifest.model_validate_json((folder / MANIFEST_FILE).read_text())
    except FileNotFoundError as error:
        raise StateError(f"{folder}: no {MANIFEST_FILE}") from error
    except (ValidationError, ValueError) as error:
        raise StateError(f"{folder}: unreadable {MANIFEST_FILE}: {error}") from error


def load_state(folder: Path) -> PromptState:
    """Read one version folder, verifying its manifest and checksum."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    tensors_path = folder / TENSORS_FILE
    if not tensors_path.is_file():
        raise StateError(f"{folder}: no {TENSORS_FILE}")
    if _sha256(tensors_path) != manifest.tensors_sha256:
        raise StateError(f"{folder}: {TENSORS_FILE} does not match the checksum in its manifest (corrupted)")
    try:
        tensors = load_file(tensors_path)
    except (SafetensorError, OSError) as error:
        raise StateError(f"{folder}: {TENSORS_FILE} unreadable: {error}") from error
    return PromptState(manifest, tensors)


def latest_state(directory: Path) -> PromptState | None:
    """The newest version that reads cleanly; broken ones are skipped with a log line."""
    for version in reversed(list_versions(directory)):
        try:
            return load_state(version_folder(directory, version))
        except StateError as error:
            log.error("skipping PromptState version %d: %s", version, error)
    return None


def check_compatible(state: PromptState, fingerprint: str, learner_config: LearnerConfig, expected: dict) -> None:
    """Refuse a state made for other towers, another learner layout, or with tensors of the wrong shape."""
    problems = []
    if state.manifest.backbone_fingerprint != fingerprint:
        problems.append(
            f"backbone fingerprint {state.manifest.backbone_fingerprint} differs from the towers' {fingerprint}"
        )
    if state.manifest.learner != learner_config:
        problems.append(f"learner config {state.manifest.learner} differs from {learner_config}")
    for name, shape in expected.items():
        got = tuple(state.tensors[name].shape) if name in state.tensors else None
        if got != tuple(shape):
            problems.append(f"tensor {name} has shape {got}, expected {tuple(shape)}")
    unknown = sorted(set(state.tensors) - set(expected))
    if unknown:
        problems.append(f"unexpected tensors {unknown}")
    if problems:
        raise StateMismatchError(f"PromptState version {state.version}: " + "; ".join(problems))


def refuse_changed_learner(configured: LearnerConfig, state: PromptState) -> None:
    """A learner cannot change under tasks it has learned: refuse a config whose `learner` differs from the
    one `state` was trained with, naming each field that differs."""
    trained, wanted = state.manifest.learner.model_dump(), configured.model_dump()
    changed = [
        f"learner.{name}: {wanted[name]!r} configured, {trained[name]!r} in version {state.version}"
        for name in trained
        if trained[name] != wanted[name]
    ]
    if changed:
        raise StateMismatchError(
            "the configured learner differs from the one the published tasks were learned with ("
            + "; ".join(changed)
            + "): set it back, or start a new state directory"
        )
