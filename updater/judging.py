"""The towers a new version is judged and calibrated by: the ones the replicas will serve it with.

Training runs the fp32 torch towers. Replicas serving `precision: int8` answer with int8 ONNX towers,
whose features differ a little, so the gate's accuracies and the calibration's temperatures are taken
on those towers' answers: a version is judged as it will be served. fp32 ONNX towers answer as the
torch ones do (to 1e-4), so with fp32 the trained towers judge.
"""

from __future__ import annotations

import logging

from model.backbone import Backbone, load_backbone
from model.config import BackboneConfig
from model.onnx_tower import served_precision

log = logging.getLogger(__name__)


def judging_backbone(config: BackboneConfig, trained: Backbone) -> Backbone:
    """`trained` itself, or the int8 ONNX towers when that is what replicas serve."""
    if served_precision(config.precision, config.device) != "int8":
        return trained
    log.info("versions are judged and calibrated on the int8 towers the replicas serve")
    return load_backbone(config, runtime="onnx")
