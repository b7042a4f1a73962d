"""Attention rollout (Abnar & Zuidema, 2020): how much each input token flows into each output
token through all the layers, treating attention as the only route and heads as equal.

Per layer `A_hat = normalise_rows(0.5 * mean_heads(A) + 0.5 * I)` (the identity stands for the
residual connection), and `R = A_hat_L @ ... @ A_hat_1`. The classifier token's row of `R` is read:
the teacher's pooled token is the first text token ([CLS]) of the joint sequence; the student has
two towers that never mix, so it gets one rollout per tower (image [CLS] over patches, text [CLS]
over words).

Caveats: rollout ignores the values, the MLPs and the classifier, so it is class-agnostic (the same
map whatever the answer); mass tends to pile up on the query token itself and spread out with depth.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from workbench.data.collate import Batch
from workbench.explain.attention import self_attentions
from workbench.explain.grid import is_fusion, to_grid
from workbench.explain.inputs import text_length, tokens


def rollout(attentions: Sequence[torch.Tensor], residual: bool = True, heads: bool = True) -> torch.Tensor:
    """Roll out per-layer attentions, first layer first, into [..., N, N]. Each is [..., H, N, N]
    (heads averaged), or [..., N, N] with `heads=False`."""
    result = None
    for a in attentions:
        a = a.float()
        a = a.mean(-3) if heads else a
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        if residual:
            a = 0.5 * a + 0.5 * eye
        a = a / a.sum(-1, keepdim=True)
        result = a if result is None else a @ result
    if result is None:
        raise ValueError("no attention layers to roll out")
    return result


def _keep(mask_row: torch.Tensor, text_len: int, total: int) -> torch.Tensor:
    """Indices of the real tokens of a joint sequence (padded text tokens dropped)."""
    real_text = torch.nonzero(mask_row[:text_len]).flatten()
    return torch.cat([real_text, torch.arange(text_len, total, device=mask_row.device)])


def rollout_rows(model: nn.Module, batch: Batch, image_index: int = 0) -> dict[str, torch.Tensor]:
    """Batched: {"image": [B, rows, cols], "image_cls": [B], "text": [B, T] (0 on padding)}."""
    with torch.no_grad():
        att = self_attentions(model, batch, image_index)
    grid, mask = att["grid"], batch.attention_mask.to(att["logits"].device)
    b = mask.shape[0]
    if is_fusion(model):
        tl = att["text_len"]
        image, cls, text = [], [], torch.zeros(b, tl)
        for i in range(b):
            keep = _keep(mask[i], tl, att["joint"][0].shape[-1])
            r = rollout([a[i][:, keep][:, :, keep] for a in att["joint"]])[0]  # [CLS] row over real tokens
            n_text = int(mask[i].sum())
            text[i, keep[:n_text].cpu()] = r[:n_text].cpu()
            image.append(to_grid(r[n_text:], grid, offset=1).cpu())
            cls.append(r[n_text].cpu())
        return {"image": torch.stack(image), "image_cls": torch.stack(cls), "text": text}
    r_img = rollout(att["image"])[:, 0]  # [B, 1+P]
    # padded text keys get no attention, so the real tokens' block rolls out unchanged
    r_txt = rollout(att["text"])[:, 0] * mask.float()
    return {"image": to_grid(r_img, grid, offset=1).cpu(), "image_cls": r_img[:, 0].cpu(), "text": r_txt.cpu()}


def attention_rollout(model: nn.Module, batch: Batch, tokenizer=None, image_index: int = 0, index: int = 0) -> dict:
    """Rollout for example `index`: {"image": [rows, cols] (the classifier token's rollout onto the
    patches), "image_cls", "text": [T] (onto the words), "tokens", "method": "rollout"}."""
    rows = rollout_rows(model, batch, image_index)
    t = text_length(batch, index)
    return {
        "image": rows["image"][index].numpy(),
        "image_cls": float(rows["image_cls"][index]),
        "text": rows["text"][index, :t].numpy().astype(np.float64),
        "tokens": tokens(batch, tokenizer, index),
        "method": "rollout",
        "kind": "fusion" if is_fusion(model) else "dual",
    }
