import torch

from model.lda_classifier import LdaClassifier
from model.marginal_lda import MarginalLda

# [image (2) | text (1)]: three classes, rows 4 and 9 lack their image, rows 2 and 7 their text
FEATURES = torch.tensor(
    [
        [1.0, 0.1, 0.9],
        [0.9, 0.0, 1.1],
        [1.1, 0.2, 0.0],
        [0.1, 1.0, -1.0],
        [0.0, 0.0, -0.8],
        [0.2, 0.9, -1.2],
        [-1.0, 0.1, 0.1],
        [-0.9, 0.0, 0.0],
        [-1.1, -0.1, -0.1],
        [0.0, 0.0, 0.2],
    ]
)  # (10, 3)
TARGETS = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
HAS_IMAGE = torch.tensor([True, True, True, True, False, True, True, True, True, False])
HAS_TEXT = torch.tensor([True, True, False, True, True, True, True, False, True, True])
EVERY_ROW = torch.ones(10, dtype=torch.bool)


def fitted(**changes) -> MarginalLda:
    lda = MarginalLda(image_dim=2, text_dim=1, shrinkage=0.3)
    arguments = {"has_image": HAS_IMAGE, "has_text": HAS_TEXT, "halves_from": EVERY_ROW, **changes}
    lda.add_classes(FEATURES, TARGETS, 3, **arguments)
    return lda


def test_each_row_is_scored_by_the_halves_it_has():
    lda = fitted()
    by_hand = {
        "full": (LdaClassifier(3, 0.3), FEATURES, EVERY_ROW),
        "image": (LdaClassifier(2, 0.3), FEATURES[:, :2], HAS_IMAGE),
        "text": (LdaClassifier(1, 0.3), FEATURES[:, 2:], HAS_TEXT),
    }
    for part, rows, real in by_hand.values():
        part.add_classes(rows[real], TARGETS[real], 3)
    scores = lda(FEATURES, HAS_IMAGE, HAS_TEXT)  # (10, 3)
    complete = HAS_IMAGE & HAS_TEXT
    full, image, text = (part(rows) for part, rows, _ in by_hand.values())
    torch.testing.assert_close(scores[complete], full[complete])
    torch.testing.assert_close(scores[~HAS_IMAGE], text[~HAS_IMAGE])  # the image integrated out
    torch.testing.assert_close(scores[~HAS_TEXT], image[~HAS_TEXT])
    assert float(lda.image.count) == 8 and float(lda.text.count) == 8 and float(lda.full.count) == 10


def test_a_class_without_a_real_half_takes_that_half_of_its_whole_mean():
    no_image_for_class_1 = HAS_IMAGE & (TARGETS != 1)
    lda = fitted(has_image=no_image_for_class_1)
    torch.testing.assert_close(lda.image.means[1], lda.full.means[1, :2])
    assert float(lda.image.count) == int(no_image_for_class_1.sum())


def test_halves_come_only_from_the_rows_named():
    first_six = torch.arange(10) < 6
    lda = fitted(halves_from=first_six)
    assert float(lda.image.count) == int((HAS_IMAGE & first_six).sum()) and float(lda.full.count) == 10


def test_tasks_one_by_one_save_and_load():
    grown = MarginalLda(image_dim=2, text_dim=1, shrinkage=0.3)
    first = TARGETS < 2
    grown.add_classes(FEATURES[first], TARGETS[first], 2, HAS_IMAGE[first], HAS_TEXT[first], EVERY_ROW[first])
    grown.add_classes(
        FEATURES[~first], TARGETS[~first] - 2, 1, HAS_IMAGE[~first], HAS_TEXT[~first], EVERY_ROW[~first]
    )
    whole = fitted()
    torch.testing.assert_close(grown(FEATURES, HAS_IMAGE, HAS_TEXT), whole(FEATURES, HAS_IMAGE, HAS_TEXT))
    tensors = grown.export_tensors()
    assert {name: tuple(tensor.shape) for name, tensor in tensors.items()} == grown.expected_shapes(3)
    copy = MarginalLda(image_dim=2, text_dim=1, shrinkage=0.3)
    copy.import_tensors(tensors)
    assert torch.equal(copy(FEATURES, HAS_IMAGE, HAS_TEXT), grown(FEATURES, HAS_IMAGE, HAS_TEXT))


def test_following_drift_moves_each_class_by_its_rows_mean_drift():
    lda = fitted()
    before = {part.name: part.means.clone() for part in lda.parts}
    rows = torch.tensor([0, 2, 4, 5])  # class 0 twice (row 2 lacks its text), class 1 twice (row 4 its image)
    drift = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 8.0], [0.0, 1.0, 4.0], [0.0, 3.0, 6.0]])  # (4, 3)
    lda.follow_drift(drift, TARGETS[rows], HAS_IMAGE[rows], HAS_TEXT[rows], halves_from=torch.ones(4, dtype=bool))
    moved = {
        "lda": torch.tensor([[2.0, 0.0, 5.0], [0.0, 2.0, 5.0], [0.0, 0.0, 0.0]]),  # class 2 has no row: stays
        "lda_image": torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.0, 0.0]]),  # row 4 has no real image
        "lda_text": torch.tensor([[2.0], [5.0], [0.0]]),  # row 2 has no real text
    }
    for part in lda.parts:
        torch.testing.assert_close(part.means - before[part.name], moved[part.name])
    scores = lda(FEATURES, HAS_IMAGE, HAS_TEXT)
    refitted = MarginalLda(image_dim=2, text_dim=1, shrinkage=0.3)
    for part, other in zip(lda.parts, refitted.parts, strict=True):
        other.add_statistics(part.means, part.scatter, int(part.count))
    torch.testing.assert_close(scores, refitted(FEATURES, HAS_IMAGE, HAS_TEXT))  # discriminants recomputed
