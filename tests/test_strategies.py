import typing

import pytest
import torch

from model.backbone import load_backbone
from model.batch import with_halves_hidden
from model.config import LearnerConfig
from model.continual import ContinualModel
from model.modality import Modality
from model.published import load_published
from model.strategies import STRATEGIES
from model.strategies.fwd_prompt import residual_projector
from model.strategies.modal_prompt import ModalPrompt
from model.strategies.moincl import SoftTargets
from tests.learning_data import samples
from updater.trainer import TrainerConfig, train_task

SMALL = LearnerConfig(components_per_task=3, prompt_length=2, memory_components_per_task=3, memory_prompt_length=2)
FAST = TrainerConfig(epochs=6, batch_size=8, learning_rate=0.02)
TASKS = (("first", ["dog", "bus"]), ("second", ["tree", "cake"]))
MISSING = {0: "image", 7: "text"}


def learn(model, name, classes):
    images, texts, labels = samples(classes, per_class=6, missing=MISSING)
    batch = model.encode(images, texts)
    train_task(model, name, classes, batch, labels, FAST, progress=False)
    return batch


def test_every_strategy_the_config_names_is_registered():
    assert set(STRATEGIES) == set(typing.get_args(LearnerConfig.model_fields["strategy"].annotation))


def test_the_residual_projector_keeps_out_the_directions_holding_the_energy():
    gram = torch.diag(torch.tensor([4.0, 1.0, 0.0], dtype=torch.float64))
    projector, rank, left = residual_projector(gram, 0.8)
    torch.testing.assert_close(projector, torch.diag(torch.tensor([0.0, 1.0, 1.0])))
    assert rank == 1 and left == pytest.approx(0.2)
    projector, rank, left = residual_projector(gram, 1.0)
    torch.testing.assert_close(projector, torch.diag(torch.tensor([0.0, 0.0, 1.0])))
    assert rank == 2 and left == pytest.approx(0.0)
    projector, rank, _ = residual_projector(torch.zeros(3, 3), 0.9)  # nothing seen yet: keys go anywhere
    assert rank == 0 and torch.equal(projector, torch.eye(3))


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_pools_grow_as_the_strategy_says(tiny_backbone, strategy):
    components = 3 if strategy == "first_task" else 6  # every other strategy grows every pool on every task
    model = ContinualModel(tiny_backbone, SMALL.model_copy(update={"strategy": strategy}))
    for name, classes in TASKS:
        learn(model, name, classes)
    for pool in ("image_pool", "text_pool", "image_memory", "text_memory"):
        assert getattr(model.learner, pool).size == components, pool
    shapes = {name: tuple(tensor.shape) for name, tensor in model.learner.export_tensors().items()}
    assert shapes == model.learner.expected_shapes(tasks=2, classes=4)


def test_fwd_prompt_leaves_earlier_rows_features_unchanged(tiny_backbone):
    model = ContinualModel(
        tiny_backbone, SMALL.model_copy(update={"strategy": "fwd_prompt", "null_space_energy": 1.0})
    )
    first = learn(model, *TASKS[0])
    _, seen = with_halves_hidden(first)  # the first task's rows, complete ones also with a half hidden
    with torch.no_grad():
        before = model.forward(seen).fused  # (M, F)
    learn(model, *TASKS[1])
    with torch.no_grad():
        after = model.forward(seen)
    torch.testing.assert_close(after.fused, before, atol=1e-5, rtol=0)
    new_keys = model.learner.image_pool.frozen_keys[3:]  # (3, Di): the second task's
    assert float(new_keys.norm(dim=-1).min()) > 0.5  # they live, only out of the first task's way
    with torch.no_grad():
        weights = model.learner.image_pool.weights(after.q_image)[:, 3:]  # (M, 3)
    assert float(weights.abs().max()) < 1e-5
    gram = model.learner.strategy.grams
    assert all(float(torch.trace(matrix)) > 0 for matrix in gram.values())


