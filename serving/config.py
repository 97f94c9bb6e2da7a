"""The one configuration file of rebq-serve (YAML or JSON), checked at the edge."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import ValidationError

from model.config import BackboneConfig, LearnerConfig, StrictModel
from updater.trainer import TrainerConfig


class ConfigError(ValueError):
    """A configuration file that cannot be read or does not validate; the message names the field."""


class AppConfig(StrictModel):
    backbone: BackboneConfig = BackboneConfig()
    learner: LearnerConfig = LearnerConfig()
    trainer: TrainerConfig = TrainerConfig()


def load_config(path: Path | None) -> AppConfig:
    """Read `path` (YAML or JSON); no path gives the defaults."""
    if path is None:
        return AppConfig()
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"config file {path}: {error.strerror}") from error
    try:
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"config file {path}: not valid YAML or JSON: {error}") from error
    try:
        return AppConfig.model_validate(data or {})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc'])}: {issue['msg']}" for issue in error.errors()
        )
        raise ConfigError(f"config file {path}: {problems}") from error
