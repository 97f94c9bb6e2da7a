import pytest
import torch

from model.batch import with_halves_hidden
from model.calibration import (
    KNOWN_QUANTILE,
    MIN_SCALE_ROWS,
    NAMES,
    RANK_KNOTS,
    Calibration,
    fit_temperature,
    per_row,
    rank_among,
)
from model.config import LearnerConfig
from model.continual import ContinualModel
from model.lda_classifier import LdaClassifier
from model.marginal_lda import MarginalLda
from model.state import load_state, version_folder
from tests.learning_data import samples
from updater.trainer import TrainerConfig, train_task

SMALL = LearnerConfig(components_per_task=3, prompt_length=2, memory_components_per_task=3, memory_prompt_length=2)


def drawn_targets(logits: torch.Tensor, temperature: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.multinomial((logits / temperature).softmax(-1), 1, generator=generator).squeeze(-1)


def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with():
    logits = 40 * torch.randn(4000, 6, generator=torch.Generator().manual_seed(0))  # (N, C)
    for truth in (0.5, 12.0, 300.0):
        fitted = fit_temperature(logits, drawn_targets(logits, truth, seed=1))
        assert fitted == pytest.approx(truth, rel=0.1)


def test_each_pattern_gets_its_own_temperature_and_one_without_rows_the_pooled_one():
    generator = torch.Generator().manual_seed(2)
    logits = 10 * torch.randn(600, 4, generator=generator)  # (N, C)
    has_image = torch.ones(600, dtype=torch.bool)  # complete, then image only; no row has text only
    has_text = torch.arange(600) < 300
    targets = torch.where(has_text, drawn_targets(logits, 2.0, seed=3), drawn_targets(logits, 20.0, seed=4))
    calibration = Calibration()
    calibration.fit(logits, torch.rand(600, generator=generator), targets, has_image, has_text)
    complete, image_only, text_only = calibration.temperature.tolist()
    assert 1.5 < complete < 3.0 and 12.0 < image_only < 22.0  # each near its own, drawn towards the pooled one
    assert text_only == pytest.approx(fit_temperature(logits, targets))
    assert calibration.knots[:2].isfinite().all() and calibration.knots[2].isinf().all()


def test_a_few_rows_pull_their_temperature_only_part_of_the_way_from_the_prior():
    logits = 30 * torch.randn(3, 5, generator=torch.Generator().manual_seed(8))
    targets = logits.argmax(-1)  # all right: alone, they would call for the coldest temperature searched
    alone, drawn = fit_temperature(logits, targets), fit_temperature(logits, targets, prior=40.0)
    assert alone < drawn < 40.0


def test_a_pattern_too_rare_to_rank_has_every_answer_known():
    has_image = torch.tensor([True] * 40 + [False] * (MIN_SCALE_ROWS - 1))
    has_text = torch.ones(len(has_image), dtype=torch.bool)
    distances = torch.linspace(1, 2, len(has_image))
    calibration = Calibration()
    calibration.fit(
        torch.randn(len(has_image), 3),
        distances,
        torch.zeros(len(has_image), dtype=torch.long),
        has_image,
        has_text,
    )
    assert calibration.knots[0].isfinite().all() and calibration.knots[2].isinf().all()
    unsure = torch.full((1, 3), 1 / 3)  # the most doubtful answer there is
    assert not calibration.novelty(torch.tensor([1e9]), unsure, torch.tensor([False]), torch.tensor([True])) > 1
    assert calibration.novelty(torch.tensor([1e9]), unsure, torch.tensor([True]), torch.tensor([True])) > 1


def test_a_value_ranks_by_the_share_of_held_back_values_below_it():
    knots = torch.tensor([[0.0, 1.0, 2.0, 4.0, 8.0]] * 6 + [[float("inf")] * 5])  # (B, K)
    values = torch.tensor([-1.0, 0.0, 1.5, 3.0, 8.0, 100.0, 5.0])
    assert rank_among(values, knots).tolist() == pytest.approx([0.0, 0.0, 0.375, 0.625, 1.0, 1.0, 0.0])


def held_back_rows(seed: int, count: int = 400):
    """Held-back rows of two patterns whose distances are on scales 30 and 4, and calibrated logits."""
    generator = torch.Generator().manual_seed(seed)
    has_image, has_text = torch.rand(count, generator=generator) < 0.7, torch.ones(count, dtype=torch.bool)
    spread = torch.where(has_image, 30.0, 4.0)  # (N,) each pattern's distances on their own scale
    distances = spread * (torch.randn(count, 20, generator=generator) ** 2).sum(-1)  # (N,) like chi-square
    logits = 3 * torch.randn(count, 3, generator=generator)  # (N, C)
    return logits, distances, drawn_targets(logits, 1.0, seed), has_image, has_text


def test_the_cut_lets_the_known_share_of_held_back_rows_through_in_every_pattern():
    logits, distances, targets, has_image, has_text = held_back_rows(5)
    calibration = Calibration()
    calibration.fit(logits, distances, targets, has_image, has_text)
    probabilities = calibration.probabilities(logits, has_image, has_text)
    known = calibration.novelty(distances, probabilities, has_image, has_text) <= 1  # (N,)
    assert known.float().mean() >= KNOWN_QUANTILE
    for rows in (has_image & has_text, ~has_image & has_text):
        assert known[rows].float().mean() == pytest.approx(KNOWN_QUANTILE, abs=0.04)
    image, text = torch.tensor([True, False]), torch.tensor([True, True])  # a complete row, a text-only one
    sure, unsure = torch.tensor([[0.98, 0.01, 0.01]] * 2), torch.full((2, 3), 1 / 3)
    assert (calibration.novelty(torch.tensor([1e4, 1e4]), unsure, image, text) > 1).all()
    assert (calibration.novelty(torch.tensor([1.0, 1.0]), sure, image, text) <= 1).all()


def test_each_pattern_is_ranked_on_its_own_scale():
    logits, distances, targets, has_image, has_text = held_back_rows(9)
    calibration = Calibration()
    calibration.fit(logits, distances, targets, has_image, has_text)
    both, one = torch.tensor([True, False]), torch.tensor([True, True])
    medians = torch.tensor([30.0, 4.0]) * 19.34  # the median of a chi-square with 20 degrees, on each scale
    ranks = calibration.ranks(medians, torch.zeros(2), both, one)  # the surest doubt ranks 0
    assert ranks.tolist() == pytest.approx([0.5, 0.5], abs=0.08)
    swapped = calibration.ranks(medians.flip(0), torch.zeros(2), both, one)  # each on the other's scale
    assert swapped[0] < 0.05 and swapped[1] > 0.95


def test_a_doubtful_answer_ranks_above_a_sure_one_at_the_same_distance():
    logits, distances, targets, has_image, has_text = held_back_rows(11)
    calibration = Calibration()
    calibration.fit(logits, distances, targets, has_image, has_text)
    complete = torch.tensor([True, True])
    probabilities = torch.tensor([[0.99, 0.005, 0.005], [0.4, 0.35, 0.25]])
    novelty = calibration.novelty(distances.median().repeat(2), probabilities, complete, complete)
    assert novelty[1] > novelty[0]


def test_per_row_picks_each_rows_pattern_and_keeps_an_open_threshold_open():
    values = torch.tensor([1.0, float("inf"), 3.0])  # complete, image only, text only
    has_image, has_text = torch.tensor([True, True, False]), torch.tensor([True, False, True])
    assert per_row(values, has_image, has_text).tolist() == [1.0, float("inf"), 3.0]


def test_distance_is_the_mahalanobis_distance_to_the_nearest_class():
    generator = torch.Generator().manual_seed(6)
    features, targets = torch.randn(60, 5, generator=generator), torch.arange(60) % 3
    features[targets == 1] += 4
    lda = LdaClassifier(5, shrinkage=0.1)
    lda.add_classes(features, targets, 3)
    points = torch.randn(7, 5, generator=generator) * 3
    precision = torch.linalg.inv(lda.covariance()).float()
    gaps = points.unsqueeze(1) - lda.means.unsqueeze(0)  # (B, C, F)
    expected = torch.einsum("bcf,fg,bcg->bc", gaps, precision, gaps).min(-1).values  # (B,)
    torch.testing.assert_close(lda.distance(points), expected, rtol=1e-4, atol=1e-3)


def test_a_row_missing_a_modality_is_measured_on_its_present_half():
    generator = torch.Generator().manual_seed(7)
    features, targets = torch.randn(40, 6, generator=generator), torch.arange(40) % 2
    every = torch.ones(40, dtype=torch.bool)
    lda = MarginalLda(4, 2, shrinkage=0.1)
    lda.add_classes(features, targets, 2, every, every, halves_from=every)
    points = torch.randn(3, 6, generator=generator)
    has_image, has_text = torch.tensor([True, True, False]), torch.tensor([True, False, True])
    distances = lda.distance(points, has_image, has_text)
    assert distances.tolist() == pytest.approx(
        [
            float(lda.full.distance(points[:1])),
            float(lda.image.distance(points[1:2, :4])),
            float(lda.text.distance(points[2:, 4:])),
        ]
    )


@pytest.fixture(scope="module")
def calibrated(tiny_backbone):
    """A model trained on three classes, then calibrated on as many samples held back."""
    model = ContinualModel(tiny_backbone, SMALL)
    images, texts, labels = samples(["dog", "bus", "tree"], per_class=24)
    train_rows, held_rows = range(0, len(labels), 2), range(1, len(labels), 2)
    batch = model.encode(images, texts)
    pick = torch.tensor(list(train_rows))
    train_task(
        model,
        "first",
        ["dog", "bus", "tree"],
        batch.select(pick),
        [labels[i] for i in train_rows],
        TrainerConfig(epochs=2),
        progress=False,
    )
    held = batch.select(torch.tensor(list(held_rows)))
    with torch.no_grad():
        raw = model.forward(held).logits
    model.calibrate(held, [labels[i] for i in held_rows])
    return model, held, [labels[i] for i in held_rows], raw


def test_calibration_rescales_scores_without_changing_answers(calibrated):
    model, held, _, raw = calibrated
    predictions = model.predict(held, top_k=3)
    assert [p.labels[0] for p in predictions] == [model.classes[i] for i in raw.argmax(-1).tolist()]
    assert (model.learner.calibration.temperature != 1).all()
    expected = (raw / model.learner.calibration.temperature[0]).softmax(-1).max(-1).values  # every row complete
    assert [p.scores[0] for p in predictions] == pytest.approx(expected.tolist(), rel=1e-5)
    _, views = with_halves_hidden(held)  # what the cut was set on: each row as it came and with a half hidden
    known = [p.known for p in model.predict(views, top_k=1)]
    assert sum(known) / len(known) >= KNOWN_QUANTILE


def test_calibration_needs_learned_classes(calibrated):
    model, held, labels, _ = calibrated
    with pytest.raises(ValueError, match=r"classes not learned: \['moon'\]"):
        model.calibrate(held, ["moon"] + labels[1:])


def test_calibration_is_saved_and_a_version_without_it_is_served_uncalibrated(calibrated, tiny_backbone, tmp_path):
    model, held, _, raw = calibrated
    state = model.save(tmp_path)
    restored = ContinualModel.from_state(tiny_backbone, load_state(version_folder(tmp_path, state.version)))
    torch.testing.assert_close(restored.learner.calibration.temperature, model.learner.calibration.temperature)
    assert [p.scores for p in restored.predict(held, 2)] == [p.scores for p in model.predict(held, 2)]
    older = load_state(version_folder(tmp_path, state.version))
    for name in NAMES:
        del older.tensors[name]
    uncalibrated = ContinualModel.from_state(tiny_backbone, older).predict(held, 1)
    assert all(p.known for p in uncalibrated)
    assert [p.scores[0] for p in uncalibrated] == pytest.approx(raw.softmax(-1).max(-1).values.tolist())


def test_a_version_with_the_earlier_distance_threshold_keeps_its_temperatures(calibrated, tiny_backbone, tmp_path):
    model, held, _, _ = calibrated
    state = model.save(tmp_path)
    older = load_state(version_folder(tmp_path, state.version))
    for name in NAMES[1:]:  # the quantiles and the cut came later
        del older.tensors[name]
    older.tensors["calibration.threshold"] = torch.full((3,), 1e-9)  # would have called every row unknown
    restored = ContinualModel.from_state(tiny_backbone, older)
    assert restored.learner.calibration.knots.shape == (3, 2, RANK_KNOTS)
    answers = restored.predict(held, 2)
    assert all(p.known for p in answers)
    assert [p.scores for p in answers] == [p.scores for p in model.predict(held, 2)]