def test_fwd_prompt_starts_each_task_from_the_model_as_it_was_and_trains_from_there(tiny_backbone):
    model = ContinualModel(tiny_backbone, SMALL.model_copy(update={"strategy": "fwd_prompt"}))
    learn(model, *TASKS[0])
    images, texts, _ = samples(TASKS[1][1], per_class=6, missing=MISSING)
    batch = model.encode(images, texts)
    with torch.no_grad():
        before = model.forward(batch).fused  # (N, F) the second task's rows before anything grows
    model.learner.grow(torch.randn(2, before.shape[1]), torch.Generator().manual_seed(0), tasks_before=1)
    with torch.no_grad():
        grown = model.forward(batch).fused
    torch.testing.assert_close(grown, before, atol=1e-6, rtol=0)
    for pool in ("image_pool", "text_pool", "image_memory", "text_memory"):
        assert getattr(model.learner, pool).new_components.eq(0).all(), pool

    trained = ContinualModel(tiny_backbone, SMALL.model_copy(update={"strategy": "fwd_prompt"}))
    learn(trained, *TASKS[0])
    learn(trained, *TASKS[1])
    assert float(trained.learner.image_pool.frozen_components[3:].abs().max()) > 1e-3  # the task learned
    with torch.no_grad():
        moved = trained.forward(batch).fused
    assert float((moved - before).abs().max()) > 1e-3  # and moved its own rows' features


def test_fwd_prompt_trains_keys_inside_the_residual_space_of_earlier_queries(tiny_backbone):
    model = ContinualModel(tiny_backbone, SMALL.model_copy(update={"strategy": "fwd_prompt"}))
    learn(model, *TASKS[0])
    strategy = model.learner.strategy
    projectors = {
        modality: residual_projector(gram, SMALL.null_space_energy)[0] for modality, gram in strategy.grams.items()
    }
    first_keys = model.learner.image_pool.frozen_keys.clone()  # (3, Di)
    learn(model, *TASKS[1])
    pool = model.learner.image_pool
    keys = pool.frozen_keys[3:]  # (3, Di), trained for the second task
    image = next(modality for modality in projectors if modality.label == "image")
    torch.testing.assert_close(keys @ projectors[image], keys, atol=1e-5, rtol=0)
    assert not torch.allclose(first_keys @ projectors[image], first_keys, atol=1e-2)  # the first task's do not
    assert pool.frozen_attention[3:].eq(1).all() and not pool.frozen_attention[:3].eq(1).all()


SERVABLE = [
    (strategy, kind)
    for strategy in sorted(STRATEGIES)
    for kind in ("efficientnet", "vit")
    if (strategy, kind) != ("exemplar_replay", "vit")  # refused, as the test below checks
]


@pytest.mark.parametrize(("strategy", "image_kind"), SERVABLE)
def test_a_torch_trained_state_of_each_strategy_and_tower_kind_serves_on_onnx(
    tiny_config, tiny_vit_config, tmp_path, strategy, image_kind
):
    config = tiny_vit_config if image_kind == "vit" else tiny_config
    backbone = load_backbone(config)
    model = ContinualModel(backbone, SMALL.model_copy(update={"strategy": strategy}))
    for name, classes in TASKS:
        learn(model, name, classes)
    model.save(tmp_path)
    served = ContinualModel.from_state(load_backbone(config, runtime="onnx"), load_published(tmp_path))
    restored = ContinualModel.from_state(backbone, load_published(tmp_path))
    images, texts, _ = samples(["dog", "cake"], per_class=3, missing={1: "image", 4: "text"})
    with torch.no_grad():
        trained_logits = model.forward(model.encode(images, texts)).logits
        torch.testing.assert_close(restored.forward(restored.encode(images, texts)).logits, trained_logits)
        served_logits = served.forward(served.encode(images, texts)).logits
    torch.testing.assert_close(served_logits, trained_logits, atol=1e-3, rtol=1e-3)
    assert served.learner.strategy.export_tensors().keys() == model.learner.strategy.export_tensors().keys()


