"""The updater as a named Ray actor, apart from the replicas: the thin Ray shell around `UpdaterService`.

Its methods answer plain results and raise `updater.errors` exceptions, which reach the caller inside a
`RayTaskError` (its `cause`). Ray restarts it if it dies; it then recovers from the feedback log (beyond
its committed offset) and the published state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ray

from model.config import BackboneConfig, LearnerConfig
from updater.config import TrainerConfig, UpdaterConfig
from updater.service import Unobserved, UpdaterObserver, UpdaterService

UPDATER_NAME = "rebq-updater"
NAMESPACE = "rebq"


@dataclass(frozen=True)
class UpdaterSetup:
    """What the updater is built from: the state directory and the configuration of each part it runs."""

    state_dir: Path
    backbone: BackboneConfig
    learner: LearnerConfig
    trainer: TrainerConfig
    updater: UpdaterConfig


@ray.remote(max_restarts=-1, max_concurrency=8)
class UpdaterActor(UpdaterService):
    def __init__(self, setup: UpdaterSetup, observer: Callable[[], UpdaterObserver] = Unobserved):
        from updater.judging import judging_backbone
        from updater.trainer import training_backbone
        from updater.updater import Updater

        backbone = training_backbone(setup.backbone, setup.trainer)
        judging = judging_backbone(setup.backbone, backbone)
        updater = Updater(setup.state_dir, backbone, setup.learner, setup.trainer, setup.updater, judging)
        super().__init__(updater, observer())  # the observer is made here: Ray's metrics need the actor's process


def start_updater(setup: UpdaterSetup, gpus: float = 0.0, observer: Callable[[], UpdaterObserver] = Unobserved):
    """The updater actor, created if it is not running yet (it survives the driver, not the cluster)."""
    return UpdaterActor.options(
        name=UPDATER_NAME,
        namespace=NAMESPACE,
        get_if_exists=True,
        lifetime="detached",
        num_cpus=0,
        num_gpus=gpus,
    ).remote(setup, observer)


def updater_handle():
    return ray.get_actor(UPDATER_NAME, namespace=NAMESPACE)
