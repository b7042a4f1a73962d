"""Gradient-weighted relevancy (Chefer, Gur & Wolf, ICCV 2021, "Generic Attention-model
Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers"), self-attention rule.

Start from `R = I`; for each layer, first to last,
`A_bar = mean_heads((dA * A).clamp(min=0))` with `dA` the gradient of the target logit with respect
to the attention probabilities `A`, and `R += A_bar @ R`. The classifier token's row of `R` says
how relevant each input token is to the target answer.

* Teacher (one joint stream): its pooled token is the first text token ([CLS]); the image part of
  that row, after the image [CLS], goes onto the grid, the text part gives one value per word.
* Student: the towers never attend to each other and meet only in the fusion head, so there are no
  cross-attention terms: the rule runs per tower, on the gradient of the same target logit — image
  tower [CLS] row over the patches, text tower [CLS] row over the words.
* Target: the predicted answer's logit, or a given label.

Caveat: values are relevance scores, not probabilities; the [CLS] token's own entry carries the
identity. Compare maps of different models after normalising (`normalise_map`).
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


def relevancy_matrix(attentions: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """[..., H, N, N] attentions and their gradients, first layer first -> R [..., N, N]."""
    r = None
    for a, g in zip(attentions, grads):
        a_bar = (g.float() * a.float()).clamp(min=0).mean(-3)
        if r is None:
            r = torch.eye(a_bar.shape[-1], dtype=a_bar.dtype, device=a_bar.device).expand_as(a_bar).clone()
        r = r + a_bar @ r
    if r is None:
        raise ValueError("no attention layers")
    return r


def _targets(logits: torch.Tensor, target) -> torch.Tensor:
    if target is None:
        return logits.argmax(-1)
    t = torch.as_tensor(target, device=logits.device).long().flatten()
    if t.numel() not in (1, logits.shape[0]):
        raise ValueError(f"expected one target or one per example ({logits.shape[0]}), got {t.numel()}")
    return t.expand(logits.shape[0])


def relevancy_rows(model: nn.Module, batch: Batch, target=None, image_index: int = 0) -> dict[str, torch.Tensor]:
    """Batched: {"image": [B, rows, cols], "image_cls": [B], "text": [B, T] (0 on padding),
    "target": [B], "prob": [B] (softmax probability of the target)}. The examples of a batch do
    not interact, so one backward pass of the summed target logits gives every example's gradients."""
    with torch.enable_grad():
        att = self_attentions(model, batch, image_index)
        logits = att["logits"]
        targets = _targets(logits, target)
        score = logits.gather(1, targets[:, None]).sum()
        keys = ["joint"] if is_fusion(model) else ["image", "text"]
        flat = [a for k in keys for a in att[k]]
        grads = torch.autograd.grad(score, flat)
    grid, mask = att["grid"], batch.attention_mask.to(logits.device).float()
    out = {"target": targets.cpu(), "prob": logits.detach().float().softmax(-1).gather(1, targets[:, None])[:, 0].cpu()}
    if is_fusion(model):
        n = len(att["joint"])
        r = relevancy_matrix([a.detach() for a in flat], grads[:n])[:, 0]  # [B, N]: the [CLS] row
        tl = att["text_len"]
        out.update(image=to_grid(r[:, tl:], grid, offset=1), image_cls=r[:, tl], text=r[:, :tl] * mask)
    else:
        n = len(att["image"])
        r_img = relevancy_matrix([a.detach() for a in att["image"]], grads[:n])[:, 0]
        r_txt = relevancy_matrix([a.detach() for a in att["text"]], grads[n:])[:, 0]
        out.update(image=to_grid(r_img, grid, offset=1), image_cls=r_img[:, 0], text=r_txt * mask)
    return {k: v.detach().cpu() for k, v in out.items()}


def relevancy(
    model: nn.Module, batch: Batch, target: int | None = None, tokenizer=None, image_index: int = 0, index: int = 0
) -> dict:
    """Relevancy of example `index` to `target` (default: the predicted answer):
    {"image": [rows, cols], "image_cls", "text": [T], "tokens", "target", "prob", "method"}."""
    rows = relevancy_rows(model, batch, target, image_index)
    t = text_length(batch, index)
    return {
        "image": rows["image"][index].numpy(),
        "image_cls": float(rows["image_cls"][index]),
        "text": rows["text"][index, :t].numpy().astype(np.float64),
        "tokens": tokens(batch, tokenizer, index),
        "target": int(rows["target"][index]),
        "prob": float(rows["prob"][index]),
        "method": "relevancy",
        "kind": "fusion" if is_fusion(model) else "dual",
    }
