"""The GPU path: how GPUs are shared out, and, on a machine with a GPU, towers and training on it.

The tests marked `needs_gpu` run where torch and ONNX Runtime see a CUDA device (docs/benchmarks.md
records their last run); elsewhere they are skipped, since there is nothing to run them on.
"""

import pytest
import torch

from model.backbone import load_backbone
from model.continual import ContinualModel
from model.devices import place_towers, resolve_device
from model.onnx_tower import CUDA, cuda_available
from serving.config import AppConfig, BackboneConfig, ServerConfig
from tests.learning_data import samples
from tests.served_state import SMALL
from updater.trainer import TrainerConfig, train_task

FAST = TrainerConfig(epochs=12, batch_size=8, learning_rate=0.02)

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def shares(device="auto", cluster_gpus=0.0, **server):
    config = AppConfig(backbone=BackboneConfig(device=device), server=ServerConfig(**server))
    found = config.gpu_shares(cluster_gpus)
    return found.replica, found.updater


def test_towers_on_cpu_ask_for_no_gpu():
    assert shares("cpu", cluster_gpus=4) == (0.0, 0.0)
    assert shares("auto", cluster_gpus=0) == (0.0, 0.0)


def test_one_gpu_is_split_between_the_replica_and_the_updater():
    assert shares("cuda", cluster_gpus=1) == (0.5, 0.5)
    assert shares("auto", cluster_gpus=1, replicas=3) == (0.25, 0.25)


def test_a_share_is_one_gpu_at_most():
    assert shares("cuda", cluster_gpus=8, replicas=2) == (1.0, 1.0)


def test_a_cluster_without_gpus_yet_gets_one_per_replica_and_a_cpu_updater():
    assert shares("cuda", cluster_gpus=0) == (1.0, 0.0)


def test_configured_shares_win():
    assert shares("cuda", cluster_gpus=1, gpus_per_replica=0.75, updater_gpus=0.0) == (0.75, 0.0)
    assert shares("cpu", cluster_gpus=0, updater_gpus=0.5) == (0.0, 0.5)


def test_asking_for_cuda_names_the_field_when_there_is_none():
    if torch.cuda.is_available():
        assert resolve_device("cuda", "trainer.device").type == "cuda"
        return
    with pytest.raises(RuntimeError, match="trainer.device: cuda was asked for"):
        resolve_device("cuda", "trainer.device")
    assert resolve_device("auto").type == "cpu"


def learn_first_task(backbone):
    model = ContinualModel(backbone, SMALL)
    images, texts, labels = samples(["dog", "bus"], per_class=6, missing={0: "image", 7: "text"})
    train_task(model, "first", ["dog", "bus"], model.encode(images, texts), labels, FAST, progress=False)
    return model


@needs_gpu
def test_towers_on_the_gpu_give_the_features_of_the_cpu(tiny_config):
    on_cpu, on_gpu = load_backbone(tiny_config), load_backbone(tiny_config)
    place_towers(on_gpu, torch.device("cuda"))
    images, texts, _ = samples(["dog", "bus"], per_class=3)
    cpu_batch = ContinualModel(on_cpu, SMALL).encode(images, texts)
    gpu_batch = ContinualModel(on_gpu, SMALL).encode(images, texts)
    assert on_gpu.text.device.type == "cuda" and gpu_batch.q_text.device.type == "cpu"
    assert torch.allclose(cpu_batch.q_image, gpu_batch.q_image, atol=2e-3)  # TF32 convolutions
    assert torch.allclose(cpu_batch.q_text, gpu_batch.q_text, atol=2e-3)


@needs_gpu
def test_training_with_the_towers_on_the_gpu_learns_what_the_cpu_learns(tiny_config):
    on_cpu, on_gpu = load_backbone(tiny_config), load_backbone(tiny_config)
    place_towers(on_gpu, torch.device("cuda"))
    cpu_model, gpu_model = learn_first_task(on_cpu), learn_first_task(on_gpu)
    cpu_tensors, gpu_tensors = cpu_model.learner.export_tensors(), gpu_model.learner.export_tensors()
    assert cpu_tensors.keys() == gpu_tensors.keys()
    for name, tensor in gpu_tensors.items():
        assert tensor.device.type == "cpu", name
        # TF32 convolutions on the GPU: 24 Adam steps drift apart a little, not in direction
        drift = float((tensor - cpu_tensors[name]).norm() / cpu_tensors[name].norm().clamp_min(1e-12))
        assert drift < 0.05, (name, drift)
    images, texts, labels = samples(["dog", "bus"], per_class=6)
    predictions = gpu_model.predict(gpu_model.encode(images, texts), top_k=1)
    assert [p.labels[0] for p in predictions] == labels


@needs_gpu
def test_onnx_towers_run_on_the_cuda_provider_and_agree_with_the_cpu(tiny_config, tmp_path):
    assert cuda_available()
    config = tiny_config.model_copy(update={"onnx_cache_dir": tmp_path})
    on_cpu = load_backbone(config.model_copy(update={"device": "cpu"}), runtime="onnx")
    on_gpu = load_backbone(config.model_copy(update={"device": "cuda"}), runtime="onnx")
    assert on_gpu.image.providers[0] == CUDA and on_gpu.text.providers[0] == CUDA
    images, texts, _ = samples(["tree", "cake"], per_class=3)
    cpu_batch = ContinualModel(on_cpu, SMALL).encode(images, texts)
    gpu_batch = ContinualModel(on_gpu, SMALL).encode(images, texts)
    assert torch.allclose(cpu_batch.q_image, gpu_batch.q_image, atol=1e-3)
    assert torch.allclose(cpu_batch.q_text, gpu_batch.q_text, atol=1e-3)
