import torch

from benchmarks.missing_references import missing_row_predictions
from model.batch import EncodedBatch
from model.lda_classifier import LdaClassifier


def frozen_batch(image: torch.Tensor, text: torch.Tensor, has_image, has_text) -> EncodedBatch:
    has_image, has_text = torch.tensor(has_image), torch.tensor(has_text)
    rows = len(has_image)
    return EncodedBatch(
        has_image=has_image,
        has_text=has_text,
        q_image=image * has_image.unsqueeze(-1),
        q_text=text * has_text.unsqueeze(-1),
        input_ids=torch.zeros(rows, 2, dtype=torch.long),
        attention_mask=torch.ones(rows, 2, dtype=torch.long),
    )


def two_classes(rows_per_class: int, generator: torch.Generator):
    """Class 0 near (e1 | e1), class 1 near (e2 | e2), in 3-wide image and text halves; targets (N,)."""
    centres = torch.eye(3)[:2]  # (2, 3)
    targets = torch.arange(2).repeat_interleave(rows_per_class)  # (N,)
    image = centres[targets] + 0.1 * torch.randn(len(targets), 3, generator=generator)
    text = centres[targets] + 0.1 * torch.randn(len(targets), 3, generator=generator)
    return image, text, targets


def test_missing_rows_are_scored_on_their_present_half_or_mean_filled():
    generator = torch.Generator().manual_seed(0)
    image, text, targets = two_classes(8, generator)
    has_image = [index % 4 != 1 for index in range(16)]  # every fourth row lacks its image, from row 1
    has_text = [index % 4 != 2 for index in range(16)]  # and every fourth its text, from row 2
    train = frozen_batch(image, text, has_image, has_text)
    test_image, test_text, test_targets = two_classes(6, generator)
    pattern_image = [True, False, True] * 4  # complete, image missing, text missing, ...
    pattern_text = [True, True, False] * 4
    test = frozen_batch(test_image, test_text, pattern_image, pattern_text)
    predicted = missing_row_predictions(train, targets, test, classes=2, shrinkage=0.5)
    for name in ("mean_fill", "marginalised"):
        assert torch.equal(predicted[name], test_targets), name
    text_only = LdaClassifier(3, 0.5)
    text_only.add_classes(text[train.has_text], targets[train.has_text], 2)
    missing_image = ~test.has_image
    expected = text_only(test.q_text[missing_image]).argmax(-1)
    assert torch.equal(predicted["marginalised"][missing_image], expected)
    complete = test.has_image & test.has_text
    assert torch.equal(predicted["marginalised"][complete], predicted["mean_fill"][complete])


def test_a_mean_filled_half_is_the_training_mean_of_that_half():
    image = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 5.0]])
    text = torch.tensor([[1.0, 1.0], [0.0, 2.0], [2.0, 0.0], [4.0, 0.0]])
    train = frozen_batch(image, text, [True, True, True, False], [True, False, True, True])
    targets = torch.tensor([0, 0, 1, 1])
    image_mean, text_mean = torch.tensor([4 / 3, 1 / 3]), torch.tensor([7 / 3, 1 / 3])  # over rows that have it
    filled = torch.tensor(
        [[1.0, 0.0, 1.0, 1.0], [3.0, 0.0, *text_mean], [0.0, 1.0, 2.0, 0.0], [*image_mean, 4.0, 0.0]]
    )  # (4, 4): row 1's text and row 3's image are the means
    by_hand = LdaClassifier(4, 0.5)
    by_hand.add_classes(filled, targets, 2)
    test_image = torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.5, 2.0]])
    test_text = torch.tensor([[0.0, 0.0], [3.0, 0.0], [1.0, 1.5]])
    test = frozen_batch(test_image, test_text, [True, False, True], [False, True, True])
    test_filled = torch.cat(
        [
            torch.stack([test_image[0], image_mean, test_image[2]]),
            torch.stack([text_mean, test_text[1], test_text[2]]),
        ],
        dim=-1,
    )  # (3, 4)
    predicted = missing_row_predictions(train, targets, test, classes=2, shrinkage=0.5)
    assert torch.equal(predicted["mean_fill"], by_hand(test_filled).argmax(-1))
