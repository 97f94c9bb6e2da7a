import torch
import torch.nn.functional as F

from model.prompt_pool import PromptPool, orthogonal_rows


def grown_pool(tasks=2, per_task=3, query_dim=6, shape=(2, 4)):
    pool = PromptPool(query_dim, shape)
    generator = torch.Generator().manual_seed(0)
    for _ in range(tasks):
        pool.grow(per_task, generator)
    return pool


def test_empty_pool_gives_no_prompts():
    assert PromptPool(6, (2, 4)).prompts(torch.randn(3, 6)) is None


def test_growth_adds_components_and_freezes_old_ones():
    pool = grown_pool(tasks=1)
    assert pool.size == 3 and pool.frozen_keys.shape == (0, 6)
    pool.grow(3, torch.Generator().manual_seed(1))
    assert pool.size == 6
    assert pool.frozen_components.shape == (3, 8) and pool.new_components.shape == (3, 8)
    trainable = {name for name, parameter in pool.named_parameters() if parameter.requires_grad}
    assert trainable == {"new_keys", "new_attention", "new_components"}
    assert "frozen_components" in dict(pool.named_buffers())


def test_old_components_get_no_gradient_and_do_not_move():
    pool = grown_pool()
    before = pool.frozen_components.clone()
    optimiser = torch.optim.SGD([p for p in pool.parameters() if p.requires_grad], lr=1.0)
    pool.prompts(torch.randn(4, 6)).sum().backward()
    optimiser.step()
    assert torch.equal(pool.frozen_components, before)
    assert pool.new_components.grad.abs().sum() > 0


def test_new_components_are_orthogonal_to_old():
    pool = grown_pool(tasks=2, per_task=3)
    every = pool.stacked("components")  # (6, 8)
    gram = every @ every.T
    torch.testing.assert_close(gram, torch.eye(6), atol=1e-5, rtol=0)


def test_orthogonal_rows_fall_back_to_unit_rows_when_full():
    rows = orthogonal_rows(5, 4, torch.zeros(0, 4), torch.Generator().manual_seed(0))
    torch.testing.assert_close(rows.norm(dim=-1), torch.ones(5))


def test_weights_are_cosine_of_attended_query_and_keys():
    pool = PromptPool(2, (1,))
    pool.grow(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        pool.new_keys.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
        pool.new_attention.copy_(torch.tensor([[1.0, 1.0], [0.0, 2.0]]))
        pool.new_components.copy_(torch.tensor([[10.0], [100.0]]))
    weights = pool.weights(torch.tensor([[3.0, 4.0]]))
    # component 0: q*A = (3, 4), cos with (1, 0) = 0.6; component 1: q*A = (0, 8), cos with (1, 1) = 1/sqrt 2
    torch.testing.assert_close(weights, torch.tensor([[0.6, 2**-0.5]]))
    torch.testing.assert_close(pool.prompts(torch.tensor([[3.0, 4.0]])), torch.tensor([[6.0 + 100 * 2**-0.5]]))


def test_vectorised_prompts_equal_a_per_sample_loop():
    pool = grown_pool()
    queries = torch.randn(5, 6)
    batched = pool.prompts(queries)
    assert batched.shape == (5, 2, 4)
    looped = torch.cat([pool.prompts(queries[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(batched, looped)


def test_export_import_round_trip():
    pool = grown_pool()
    tensors = pool.export_tensors("pool")
    copy = PromptPool(6, (2, 4))
    copy.import_tensors("pool", tensors)
    queries = F.normalize(torch.randn(3, 6), dim=-1)
    torch.testing.assert_close(copy.prompts(queries), pool.prompts(queries))
    assert copy.size == 6 and copy.new_keys.shape == (0, 6)


def test_components_grown_in_a_subspace_ignore_queries_outside_it():
    pool = grown_pool(tasks=1)
    projector = torch.diag(torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0, 1.0]))  # keys avoid the first two axes
    pool.grow(2, torch.Generator().manual_seed(1), key_projection=projector)
    trainable = {name for name, parameter in pool.named_parameters() if parameter.requires_grad}
    assert trainable == {"new_keys", "new_components"}  # attention vectors stay ones
    with torch.no_grad():
        pool.new_keys.add_(torch.randn(2, 6))  # as a training step might, in any direction
    keys = pool.stacked("keys")[3:]  # (2, 6)
    assert keys[:, :2].abs().max() == 0 and keys[:, 2:].abs().min() > 0
    outside = torch.tensor([[3.0, -1.0, 0, 0, 0, 0], [0.5, 2.0, 0, 0, 0, 0]])  # (2, 6) in the avoided axes
    assert pool.weights(outside)[:, 3:].abs().max() == 0
    assert pool.weights(torch.randn(4, 6))[:, 3:].abs().min() > 0
    saved = pool.export_tensors("pool")
    pool.freeze_current()
    torch.testing.assert_close(pool.frozen_keys, saved["pool.keys"])
    assert pool.key_projection is None
