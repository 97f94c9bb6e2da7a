import pytest
import torch

from model.lda_classifier import LdaClassifier

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
