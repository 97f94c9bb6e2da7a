"""The Ray Serve shell around `Predictor`: one deployment that is the HTTP ingress and batches predictions.

Each replica holds the ONNX Runtime towers and the installed PromptState. Requests are batched by
`@serve.batch` and a batch is computed on the event loop itself: handing it to a worker thread made
that thread and the loop fight for the GIL, so requests reached the batch queue one by one (measured on
2 cores: mean batch 1.4 and 35 requests/s, against 4.6 and 48 on the loop). Requests that arrive during
a batch wait in Serve's queue and form the next one. `rebq-serve serve` runs that loop as the replica's
main one (`serving.launcher.ingress_environment`), where the replica's own HTTP server runs too. A
watcher thread installs each newly published version; the batch reads the installed model once, so a
swap lands between batches.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import ray
from pydantic import BaseModel, ConfigDict
from ray import serve
from ray.exceptions import RayActorError, RayError, RayTaskError
from ray.serve import Application

from serving.backend import AdmissionGate, BatchInfo, UpdaterUnavailable
from serving.config import AppConfig, StateDir
from serving.metrics import ReplicaMetrics, UpdaterMetrics
from serving.serve_internals import bind_replica_grpc_to_loopback, rebind_replica_port_at_once
from updater.actor import UpdaterSetup, start_updater, updater_handle
from updater.errors import UpdaterRefusal

if TYPE_CHECKING:  # the driver that builds the application does not import torch
    from serving.decode import DecodedSample
    from serving.schemas import ModelInfo, PredictResponse, UnknownAnswer, VersionInfo
    from updater.feedback_log import NewFeedback

log = logging.getLogger(__name__)

DEPLOYMENT_NAME = "rebq"
APP_NAME = "rebq"
REPLICA_NAMESPACE = "serve"  # where Serve names its replicas' actors
DRAIN_S = 2.0  # a stopping replica finishes the requests it holds for this long at most (Serve's default: 20 s)


@serve.deployment(name=DEPLOYMENT_NAME)
@serve.ingress()
class RebqReplica:
    def __init__(self, config: AppConfig):
        from serving.predictor import Predictor

        bind_replica_grpc_to_loopback()
        rebind_replica_port_at_once()
        self.config = config
        self.predictor = Predictor.load(config)
        self.metrics = ReplicaMetrics()
        self.metrics.version.set(self.predictor.version)
        self._predict_batch.set_max_batch_size(config.server.batching.max_batch_size)
        self._predict_batch.set_batch_wait_timeout_s(config.server.batching.wait_timeout_s)
        self._updater_handle = None
        self._admission = AdmissionGate(config.server.max_pending_predictions)
        self._replica_id, self._batches = uuid.uuid4().hex[:8], 0
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch_published, name="rebq-state-watcher", daemon=True)
        self._watcher.start()

    def __serve_build_asgi_app__(self):
        from serving.auth import load_token
        from serving.http_api import build_http_app

        server = self.config.server
        return build_http_app(
            self,
            server.limits,
            self.config.updater.max_samples_per_request,
            token=load_token(server.auth),
            protect_predictions=server.auth.protect_predictions,
        )

    def _updater(self):
        if self._updater_handle is None:
            try:
                self._updater_handle = updater_handle()
            except ValueError as error:  # no such actor
                raise UpdaterUnavailable("no updater is running") from error
        return self._updater_handle

    async def _call_updater(self, method: str, *args):
        """`method` of the updater; its death or restart mid-call is an `UpdaterUnavailable` (a 503), not a 500,
        and a refusal is raised as the updater raised it."""
        try:
            return await getattr(self._updater(), method).remote(*args)
        except RayActorError as error:
            raise UpdaterUnavailable("the updater is restarting; try again") from error
        except RayTaskError as error:
            if isinstance(error.cause, UpdaterRefusal):
                raise error.cause from None
            raise

    async def feedback(self, samples: list[NewFeedback]) -> tuple[int, int]:
        return await self._call_updater("accept", samples)

    async def train_task(self, name: str) -> None:
        await self._call_updater("train_now", name)

    async def drop_task(self, name: str) -> int:
        return await self._call_updater("drop_task", name)

    def rollback(self, version: int) -> None:
        from updater.publishing import roll_back

        roll_back(self.config.server.state_dir, version)

    async def updater_status(self) -> dict | None:
        try:
            return await asyncio.wait_for(self._updater().status.remote(), timeout=5)
        except (UpdaterUnavailable, TimeoutError, RayError) as error:
            log.warning("updater status unavailable: %s", error)
            return None

    def _watch_published(self) -> None:
        """Install each newly published version; a broken one is logged and the old one kept."""
        while not self._stopping.wait(self.config.server.state_poll_s):
            start = time.perf_counter()
            try:
                swapped = self.predictor.refresh()
            except Exception:  # a watcher that dies would freeze the version; keep it alive and loud
                log.exception("looking for a new PromptState failed")
                continue
            if swapped:
                self.metrics.observe_swap(self.predictor.version, time.perf_counter() - start)
            self.metrics.version.set(self.predictor.version)  # kept fresh: Ray stops exporting idle gauges

    async def predict(self, sample: DecodedSample) -> tuple[PredictResponse, BatchInfo]:
        with self._admission:
            return await self._predict_batch(sample)

    @serve.batch  # its size and wait are set from the configuration when the replica starts
    async def _predict_batch(self, samples: list[DecodedSample]) -> list[tuple[PredictResponse, BatchInfo]]:
        start = time.perf_counter()
        answers = self.predictor.predict_batch(samples)
        rebuilt = [answer.missing[0] for answer in answers if answer.reconstructed]
        unknown = [sample.pattern for sample, answer in zip(samples, answers, strict=True) if not answer.known]
        self.metrics.observe_batch(
            len(samples), time.perf_counter() - start, rebuilt.count("image"), rebuilt.count("text"), unknown
        )
        self._batches += 1
        batch = BatchInfo(len(samples), f"{self._replica_id}-{self._batches}")
        return [(answer, batch) for answer in answers]

    def model_info(self) -> ModelInfo:
        return self.predictor.model_info()

    def versions(self) -> list[VersionInfo]:
        return self.predictor.versions()

    def recent_unknown(self) -> list[UnknownAnswer]:
        return self.predictor.recent_unknown()

    def replica_info(self) -> dict[str, str | None]:
        return {"replica": self._replica_id, "node": ray.get_runtime_context().get_node_id()}

    def observe(self, route: str, status: int, pattern: str, seconds: float) -> None:
        self.metrics.observe_request(route, status, pattern, seconds)

    def check_health(self) -> None:
        if not self._watcher.is_alive():
            raise RuntimeError("the PromptState watcher thread has stopped")

    def __del__(self) -> None:
        self._stopping.set()


def replica_actor_names() -> list[str]:
    """The Ray actors of this application's replicas, by name (in namespace `REPLICA_NAMESPACE`)."""
    actors = ray.util.list_named_actors(all_namespaces=True)
    return sorted(
        a["name"] for a in actors if a["name"].startswith(f"SERVE_REPLICA::{APP_NAME}#{DEPLOYMENT_NAME}#")
    )


