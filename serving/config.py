"""The one configuration file of rebq-serve (YAML or JSON), checked at the edge."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import BeforeValidator, Field, ValidationError, model_validator

from model.config import BackboneConfig, LearnerConfig, StrictModel
from updater.config import TrainerConfig, UpdaterConfig


class ConfigError(ValueError):
    """A configuration file that cannot be read or does not validate; the message names the field."""


MIB = 1024 * 1024
URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/")  # what starts a URI, rather than a path


def state_path(location: object) -> object:
    """The state directory named by a plain path or a `file://` URI, as a Path.

    Every node reads and writes it with plain file operations, so it must be a filesystem that each
    node mounts at the same path (NFS, a shared volume): any other scheme (s3://, gs://) is refused.
    """
    if not isinstance(location, str | PurePath):
        return location  # refused by the Path type itself
    text = os.fspath(location)
    if not URI_SCHEME.match(text):
        return Path(text)
    uri = urlsplit(text)
    if uri.scheme.lower() != "file":
        raise ValueError(
            f"state_dir must be a path or a file:// URI (a filesystem every node mounts), not {uri.scheme}: {text}"
        )
    if uri.netloc not in ("", "localhost") or not uri.path or uri.query or uri.fragment:
        raise ValueError(f"state_dir must be a file:// URI of a local path, like file:///mnt/rebq-state: {text}")
    return Path(unquote(uri.path))


StateDir = Annotated[Path, BeforeValidator(state_path)]


class LimitsConfig(StrictModel):
    """What one request may carry; over a limit is a 413 that names it."""

    max_body_bytes: int = Field(8 * MIB, ge=1024)
    max_image_bytes: int = Field(4 * MIB, ge=1024)  # after base64 decoding
    max_image_pixels: int = Field(16_000_000, ge=64)  # checked from the header, before decoding
    max_text_chars: int = Field(2000, ge=1)
    max_top_k: int = Field(100, ge=1)


class BatchingConfig(StrictModel):
    """Serve's dynamic batching: a batch runs when full or when the oldest request waited this long."""

    max_batch_size: int = Field(16, ge=1, le=1024)
    wait_timeout_s: float = Field(0.0, ge=0, le=10)  # 0: a batch is whatever queued while the last one ran


class AuthConfig(StrictModel):
    """Feedback, training and rollback need the bearer token, when one is set; predictions too, if asked."""

    token_file: Path | None = None  # REBQ_SERVE_TOKEN, when set, comes first
    protect_predictions: bool = False


class ServerConfig(StrictModel):
    """The HTTP server and its replicas; command line flags override these."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # direct: each replica answers HTTP itself, on port, port + 1, ...; proxy: Serve's proxy on port
    ingress: Literal["direct", "proxy"] = "direct"
    proxy_port: int | None = Field(None, ge=1, le=65535)  # Serve's proxy when direct; None: after the replicas'
    state_dir: StateDir = Path("state")  # a path or a file:// URI
    replicas: int = Field(1, ge=1, le=256)
    cpus_per_replica: float = Field(1.0, ge=0)
    gpus_per_replica: float | None = Field(None, ge=0)  # None: a share, see AppConfig.gpu_shares
    updater_gpus: float | None = Field(None, ge=0)  # None: a share, see AppConfig.gpu_shares
    max_ongoing_requests: int = Field(64, ge=1)
    max_pending_predictions: int = Field(48, ge=1)  # per replica; one more is answered 503 with Retry-After
    state_poll_s: float = Field(0.2, gt=0, le=60)  # how often a replica looks for a newly published version
    batching: BatchingConfig = BatchingConfig()
    limits: LimitsConfig = LimitsConfig()
    auth: AuthConfig = AuthConfig()

    @model_validator(mode="after")
    def _proxy_apart_from_replicas(self) -> ServerConfig:
        if self.replica_ports and self.replica_ports[-1] > 65535:
            last = self.replica_ports[-1]
            raise ValueError(f"port {self.port}: {self.replicas} replicas need ports up to {last}, over 65535")
        if self.serve_proxy_port > 65535:
            raise ValueError(f"proxy_port: {self.serve_proxy_port} is over 65535; set one")
        if self.ingress == "direct" and self.serve_proxy_port in self.replica_ports:
            raise ValueError(
                f"proxy_port {self.serve_proxy_port} is one of the replicas' ports "
                f"{self.port}..{self.port + self.replicas - 1} (ingress direct): choose another"
            )
        return self

    @property
    def replica_ports(self) -> range:
        """With ingress `direct`, the ports the replicas answer on, one each; empty with `proxy`."""
        return range(self.port, self.port + self.replicas) if self.ingress == "direct" else range(0)

    @property
    def serve_proxy_port(self) -> int:
        """Where Serve's proxy listens: `port` with ingress `proxy`; else `proxy_port`, or the first port after
        the replicas'."""
        if self.ingress == "proxy":
            return self.port
        return self.proxy_port if self.proxy_port is not None else self.port + self.replicas


class RayConfig(StrictModel):
    """The local Ray that `rebq-serve serve` starts (always on 127.0.0.1)."""

    num_cpus: int | None = Field(None, ge=1)  # None: this machine's cores
    object_store_memory: int = Field(256 * MIB, ge=80 * MIB)
    temp_dir: Path = Path("/tmp/rebq-serve-ray")
    metrics_port: int = Field(8080, ge=1, le=65535)
    log_to_driver: bool = False


class AppConfig(StrictModel):
    backbone: BackboneConfig = BackboneConfig()
    learner: LearnerConfig = LearnerConfig()
    trainer: TrainerConfig = TrainerConfig()
    updater: UpdaterConfig = UpdaterConfig()
    server: ServerConfig = ServerConfig()
    ray: RayConfig = RayConfig()

    def with_overrides(
        self, device: str | None = None, precision: str | None = None, **server_changes
    ) -> AppConfig:
        """A copy with command line flags applied (None leaves a value as configured), validated again."""
        changes = {name: value for name, value in server_changes.items() if value is not None}
        server = ServerConfig.model_validate({**self.server.model_dump(), **changes})
        towers = {name: value for name, value in {"device": device, "precision": precision}.items() if value}
        backbone = self.backbone
        if towers:
            backbone = BackboneConfig.model_validate({**self.backbone.model_dump(), **towers})
        return self.model_copy(update={"server": server, "backbone": backbone})

    def gpu_shares(self, cluster_gpus: float) -> GpuShares:
        """The GPUs each replica and the updater ask Ray for, on a cluster that has `cluster_gpus` now.

        Values set in `server` win. Otherwise, when the towers run on the GPU (device `cuda`, or `auto`
        on a cluster with GPUs), the replicas and the updater split the GPUs evenly, one at most each:
        on one GPU, one replica and the updater get half of it each. On a cluster with no GPU yet (one
        that scales GPU nodes up on demand), each replica asks for one and the updater trains on CPU.
        """
        device = self.backbone.device
        on_gpu = device == "cuda" or (device == "auto" and cluster_gpus > 0)
        if not on_gpu:
            share, updater_share = 0.0, 0.0
        elif cluster_gpus > 0:
            share = updater_share = min(1.0, cluster_gpus / (self.server.replicas + 1))
        else:
            share, updater_share = 1.0, 0.0
        replica = self.server.gpus_per_replica
        updater = self.server.updater_gpus
        return GpuShares(
            replica=share if replica is None else replica, updater=updater_share if updater is None else updater
        )


@dataclass(frozen=True)
class GpuShares:
    replica: float
    updater: float


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
