import json

import pytest
import torch

from model.config import LearnerConfig
from model.continual import ContinualModel
from model.published import POINTER_FILE, load_published, next_version, publish, published_version
from model.state import (
    StateError,
    StateMismatchError,
    latest_state,
    list_versions,
    load_state,
    save_state,
    version_folder,
)
from tests.learning_data import samples
from updater.trainer import TrainerConfig, train_task

SMALL = LearnerConfig(components_per_task=3, prompt_length=2, memory_components_per_task=3, memory_prompt_length=2)


@pytest.fixture(scope="module")
def trained(tiny_backbone):
    model = ContinualModel(tiny_backbone, SMALL)
    images, texts, labels = samples(["dog", "bus"], per_class=4)
    train_task(
        model,
        "first",
        ["dog", "bus"],
        model.encode(images, texts),
        labels,
        TrainerConfig(epochs=2),
        progress=False,
    )
    return model


def test_round_trip_predicts_the_same(tmp_path, trained, tiny_backbone):
    state = trained.save(tmp_path, notes={"why": "test"})
    assert state.version == 1 and list_versions(tmp_path) == [1]
    loaded = load_state(version_folder(tmp_path, 1))
    assert loaded.manifest.classes == ["dog", "bus"] and loaded.manifest.notes == {"why": "test"}
    restored = ContinualModel.from_state(tiny_backbone, loaded)
    images, texts, _ = samples(["dog", "bus"], per_class=2, missing={1: "text", 2: "image"})
    batch = trained.encode(images, texts)
    with torch.no_grad():
        torch.testing.assert_close(restored.forward(batch).logits, trained.forward(batch).logits)
    assert restored.version == 1


def test_versions_increase_and_never_overwrite(tmp_path, trained):
    trained.version = 0
    trained.save(tmp_path)
    trained.save(tmp_path)
    assert list_versions(tmp_path) == [1, 2]
    assert latest_state(tmp_path).version == 2
    trained.version = 1  # as after a rollback to version 1: the next version still goes above all others
    assert trained.save(tmp_path).version == 3 and published_version(tmp_path) == 3
    with pytest.raises(FileExistsError):
        save_state(
            tmp_path,
            trained.learner.export_tensors(),
            version=2,
            backbone_fingerprint="x",
            backbone={},
            learner=trained.config,
            tasks=trained.tasks,
        )


def test_publish_names_the_served_version(tmp_path, trained):
    trained.version = 0
    trained.save(tmp_path)
    trained.save(tmp_path, publish_it=False)
    assert published_version(tmp_path) == 1 and load_published(tmp_path).version == 1
    publish(tmp_path, 2)
    assert published_version(tmp_path) == 2
    with pytest.raises(StateError):
        publish(tmp_path, 7)
    assert published_version(tmp_path) == 2
    (tmp_path / POINTER_FILE).write_text("{not json")
    assert published_version(tmp_path) == 2  # an unreadable pointer falls back to the newest version
    (tmp_path / POINTER_FILE).unlink()
    assert published_version(tmp_path) == 2 and next_version(tmp_path) == 3


def test_other_towers_are_refused(tmp_path, trained, tiny_vit_backbone):
    trained.version = 0
    state = trained.save(tmp_path)
    with pytest.raises(StateMismatchError, match="backbone fingerprint"):
        ContinualModel.from_state(tiny_vit_backbone, state)


def test_wrong_shapes_are_refused(tmp_path, trained, tiny_backbone):
    trained.version = 0
    state = trained.save(tmp_path)
    state.tensors["head.weight"] = state.tensors["head.weight"][:1]
    with pytest.raises(StateMismatchError, match=r"head.weight has shape \(1, 1296\), expected \(2, 1296\)"):
        ContinualModel.from_state(tiny_backbone, state)


def test_corrupted_and_truncated_files_are_refused(tmp_path, trained, caplog):
    trained.version = 0
    trained.save(tmp_path)
    trained.save(tmp_path)
    tensors = version_folder(tmp_path, 2) / "state.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:100])
    with pytest.raises(StateError, match="does not match the checksum"):
        load_state(version_folder(tmp_path, 2))
    assert latest_state(tmp_path).version == 1
    assert "skipping PromptState version 2" in caplog.text
    (version_folder(tmp_path, 1) / "manifest.json").write_text("{not json")
    with pytest.raises(StateError, match="unreadable manifest.json"):
        load_state(version_folder(tmp_path, 1))
    assert latest_state(tmp_path) is None


def test_staging_folders_are_not_versions(tmp_path):
    (tmp_path / ".v000003-abc").mkdir()
    assert list_versions(tmp_path) == []


def test_a_manifest_from_before_growth_strategies_is_refused_with_the_reason(tmp_path, trained, caplog):
    state = trained.save(tmp_path)
    manifest_path = version_folder(tmp_path, state.version) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["learner"]["strategy"], manifest["learner"]["null_space_energy"]
    manifest["learner"].update({"prompt_tasks": 1, "memory_every_task": False})  # as an older one wrote it
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(StateError, match="before growth strategies and the per-half statistics"):
        load_state(version_folder(tmp_path, state.version))
    assert latest_state(tmp_path) is None and "train the tasks again" in caplog.text


def test_a_manifest_naming_the_discriminant_as_its_classifier_still_loads(tmp_path, trained):
    state = trained.save(tmp_path)
    manifest_path = version_folder(tmp_path, state.version) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["learner"].update(  # as versions before these were implied wrote them
        {"classifier": "lda", "prompts": True, "lda_statistics": "pooled_with_hidden"}
    )
    manifest_path.write_text(json.dumps(manifest))
    assert load_state(version_folder(tmp_path, state.version)).manifest.learner == state.manifest.learner
    manifest["learner"]["classifier"] = "cosine"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(StateError, match="learner.classifier: 'cosine' is no longer served .only 'lda' is"):
        load_state(version_folder(tmp_path, state.version))
