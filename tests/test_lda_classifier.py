import pytest
import torch

from model.lda_classifier import COMPLETE, IMAGE_MISSING, PATTERNS, TEXT_MISSING, LdaClassifier, pattern_index

FEATURES = torch.tensor(
    [
        [1.0, 0.0, 0.5],
        [0.8, 0.2, 0.4],
        [0.9, -0.1, 0.7],
        [0.0, 1.0, 0.1],
        [0.2, 0.9, -0.2],
        [0.1, 0.3, 1.0],
        [0.0, 0.2, 0.8],
    ]
)  # (7, 3)
LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 2])  # (7,)


def test_discriminants_follow_the_formula():
    lda = LdaClassifier(3, shrinkage=0.25)
    lda.add_classes(FEATURES, LABELS, 3)
    means = torch.stack([FEATURES[LABELS == c].mean(0) for c in range(3)])  # (3, 3)
    centred = FEATURES - means[LABELS]
    sample = centred.T @ centred / 7
    covariance = 0.75 * sample + 0.25 * torch.trace(sample) / 3 * torch.eye(3)
    precision = torch.linalg.inv(covariance)
    expected = FEATURES @ precision @ means.T - 0.5 * torch.einsum("cf,fg,cg->c", means, precision, means)
    torch.testing.assert_close(lda(FEATURES), expected, atol=1e-5, rtol=1e-5)


def test_tasks_added_one_by_one_equal_one_fit():
    whole, grown = LdaClassifier(3, shrinkage=0.5), LdaClassifier(3, shrinkage=0.5)
    whole.add_classes(FEATURES, LABELS, 3)
    grown.add_classes(FEATURES[:3], LABELS[:3], 1)
    grown.add_classes(FEATURES[3:], LABELS[3:] - 1, 2)
    assert grown.num_classes == 3 and float(grown.count) == 7
    for name in ("means", "scatter", "weight", "bias"):
        torch.testing.assert_close(getattr(grown, name), getattr(whole, name), atol=1e-6, rtol=1e-6)


def test_export_and_import_give_the_same_scores():
    lda, copy = LdaClassifier(3, shrinkage=0.5), LdaClassifier(3, shrinkage=0.5)
    lda.add_classes(FEATURES, LABELS, 3)
    tensors = lda.export_tensors()
    assert {name: tuple(tensor.shape) for name, tensor in tensors.items()} == lda.expected_shapes(3)
    copy.import_tensors(tensors)
    assert torch.equal(copy(FEATURES), lda(FEATURES))


def test_a_class_without_samples_is_refused():
    with pytest.raises(ValueError, match=r"class indices \[1\] have none"):
        LdaClassifier(3, shrinkage=0.5).add_classes(FEATURES[:3], torch.tensor([0, 0, 2]), 3)



def three_patterns(noise: float = 0.05, per_class: int = 6):
    """Rows `[image | text]` (one column each) of two classes whose image tells nothing when it is real.

    Real text: class 0 near +1, class 1 near -1; the text reconstructed from the image is off the other way
    (class 0 near -1, class 1 near +1); the image reconstructed from the text: class 0 near +2, class 1 near -2.
    Returns features (N, 2), targets (N,), has_image (N,), has_text (N,).
    """
    generator = torch.Generator().manual_seed(0)
    # (pattern, class) -> centre; pattern 0 complete, 1 image missing, 2 text missing
    centres = torch.tensor([[0.0, 1.0], [0.0, -1.0], [2.0, 1.0], [-2.0, -1.0], [0.0, -1.0], [0.0, 1.0]])
    group = torch.arange(6).repeat_interleave(per_class)  # (6n,)
    features = centres[group] + noise * torch.randn(len(group), 2, generator=generator)  # (6n, 2)
    pattern = group // 2
    return features, group % 2, pattern != IMAGE_MISSING, pattern != TEXT_MISSING


def test_pattern_index_follows_the_masks():
    has_image = torch.tensor([True, False, True])
    has_text = torch.tensor([True, True, False])
    assert pattern_index(has_image, has_text).tolist() == [COMPLETE, IMAGE_MISSING, TEXT_MISSING]
    assert PATTERNS[IMAGE_MISSING] == "image_missing" and PATTERNS[TEXT_MISSING] == "text_missing"