def test_modal_prompt_picks_the_tasks_whose_prototypes_are_nearest():
    config = SMALL.model_copy(update={"strategy": "modal_prompt", "route_top_k": 1})
    strategy = ModalPrompt(config, {Modality.IMAGE: 2, Modality.TEXT: 2})
    strategy.add_prototypes(
        {Modality.IMAGE: torch.tensor([[2.0, 0.0]]), Modality.TEXT: torch.tensor([[0.0, 3.0]])}
    )
    strategy.add_prototypes(
        {Modality.IMAGE: torch.tensor([[0.0, 1.0]]), Modality.TEXT: torch.tensor([[1.0, 1.0]])}
    )
    image = torch.tensor([[1.0, 0.2], [0.1, 1.0], [1.0, 1.0]])  # (3, 2)
    text = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])  # (3, 2)
    # both modalities: 0.5 cos(image) + 0.5 cos(text); the third row: 0.5 (0.71 + 0) against 0.5 (0.71 + 0.71)
    both = strategy.task_choice({Modality.IMAGE: image, Modality.TEXT: text})
    assert both.tolist() == [[True, False], [False, True], [False, True]]
    # text alone: the first row's text is the first task's, the others lean to the second's
    assert strategy.task_choice({Modality.TEXT: text}).tolist() == [[True, False], [False, True], [False, True]]
    two = ModalPrompt(config.model_copy(update={"route_top_k": 2}), strategy.query_dims)
    two.prototypes = strategy.prototypes
    assert two.task_choice({Modality.IMAGE: image}).all()


