"""The growing cosine head: earlier rows frozen on growth, scores on one scale, saved and restored whole."""

import torch

from model.head import GrowingHead


def test_growing_freezes_the_rows_learned_so_far_and_trains_only_the_new_ones():
    head = GrowingHead(feature_dim=3, scale=10.0)
    head.grow(torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]]))
    torch.testing.assert_close(head.new_weight.detach(), torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    with torch.no_grad():
        head.new_weight[0, 2] = 1.0  # as training would move it
    head.grow(torch.tensor([[0.0, 0.0, 5.0]]))
    assert head.num_classes == 3 and not head.frozen_weight.requires_grad
    torch.testing.assert_close(head.frozen_weight[0], torch.tensor([1.0, 0.0, 1.0]))
    head(torch.randn(4, 3)).sum().backward()
    assert head.new_weight.grad is not None and head.new_weight.grad.shape == (1, 3)


def test_scores_are_scaled_cosines_whatever_the_lengths():
    head = GrowingHead(feature_dim=2, scale=16.0)
    head.grow(torch.tensor([[1.0, 0.0], [0.0, 4.0]]))
    features = torch.tensor([[3.0, 0.0], [1.0, 1.0]])  # (B, F)
    expected = torch.tensor([[16.0, 0.0], [16.0 / 2**0.5, 16.0 / 2**0.5]])
    torch.testing.assert_close(head(features), expected)
    torch.testing.assert_close(head(features * 7), expected)


def test_a_saved_head_restores_every_row_frozen():
    head = GrowingHead(feature_dim=2, scale=1.0)
    head.grow(torch.tensor([[1.0, 1.0]]))
    head.grow(torch.tensor([[1.0, -1.0]]))
    restored = GrowingHead(feature_dim=2, scale=1.0)
    restored.import_tensors(head.export_tensors())
    assert restored.num_classes == 2 and restored.new_weight.shape == (0, 2)
    torch.testing.assert_close(restored.weight(), head.weight().detach())
