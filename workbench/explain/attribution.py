"""Integrated Gradients (Sundararajan et al., 2017) with Captum, on the embedding layers.

`LayerIntegratedGradients` over two layers at once: the patch projection (the convolution that
turns each 16 x 16 patch into a vector, before position embeddings are added) and the word
embeddings. The path goes from the baseline's embeddings to the input's, both layers together;
each attribution is summed over the embedding channels, giving one value per patch (already
[rows, cols]: the convolution's output is laid out as the image) and one per token.

Completeness: the attributions add up to `f(input) - f(baseline)` of the target logit, up to the
integration error reported as `delta` (Captum's convergence delta; more `n_steps`, smaller error).

Baselines: the image with every patch replaced by `baseline` (default: its mean colour); the
question with every word replaced by [PAD] ([CLS] and [SEP] kept, so they get zero attribution).
Caveats: IG depends on the baseline; attributions can be negative (evidence against the target).
`internal_batch_size` bounds memory: the path points are evaluated that many at a time (None: all at
once); the result is the same up to float rounding. The weights get no gradients (`frozen`): only the
embedding outputs need them, and the backward passes cost about half as much. On a CPU a dual student runs its
IG in eager attention (`_fastest_backward_attention`).
Only one-image models: the patch projection must run once per forward pass.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
from captum.attr import LayerIntegratedGradients
from torch import nn

from workbench.data.collate import Batch
from workbench.explain.attention import eager_attention
from workbench.explain.grid import _unwrap, is_fusion
from workbench.explain.inputs import baseline_image, pixels_5d, text_length, to_device, tokens

TAB_IG_STEPS = 16  # the app's Attention tab, as `workbench explain` and the shipped faithfulness results


def embedding_layers(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(patch projection, word embeddings) of either model kind."""
    model = _unwrap(model)
    if is_fusion(model):
        emb = model.vilt.embeddings
        return emb.patch_embeddings.projection, emb.text_embeddings.word_embeddings
    return model.image_tower.embeddings.patch_embeddings.projection, model.text_tower.embeddings.word_embeddings


def pixels_5d_mask(pixel_mask: torch.Tensor) -> torch.Tensor:
    """[B, H, W] or [B, images, H, W] -> [B, images, H, W]."""
    return pixel_mask[:, None] if pixel_mask.dim() == 3 else pixel_mask


def baseline_ids(input_ids: torch.Tensor, attention_mask: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """The question with its words replaced by [PAD]; the first and the last real token kept."""
    base = input_ids.clone()
    for i in range(base.shape[0]):
        n = int(attention_mask[i].sum())
        base[i, 1 : max(n - 1, 1)] = pad_id
    return base


@contextmanager
def frozen(model: nn.Module):
    """Parameters without gradients for the duration: IG needs the gradient of the logit with respect to the
    embedding layers' outputs only, and skipping the weight gradients makes each backward pass about half as
    costly (the attributions are the same)."""
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)


def _fastest_backward_attention(model: nn.Module, device: torch.device):
    """On a CPU the dual student's towers run IG in eager attention: torch's fused (SDPA) attention has a slower
    backward there (a ViLT-B/32-sized student's 16-step IG in bf16: 2.5 s with SDPA, 2.0 s eager, the same
    attributions up to bf16 rounding). On a GPU the fused kernel stays."""
    return eager_attention(model) if device.type == "cpu" else nullcontext()


def integrated_gradients(
    model: nn.Module,
    batch: Batch,
    target: int | None = None,
    tokenizer=None,
    baseline: str | float = "mean",
    n_steps: int = 32,
    internal_batch_size: int = 8,
    index: int = 0,
) -> dict:
    """IG of example `index` for `target` (default: the predicted answer).

    {"image": [rows, cols] per-patch attribution, "text": [T] per-token attribution, "tokens",
    "target", "f_input", "f_baseline" (target logits), "delta" (sum of attributions minus their
    difference), "method": "ig"}.
    """
    model = _unwrap(model)
    if getattr(model, "num_images", 1) != 1:
        raise ValueError("integrated_gradients supports one-image models only (the patch layer runs once per image)")
    batch = to_device(batch, model)
    ids = batch.input_ids[index : index + 1]
    mask = batch.attention_mask[index : index + 1]
    pixels = pixels_5d(batch.pixel_values)[index : index + 1, 0]
    # a padded batch's pixel mask rides along as a forward argument (Captum repeats it for every path point)
    extra = () if batch.pixel_mask is None else (pixels_5d_mask(batch.pixel_mask)[index : index + 1, 0],)

    def forward(input_ids, pixel_values, attention_mask, pixel_mask=None):
        kwargs = {} if pixel_mask is None else {"pixel_mask": pixel_mask}
        return model(input_ids, attention_mask, pixel_values, **kwargs).logits.float()

    pad = tokenizer.pad_token_id if tokenizer is not None and tokenizer.pad_token_id is not None else 0
    base_ids, base_pixels = baseline_ids(ids, mask, pad), baseline_image(pixels, baseline)
    # the input and the baseline in one forward pass: the target (default: the predicted answer) and the two ends
    # of the completeness check, which Captum's `return_convergence_delta` would run again as two more passes
    with torch.no_grad():
        ends = forward(torch.cat([ids, base_ids]), torch.cat([pixels, base_pixels]), mask.expand(2, -1),
                       *(m.expand(2, *m.shape[1:]) for m in extra))  # fmt: skip
    target = int(ends[0].argmax(-1)) if target is None else int(target)
    f_input, f_base = float(ends[0, target]), float(ends[1, target])
    with warnings.catch_warnings():  # "ensure that each layer is not solely dependent on another": they are not
        warnings.filterwarnings("ignore", message="Multiple layers provided")
        lig = LayerIntegratedGradients(forward, list(embedding_layers(model)))
    with frozen(model), _fastest_backward_attention(model, pixels.device):
        patch_attr, word_attr = lig.attribute(
            (ids, pixels),
            baselines=(base_ids, base_pixels),
            additional_forward_args=(mask, *extra),
            target=target,
            n_steps=n_steps,
            internal_batch_size=internal_batch_size,
        )
    total = float(patch_attr.float().sum() + word_attr.float().sum())
    t = text_length(batch, index)
    return {
        # float() first: under bf16 autocast the attributions are bf16, which numpy cannot hold
        "image": patch_attr[0].float().sum(0).detach().cpu().numpy().astype(np.float64),  # [d, rows, cols] -> grid
        "text": word_attr[0, :t].float().sum(-1).detach().cpu().numpy().astype(np.float64),
        "tokens": tokens(batch, tokenizer, index),
        "target": target,
        "f_input": f_input,
        "f_baseline": f_base,
        "delta": total - (f_input - f_base),  # Captum's convergence delta
        "method": "ig",
        "kind": "fusion" if is_fusion(model) else "dual",
    }
