"""The map that carries a fusion teacher's joint representation into a dual teacher's embedding space (MCAD).

MCAD adds the single-stream model's fused features to the dual-stream teacher's image and text features. The
two live in different spaces (our fusion teacher's pooled state is its hidden width, the dual teacher's
embeddings its projection width), so a map between them is needed. Ours is a linear map fitted once, before
distillation, by ridge regression from the fusion teacher's pooled state of matched training pairs to the
dual teacher's joint embedding of the same pairs, normalize(u + v), and then frozen: a map learned by the
distillation loss itself would let the target drift towards the student.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class FusedFeatureMap:
    """`map(pooled [N, H]) -> [N, D]` unit vectors in the dual teacher's space; `r2`: the fit's share of
    the target's variance explained, on the pairs it was fitted on."""

    weight: torch.Tensor  # [H + 1, D]: the last row is the intercept
    r2: float

    def __call__(self, pooled: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(pooled.device)
        x = torch.cat([pooled.float(), pooled.new_ones(len(pooled), 1, dtype=torch.float32)], dim=1)
        return nn.functional.normalize(x @ w, dim=-1)


def fit_fused_feature_map(pooled: torch.Tensor, target: torch.Tensor, ridge: float = 1e-2) -> FusedFeatureMap:
    """Least squares with an intercept and a ridge of `ridge` times the mean diagonal of X^T X (the map stays
    defined when there are fewer pairs than hidden units), in float64."""
    if len(pooled) != len(target) or len(pooled) < 2:
        raise ValueError(f"need at least 2 paired rows, got {len(pooled)} pooled and {len(target)} targets")
    x = torch.cat([pooled.double(), pooled.new_ones(len(pooled), 1, dtype=torch.float64)], dim=1)
    y = target.double()
    gram = x.T @ x
    reg = ridge * gram.diagonal()[:-1].mean() * torch.eye(len(gram), dtype=torch.float64, device=gram.device)
    reg[-1, -1] = 0.0  # the intercept is not shrunk
    weight = torch.linalg.solve(gram + reg, x.T @ y)
    residual = ((y - x @ weight) ** 2).sum()
    total = ((y - y.mean(0)) ** 2).sum().clamp_min(1e-12)
    return FusedFeatureMap(weight.float(), float(1 - residual / total))