def test_means_by_pattern_score_each_row_against_its_own():
    features, targets, has_image, has_text = three_patterns()
    patterns = pattern_index(has_image, has_text)
    pooled, by_pattern = LdaClassifier(2, shrinkage=0.1), LdaClassifier(2, shrinkage=0.1, image_dim=1)
    pooled.add_classes(features, targets, 2)
    by_pattern.add_classes(features, targets, 2, patterns)
    # a half's mean comes from every row where it is of that kind: real text from complete and image-missing rows
    for label in (0, 1):
        real_text = (targets == label) & has_text
        assert float(by_pattern.means[COMPLETE, label, 1]) == pytest.approx(float(features[real_text, 1].mean()))
        real_image = (targets == label) & has_image
        assert float(by_pattern.means[COMPLETE, label, 0]) == pytest.approx(float(features[real_image, 0].mean()))
    expected = {COMPLETE: [[0, 1], [0, -1]], IMAGE_MISSING: [[2, 1], [-2, -1]], TEXT_MISSING: [[0, -1], [0, 1]]}
    for pattern, means in expected.items():
        torch.testing.assert_close(by_pattern.means[pattern], torch.tensor(means).float(), atol=0.06, rtol=0)
    assert by_pattern.means.shape == (3, 2, 2) and by_pattern.scatter.shape == (2, 2)
    assert float(by_pattern.count) == len(features)
    right = by_pattern(features, has_image, has_text).argmax(-1) == targets
    assert bool(right.all())
    text_missing = ~has_text
    pooled_right = pooled(features).argmax(-1) == targets
    assert float(pooled_right[text_missing].float().mean()) < 0.5  # one mean for all is off for rebuilt texts


def test_a_batch_of_mixed_patterns_is_scored_row_by_row():
    features, targets, has_image, has_text = three_patterns(noise=0.4)
    lda = LdaClassifier(2, shrinkage=0.3, image_dim=1)
    lda.add_classes(features, targets, 2, pattern_index(has_image, has_text))
    scores = lda(features, has_image, has_text)  # (N, 2), vectorised
    precision = torch.linalg.inv(lda.covariance()).float()  # (2, 2), shared by every pattern
    for row in range(len(features)):
        present = (bool(has_image[row]), bool(has_text[row]))
        pattern = {(True, True): COMPLETE, (False, True): IMAGE_MISSING, (True, False): TEXT_MISSING}[present]
        means = lda.means[pattern]  # (2, 2)
        expected = features[row] @ precision @ means.T - 0.5 * torch.einsum("cf,fg,cg->c", means, precision, means)
        torch.testing.assert_close(scores[row], expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="need the masks"):
        lda(features)
    with pytest.raises(ValueError, match="need each row's pattern"):
        lda.add_classes(features, targets, 2)


def test_a_class_without_a_kind_takes_its_overall_half_mean():
    features, targets, has_image, has_text = three_patterns()
    keep = (targets == 0) | (has_image & has_text)  # class 1: complete rows only
    lda = LdaClassifier(2, shrinkage=0.1, image_dim=1)
    lda.add_classes(features[keep], targets[keep], 2, pattern_index(has_image[keep], has_text[keep]))
    overall = features[keep & (targets == 1)].mean(0)  # (2,)
    torch.testing.assert_close(lda.means[IMAGE_MISSING, 1, 0], overall[0])  # no reconstructed image of class 1
    torch.testing.assert_close(lda.means[TEXT_MISSING, 1, 1], overall[1])
    with pytest.raises(ValueError, match="must split"):
        LdaClassifier(2, shrinkage=0.1, image_dim=2)


def test_by_pattern_tasks_one_by_one_equal_one_fit_and_survive_export():
    features, targets, has_image, has_text = three_patterns(noise=0.3)
    patterns = pattern_index(has_image, has_text)
    whole, grown = LdaClassifier(2, 0.5, image_dim=1), LdaClassifier(2, 0.5, image_dim=1)
    whole.add_classes(features, targets, 2, patterns)
    first = targets == 0
    grown.add_classes(features[first], targets[first], 1, patterns[first])
    grown.add_classes(features[~first], targets[~first] - 1, 1, patterns[~first])
    for name in ("means", "scatter", "count", "weight", "bias"):
        torch.testing.assert_close(getattr(grown, name), getattr(whole, name), atol=1e-6, rtol=1e-6)
    tensors = grown.export_tensors()
    assert {name: tuple(tensor.shape) for name, tensor in tensors.items()} == grown.expected_shapes(2)
    assert grown.expected_shapes(2) == {"lda.means": (3, 2, 2), "lda.scatter": (2, 2), "lda.count": ()}
    copy = LdaClassifier(2, 0.5, image_dim=1)
    copy.import_tensors(tensors)
    assert torch.equal(copy(features, has_image, has_text), grown(features, has_image, has_text))
