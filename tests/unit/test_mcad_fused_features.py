"""MCAD's fused features (issue 28): the fusion teacher's joint state of each matched pair, carried into the dual
teacher's space by a fitted linear map and added to both sides of the pair; checked against hand computation."""

import math

import pytest
import torch

from workbench import losses
from workbench.retrieval.adapter import FusedFeatureMap, fit_fused_feature_map


def test_fused_feature_targets_by_hand():
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    f = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    u2, v2 = losses.fused_feature_targets(u, v, f, gamma=1.0)
    # row 0: u = (1, 0) + (1, 0) = (2, 0) -> (1, 0); v = (0, 1) + (1, 0) = (1, 1) -> (1, 1) / sqrt 2
    # row 1: u = (0, 1) + (0.6, 0.8) = (0.6, 1.8); v = (1, 0) + (0.6, 0.8) = (1.6, 0.8)
    r = 1 / math.sqrt(2)
    n1, n2 = math.hypot(0.6, 1.8), math.hypot(1.6, 0.8)
    torch.testing.assert_close(u2, torch.tensor([[1.0, 0.0], [0.6 / n1, 1.8 / n1]]))
    torch.testing.assert_close(v2, torch.tensor([[r, r], [1.6 / n2, 0.8 / n2]]))
    # gamma scales f before the sum: gamma = 0.5 on row 1 of u gives (0.3, 1.4)
    u3, _ = losses.fused_feature_targets(u, v, f, gamma=0.5)
    n3 = math.hypot(0.3, 1.4)
    torch.testing.assert_close(u3[1], torch.tensor([0.3 / n3, 1.4 / n3]))
    same = losses.fused_feature_targets(u, v, f, gamma=0.0)
    assert same[0] is u and same[1] is v


def test_fused_features_pull_each_matched_pair_together():
    """Adding the same vector to both sides of pair i raises its cosine; the diagonal of the modified
    similarities is above the dual teacher's wherever the pair was not already aligned."""
    torch.manual_seed(0)
    u = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    v = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    f = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    u2, v2 = losses.fused_feature_targets(u, v, f, gamma=1.0)
    assert torch.all((u2 * v2).sum(-1) > (u * v).sum(-1))


def test_the_fitted_map_recovers_a_linear_map_and_its_intercept():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=g)
    w = torch.randn(6, 3, generator=g)
    b = torch.tensor([0.5, -1.0, 2.0])
    y = x @ w + b
    fitted = fit_fused_feature_map(x, y, ridge=1e-9)
    torch.testing.assert_close(fitted.weight[:-1], w, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fitted.weight[-1], b, atol=1e-4, rtol=1e-4)
    assert fitted.r2 == pytest.approx(1.0, abs=1e-6)
    # the map gives unit vectors in the target's direction
    torch.testing.assert_close(fitted(x[:5]), torch.nn.functional.normalize(y[:5], dim=-1), atol=1e-4, rtol=1e-4)


def test_the_ridge_keeps_the_map_defined_with_fewer_pairs_than_features_and_r2_reads_the_fit():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(4, 10, generator=g), torch.randn(4, 3, generator=g)
    fitted = fit_fused_feature_map(x, y)
    assert torch.isfinite(fitted.weight).all() and 0 < fitted.r2 <= 1
    noise = fit_fused_feature_map(torch.randn(300, 2, generator=g), torch.randn(300, 3, generator=g))
    assert noise.r2 < 0.05  # unrelated targets: almost nothing explained
    with pytest.raises(ValueError, match="at least 2"):
        fit_fused_feature_map(x[:1], y[:1])
    with pytest.raises(ValueError, match="paired"):
        fit_fused_feature_map(x, y[:3])


def test_the_map_intercept_row_is_applied():
    m = FusedFeatureMap(torch.tensor([[0.0, 0.0], [3.0, 4.0]]), r2=1.0)  # the output is the intercept alone
    torch.testing.assert_close(m(torch.zeros(2, 1)), torch.tensor([[0.6, 0.8], [0.6, 0.8]]))
