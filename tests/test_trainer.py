import torch

from model.config import LearnerConfig
from model.continual import ContinualModel
from tests.learning_data import samples
from updater.trainer import TrainerConfig, train_task

SMALL = LearnerConfig(components_per_task=3, prompt_length=2, memory_components_per_task=3, memory_prompt_length=2)
FAST = TrainerConfig(epochs=12, batch_size=8, learning_rate=0.02)


def learn(model, name, classes, missing=None):
    images, texts, labels = samples(classes, per_class=6, missing=missing)
    return train_task(model, name, classes, model.encode(images, texts), labels, FAST, progress=False)


def accuracy(model, classes, missing=None):
    images, texts, labels = samples(classes, per_class=6, missing=missing)
    predictions = model.predict(model.encode(images, texts), top_k=1)
    return sum(p.labels[0] == label for p, label in zip(predictions, labels, strict=True)) / len(labels)


def test_a_tiny_task_is_learned(tiny_backbone):
    model = ContinualModel(tiny_backbone, SMALL)
    result = learn(model, "first", ["dog", "bus"], missing={0: "image", 7: "text"})
    assert result.samples == 12 and result.steps == 12 * 2
    assert model.classes == ["dog", "bus"]
    assert accuracy(model, ["dog", "bus"]) == 1.0
    assert accuracy(model, ["dog", "bus"], missing={row: "image" for row in range(12)}) == 1.0


def test_old_rows_and_components_do_not_change_with_a_new_task(tiny_backbone):
    model = ContinualModel(tiny_backbone, SMALL)
    learn(model, "first", ["dog", "bus"])
    head_before = model.learner.head.weight().detach().clone()
    pool_before = model.learner.text_pool.stacked("components").detach().clone()
    learn(model, "second", ["tree", "cake"])
    assert model.learner.head.weight().shape[0] == 4
    assert torch.equal(model.learner.head.weight()[:2], head_before)
    assert torch.equal(model.learner.text_pool.stacked("components")[:3], pool_before)
    assert model.learner.text_pool.size == 6
    assert [task.name for task in model.tasks] == ["first", "second"]
    assert accuracy(model, ["dog", "bus", "tree", "cake"]) >= 0.5  # chance is 0.25


def test_training_is_deterministic(tiny_backbone):
    first, second = ContinualModel(tiny_backbone, SMALL), ContinualModel(tiny_backbone, SMALL)
    learn(first, "t", ["dog", "bus"], missing={3: "text"})
    learn(second, "t", ["dog", "bus"], missing={3: "text"})
    for name, tensor in first.learner.export_tensors().items():
        assert torch.equal(tensor, second.learner.export_tensors()[name]), name


def test_a_class_learned_already_is_refused(tiny_backbone):
    model = ContinualModel(tiny_backbone, SMALL)
    learn(model, "first", ["dog", "bus"])
    try:
        learn(model, "again", ["bus", "tree"])
    except ValueError as error:
        assert "['bus'] were learned already" in str(error)
    else:
        raise AssertionError("a class was learned twice")