def test_modal_prompt_rows_use_only_their_tasks_components_and_batch_as_one_by_one(tiny_backbone):
    model = ContinualModel(tiny_backbone, SMALL.model_copy(update={"strategy": "modal_prompt"}))
    for name, classes in TASKS:
        learn(model, name, classes)
    images, texts, _ = samples(["dog", "cake", "bus"], per_class=2, missing={1: "image", 2: "text", 5: "image"})
    batch = model.encode(images, texts)
    learner = model.learner
    dog = learner._components(learner.image_memory, {Modality.TEXT: batch.q_text[[1]]})  # (1, 6): a dog's text
    cake = learner._components(learner.image_memory, {Modality.TEXT: batch.q_text[[3]]})  # a cake's text
    assert dog.tolist() == [[True] * 3 + [False] * 3]  # the first task's three components only
    assert cake.tolist() == [[False] * 3 + [True] * 3]  # the second task's
    with torch.no_grad():
        batched = model.forward(batch)
        looped = [model.forward(batch.select(torch.tensor([row]))) for row in range(len(batch))]
    torch.testing.assert_close(batched.logits, torch.cat([out.logits for out in looped]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched.fused, torch.cat([out.fused for out in looped]), atol=1e-5, rtol=1e-5)


def test_soft_targets_pick_each_rows_view_and_vanish_on_agreement():
    scores = torch.tensor(
        [
            [[2.0, 0.0], [0.0, 2.0]],  # as is
            [[0.0, 2.0], [2.0, 0.0]],  # image hidden
            [[1.0, 1.0], [1.0, 1.0]],  # text hidden
        ]
    )  # (3 views, 2 rows, 2 old classes)
    targets = SoftTargets(scores, temperature=2.0, weight=3.0)
    rows, kept = torch.tensor([1, 0]), torch.tensor([False, False])
    assert float(targets.loss(torch.tensor([[0.0, 2.0], [2.0, 0.0]]), rows, kept, kept)) == pytest.approx(0.0)
    lose_image, lose_text = torch.tensor([True, False]), torch.tensor([False, True])
    assert float(targets.loss(torch.tensor([[2.0, 0.0], [1.0, 1.0]]), rows, lose_image, lose_text)) == 0.0
    # one row off: KL(p || q) with p = softmax([0, 1]), q = softmax([1, 0]) at T = 2, times T^2 * weight / 2 rows
    p = torch.tensor([0.0, 1.0]).softmax(-1)
    expected = 3.0 * 4.0 * float((p * (p.log() - p.flip(0).log())).sum()) / 2
    got = targets.loss(torch.tensor([[2.0, 0.0], [2.0, 0.0]]), torch.tensor([0, 1]), kept, kept)
    assert float(got) == pytest.approx(expected)


def old_class_drift(tiny_backbone, weight):
    """How far task 2's training moves the head's old-class scores on task 2's rows (KL, as distilled)."""
    config = SMALL.model_copy(update={"strategy": "moincl", "distill_weight": weight})
    model = ContinualModel(tiny_backbone, config)
    learn(model, *TASKS[0])
    assert model.learner.strategy.soft_targets(ContinualModel(tiny_backbone, config).learner, None) is None
    images, texts, labels = samples(TASKS[1][1], per_class=6, missing=MISSING)
    batch = model.encode(images, texts)
    before = model.learner.strategy.soft_targets(model.learner, batch)
    trainer = TrainerConfig(epochs=20, batch_size=12, learning_rate=0.002)
    train_task(model, TASKS[1][0], TASKS[1][1], batch, labels, trainer, progress=False)
    with torch.no_grad():
        after = model.forward(batch).head_logits[:, :2]  # (12, 2) old classes
    kept = torch.zeros(12, dtype=torch.bool)
    return float(SoftTargets(before.scores, 1.0, 1.0).loss(after, torch.arange(12), kept, kept))


def test_moincl_distillation_keeps_old_class_scores_on_new_rows(tiny_backbone):
    assert old_class_drift(tiny_backbone, 100.0) < 0.1 * old_class_drift(tiny_backbone, 0.0)


def replay(budget: int) -> LearnerConfig:
    return SMALL.model_copy(update={"strategy": "exemplar_replay", "exemplar_budget_bytes": budget})


def test_the_exemplar_buffer_never_exceeds_its_budget_and_is_shared_by_every_class(tiny_backbone):
    probe = ContinualModel(tiny_backbone, replay(0)).learner.strategy
    slot, length = probe.slot_bytes, probe.text_length
    # both queries in half precision, int32 token ids, a bool mask, an int64 label, two presence flags
    assert slot == 2 * sum(probe.query_dims.values()) + 4 * length + length + 8 + 2
    model = ContinualModel(tiny_backbone, replay(9 * slot + slot // 2))  # room for 9 exemplars
    strategy = model.learner.strategy
    assert strategy.capacity == 9
    learn(model, *TASKS[0])
    assert strategy.buffer["labels"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, -1]  # 4 each, complete rows first
    kept = strategy.buffer["has_image"] & strategy.buffer["has_text"]
    assert kept[:8].all()  # row 0 misses its image, row 7 its text: neither was chosen
    first_four = strategy.buffer["q_text"][:4].clone()
    learn(model, *TASKS[1])
    assert strategy.buffer["labels"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, -1]  # 9 // 4 each
    assert torch.equal(strategy.buffer["q_text"][:2], first_four[:2])  # an old class keeps its first exemplars
    stored = sum(tensor.nbytes for tensor in model.learner.strategy.export_tensors().values())
    assert stored <= 9 * slot + slot // 2


def test_the_exemplar_buffer_survives_a_restart(tiny_backbone, tmp_path):
    model = ContinualModel(tiny_backbone, replay(100_000))
    learn(model, *TASKS[0])
    model.save(tmp_path)
    restored = ContinualModel.from_state(tiny_backbone, load_published(tmp_path))
    assert model.learner.strategy.buffer.keys() == restored.learner.strategy.buffer.keys() != set()
    for name, tensor in model.learner.strategy.buffer.items():
        assert torch.equal(restored.learner.strategy.buffer[name], tensor), name
        assert restored.learner.strategy.buffer[name].dtype == tensor.dtype, name
    assert int(restored.learner.strategy.used.sum()) == 12
    learn(model, *TASKS[1])
    learn(restored, *TASKS[1])
    for name, tensor in model.learner.export_tensors().items():
        torch.testing.assert_close(restored.learner.export_tensors()[name], tensor, msg=name)


def test_old_class_means_follow_their_exemplars_drift(tiny_backbone):
    model = ContinualModel(tiny_backbone, replay(100_000))  # room for every row of a task
    first = learn(model, *TASKS[0])
    rows, seen = with_halves_hidden(first)  # (M,): how the first task's statistics were taken
    targets = torch.tensor([0] * 6 + [1] * 6)[rows]
    learn(model, *TASKS[1])
    with torch.no_grad():
        now = model.forward(seen).fused  # (M, F) under the second task's components
    drifted = torch.stack([now[targets == label].mean(0) for label in (0, 1)])  # (2, F)
    means = model.learner.lda.full.means[:2]
    torch.testing.assert_close(means, drifted, atol=2e-3, rtol=0)  # exemplars' queries are half precision
    unreplayed = ContinualModel(tiny_backbone, replay(0))
    learn(unreplayed, *TASKS[0])
    learn(unreplayed, *TASKS[1])
    assert float((unreplayed.learner.lda.full.means[:2] - drifted).abs().max()) > 1e-2  # they did drift


def test_exemplar_replay_refuses_a_prefix_prompted_image_tower(tiny_vit_backbone):
    with pytest.raises(ValueError, match="exemplar_replay keeps frozen image features"):
        ContinualModel(tiny_vit_backbone, replay(100_000))
