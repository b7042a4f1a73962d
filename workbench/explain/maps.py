"""One image map per example for any method, by name: the common currency of faithfulness curves,
teacher-student agreement and the figures.

Methods (`METHODS`):
  "attention"  raw text-to-image attention (`attention.cross_attention`): the chosen layer's head
               mean, averaged over the question's words ([CLS]/[SEP] left out); for the student its
               virtual cross-attention
  "rollout"    attention rollout onto the patches (`rollout`)
  "relevancy"  gradient-weighted relevancy (`relevancy`)
  "ig"         Integrated Gradients on the patch embeddings (`attribution`)
"""

from __future__ import annotations

import numpy as np
from torch import nn

from workbench.data.collate import Batch
from workbench.explain.attention import cross_attention, cross_probs, question_map
from workbench.explain.attribution import integrated_gradients
from workbench.explain.grid import to_grid
from workbench.explain.inputs import word_positions
from workbench.explain.relevancy_maps import relevancy, relevancy_rows
from workbench.explain.rollout_maps import attention_rollout, rollout_rows

METHODS = ("attention", "rollout", "relevancy", "ig")


def _check(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def image_maps(
    model: nn.Module,
    batch: Batch,
    method: str,
    target=None,
    layer: int = -1,
    ig_steps: int = 32,
    baseline: str | float = "mean",
) -> np.ndarray:
    """[B, rows, cols]: the `method` map of every example in `batch` (`target`: None for each
    example's predicted answer, or a label / one label per example)."""
    _check(method)
    if method == "attention":
        probs = cross_probs(model, batch, (layer,))
        maps = to_grid(probs["t2i"][:, 0].mean(1), probs["grid"], offset=1)  # [B, T, rows, cols]
        return np.stack([maps[i, word_positions(batch, i)].mean(0).numpy() for i in range(maps.shape[0])])
    if method == "rollout":
        return rollout_rows(model, batch)["image"].numpy()
    if method == "relevancy":
        return relevancy_rows(model, batch, target)["image"].numpy()
    targets = [None] * len(batch) if target is None else np.broadcast_to(np.asarray(target), (len(batch),))
    return np.stack(
        [
            integrated_gradients(
                model, batch, None if t is None else int(t), baseline=baseline, n_steps=ig_steps, index=i
            )["image"]
            for i, t in enumerate(targets)
        ]
    )


def explain(
    model: nn.Module,
    batch: Batch,
    tokenizer=None,
    methods: tuple[str, ...] = METHODS,
    target: int | None = None,
    layer: int = -1,
    ig_steps: int = 32,
    baseline: str | float = "mean",
    index: int = 0,
) -> dict[str, dict]:
    """Every method's result for example `index`: {method: {"image": [rows, cols], "text": [T] or
    None, "tokens", ...}}; "attention" also carries the full `cross_attention` result under "cross"."""
    out = {}
    for method in methods:
        _check(method)
        if method == "attention":
            ca = cross_attention(model, batch, tokenizer, index=index)
            out[method] = {
                "image": question_map(ca, layer),
                "text": None,
                "tokens": ca["tokens"],
                "method": method,
                "cross": ca,
            }
        elif method == "rollout":
            out[method] = attention_rollout(model, batch, tokenizer, index=index)
        elif method == "relevancy":
            out[method] = relevancy(model, batch, target, tokenizer, index=index)
        else:
            out[method] = integrated_gradients(
                model, batch, target, tokenizer, baseline=baseline, n_steps=ig_steps, index=index
            )
    return out
