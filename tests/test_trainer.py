import torch

from model.config import LearnerConfig
from model.continual import ContinualModel
from tests.learning_data import samples
from updater.trainer import TrainerConfig, train_task

SMALL = LearnerConfig(components_per_task=3, prompt_length=2, memory_components_per_task=3, memory_prompt_length=2)
FAST = TrainerConfig(epochs=12, batch_size=8, learning_rate=0.02)


def learn(model, name, classes, missing=None, config=FAST):
    images, texts, labels = samples(classes, per_class=6, missing=missing)
    return train_task(model, name, classes, model.encode(images, texts), labels, config, progress=False)


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
    model = ContinualModel(tiny_backbone, SMALL.model_copy(update={"strategy": "fwd_prompt"}))
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


def test_tasks_after_the_first_add_rows_only_with_first_task(tiny_backbone):
    model = ContinualModel(tiny_backbone, SMALL.model_copy(update={"strategy": "first_task"}))
    learn(model, "first", ["dog", "bus"])
    before = model.learner.export_tensors()
    result = learn(model, "second", ["tree", "cake"])
    after = model.learner.export_tensors()
    assert result.steps == 0  # only the new head rows could train, and the LDA ranks predictions
    assert model.learner.text_pool.size == 3 and model.learner.image_memory.size == 3
    for name, tensor in before.items():
        if name != "head.weight" and not name.startswith("lda"):
            assert torch.equal(after[name], tensor), name
    assert torch.equal(after["head.weight"][:2], before["head.weight"])
    assert torch.equal(after["lda.means"][:2], before["lda.means"])  # (class, feature)
    expected = model.learner.expected_shapes(tasks=2, classes=4)
    assert {name: tuple(tensor.shape) for name, tensor in after.items()} == expected
    assert accuracy(model, ["dog", "bus", "tree", "cake"]) >= 0.5  # chance is 0.25


def test_each_task_adds_its_class_statistics_to_the_lda(tiny_backbone):
    model = ContinualModel(tiny_backbone, SMALL)
    images, texts, labels = samples(["dog", "bus"], per_class=6)
    train_task(model, "first", ["dog", "bus"], model.encode(images, texts), labels, FAST, False, hide_halves=False)
    images, texts, labels = samples(["tree", "cake"], per_class=6, missing={0: "image", 7: "text"})
    batch = model.encode(images, texts)
    train_task(model, "second", ["tree", "cake"], batch, labels, FAST, progress=False, hide_halves=False)
    with torch.no_grad():
        fused = model.forward(batch).fused  # (12, F), every row, missing ones reconstructed
    lda = model.learner.lda.full  # over whole features
    assert lda.num_classes == 4 and float(lda.count) == 24
    torch.testing.assert_close(lda.means[2:], torch.stack([fused[:6].mean(0), fused[6:].mean(0)]))
    predictions = model.predict(batch, top_k=1)
    assert len(predictions) == 12 and predictions[0].labels[0] in model.classes


def test_pooled_statistics_with_hidden_rows_take_each_complete_row_three_times(tiny_backbone):
    model = ContinualModel(tiny_backbone, SMALL)  # pooled, with hidden rows: the default
    images, texts, labels = samples(["tree", "cake"], per_class=6, missing={0: "image", 1: "image", 7: "text"})
    batch = model.encode(images, texts)
    train_task(model, "first", ["tree", "cake"], batch, labels, FAST, progress=False)
    lda = model.learner.lda.full  # over whole features
    assert float(lda.count) == 12 + 2 * 9  # every row, and the 9 complete ones twice more
    complete = batch.has_image & batch.has_text  # (12,)
    no_image = batch.with_presence(batch.has_image & ~complete, batch.has_text)
    no_text = batch.with_presence(batch.has_image, batch.has_text & ~complete)
    with torch.no_grad():
        views = [model.forward(view).fused for view in (batch, no_image, no_text)]  # 3 x (12, F)
    fused = torch.cat([views[0], views[1][complete], views[2][complete]])  # (30, F)
    tree = torch.arange(12) < 6
    is_tree = torch.cat([tree, tree[complete], tree[complete]])  # (30,)
    torch.testing.assert_close(lda.means[0], fused[is_tree].mean(0))
    torch.testing.assert_close(lda.means[1], fused[~is_tree].mean(0))
    assert not torch.allclose(lda.means[0], views[0][tree].mean(0))  # not the rows as they came