def running_replicas() -> int:
    """How many of this application's replicas Serve reports running."""
    application = serve.status().applications.get(APP_NAME)
    deployment = application.deployments.get(DEPLOYMENT_NAME) if application else None
    return deployment.replica_states.get("RUNNING", 0) if deployment else 0


def build_app(config: AppConfig) -> Application:
    """The application for `serve.run`, with replicas, resources and concurrency from `config.server`.

    The updater actor is started here too (or found, if it runs), so replicas find it by name.
    """
    shares = config.gpu_shares(ray.cluster_resources().get("GPU", 0.0))
    setup = UpdaterSetup(config.server.state_dir, config.backbone, config.learner, config.trainer, config.updater)
    start_updater(setup, shares.updater, observer=UpdaterMetrics)
    return RebqReplica.options(
        num_replicas=config.server.replicas,
        max_ongoing_requests=config.server.max_ongoing_requests,
        ray_actor_options={"num_cpus": config.server.cpus_per_replica, "num_gpus": shares.replica},
        graceful_shutdown_timeout_s=DRAIN_S,
        graceful_shutdown_wait_loop_s=0.25,  # how often it looks for requests left (Serve's default: 2 s)
    ).bind(config)


class BuilderArgs(BaseModel):
    """`args` of an application in a Serve config file (deploy/serve_config.yaml)."""

    model_config = ConfigDict(extra="forbid")

    state_dir: StateDir  # shared by every node of the cluster: a path or a file:// URI
    config: Path | None = None  # a rebq-serve YAML or JSON file, readable on the node that deploys


def app_builder(args: dict) -> Application:
    """The import path `serving.deployment:app_builder` for `serve run` and `serve deploy`.

    Replicas and resources come from the config file's deployment section, which Serve applies over
    these defaults; batching, limits and the updater from the rebq-serve configuration.
    """
    from serving.config import load_config

    checked = BuilderArgs.model_validate(args)
    config = load_config(checked.config).with_overrides(state_dir=checked.state_dir)
    return build_app(config)
