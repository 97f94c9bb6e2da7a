import math

import pytest
import torch

from model.calibration import KNOWN_QUANTILE, MIN_SCALE_ROWS, Calibration, fit_temperature, per_row
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
    assert calibration.threshold[:2].isfinite().all() and calibration.threshold[2].isinf()


def test_a_few_rows_pull_their_temperature_only_part_of_the_way_from_the_prior():
    logits = 30 * torch.randn(3, 5, generator=torch.Generator().manual_seed(8))
    targets = logits.argmax(-1)  # all right: alone, they would call for the coldest temperature searched
    alone, drawn = fit_temperature(logits, targets), fit_temperature(logits, targets, prior=40.0)
    assert alone < drawn < 40.0


def test_a_pattern_too_rare_to_scale_has_no_threshold():
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
    assert math.isfinite(calibration.threshold[0]) and math.isinf(calibration.threshold[2])
    assert not calibration.novelty(torch.tensor([1e9]), torch.tensor([False]), torch.tensor([True])) > 1


def test_thresholds_let_the_known_share_of_held_back_rows_through():
    generator = torch.Generator().manual_seed(5)
    has_image, has_text = torch.rand(400, generator=generator) < 0.7, torch.ones(400, dtype=torch.bool)
    spread = torch.where(has_image, 30.0, 4.0)  # (N,) each pattern's distances on their own scale
    distances = spread * (torch.randn(400, 20, generator=generator) ** 2).sum(-1)  # (N,) like chi-square
    calibration = Calibration()
    calibration.fit(torch.randn(400, 3), distances, torch.zeros(400, dtype=torch.long), has_image, has_text)
    known = calibration.novelty(distances, has_image, has_text) <= 1  # (N,)
    assert known.float().mean() >= KNOWN_QUANTILE
    for rows in (has_image & has_text, ~has_image & has_text):
        assert known[rows].float().mean() == pytest.approx(KNOWN_QUANTILE, abs=0.04)
    far = calibration.novelty(torch.tensor([1e4, 1e4]), torch.tensor([True, False]), torch.tensor([True, True]))
    assert (far > 1).all()


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
    assert sum(p.known for p in predictions) / len(predictions) >= KNOWN_QUANTILE


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
    for name in ("calibration.temperature", "calibration.threshold"):
        del older.tensors[name]
    uncalibrated = ContinualModel.from_state(tiny_backbone, older).predict(held, 1)
    assert all(p.known for p in uncalibrated)
    assert [p.scores[0] for p in uncalibrated] == pytest.approx(raw.softmax(-1).max(-1).values.tolist())
